"""The optimal learning rate of each model shape in an lr sweep: does it transfer?

For each group (algo, parameterization, and the shape axis: width `model.dim` or depth
`model.n_blocks`), validation loss is a function of log2(lr). A parabola fitted to the best
grid point and its neighbours (up to two on each side) gives lr* = 2^(-b / 2a) and the loss
there. An optimum at the edge of the grid is reported as the edge point and flagged, never
extrapolated; runs whose loss is not finite (diverged) are left out and counted.
Hyperparameters transfer when lr* does not move along the axis: the drift is
log2(lr* at the largest shape / lr* at the smallest), in octaves.

With several seeds each seed gets its own lr* (their spread is the noise a drift must beat),
and the seed-mean curve (lrs every seed ran; a diverged seed makes that lr diverged) gets
one labelled `mean`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src.scaling.table import add_loss_column

AXES = ("model.dim", "model.n_blocks")
GROUP_COLUMNS = ("algo", "model.parameterization")


@dataclass(frozen=True)
class OptimalLR:
    """lr* of one group; `at_edge` when the grid's best point is its smallest or largest lr."""

    lr: float
    loss: float
    at_edge: bool
    n_points: int
    n_diverged: int
    lr_best: float = math.nan  # the grid point with the lowest loss, and that loss
    loss_best: float = math.nan


def optimal_lr(lrs: np.ndarray, losses: np.ndarray) -> OptimalLR:
    """lr* from one lr sweep (see the module docstring)."""
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    ok = np.isfinite(losses)
    n_diverged = int((~ok).sum())
    order = np.argsort(lrs[ok])
    x, y = np.log2(lrs[ok][order]), losses[ok][order]
    if len(x) == 0:
        return OptimalLR(math.nan, math.nan, True, 0, n_diverged)
    best = int(np.argmin(y))
    grid = {"lr_best": float(2 ** x[best]), "loss_best": float(y[best])}
    if best in (0, len(x) - 1) or len(x) < 3:
        return OptimalLR(float(2 ** x[best]), float(y[best]), True, len(x), n_diverged, **grid)
    lo, hi = max(best - 2, 0), min(best + 3, len(x))
    a, b, c = np.polyfit(x[lo:hi], y[lo:hi], 2)
    if a <= 0:  # not convex around the minimum: keep the grid point
        return OptimalLR(float(2 ** x[best]), float(y[best]), False, len(x), n_diverged, **grid)
    x_star = float(np.clip(-b / (2 * a), x[best - 1], x[best + 1]))
    return OptimalLR(float(2 ** x_star), float(np.polyval([a, b, c], x_star)), False, len(x),
                     n_diverged, **grid)


def sweep_axis(df: pd.DataFrame) -> str:
    """The shape axis a sweep varied: width (model.dim) or depth (model.n_blocks)."""
    varied = [a for a in AXES if a in df.columns and df[a].nunique() > 1]
    if len(varied) != 1:
        raise ValueError(f"an lr-transfer table varies exactly one of {', '.join(AXES)} "
                         f"(found: {', '.join(varied) or 'none'}); pass --axis")
    return varied[0]


def with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """Runs at the default value of a swept key have it from their config (collect_runs);
    a CSV without the column means the default everywhere."""
    out = df.copy()
    if "model.parameterization" not in out.columns:
        out["model.parameterization"] = "sp"
    return out


def _seed_curves(g: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs with optim.lr and loss) per seed, plus the seed-mean curve when several."""
    seeds = sorted(g["seed"].unique())
    curves = [(str(seed), g[g["seed"] == seed]) for seed in seeds]
    if len(seeds) > 1:
        lrs = pd.to_numeric(g["optim.lr"])
        loss = pd.to_numeric(g["loss"], errors="coerce")
        by_lr = pd.DataFrame({"optim.lr": lrs, "loss": loss}).groupby("optim.lr")["loss"]
        mean = by_lr.agg(lambda x: x.mean() if x.notna().all() else math.nan)
        kept = by_lr.size() == len(seeds)
        curves.append(("mean", pd.DataFrame({"optim.lr": mean.index[kept],
                                             "loss": mean.to_numpy()[kept.to_numpy()]})))
    return curves


def transfer_table(df: pd.DataFrame, axis: str | None = None) -> pd.DataFrame:
    """One row per (algo, parameterization, seed, axis value): lr*, its loss, flags; `seed`
    is the seed's number as text, or `mean` for the seed-mean curve.

    Args:
        df: collected runs with `optim.lr`, `loss` (or val_nll) and the axis column.
        axis: model.dim or model.n_blocks (default: the one that varies).
    """
    df = with_defaults(add_loss_column(df))
    missing = [c for c in ("optim.lr", *GROUP_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"the run table lacks {', '.join(missing)}: sweep optim.lr "
                         f"(experiment=lr_transfer_cpu) and collect with collect_runs.py")
    axis = axis or sweep_axis(df)
    if "seed" not in df.columns:
        df["seed"] = 0
    rows = []
    for (algo, p13n, value), g in df.groupby([*GROUP_COLUMNS, axis], sort=True):
        for label, curve in _seed_curves(g):
            fit = optimal_lr(pd.to_numeric(curve["optim.lr"]).to_numpy(),
                             pd.to_numeric(curve["loss"], errors="coerce").to_numpy())
            rows.append({"algo": algo, "parameterization": p13n, "seed": label, "axis": axis,
                         "value": value, "lr_opt": fit.lr, "loss_opt": fit.loss,
                         "lr_best": fit.lr_best, "loss_best": fit.loss_best,
                         "at_edge": fit.at_edge, "n_points": fit.n_points,
                         "n_diverged": fit.n_diverged})
    return pd.DataFrame(rows)


def drift(table: pd.DataFrame) -> pd.DataFrame:
    """Octaves lr* moves from the smallest to the largest shape, per (algo, parameterization,
    seed)."""
    rows = []
    for (algo, p13n, seed), g in table.groupby(["algo", "parameterization", "seed"], sort=True):
        g = g.sort_values("value")
        first, last = g.iloc[0], g.iloc[-1]
        rows.append({"algo": algo, "parameterization": p13n, "seed": seed,
                     "from": first["value"], "to": last["value"],
                     "drift_octaves": math.log2(last["lr_opt"] / first["lr_opt"]),
                     "edges": int(g["at_edge"].sum())})
    return pd.DataFrame(rows)


NAMES = {"ar": "AR", "mdlm": "MDLM", "sp": "SP", "mup": "muP", "completep": "CompleteP"}
AXIS_WORDS = {"model.dim": "width", "model.n_blocks": "blocks"}


def summary_markdown(table: pd.DataFrame, moves: pd.DataFrame) -> str:
    """The README's table: one row per (algo, parameterization, seed), lr* (loss at lr*) per
    shape (`edge`: the grid's best point, at its end), and the drift in octaves."""
    axis = str(table["axis"].iloc[0])
    values = sorted(table["value"].unique())
    word = AXIS_WORDS.get(axis, axis)
    head = [f"{word} {v}: lr* (loss)" if axis == "model.dim" else f"{v} {word}: lr* (loss)"
            for v in values]
    lines = ["| algo | param. | seed | " + " | ".join(head) + f" | lr* drift {values[0]} -> "
             f"{values[-1]} |", "|" + "---|" * (len(values) + 4)]
    for (algo, p13n, seed), g in table.groupby(["algo", "parameterization", "seed"], sort=True):
        cells = []
        for v in values:
            row = g[g["value"] == v]
            if row.empty:
                cells.append("-")
                continue
            r = row.iloc[0]
            cells.append(f"{r['lr_opt']:.2g}{' edge' if r['at_edge'] else ''} "
                         f"({r['loss_opt']:.3f})")
        move = moves[(moves["algo"] == algo) & (moves["parameterization"] == p13n)
                     & (moves["seed"] == seed)].iloc[0]
        lines.append(f"| {NAMES.get(algo, algo)} | {NAMES.get(p13n, p13n)} | {seed} | "
                     + " | ".join(cells) + f" | {move['drift_octaves']:+.2f} octaves |")
    return "\n".join(lines) + "\n"


def markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A pipe table (no extra dependency); floats to `digits` significant digits."""
    def cell(v: object) -> str:
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
