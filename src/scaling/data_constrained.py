"""Data-constrained scaling: repeated tokens (Muennighoff et al. 2023, sec. 3).

Repeating U unique tokens for ``epochs`` passes is worth the effective data

    D' = U + U R* (1 - exp(-R / R*)),   R = epochs - 1,

so each repetition is worth a little less than fresh data and D' saturates at
U (1 + R*). The loss follows the base law with D' in place of D:
L = E + A/N^alpha + B/D'^beta. R* (R_D* in the paper; 15.4 for their models)
is fitted with the same Huber-on-ln-L objective as Chinchilla approach 3.

Procedure: with a given base law (e.g. a published fit) only R* is fitted, on
the repeated runs; otherwise the base law and R* are fitted jointly on all
rows (one 6-parameter Huber fit, started from a coarse profile over R*). The
joint fit uses the single-epoch runs too, which pins the base law better than
fitting it on the single-epoch runs alone. Not implemented: the analogous excess-
parameter term N' (R_N*; needs runs larger than compute-optimal for U), and
the Quokka (Ni et al. 2025, eq. 14) variant of the law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from src.scaling.parametric import (
    HUBER_DELTA,
    MIN_POINTS,
    ParametricFit,
    best_of_starts,
    fit_parametric,
    huber,
    huber_lse,
    objective,
)
from src.scaling.table import FitError

LOG_R_STAR_GRID = np.linspace(np.log(0.1), np.log(1e4), 61)


@dataclass
class DataConstrainedFit:
    """Fitted repetition half-life R* and the base law it was fitted with.

    Attributes:
        r_star: R_D*, the repetition count at which returns have decayed by 1/e.
        base: Base law L(N, D').
        mode: ``fixed-base`` (base from single-epoch rows, or given) or ``joint``.
        objective: Mean Huber loss / delta at the optimum.
        n_points: Rows used.
        n_repeated: Rows with more than one epoch.
        r_star_ci: Bootstrap percentile interval of R*, if computed.
    """

    r_star: float
    base: ParametricFit
    mode: str
    objective: float
    n_points: int
    n_repeated: int
    r_star_ci: tuple[float, float] | None = None

    def predict(self, n: np.ndarray, unique: np.ndarray, repeats: np.ndarray) -> np.ndarray:
        """Predicted loss for N params trained on U unique tokens repeated R extra times."""
        return self.base.predict(n, effective_data(unique, repeats, self.r_star))


def effective_data(unique: np.ndarray, repeats: np.ndarray, r_star: float) -> np.ndarray:
    """D' = U (1 + R* (1 - exp(-R/R*))) (Muennighoff et al. 2023, sec. 3).

    Args:
        unique: Unique tokens U.
        repeats: Extra epochs R = epochs - 1 (>= 0).
        r_star: Decay constant R*.

    Returns:
        Effective data D' (equals U at R = 0, tends to U (1 + R*) as R grows).
    """
    unique, repeats = np.asarray(unique, float), np.asarray(repeats, float)
    return unique * (1.0 + r_star * -np.expm1(-repeats / r_star))


def unique_and_repeats(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: tokens in one pass (min(U, D)) and extra epochs R.

    R is ``epochs - 1`` when an ``epochs`` column is given, else D/U - 1, and
    clipped at 0 (less than one pass over the pool is fresh data). Rows without
    ``unique_tokens`` count as fresh data (U = D, R = 0).

    Args:
        df: Prepared table with ``D`` and ``unique_tokens`` (optional ``epochs``).

    Returns:
        (unique, repeats) arrays.
    """
    d = df["D"].to_numpy(float)
    u = pd.to_numeric(df["unique_tokens"], errors="coerce").to_numpy(float)
    u = np.where(np.isfinite(u) & (u > 0), u, d)
    epochs = d / u
    if "epochs" in df.columns:
        given = pd.to_numeric(df["epochs"], errors="coerce").to_numpy(float)
        epochs = np.where(np.isfinite(given) & (given > 0), given, epochs)
    return np.minimum(u, d), np.maximum(epochs - 1.0, 0.0)


def _r_star_objective(log_r, base, n, unique, repeats, log_l, delta) -> float:
    pred = base.predict(n, effective_data(unique, repeats, np.exp(log_r)))
    return float(huber(np.log(pred) - log_l, delta)[0].mean() / delta)


def fit_r_star(
    n: np.ndarray, unique: np.ndarray, repeats: np.ndarray, loss: np.ndarray,
    base: ParametricFit, delta: float = HUBER_DELTA,
) -> tuple[float, float]:
    """Fit R* with the base law fixed: grid over ln R*, then bounded Brent refinement.

    Args:
        n: Parameters per run.
        unique: Unique tokens per run.
        repeats: Extra epochs per run.
        loss: Loss per run.
        base: Base law.
        delta: Huber delta.

    Returns:
        (R*, objective at R*).
    """
    args = (base, np.asarray(n, float), unique, repeats, np.log(np.asarray(loss, float)), delta)
    values = [_r_star_objective(g, *args) for g in LOG_R_STAR_GRID]
    i = int(np.argmin(values))
    lo, hi = LOG_R_STAR_GRID[max(i - 1, 0)], LOG_R_STAR_GRID[min(i + 1, len(values) - 1)]
    res = minimize_scalar(_r_star_objective, bounds=(lo, hi), args=args, method="bounded",
                          options={"xatol": 1e-6})
    best = min((float(res.fun), float(res.x)), (values[i], float(LOG_R_STAR_GRID[i])))
    return float(np.exp(best[1])), best[0]


def joint_objective(
    x: np.ndarray, log_n: np.ndarray, unique: np.ndarray, repeats: np.ndarray,
    log_l: np.ndarray, delta: float = HUBER_DELTA,
) -> tuple[float, np.ndarray]:
    """Approach-3 objective of L(N, D'(R*)) in (a, b, e, alpha, beta, ln R*), with gradient.

    Args:
        x: Log-space base-law parameters followed by ln R*.
        log_n: ln N per row.
        unique: Unique tokens per row.
        repeats: Extra epochs per row.
        log_l: ln L per row.
        delta: Huber delta.

    Returns:
        (value, gradient of shape (6,)).
    """
    r_star = np.exp(x[5])
    d_eff = effective_data(unique, repeats, r_star)
    log_d = np.log(d_eff)
    value, g5 = objective(x[:5], log_n, log_d, log_l, delta)
    _, g = huber_lse(x[:5], log_n, log_d, log_l, delta)
    # d ln D' / d ln R* = R* U (s - q e^-q) / D', with q = R/R*, s = 1 - e^-q.
    q = repeats / r_star
    dlogd = r_star * unique * (-np.expm1(-q) - q * np.exp(-q)) / d_eff
    return value, np.append(g5, np.sum(g[:, 1] * -x[4] * dlogd))


def _fit_joint(n, unique, repeats, loss, starts_per_r: int = 4) -> tuple[np.ndarray, float]:
    # Starts: the best base law at a few fixed R* (a coarse profile), then all
    # six parameters by L-BFGS-B from the three best profile points.
    log_n, log_l = np.log(n), np.log(loss)
    profile, warm = [], None
    for log_r in LOG_R_STAR_GRID[::10]:
        fit = fit_parametric(n, effective_data(unique, repeats, np.exp(log_r)), loss,
                             n_starts=starts_per_r, extra_starts=warm)
        warm = fit.vector()
        profile.append((fit.objective, np.append(warm, log_r)))
    profile.sort(key=lambda t: t[0])
    starts = np.array([x for _, x in profile[:3]])
    best = best_of_starts(joint_objective, starts, (log_n, unique, repeats, log_l))
    return best.x, float(best.fun)


def _bootstrap_r_star(fit_one, size: int, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = [fit_one(rng.integers(0, size, size)) for _ in range(n_boot)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def fit_data_constrained(
    df: pd.DataFrame, base: ParametricFit | None = None, *, n_boot: int = 0, seed: int = 0,
) -> DataConstrainedFit:
    """Fit R* (jointly with the base law unless one is given) on a prepared table.

    Args:
        df: Table from :func:`src.scaling.table.prepare_table` with ``unique_tokens``.
        base: Fixed base law (e.g. a published fit); default: fitted jointly.
        n_boot: Bootstrap replicates (rows resampled) for a 95% R* interval.
        seed: Bootstrap RNG seed.

    Returns:
        The fit.

    Raises:
        FitError: Without ``unique_tokens``, without repeated runs, or too few rows.
    """
    if "unique_tokens" not in df.columns:
        raise FitError("no unique_tokens column")
    n, loss = df["N"].to_numpy(float), df["L"].to_numpy(float)
    unique, repeats = unique_and_repeats(df)
    rep = repeats > 0
    if rep.sum() == 0:
        raise FitError("no repeated-data runs (all epochs <= 1)")
    if base is not None:
        r_star, obj = fit_r_star(n[rep], unique[rep], repeats[rep], loss[rep], base)
        result = DataConstrainedFit(r_star, base, "fixed-base", obj, int(n.size), int(rep.sum()))
        if n_boot > 0:
            idx_rep = np.flatnonzero(rep)

            def refit(i: np.ndarray) -> float:
                j = idx_rep[i]
                return fit_r_star(n[j], unique[j], repeats[j], loss[j], base)[0]

            result.r_star_ci = _bootstrap_r_star(refit, idx_rep.size, n_boot, seed)
        return result
    if np.unique(repeats[rep]).size < 2:
        raise FitError("need >= 2 distinct epoch counts > 1 to separate R* from the law")
    if n.size < MIN_POINTS + 1 or np.unique(n).size < 2:
        raise FitError(f"{n.size} runs (need >= {MIN_POINTS + 1} and >= 2 distinct N)")
    x, obj = _fit_joint(n, unique, repeats, loss)
    result = DataConstrainedFit(
        float(np.exp(x[5])), ParametricFit.from_vector(x[:5], obj, int(n.size)), "joint", obj,
        int(n.size), int(rep.sum()),
    )
    if n_boot > 0:
        log_n, log_l = np.log(n), np.log(loss)

        def refit_joint(i: np.ndarray) -> float:
            args = (log_n[i], unique[i], repeats[i], log_l[i])
            return float(np.exp(best_of_starts(joint_objective, x[None], args).x[5]))

        result.r_star_ci = _bootstrap_r_star(refit_joint, n.size, n_boot, seed)
    return result
