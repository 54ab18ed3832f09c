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
