"""The batch-size study's tables (markdown) and figures, from src/scaling/batch_study.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from src.scaling.batch_study import BATCH, LR


#: A leave-one-out B_crit this many times the full fit's: the hyperbola has lost its knee
#: (the remaining batches lie on one side of it), reported as unbounded.
UNBOUNDED = 1e3


def _f(v: float, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def lr_markdown(table: pd.DataFrame, predicts: pd.DataFrame, exponents: pd.DataFrame) -> str:
    """Optimal lr per batch size and algo, and what AR's optimum costs MDLM."""
    algos = sorted(table["algo"].unique())
    head = "| batch (seqs) | " + " | ".join(f"{a} lr* (loss)" for a in algos)
    lines = [head + " | MDLM − AR lr* (octaves) | MDLM loss cost at AR's lr* |",
             "|---|" + "---|" * (len(algos) + 2)]
    for b, g in table.groupby("batch_size", sort=True):
        cells = []
        for a in algos:
            r = g[g["algo"] == a]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            edge = " edge" if r["at_edge"] else ""
            cells.append(f"{r['lr_opt']:.2e}{edge} ({r['loss_opt']:.3f})")
        p = predicts[predicts["batch_size"] == b]
        oct_cell = _f(float(p["octaves"].iloc[0]), "+.2f") if len(p) else "-"
        cost = _f(float(p["loss_cost"].iloc[0]), "+.3f") if len(p) else "-"
        lines.append(f"| {int(b)} | " + " | ".join(cells) + f" | {oct_cell} | {cost} |")
    lines.append("")
    for r in exponents.itertuples():
        fit = ("not fitted (fewer than 2 interior optima)" if math.isnan(r.exponent_k)
               else f"lr* ~ B^{r.exponent_k:.2f} over the {r.n_interior} batch sizes with an "
               "interior optimum")
        lines.append(f"- {r.algo}: {fit}; {r.n_edge} optima at the grid's edge")
    return "\n".join(lines) + "\n"


def critical_markdown(fits: pd.DataFrame, reach: pd.DataFrame, seq_len: int) -> str:
    """The fit per (algo, target), then the steps each batch size needed."""
    lines = ["| algo | target loss | B_crit (seqs) | leave-one-out B_crit | S_min (steps) | "
             f"E_min (tokens, x{seq_len}/seq) | batches | rms log residual |",
             "|---|---|---|---|---|---|---|---|"]
    for r in fits.itertuples():
        if not isinstance(r.note, str) or r.note:
            lines.append(f"| {r.algo} | {r.target:.3f} | not fitted: {r.note} | | | | "
                         f"{r.n_batches} | |")
            continue
        loo = "-" if math.isnan(r.b_crit_loo_min) else (
            f"[{r.b_crit_loo_min:.1f}, " + (f"{r.b_crit_loo_max:.1f}]" if r.b_crit_loo_max
                                             < UNBOUNDED * r.b_crit else "unbounded)"))
        lines.append(f"| {r.algo} | {r.target:.3f} | {r.b_crit:.1f} | {loo} | {r.s_min:.0f} | "
                     f"{r.e_min * seq_len:,.0f} | {r.n_batches} | {r.rms_log_residual:.3f} |")
    lines += ["", "Steps (tokens) to each target at the fastest lr of each batch size:", ""]
    batches = sorted(reach["batch_size"].unique())
    lines += ["| algo | target | " + " | ".join(f"B={int(b)}" for b in batches) + " |",
              "|---|---|" + "---|" * len(batches)]
    for (algo, target), g in reach.groupby(["algo", "target"], sort=True):
        cells = []
        for b in batches:
            r = g[g["batch_size"] == b]
            s = float(r["steps"].iloc[0]) if len(r) else math.nan
            if len(r) and bool(r["censored"].iloc[0]):
                cells.append("before 1st validation")
            else:
                cells.append("not reached" if math.isnan(s)
                             else f"{s:.0f} ({float(r['tokens'].iloc[0]) / 1e6:.2f}M)")
        lines.append(f"| {algo} | {target:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_study(runs: pd.DataFrame, table: pd.DataFrame, reach: pd.DataFrame,
               fits: pd.DataFrame, out: Path) -> list[Path]:
    """loss_vs_lr.png (one panel per algo, a line per batch size, lr* marked) and
    critical_batch.png (steps to each target against B, with the fitted hyperbola)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = sorted(runs["algo"].unique())
    fig, axes = plt.subplots(1, len(algos), figsize=(5 * len(algos), 4), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        for b, g in runs[runs["algo"] == algo].groupby(BATCH, sort=True):
            g = g.sort_values(LR)
            line, = ax.plot(g[LR], g["loss"], "o-", label=f"B={int(b)}")
            t = table[(table["algo"] == algo) & (table["batch_size"] == b)]
            if len(t):
                ax.plot(t["lr_opt"], t["loss_opt"], "*", ms=12, color=line.get_color())
        ax.set(xscale="log", xlabel="learning rate", ylabel="final validation loss (nats/token)",
               title=algo)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "loss_vs_lr.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(algos), figsize=(5 * len(algos), 4), squeeze=False)
    for ax, algo in zip(axes[0], algos):
        for target, g in reach[reach["algo"] == algo].groupby("target", sort=True):
            g = g.dropna(subset=["steps"])
            line, = ax.plot(g["batch_size"], g["steps"], "o", label=f"L={target:.3f}")
            f = fits[(fits["algo"] == algo) & (fits["target"] == target)]
            if len(f) and "b_crit" in f and not math.isnan(float(f["b_crit"].iloc[0])):
                b = np.geomspace(g["batch_size"].min(), g["batch_size"].max(), 50)
                s_min, b_crit = float(f["s_min"].iloc[0]), float(f["b_crit"].iloc[0])
                ax.plot(b, s_min * (1 + b_crit / b), "-", color=line.get_color(),
                        label=f"B_crit={b_crit:.0f}")
        ax.set(xscale="log", yscale="log", xlabel="batch size (sequences)",
               ylabel="steps to target", title=f"{algo}: S = S_min (1 + B_crit / B)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "critical_batch.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths
