"""Figures of the data-constrained comparison: curves per data budget, best loss per budget."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from src.scaling.crossover import Crossover, saturating, series_name  # noqa: E402
from src.scaling.curves import ValCurve  # noqa: E402

X_LABELS = {"epochs": "epochs over the U unique tokens", "flops": "training FLOPs"}


def _colors(names: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(sorted(names))}


def plot_curves(curves: list[ValCurve], path: Path, x_axis: str = "epochs") -> Path:
    """One panel per U: every run's validation loss against epochs (or FLOPs), seeds as thin
    lines of their series' colour, each run's best point marked.

    Args:
        curves: Runs with a data budget.
        path: Output image.
        x_axis: ``epochs`` or ``flops``.

    Returns:
        ``path``.
    """
    budgets = sorted({c.unique_tokens for c in curves})
    colors = _colors(list({series_name(c) for c in curves}))
    fig, axes = plt.subplots(1, len(budgets), figsize=(3.4 * len(budgets), 3.6), sharey=True,
                             squeeze=False)
    for ax, u in zip(axes[0], budgets):
        labelled = set()
        for c in (c for c in curves if c.unique_tokens == u):
            name, xs = series_name(c), c.x(x_axis)
            ax.plot(xs, c.nll, color=colors[name], lw=1.0, alpha=0.8,
                    label=None if name in labelled else name)
            labelled.add(name)
            ax.plot(xs[c.best_index], c.selection_nll[c.best_index], "o", color=colors[name], ms=4)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # short ranges label minor ticks on top of each other
        ax.set_title(f"U = {u:,} tokens")
        ax.set_xlabel(X_LABELS[x_axis])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("val loss, nats/token (diffusion: NELBO bound)")
    top = max(float(np.min(c.nll)) for c in curves)
    low = min(float(np.min(c.nll)) for c in curves)
    axes[0][0].set_ylim(low - 0.1, top + 1.0)  # over-fitting tails can be 10x the floor
    return _save(fig, path)


def plot_best(summary: pd.DataFrame, crossover: Crossover | None, path: Path) -> Path:
    """Best validation loss (mean, min-max over seeds) against repetitions per series, with
    the fitted many-repetition curves of the two compared series and the crossover.

    Args:
        summary: :func:`src.scaling.crossover.summarize`.
        crossover: The comparison (None: no fit lines).
        path: Output image.

    Returns:
        ``path``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = _colors(list(set(summary["series"])))
    for name, rows in summary.groupby("series"):
        rows = rows.sort_values("repetitions")
        err = np.vstack([rows["best_loss"] - rows["best_loss_min"],
                         rows["best_loss_max"] - rows["best_loss"]])
        ax.errorbar(rows["repetitions"], rows["best_loss"], yerr=err, marker="o", ms=4,
                    capsize=3, color=colors[name], label=name)
    ext = crossover.extrapolated if crossover is not None else None
    if ext is not None and len(ext.params) == 2:
        tokens = float(np.median(summary["repetitions"] * summary["unique_tokens"]))
        u = np.geomspace(summary["unique_tokens"].min() / 2, summary["unique_tokens"].max() * 4)
        for name, (e, b, beta) in ext.params.items():
            ax.plot(tokens / u, saturating(u, e, np.log(b), beta), ls=":", color=colors[name],
                    label=f"{name} fit E + B U^-{beta:.2f}")
    if crossover is not None and crossover.interpolated is not None:
        ax.axvline(crossover.interpolated, color="k", ls="--", lw=0.8,
                   label=f"crossover ~{crossover.interpolated:.0f} epochs")
    ax.set_xscale("log")
    ax.set_xlabel("repetitions (epochs over U at the end of the budget)")
    ax.set_ylabel("best val loss, nats/token (diffusion: NELBO bound)")
    ax.set_title("Best validation loss under one compute budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
