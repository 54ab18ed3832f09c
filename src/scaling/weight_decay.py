"""Weight decay in single- against multi-epoch training (Quokka): each algo's best and final
validation loss at each data budget U and decay value, and the change from no decay.

Input: crossover.best_table of runs that differ in ``optim.weight_decay`` (and U, algo).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

WD = "optim.weight_decay"


def decay_value(delta: dict, default: float = 0.0) -> float:
    """A run's weight decay: its config delta's, else the experiment's default."""
    return float(delta.get(WD, default))


def only_decay_varies(delta: dict, axes: tuple[str, ...] = (
        WD, "data.unique_tokens", "data.seed", "seed")) -> bool:
    """Whether a run differs from the experiment's defaults in nothing but weight decay, U
    and seed (a run with, say, dropout as well belongs to another comparison)."""
    return set(delta) <= set(axes)


def decay_table(best: pd.DataFrame, decays: list[float]) -> pd.DataFrame:
    """One row per run (algo, U, weight decay, seed): best (smoothed for MDLM) and final loss
    with SEs, and the best loss minus that of the same algo, U and seed without decay (NaN
    without one).

    Args:
        best: crossover.best_table rows (one seed).
        decays: each row's weight decay, in the same order.
    """
    df = best.assign(weight_decay=decays)
    base = {(r.algo, r.unique_tokens, r.seed): r.best_loss
            for r in df[df["weight_decay"] == 0.0].itertuples()}
    rows = []
    for r in df.sort_values(["algo", "unique_tokens", "weight_decay", "seed"]).itertuples():
        ref = base.get((r.algo, r.unique_tokens, r.seed), math.nan)
        rows.append({"algo": r.algo, "unique_tokens": int(r.unique_tokens), "seed": r.seed,
                     "repetitions": r.repetitions, "weight_decay": r.weight_decay,
                     "best_loss": r.best_loss, "best_se": r.best_se, "best_epoch": r.best_epoch,
                     "vs_no_decay": r.best_loss - ref, "final_loss": r.final_loss,
                     "final_se": r.final_se})
    return pd.DataFrame(rows)


def decay_markdown(table: pd.DataFrame) -> str:
    """Rows algo x weight decay; per U: best (epoch of the best), change from no decay, and
    the final value ± its Monte-Carlo SE (means over seeds, when there are several)."""
    table = table.groupby(["algo", "weight_decay", "unique_tokens"], as_index=False).agg(
        repetitions=("repetitions", "mean"), best_loss=("best_loss", "mean"),
        best_epoch=("best_epoch", "mean"), vs_no_decay=("vs_no_decay", "mean"),
        final_loss=("final_loss", "mean"),
        final_se=("final_se", lambda se: float(np.sqrt((se ** 2).mean() / len(se)))))
    us = sorted(table["unique_tokens"].unique())
    reps = {u: table.loc[table["unique_tokens"] == u, "repetitions"].mean() for u in us}
    head = "| algo | weight decay | " + " | ".join(
        f"U={u:,} ({reps[u]:.0f} ep.) best (epoch) | vs wd 0 | final ± SE" for u in us) + " |"
    lines = [head, "|---|---|" + "---|---|---|" * len(us)]
    for (algo, wd), g in table.groupby(["algo", "weight_decay"], sort=True):
        cells = []
        for u in us:
            r = g[g["unique_tokens"] == u]
            if r.empty:
                cells += ["-", "-", "-"]
                continue
            r = r.iloc[0]
            se = "" if math.isnan(r["final_se"]) or r["final_se"] == 0 \
                else f" ± {r['final_se']:.3f}"
            delta = "-" if math.isnan(r["vs_no_decay"]) or wd == 0 else f"{r['vs_no_decay']:+.3f}"
            cells += [f"{r['best_loss']:.3f} ({r['best_epoch']:.0f})", delta,
                      f"{r['final_loss']:.3f}{se}"]
        lines.append(f"| {algo} | {wd:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
