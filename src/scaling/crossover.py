"""Where a diffusion model's best validation loss drops below AR's as data is repeated.

The data-constrained comparison of Super Data Learners (Ni et al. 2025) and Prabhudesai et
al. 2025: every run spends one compute budget on U unique tokens, so a smaller U is repeated
for more epochs (R = D / U). Per run, the *best* validation loss over training counts (AR
over-fits long before its budget ends). The crossover is the smallest repetition count from
which the challenger's best loss (e.g. MDLM) stays below the baseline's (AR).

Caveats carried into every report: a diffusion model's validation loss is its NELBO, an
upper bound on its NLL *in expectation*; each validation is a Monte-Carlo estimate of it
(training.val_draws draws, standard error val/nll_se), so one point can sit below the bound.
Its best is chosen on a moving average of fresh-noise validations (SMOOTH_WINDOW in
src/scaling/curves.py), which shrinks, but does not remove, the downward bias of taking the
minimum of noisy points; the final value (no selection) is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq, curve_fit

from src.scaling.curves import ValCurve, short_key

# Config-delta keys that place a run on the U axis or among seeds, not in another series.
AXIS_KEYS: tuple[str, ...] = ("data.unique_tokens", "data.seed", "seed")


def series_name(curve: ValCurve) -> str:
    """The algo plus every config-delta key that is not the U axis or the seed
    (``ar``, ``mdlm``, ``ar dropout=0.1``)."""
    extra = [f"{short_key(k)}={v}" for k, v in sorted(curve.delta.items())
             if k not in AXIS_KEYS and k != "algo.name"]
    return " ".join([curve.algo or "?", *extra])


def best_table(curves: list[ValCurve]) -> pd.DataFrame:
    """One row per run: its best validation loss and where it occurred.

    Args:
        curves: Validation curves of runs with a data budget (``data.unique_tokens``).

    Returns:
        Columns ``series, algo, unique_tokens, seed, repetitions`` (epochs at the end of
        training), ``best_loss, best_epoch, best_step, best_flops, final_loss, run_dir``.

    Raises:
        ValueError: When a run has no data budget or no token count (the fix is named).
    """
    rows = []
    for c in curves:
        epochs = c.epochs
        if epochs is None:
            raise ValueError(f"{c.run_dir}: no data budget or token count; the crossover needs "
                             "runs trained with data.unique_tokens")
        i = c.best_index
        rows.append({
            "series": series_name(c), "algo": c.algo, "unique_tokens": c.unique_tokens,
            "seed": c.seed, "repetitions": float(epochs[-1]),
            "best_loss": float(c.selection_nll[i]), "best_loss_raw": float(c.nll[i]),
            "best_epoch": float(epochs[i]), "best_step": int(c.steps[i]),
            "best_flops": float(c.flops[i]) if c.flops is not None else math.nan,
            "best_se": float(c.selection_se[i]),
            "final_loss": float(c.final_nll if c.final_nll is not None else c.nll[-1]),
            "final_se": math.nan if c.final_se is None else float(c.final_se),
            "run_dir": str(c.run_dir),
        })
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds of each series' best loss per U.

    Args:
        table: :func:`best_table`.

    Returns:
        One row per (series, unique_tokens), sorted by series then U.
    """
    grouped = table.groupby(["series", "unique_tokens"], sort=True)
    out = grouped.agg(
        n_seeds=("best_loss", "size"), repetitions=("repetitions", "mean"),
        best_loss=("best_loss", "mean"), best_loss_min=("best_loss", "min"),
        best_loss_max=("best_loss", "max"), best_epoch=("best_epoch", "mean"),
        final_loss=("final_loss", "mean"),
        # SE of the mean final value over seeds, from each run's own Monte-Carlo SE
        final_se=("final_se", lambda se: float(np.sqrt((se ** 2).mean() / len(se)))),
    )
    return out.reset_index()


@dataclass
class Crossover:
    """The challenger-vs-baseline comparison across data budgets.

    Attributes:
        baseline: Series name of the baseline (e.g. ``ar``).
        challenger: Series name of the challenger (e.g. ``mdlm``).
        gaps: One row per U both have: ``unique_tokens, repetitions, gap`` (challenger best
            minus baseline best, mean over seeds), ``gap_min, gap_max`` (over seeds paired by
            seed; the mean gap when seeds do not pair), ``wins`` (seeds where the challenger
            is lower) and ``n_pairs``; sorted by repetitions.
        repetitions: The smallest sampled repetition count from which the mean gap stays
            negative at every larger one; None when it never does.
        interpolated: The zero of the mean gap, linear in log repetitions between that
            point and the next smaller sampled count; None when there is no sign change.
        below_range: The challenger already wins at the least repeated U sampled.
        per_seed: Seed -> its own crossover (same rule on that seed's gaps).
        extrapolated: Where the fits of best loss against U cross (see :func:`extrapolate`).
        interval: (last repetition count where the baseline is significantly better, first
            one from which the challenger is significantly better at every larger count),
            from the gaps' 95% intervals (:func:`gap_intervals`); None at an end = beyond the
            sampled range on that side. The crossover lies between them.
        interval_method: How the gaps' intervals were formed (seeds, or Monte-Carlo only).
    """

    baseline: str
    challenger: str
    gaps: pd.DataFrame
    repetitions: float | None
    interpolated: float | None
    below_range: bool
    per_seed: dict[int, float | None] = field(default_factory=dict)
    extrapolated: Extrapolation | None = None
    interval: tuple[float | None, float | None] = (None, None)
    interval_method: str = ""

    @property
    def seed_spread(self) -> tuple[float, float] | None:
        """(min, max) of the per-seed crossovers that exist."""
        found = [v for v in self.per_seed.values() if v is not None]
        return (min(found), max(found)) if found else None


def first_lasting_win(repetitions: np.ndarray, gaps: np.ndarray) -> tuple[int | None, float | None]:
    """Index of the smallest repetition count from which every gap is negative, and the
    log-linear zero of the gap just below it.

    Args:
        repetitions: Ascending repetition counts.
        gaps: Challenger minus baseline at each.

    Returns:
        (index or None, interpolated crossover or None).
    """
    negative = gaps < 0
    if not negative[-1]:
        return None, None
    k = len(gaps) - 1
    while k > 0 and negative[k - 1]:
        k -= 1
    if k == 0:
        return 0, None
    x0, x1 = np.log(repetitions[k - 1]), np.log(repetitions[k])
    g0, g1 = gaps[k - 1], gaps[k]
    return k, float(np.exp(x0 + (x1 - x0) * g0 / (g0 - g1)))


def find_crossover(table: pd.DataFrame, baseline: str = "ar", challenger: str = "mdlm") -> Crossover:
    """Compare two series' best losses across data budgets.

    Args:
        table: :func:`best_table`.
        baseline: Series name of the baseline.
        challenger: Series name of the challenger.

    Returns:
        The :class:`Crossover` (its ``repetitions`` is None when the challenger never wins
        for good).

    Raises:
        ValueError: When either series is missing or they share no U.
    """
    names = set(table["series"])
    for name in (baseline, challenger):
        if name not in names:
            raise ValueError(f"no runs of series {name!r} (have: {sorted(names)})")
    base = table[table["series"] == baseline]
    chal = table[table["series"] == challenger]
    rows, per_seed_gaps = [], {}
    for u in sorted(set(base["unique_tokens"]) & set(chal["unique_tokens"])):
        b, c = base[base["unique_tokens"] == u], chal[chal["unique_tokens"] == u]
        paired = b.merge(c, on="seed", suffixes=("_b", "_c"))
        gap = float(c["best_loss"].mean() - b["best_loss"].mean())
        seed_gaps = (paired["best_loss_c"] - paired["best_loss_b"]).to_numpy()
        for seed, g in zip(paired["seed"], seed_gaps):
            per_seed_gaps.setdefault(int(seed), {})[u] = float(g)
        spread = seed_gaps if seed_gaps.size else np.array([gap])
        mc_se = math.sqrt(float((b["best_se"] ** 2).mean()) / len(b)
                          + float((c["best_se"] ** 2).mean()) / len(c))
        rows.append({"unique_tokens": int(u),
                     "repetitions": float(pd.concat([b, c])["repetitions"].mean()),
                     "gap": gap, "gap_min": float(spread.min()), "gap_max": float(spread.max()),
                     "wins": int((seed_gaps < 0).sum()), "n_pairs": int(seed_gaps.size),
                     "mc_se": mc_se, "seed_gaps": seed_gaps.tolist()})
    if not rows:
        raise ValueError(f"{baseline!r} and {challenger!r} share no data budget U")
    gaps = pd.DataFrame(rows).sort_values("repetitions").reset_index(drop=True)
    gaps, method = gap_intervals(gaps)
    reps, mean_gap = gaps["repetitions"].to_numpy(), gaps["gap"].to_numpy()
    k, interpolated = first_lasting_win(reps, mean_gap)
    per_seed = {}
    for seed, by_u in sorted(per_seed_gaps.items()):
        sub = gaps[gaps["unique_tokens"].isin(by_u)]
        ks, _ = first_lasting_win(sub["repetitions"].to_numpy(),
                                  np.array([by_u[u] for u in sub["unique_tokens"]]))
        per_seed[seed] = None if ks is None else float(sub["repetitions"].iloc[ks])
    return Crossover(
        baseline, challenger, gaps, None if k is None else float(reps[k]), interpolated,
        below_range=k == 0, per_seed=per_seed,
        extrapolated=extrapolate(table, baseline, challenger),
        interval=crossover_interval(gaps), interval_method=method,
    )


def gap_intervals(gaps: pd.DataFrame, level: float = 0.95) -> tuple[pd.DataFrame, str]:
    """Add ``gap_se, gap_lo, gap_hi`` (a `level` interval of the mean gap) to each U's row.

    With paired seeds, the spread of the per-seed gaps holds every source of noise (seed,
    data order, Monte-Carlo draws): its variance is pooled over the U's (one shared seed
    variance, sum of (pairs - 1) degrees of freedom) and a t quantile is used. With one seed
    there is no seed variance to measure: the interval is the Monte-Carlo SE of the two
    losses alone (``mc_se``, normal quantile), which the method string says.
    """
    from scipy.stats import norm, t as student_t

    gaps = gaps.copy()
    dof, ss = 0, 0.0
    for seed_gaps in gaps["seed_gaps"]:
        if len(seed_gaps) >= 2:
            g = np.asarray(seed_gaps, float)
            ss += float(((g - g.mean()) ** 2).sum())
            dof += len(g) - 1
    if dof > 0:
        sd = math.sqrt(ss / dof)
        gaps["gap_se"] = [sd / math.sqrt(max(int(n), 1)) for n in gaps["n_pairs"]]
        q = float(student_t.ppf(0.5 + level / 2, dof))
        method = (f"{level:.0%} t-intervals over seeds: the per-seed gaps' variance pooled "
                  f"over the data budgets ({dof} degrees of freedom)")
    else:
        gaps["gap_se"] = gaps["mc_se"]
        q = float(norm.ppf(0.5 + level / 2))
        method = (f"{level:.0%} intervals from the Monte-Carlo standard errors alone (one "
                  "seed: seed-to-seed variation is not included)")
    gaps["gap_lo"] = gaps["gap"] - q * gaps["gap_se"]
    gaps["gap_hi"] = gaps["gap"] + q * gaps["gap_se"]
    return gaps, method


def crossover_interval(gaps: pd.DataFrame) -> tuple[float | None, float | None]:
    """(largest repetition count at which the baseline is significantly better, smallest
    one from which the challenger is significantly better at every larger count); None
    where no sampled budget qualifies (the end lies outside the sampled range). `gaps` must
    be sorted by repetitions and carry ``gap_lo, gap_hi`` (:func:`gap_intervals`)."""
    reps = gaps["repetitions"].to_numpy()
    lo, hi = gaps["gap_lo"].to_numpy(), gaps["gap_hi"].to_numpy()
    worse = np.flatnonzero(lo > 0)
    lower = float(reps[worse[-1]]) if worse.size else None
    upper = None
    for k in range(len(reps) - 1, -1, -1):
        if not hi[k] < 0:
            break
        upper = float(reps[k])
    return lower, upper


def saturating(u: np.ndarray, e: float, log_b: float, beta: float) -> np.ndarray:
    """best(U) = E + B U^-beta: the many-repetition limit of the data-constrained law
    L = E + B / D'^beta with D' -> U (1 + R*) (Muennighoff et al. 2023, sec. 3), the N term
    folded into E at one model size."""
    return e + np.exp(log_b - beta * np.log(u))


@dataclass
class Extrapolation:
    """Fits of best loss against U for two series and where they cross.

    Attributes:
        params: Series -> (E, B, beta) of :func:`saturating`.
        unique_tokens: The U where the fits cross (None when they do not in [1, 1e12]).
        repetitions: Training tokens / that U (the budget's median tokens).
        reason: Why there is no crossing, if there is none.
    """

    params: dict[str, tuple[float, float, float]]
    unique_tokens: float | None
    repetitions: float | None
    reason: str | None = None


def fit_saturating(u: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (E, B, beta) of :func:`saturating`; RuntimeError when it fails."""
    u, loss = np.asarray(u, float), np.asarray(loss, float)
    if np.unique(u).size < 4:
        raise RuntimeError(f"{np.unique(u).size} distinct U (need >= 4 for 3 parameters)")
    p0 = (float(loss.min()) * 0.9, np.log(max(float(np.ptp(loss)), 1e-3)) + 0.5 * np.log(u.min()),
          0.5)
    popt, _ = curve_fit(saturating, u, loss, p0=p0, maxfev=20000,
                        bounds=([-np.inf, -np.inf, 1e-3], [np.inf, np.inf, 5.0]))
    return float(popt[0]), float(np.exp(popt[1])), float(popt[2])


def extrapolate(table: pd.DataFrame, baseline: str, challenger: str) -> Extrapolation:
    """Fit each series' best loss against U and solve for the U where they are equal.

    Args:
        table: :func:`best_table` (one compute budget for all rows).
        baseline: Series name of the baseline.
        challenger: Series name of the challenger.

    Returns:
        The :class:`Extrapolation` (``reason`` set when a fit fails or nothing crosses).
    """
    params: dict[str, tuple[float, float, float]] = {}
    for name in (baseline, challenger):
        rows = table[table["series"] == name]
        try:
            params[name] = fit_saturating(rows["unique_tokens"].to_numpy(),
                                          rows["best_loss"].to_numpy())
        except (RuntimeError, ValueError) as err:
            return Extrapolation(params, None, None, f"{name}: {err}")

    def gap(log_u: float) -> float:
        u = np.exp(log_u)
        return float(saturating(u, params[challenger][0], np.log(params[challenger][1]),
                                params[challenger][2])
                     - saturating(u, params[baseline][0], np.log(params[baseline][1]),
                                  params[baseline][2]))

    grid = np.linspace(0.0, np.log(1e12), 400)
    values = np.array([gap(x) for x in grid])
    # The crossover: challenger below at small U, above at larger U (the last such change).
    change = np.flatnonzero((values[:-1] < 0) & (values[1:] >= 0))
    if change.size == 0:
        return Extrapolation(params, None, None, "the fitted curves do not cross for U in [1, 1e12]")
    i = int(change[-1])
    log_u = brentq(gap, grid[i], grid[i + 1])
    tokens = float(np.median(table["repetitions"] * table["unique_tokens"]))
    u_star = float(np.exp(log_u))
    return Extrapolation(params, u_star, tokens / u_star)


def to_dict(crossover: Crossover, summary: pd.DataFrame) -> dict[str, Any]:
    """JSON-ready report of a crossover and the per-U summary."""
    ext = crossover.extrapolated
    return {
        "baseline": crossover.baseline, "challenger": crossover.challenger,
        "crossover_repetitions": crossover.repetitions,
        "crossover_interpolated": crossover.interpolated,
        "below_range": crossover.below_range,
        "per_seed": {str(k): v for k, v in crossover.per_seed.items()},
        "seed_spread": crossover.seed_spread,
        "interval": list(crossover.interval), "interval_method": crossover.interval_method,
        "gaps": crossover.gaps.to_dict(orient="records"),
        "extrapolated": None if ext is None else {
            "params": {k: dict(zip(("E", "B", "beta"), v)) for k, v in ext.params.items()},
            "unique_tokens": ext.unique_tokens, "repetitions": ext.repetitions,
            "reason": ext.reason},
        "summary": summary.to_dict(orient="records"),
        "note": ("diffusion losses are Monte-Carlo estimates of NELBO upper bounds on the NLL "
                 "(best: on a 5-validation moving average); AR losses are exact NLL"),
    }
