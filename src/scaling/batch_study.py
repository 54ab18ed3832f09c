"""Batch size x learning rate: the optimal lr at each batch size, whether AR's predicts MDLM's,
and the critical batch size (src/scaling/critical_batch.py) from the same runs.

Input: the runs of ``experiment=batch_lr_cpu`` (one token budget, a grid of batch sizes and
lrs per algo) as two tables: `runs` (collect_runs: ``algo, global_batch_size, optim.lr,
loss``...) and `curves` (curves_to_frame: every validation, keyed by ``run_dir``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from src.scaling.critical_batch import fit_critical_batch, steps_to_target, target_curve
from src.scaling.curves import EXACT_ALGOS
from src.scaling.transfer import transfer_table

BATCH = "global_batch_size"  # sequences per optimizer step (result.json), whatever the micro-batch
LR = "optim.lr"
#: Target losses above the lowest loss every batch size reaches (nats per token): the
#: critical batch is fitted at each (B_crit grows as the target falls).
TARGET_MARGINS: tuple[float, ...] = (0.02, 0.05, 0.1)


def optimal_lr_by_batch(runs: pd.DataFrame) -> pd.DataFrame:
    """lr* (parabola in log2 lr around the best grid point) per (algo, batch size)."""
    table = transfer_table(runs, axis=BATCH)
    return table.rename(columns={"value": "batch_size"}).drop(columns=["axis"])


def lr_batch_exponent(table: pd.DataFrame) -> pd.DataFrame:
    """Per algo, the slope k of log lr* against log B (lr* ~ B^k; 0.5 is the square-root
    rule, 1 the linear one), fitted on the batch sizes whose optimum is not at the grid's
    edge; NaN with fewer than 2 such points."""
    rows = []
    for algo, g in table.groupby("algo", sort=True):
        inner = g[~g["at_edge"]]
        k = (float(np.polyfit(np.log2(inner["batch_size"].astype(float)),
                              np.log2(inner["lr_opt"]), 1)[0])
             if len(inner) >= 2 else math.nan)
        rows.append({"algo": algo, "exponent_k": k, "n_interior": len(inner),
                     "n_edge": int(g["at_edge"].sum())})
    return pd.DataFrame(rows)


def ar_predicts(runs: pd.DataFrame, table: pd.DataFrame, baseline: str = "ar",
                other: str = "mdlm") -> pd.DataFrame:
    """Does the baseline's lr* predict the other algo's? Per batch size: the octaves between
    the two optima, and the other algo's loss at the grid lr nearest the baseline's lr*
    minus its own best grid loss (the cost of transferring the lr; 0 when they coincide)."""
    rows = []
    for b, g in table.groupby("batch_size", sort=True):
        ours = g[g["algo"] == baseline]
        theirs = g[g["algo"] == other]
        if ours.empty or theirs.empty:
            continue
        lr_base, lr_other = float(ours["lr_opt"].iloc[0]), float(theirs["lr_opt"].iloc[0])
        grid = runs[(runs["algo"] == other) & (runs[BATCH] == b)]
        grid = grid[np.isfinite(pd.to_numeric(grid["loss"], errors="coerce"))]
        lrs = grid[LR].astype(float).to_numpy()
        nearest = grid.iloc[int(np.argmin(np.abs(np.log2(lrs) - math.log2(lr_base))))]
        rows.append({"batch_size": b, f"{baseline}_lr_opt": lr_base,
                     f"{other}_lr_opt": lr_other,
                     "octaves": math.log2(lr_other / lr_base),
                     f"{other}_lr_at_{baseline}_opt": float(nearest[LR]),
                     "loss_cost": float(nearest["loss"]) - float(grid["loss"].min())})
    return pd.DataFrame(rows)


def steps_to_targets(runs: pd.DataFrame, curves: pd.DataFrame,
                     margins: tuple[float, ...] = TARGET_MARGINS) -> pd.DataFrame:
    """Steps and tokens each (algo, batch size) needs to reach each target, at its fastest lr.

    The targets of an algo are the lowest loss that every one of its batch sizes reaches
    (the largest over batch sizes of each one's best smoothed minimum) plus each margin.

    Returns:
        One row per (algo, target, batch size): ``steps`` (None if no lr reached it),
        ``tokens``, ``lr`` (the lr that got there first).
    """
    merged = curves.merge(runs[["run_dir", "algo", BATCH, LR, "seq_len"]],
                          on=["run_dir", "algo"], how="inner")
    rows = []
    for algo, by_algo in merged.groupby("algo", sort=True):
        stochastic = algo not in EXACT_ALGOS
        # each run's curve as the targets see it, smoothed once: (steps, curve, batch, lr, seq)
        per_run = [(g["step"].to_numpy(float), target_curve(g["nll"].to_numpy(float), stochastic),
                    int(g[BATCH].iloc[0]), float(g[LR].iloc[0]), int(g["seq_len"].iloc[0]))
                   for _, g in by_algo.groupby("run_dir", sort=True)]
        floors: dict[int, float] = {}
        for _, curve, b, _, _ in per_run:
            floors[b] = min(floors.get(b, math.inf), float(np.min(curve)))
        reachable = max(floors.values())
        for margin in margins:
            target = reachable + margin
            for b in sorted(floors):
                runs_b = [r for r in per_run if r[2] == b]
                hits = [(s, lr, seq) for steps, curve, _, lr, seq in runs_b
                        if (s := steps_to_target(steps, curve, target, False)) is not None]
                best = min(hits) if hits else None
                rows.append({"algo": algo, "target": target, "margin": margin, "batch_size": b,
                             "steps": best[0] if best else math.nan,
                             "tokens": best[0] * b * best[2] if best else math.nan,
                             "lr": best[1] if best else math.nan,
                             # some lr was below the target at its first validation: the
                             # fastest crossing is earlier than any measured one
                             "censored": any(curve[0] <= target for _, curve, *_ in runs_b)})
    return pd.DataFrame(rows)


def critical_batches(reach: pd.DataFrame) -> pd.DataFrame:
    """The fit S = S_min (1 + B_crit / B) per (algo, target) of :func:`steps_to_targets`;
    a target reached by fewer than 3 batch sizes is reported with the reason."""
    rows = []
    for (algo, target), g in reach.groupby(["algo", "target"], sort=True):
        # a censored batch size's fastest lr crossed before its first validation: its
        # measured steps would overstate S there, so it is left out of the fit
        g = g[~g["censored"].astype(bool)].dropna(subset=["steps"])
        row = {"algo": algo, "target": target, "margin": float(g["margin"].iloc[0])
               if len(g) else math.nan, "n_batches": len(g)}
        try:
            fit = fit_critical_batch(g["batch_size"].to_numpy(float),
                                     g["steps"].to_numpy(float), target)
        except ValueError as err:
            rows.append({**row, "note": str(err)})
            continue
        rows.append({**row, "s_min": fit.s_min, "b_crit": fit.b_crit, "e_min": fit.e_min,
                     "b_crit_loo_min": fit.loo[0] if fit.loo else math.nan,
                     "b_crit_loo_max": fit.loo[1] if fit.loo else math.nan,
                     "rms_log_residual": fit.rms_log_residual, "note": ""})
    return pd.DataFrame(rows)
