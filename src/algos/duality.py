"""The Gaussian-discrete duality of DUO (Sahoo et al. 2025, "The Diffusion Duality", sec. 3).

A Gaussian latent w = a e_x + s eps in R^K with a^2 = sigmoid(-gamma), s^2 = sigmoid(gamma)
(variance preserving, log-SNR -gamma) has argmax(w) distributed *exactly* as a
uniform-state latent with

    alpha(gamma) = (K I(gamma) - 1) / (K - 1),
    I(gamma) = P(argmax w = x) = int phi(z - r) Phi(z)^(K-1) dz,   r = a / s = exp(-gamma / 2)

(DUO eq. 10: the correct coordinate must beat the K - 1 others). I has no closed form, so
it is tabulated once per K by quadrature on a fine z-grid in float64, with its exact
derivative dI/dr = int (z - r) phi(z - r) Phi(z)^(K-1) dz, then interpolated linearly.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_ndtr

from src.utils.atomic import atomic_write

log = logging.getLogger(__name__)

#: gamma grid: r = exp(-gamma/2) from ~15.6 (alpha = 1 to float64 for any K < 2^20) to
#: 4.5e-5 (alpha ~ 3e-5 even for K = 2); alpha is flat-ish in gamma, so 8193 points give
#: a linear-interpolation error below 1e-6 (checked in tests/algos/test_duo_duality.py).
GAMMA_LO, GAMMA_HI, N_GAMMA = -5.5, 20.0, 8193
_Z_STEP = 0.004  # trapezoid on an analytic integrand: error far below float64 noise here
_MEMO: dict[int, DualityTable] = {}
_VERSION = 1


class DualityTable:
    """alpha(gamma), d alpha / d gamma and the inverse gamma(alpha) for K categories."""

    def __init__(self, k: int, gamma: np.ndarray, integral: np.ndarray, dintegral: np.ndarray):
        if k < 2:
            raise ValueError(f"the duality needs K >= 2 real categories, got K={k}")
        self.k = k
        # Quadrature rounding puts alpha a few ulps above 1 where it saturates: clip, and
        # enforce the exact monotonicity (alpha decreases in gamma) so the inverse is defined.
        alpha = np.minimum.accumulate(np.clip((k * integral - 1.0) / (k - 1.0), 0.0, 1.0))
        self._gamma = torch.from_numpy(np.ascontiguousarray(gamma, dtype=np.float64))
        self._alpha = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float64))
        self._dalpha = torch.from_numpy(k / (k - 1.0) * np.asarray(dintegral, dtype=np.float64))
        self.integral = torch.from_numpy(np.asarray(integral, dtype=np.float64))
        self._on_device: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @classmethod
    def compute(cls, k: int, n_gamma: int = N_GAMMA) -> DualityTable:
        """Tabulate I(gamma) and dI/dgamma by float64 quadrature (about a second)."""
        gamma = np.linspace(GAMMA_LO, GAMMA_HI, n_gamma)
        r = np.exp(-gamma / 2)
        # Phi(z)^(K-1) vanishes below ~ -8 for any K >= 2 and the Gaussian factor beyond
        # r + 9; the grid covers both with margin.
        z = np.arange(-12.0, float(r.max()) + 12.0, _Z_STEP)
        log_max_pdf = (k - 1) * log_ndtr(z) - 0.5 * math.log(2 * math.pi)
        integral, dintegral = np.empty(n_gamma), np.empty(n_gamma)
        for lo in range(0, n_gamma, 256):  # chunks keep memory at ~256 x len(z) floats
            diff = z[None] - r[lo: lo + 256, None]
            dens = np.exp(log_max_pdf[None] - 0.5 * diff**2)
            integral[lo: lo + 256] = dens.sum(1) * _Z_STEP
            # dI/dgamma = dI/dr * dr/dgamma with dr/dgamma = -r/2.
            dintegral[lo: lo + 256] = (diff * dens).sum(1) * _Z_STEP * (-r[lo: lo + 256] / 2)
        return cls(k, gamma, integral, dintegral)

    # ---- lookups (float64, any device; inputs outside the grid are clamped) ----------------
    def _columns(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(gamma, alpha, dalpha, integral, alpha and gamma reversed) on `device`, copied once."""
        if device not in self._on_device:
            cols = (self._gamma, self._alpha, self._dalpha, self.integral,
                    self._alpha.flip(0), self._gamma.flip(0))
            self._on_device[device] = tuple(c.to(device) for c in cols)
        return self._on_device[device]

    def alpha(self, gamma: torch.Tensor) -> torch.Tensor:
        """alpha(gamma): probability that argmax(w) is still x, mixed with uniform."""
        g, a = self._columns(gamma.device)[:2]
        return _interp(gamma, g, a)

    def integral_at(self, gamma: torch.Tensor) -> torch.Tensor:
        """I(gamma) = P(argmax w = x)."""
        cols = self._columns(gamma.device)
        return _interp(gamma, cols[0], cols[3])

    def dalpha_dgamma(self, gamma: torch.Tensor) -> torch.Tensor:
        """d alpha / d gamma (< 0), from the tabulated exact derivative of I."""
        cols = self._columns(gamma.device)
        return _interp(gamma, cols[0], cols[2])

    def gamma(self, alpha: torch.Tensor) -> torch.Tensor:
        """The inverse: gamma such that alpha(gamma) = alpha (alpha is decreasing in gamma)."""
        cols = self._columns(alpha.device)
        return _interp(alpha, cols[4], cols[5])

    def scales(self, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, s) = (sqrt(sigmoid(-gamma)), sqrt(sigmoid(gamma))) of w = a e_x + s eps."""
        gamma = gamma.double()
        return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp increasing, fp) at x, clamped to the ends."""
    xq = x.double().clamp(xp[0], xp[-1])  # tensor bounds: no device sync
    hi = torch.searchsorted(xp, xq).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[hi - 1], xp[hi], fp[hi - 1], fp[hi]
    # Where float64 saturates (alpha == 1 to the last bit) neighbours tie: take f0 there.
    w = torch.where(x1 > x0, (xq - x0) / (x1 - x0).clamp_min(1e-300), torch.zeros_like(xq))
    return f0 + w * (f1 - f0)


def duality_table(k: int, cache_dir: str | os.PathLike[str] | None = None) -> DualityTable:
    """The table for K real categories: memoized per process, optionally cached on disk.

    Args:
        k: number of real categories (vocabulary minus [MASK]).
        cache_dir: folder for `duality/K<k>_v1.npz` (None = compute, keep in memory only).
    """
    if k in _MEMO:
        return _MEMO[k]
    path = None if cache_dir is None else Path(cache_dir) / "duality" / f"K{k}_v{_VERSION}.npz"
    table = None
    if path is not None and path.is_file():
        try:
            data = np.load(path)
            table = DualityTable(k, data["gamma"], data["integral"], data["dintegral"])
        except (OSError, KeyError, ValueError):
            log.warning("ignoring unreadable duality cache %s", path)
    if table is None:
        table = DualityTable.compute(k)
        if path is not None:
            _save(path, table)
    _MEMO[k] = table
    return table


def _save(path: Path, table: DualityTable) -> None:
    """Write atomically (temp file + rename) so concurrent runs never read half a file."""
    k = table.k
    atomic_write(path, lambda f: np.savez(f, gamma=table._gamma.numpy(),
                                          integral=table.integral.numpy(),
                                          dintegral=table._dalpha.numpy() * (k - 1.0) / k),
                 mode="wb")
