"""Bootstrap confidence intervals for the parametric loss law.

Rows are resampled with replacement and the law refitted (Chinchilla sec. 3.3
reports bootstrap intervals the same way); percentile intervals follow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from src.scaling.parametric import (
    ParametricFit,
    best_of_starts,
    grid_points,
    log_data,
    objective,
    screen_grid,
)
from src.scaling.table import FitError

log = logging.getLogger(__name__)

# Parameters of the law and of the implied compute-optimal allocation.
CI_KEYS: tuple[str, ...] = ("E", "A", "B", "alpha", "beta", "G", "a", "b")


@dataclass
class BootstrapCI:
    """Percentile intervals from a bootstrap.

    Attributes:
        level: Coverage, e.g. 0.95.
        n_boot: Replicates requested.
        n_ok: Replicates whose refit succeeded.
        intervals: Name -> (low, high) for every key in CI_KEYS.
        samples: Name -> replicate values (for plots or other statistics).
    """

    level: float
    n_boot: int
    n_ok: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)


def percentile_intervals(samples: dict[str, Sequence[float]],
                         level: float) -> dict[str, tuple[float, float]]:
    """Name -> the central `level` percentile interval of its replicate values (names with
    no replicate are left out)."""
    tail = 100 * (1 - level) / 2
    return {k: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
            for k, v in samples.items() if len(v)}


def _values(fit: ParametricFit) -> dict[str, float]:
    return {k: float(getattr(fit, k)) for k in CI_KEYS}


def bootstrap_parametric(
    n: np.ndarray, d: np.ndarray, loss: np.ndarray, point: ParametricFit, *,
    n_boot: int = 200, level: float = 0.95, seed: int = 0, n_starts: int = 2,
) -> BootstrapCI:
    """Bootstrap the parametric fit by resampling rows with replacement.

    Each replicate runs L-BFGS from the point estimate and from the
    ``n_starts`` best grid points of the full data: a resample moves the
    optimum only a little, so re-screening the 4500-point grid per replicate
    would cost far more than it finds.

    Args:
        n: Parameters per run.
        d: Training tokens per run.
        loss: Loss per run.
        point: Fit on the full data (warm start).
        n_boot: Number of replicates.
        level: Interval coverage.
        seed: RNG seed (the result is deterministic given it).
        n_starts: Grid starts per replicate in addition to the point estimate.

    Returns:
        Percentile intervals for E, A, B, alpha, beta, G, a, b.
    """
    log_n, log_d, log_l = log_data(n, d, loss)
    starts = np.vstack([point.vector(), screen_grid(grid_points(), log_n, log_d, log_l, n_starts)])
    rng = np.random.default_rng(seed)
    draws: list[dict[str, float]] = []
    for _ in range(n_boot):
        idx = rng.integers(0, log_n.size, log_n.size)
        try:
            log_data(log_n[idx], log_d[idx], log_l[idx])  # identifiability of the resample
            best = best_of_starts(objective, starts, (log_n[idx], log_d[idx], log_l[idx]))
        except FitError:
            continue  # a degenerate resample (e.g. one distinct N) carries no information
        draws.append(_values(ParametricFit.from_vector(best.x, float(best.fun), log_n.size)))
    if len(draws) < n_boot:
        log.warning("bootstrap: %d of %d replicates failed", n_boot - len(draws), n_boot)
    ci = BootstrapCI(level, n_boot, len(draws))
    if not draws:
        return ci
    ci.samples = {key: np.array([row[key] for row in draws]) for key in CI_KEYS}
    ci.intervals = percentile_intervals(ci.samples, level)
    return ci
