"""Intervals for the IsoFLOP laws that include the variation between budgets and runs, and
the sensitivity of the exponents to reasonable analysis choices.

The residual bootstrap (src/scaling/frontier.py) resamples each parabola's residuals: it
sees the noise *within* a budget, not the scatter of the minima *between* budgets around the
power law, nor a different draw of runs or seeds. With three budgets that scatter dominates.
Three complements, each reported next to the residual bootstrap:

- a t-interval of each exponent from the least-squares line through the minima, with
  n_budgets - 2 degrees of freedom (three budgets: one degree, t = 12.7: an honest width);
- a case bootstrap: runs (and so seeds) are resampled with replacement within each budget
  and every parabola and law refitted; a replicate that leaves a budget with fewer than
  three distinct N, or a parabola without a minimum, is dropped and counted;
- sensitivity rows: the same laws with non-embedding N, with each model size left out, and
  with each budget's parabola through only the three sizes around its lowest loss.

A law whose interval is wider than its own range of plausible values says so
(:func:`constrained_reason`) instead of being read as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from src.scaling.bootstrap import percentile_intervals
from src.scaling.isoflop import BudgetFit, budget_buckets, fit_isoflop, fit_profile
from src.scaling.table import FitError

#: Laws whose intervals are computed: N_opt ~ C^a, D_opt ~ C^b, L_opt ~ C^frontier_exponent.
LAW_NAMES: tuple[str, ...] = ("a", "b", "frontier_exponent")


def slope_t_interval(compute: np.ndarray, values: np.ndarray,
                     level: float = 0.95) -> tuple[float, float] | None:
    """`level` t-interval of the slope of log(values) against log(compute) (ordinary least
    squares, n - 2 degrees of freedom); None with fewer than three points (no residual
    degree of freedom: two budgets fit any line exactly)."""
    from scipy.stats import t as student_t

    x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(values, float))
    n = x.size
    if n < 3:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    sxx = float(((x - x.mean()) ** 2).sum())
    se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / sxx) if sxx > 0 else math.inf
    q = float(student_t.ppf(0.5 + level / 2, n - 2))
    return float(slope - q * se), float(slope + q * se)


def _law_values(budgets: list[BudgetFit]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(budgets C, law name -> the quantity whose power of C it is)."""
    c = np.array([b.budget for b in budgets], float)
    return c, {"a": np.array([b.n_opt for b in budgets], float),
               "b": np.array([b.d_opt for b in budgets], float),
               "frontier_exponent": np.array([b.loss_opt for b in budgets], float)}


def law_exponents(budgets: list[BudgetFit]) -> dict[str, float]:
    """a, b and the frontier exponent through the minima of `budgets` (least squares in
    log space). Raises FitError with fewer than two distinct budgets."""
    c, values = _law_values(budgets)
    if np.unique(np.log(c)).size < 2:
        raise FitError("need >= 2 budgets with a usable minimum for a power law")
    return {k: float(np.polyfit(np.log(c), np.log(v), 1)[0]) for k, v in values.items()}


def t_intervals(budgets: list[BudgetFit], level: float = 0.95) -> dict[str, tuple[float, float]]:
    """:func:`slope_t_interval` of each law in LAW_NAMES (empty with < 3 budgets)."""
    c, values = _law_values(budgets)
    out = {}
    for name in LAW_NAMES:
        interval = slope_t_interval(c, values[name], level)
        if interval is not None:
            out[name] = interval
    return out


@dataclass
class CaseBootstrap:
    """Percentile intervals from resampling runs within each budget.

    Attributes:
        level: Coverage.
        n_boot: Replicates drawn.
        n_ok: Replicates in which every budget kept a usable minimum.
        intervals: Law name -> (low, high).
    """

    level: float
    n_boot: int
    n_ok: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def case_bootstrap(used: list[BudgetFit], *, n_boot: int = 200, seed: int = 0,
                   level: float = 0.95) -> CaseBootstrap | None:
    """Resample the runs of each used budget with replacement, refit everything.

    Args:
        used: The budgets whose minima entered the laws (their runs are resampled).
        n_boot: Replicates.
        seed: RNG seed.
        level: Interval coverage.

    Returns:
        The intervals, or None with fewer than two budgets or n_boot 0.
    """
    if n_boot <= 0 or len(used) < 2:
        return None
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in LAW_NAMES}
    for _ in range(n_boot):
        reps = []
        for b in used:
            idx = rng.integers(0, b.params.size, b.params.size)
            reps.append(fit_profile(b.budget, b.params[idx], b.losses[idx]))
        if any(r.status != "ok" for r in reps):
            continue  # a budget lost its bracketed minimum in this draw: counted, not used
        try:
            values = law_exponents(reps)
        except FitError:
            continue
        for k, v in values.items():
            samples[k].append(v)
    return CaseBootstrap(level, n_boot, len(samples["a"]), percentile_intervals(samples, level))


@dataclass
class SensitivityRow:
    """The laws under one analysis choice.

    Attributes:
        choice: What was changed (``full fit``, ``N = non-embedding``, ``without N=...``,
            ``3-point parabolas``).
        exponents: Law name -> exponent (empty when the laws could not be fitted).
        reason: Why not, if they could not.
    """

    choice: str
    exponents: dict[str, float] = field(default_factory=dict)
    reason: str | None = None


def _row(choice: str, df: pd.DataFrame, allow_unbracketed: bool) -> SensitivityRow:
    fit = fit_isoflop(df, allow_unbracketed=allow_unbracketed) if len(df) else None
    if fit is None or fit.n_opt_law is None:
        return SensitivityRow(choice, reason=fit.reason if fit else "no rows")
    return SensitivityRow(choice, law_exponents(fit.used(allow_unbracketed)))


def three_point_table(df: pd.DataFrame) -> pd.DataFrame:
    """Each budget's rows at the three distinct N around its lowest loss (a parabola through
    the minimum's neighbourhood only); budgets whose lowest loss is at an end keep the three
    nearest sizes."""
    keys = budget_buckets(df["budget"].to_numpy())
    parts = []
    for key in np.unique(keys):
        rows = df.loc[keys == key]
        sizes = np.sort(rows["N"].unique())
        if sizes.size <= 3:
            parts.append(rows)
            continue
        best = int(np.searchsorted(sizes, rows.loc[rows["L"].idxmin(), "N"]))
        start = min(max(best - 1, 0), sizes.size - 3)
        parts.append(rows[rows["N"].isin(sizes[start:start + 3])])
    return pd.concat(parts)


def sensitivity(df: pd.DataFrame, *, non_embedding: pd.DataFrame | None = None,
                allow_unbracketed: bool = False) -> list[SensitivityRow]:
    """The laws of one group's fresh-data rows under each analysis choice (module docstring).

    Args:
        df: Prepared rows (``N``, ``L``, ``budget``) as the main fit used them.
        non_embedding: The same rows prepared with N = non-embedding parameters, if known.
        allow_unbracketed: As the main fit.

    Returns:
        One row per choice, the full fit first.
    """
    rows = [_row("full fit", df, allow_unbracketed)]
    if non_embedding is not None:
        rows.append(_row("N = non-embedding", non_embedding, allow_unbracketed))
    for size in np.sort(df["N"].unique()):
        rows.append(_row(f"without N={size:.3g}", df[df["N"] != size], allow_unbracketed))
    rows.append(_row("3-point parabolas", three_point_table(df), allow_unbracketed))
    return rows


def constrained_reason(name: str, interval: tuple[float, float] | None) -> str | None:
    """Why an exponent is not constrained by the data, or None. a and b of a compute-optimal
    allocation lie in [0, 1] (a + b = 1 under C = 6ND); an interval that spans that whole
    range, or does not exist, measures nothing."""
    if interval is None:
        return f"{name}: no interval (fewer than 3 budgets)"
    lo, hi = interval
    if name in ("a", "b") and lo <= 0.0 and hi >= 1.0:
        return f"{name}: its interval [{lo:.2g}, {hi:.2g}] covers all of [0, 1]"
    return None
