"""Published scaling-law fits to compare against (docs/algorithms.md, "Scaling-law fits")."""

from __future__ import annotations

from src.scaling.isoflop import PowerLaw
from src.scaling.parametric import ParametricFit

# Hoffmann et al. 2022 (Chinchilla), eq. 10: approach 3 on AR transformers.
CHINCHILLA = ParametricFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Ni et al. 2025 (Quokka), masked diffusion LMs, parametric fit.
QUOKKA = ParametricFit(E=2.413, A=798.6, B=4604.9, alpha=0.379, beta=0.378)
# Quokka approach 1 compute-optimal allocation (r2 unknown, stored as NaN).
QUOKKA_N_OPT = PowerLaw(coefficient=0.0216, exponent=0.514, n_points=0, r2=float("nan"))
QUOKKA_D_OPT = PowerLaw(coefficient=7.7, exponent=0.486, n_points=0, r2=float("nan"))

PUBLISHED_LAWS: dict[str, ParametricFit] = {"chinchilla": CHINCHILLA, "quokka": QUOKKA}

# IsoFLOP exponents (N_opt ~ C^a, D_opt ~ C^b): Chinchilla approach 2 (Hoffmann et al. 2022,
# table 2) for AR; Quokka approach 1 (Ni et al. 2025) for masked diffusion.
PUBLISHED_ISOFLOP: dict[str, tuple[float, float]] = {
    "chinchilla approach 2 (AR)": (0.49, 0.51),
    "quokka approach 1 (masked DLM)": (QUOKKA_N_OPT.exponent, QUOKKA_D_OPT.exponent),
}
# Compute a masked diffusion model needs to reach an AR model's validation loss: SMDM
# (Nie et al. 2024, IsoFLOP study): about 16x.
PUBLISHED_MULTIPLIERS: dict[str, float] = {"SMDM (Nie et al. 2024), MDM vs AR": 16.0}
