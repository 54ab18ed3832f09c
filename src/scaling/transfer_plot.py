"""Figure of an lr-transfer sweep: loss against lr, one line per shape, one panel per
(algo, parameterization), a dashed line per further seed, lr* marked (of the seed-mean
curve where there are several seeds; src/scaling/transfer.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from src.scaling.plot import LOSS_LABEL


def plot_transfer(runs: pd.DataFrame, table: pd.DataFrame, path: Path) -> Path:
    """Write the figure; `runs` has optim.lr, loss and the axis column, `table` the lr*s."""
    axis = str(table["axis"].iloc[0])
    panels = sorted({(a, p) for a, p in zip(table["algo"], table["parameterization"])})
    algos = sorted({a for a, _ in panels})
    kinds = sorted({p for _, p in panels})
    fig = Figure(figsize=(4.2 * len(kinds), 3.4 * len(algos)), dpi=120)
    FigureCanvasAgg(fig)
    values = sorted(table["value"].unique())
    colors = colormaps["viridis"](np.linspace(0.1, 0.85, len(values)))
    for i, algo in enumerate(algos):
        for j, kind in enumerate(kinds):
            ax = fig.add_subplot(len(algos), len(kinds), i * len(kinds) + j + 1)
            for value, color in zip(values, colors):
                g = runs[(runs["algo"] == algo) & (runs["model.parameterization"] == kind)
                         & (runs[axis] == value)]
                if g.empty:
                    continue
                seeds = sorted(g["seed"].unique()) if "seed" in g.columns else [None]
                for k, seed in enumerate(seeds):  # one line per seed, dashed after the first
                    s = (g if seed is None else g[g["seed"] == seed]).sort_values("optim.lr")
                    ax.plot(s["optim.lr"], s["loss"], "o-" if k == 0 else "o--", color=color,
                            ms=3, label=f"{axis.split('.')[-1]} {value}"
                            + ("" if len(seeds) == 1 else f" seed {seed}"))
                fits = table[(table["algo"] == algo) & (table["parameterization"] == kind)
                             & (table["value"] == value)]
                best = fits[fits["seed"] == "mean"] if "seed" in fits and \
                    (fits["seed"] == "mean").any() else fits
                best = best.iloc[0]
                ax.plot([best["lr_opt"]], [best["loss_opt"]], "*", color=color, ms=11,
                        mec="black", mew=0.5)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{algo}, {kind}")
            ax.set_xlabel("learning rate")
            ax.set_ylabel(LOSS_LABEL)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path
