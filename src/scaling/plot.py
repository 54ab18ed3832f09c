"""PNG figures for the scaling-law fits (one figure per file).

Uses matplotlib's object API with the Agg canvas, so importing this module
never changes the global pyplot backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from src.scaling.analyze import GroupResult, ParametricResult, single_epoch_mask
from src.scaling.isoflop import IsoFlopFit
from src.scaling.parametric import ParametricFit

if TYPE_CHECKING:
    import pandas as pd

LOSS_LABEL = "Validation loss (nats/token)"


def slug(name: str) -> str:
    """File-name-safe version of a group name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "group"


def _new_figure(width: float = 7.0) -> Figure:
    fig = Figure(figsize=(width, 5.0), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_isoflop(fit: IsoFlopFit, path: Path, group: str) -> Path:
    """(a) Loss vs N per budget with the fitted parabolas and their minima.

    Args:
        fit: IsoFLOP fit of one group.
        path: Output PNG.
        group: Group name for the title.

    Returns:
        ``path``.
    """
    fig = _new_figure(width=9.0)
    ax = fig.add_subplot()
    logc = np.log10([b.budget for b in fit.budgets]) if fit.budgets else np.zeros(1)
    span = max(np.ptp(logc), 1e-9)
    cmap = colormaps["viridis"]
    for b, lc in zip(fit.budgets, logc):
        color = cmap(0.9 * (lc - logc.min()) / span)
        ax.scatter(b.params, b.losses, color=color, s=18, label=f"C = {b.budget:.2g} FLOPs")
        if b.coeffs is not None:
            x = np.linspace(np.log(b.params.min()) - 0.2, np.log(b.params.max()) + 0.2, 200)
            style = "-" if b.status == "ok" else ":"
            ax.plot(np.exp(x), np.polyval(b.coeffs, x), style, color=color, lw=1.2)
        if b.n_opt is not None:
            face = color if b.status == "ok" else "none"
            ax.scatter([b.n_opt], [b.loss_opt], marker="*", s=160, facecolor=face,
                       edgecolor="black", zorder=5)
    ax.scatter([], [], marker="*", s=120, color="white", edgecolor="black",
               label="parabola minimum (hollow: extrapolated)")
    ax.set_xscale("log")
    ax.set_xlabel("Parameters N")
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title(f"IsoFLOP profiles ({group})")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # keep curves clear
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_optimal(fit: IsoFlopFit, param: ParametricFit | None, path: Path, group: str) -> Path:
    """(b) N_opt(C) and D_opt(C), log-log, with the fitted power laws.

    Args:
        fit: IsoFLOP fit (minima and laws).
        param: Parametric fit whose implied allocation is drawn dashed, or None.
        path: Output PNG.
        group: Group name for the title.

    Returns:
        ``path``.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    used = fit.used()
    budgets = [b.budget for b in used]
    c = np.logspace(np.log10(min(budgets)) - 0.3, np.log10(max(budgets)) + 0.3, 100)
    for name, attr, law, color in (
        ("N_opt", "n_opt", fit.n_opt_law, "tab:blue"),
        ("D_opt", "d_opt", fit.d_opt_law, "tab:orange"),
    ):
        ax.scatter([b.budget for b in used], [getattr(b, attr) for b in used], color=color,
                   zorder=3, label=f"{name} (IsoFLOP minima)")
        if law is not None:
            ax.plot(c, law(c), "-", color=color, label=f"IsoFLOP fit: {law.formula(name)}")
        if param is not None and np.isfinite(param.G):
            # N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b (Chinchilla eq. 4) as k C^exp.
            k = param.G * 6.0**-param.a if attr == "n_opt" else 6.0**-param.b / param.G
            exp = param.a if attr == "n_opt" else param.b
            ax.plot(c, getattr(param, attr)(c), "--", color=color,
                    label=f"parametric: {name} = {k:.3g} C^{exp:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Compute C (FLOPs)")
    ax.set_ylabel("N_opt (parameters), D_opt (tokens)")
    ax.set_title(f"Compute-optimal allocation ({group})")
    ax.legend(fontsize=7, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def best_per_budget(table: "pd.DataFrame") -> tuple[np.ndarray, np.ndarray]:
    """(compute, loss) of the lowest-loss run at each nominal budget, sorted by budget."""
    best = table.loc[table.groupby("budget")["L"].idxmin()].sort_values("budget")
    return best["C"].to_numpy(), best["L"].to_numpy()


def plot_loss_vs_compute(results: list[GroupResult], path: Path) -> Path:
    """(c) Loss vs compute per group, log-log: one thin line per model size across budgets,
    the best run of each budget joined (the empirical compute-optimal frontier), and the
    parametric fit's optimal loss L(N_opt(C), D_opt(C)) dashed where it exists.

    Args:
        results: All groups.
        path: Output PNG.

    Returns:
        ``path``.
    """
    fig = _new_figure(width=8.0)
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    for i, r in enumerate(results):
        color, t = colors(i % 10), r.table
        for _, rows in t.sort_values("C").groupby("N"):
            ax.plot(rows["C"], rows["L"], "-", color=color, lw=0.6, alpha=0.35)
        ax.scatter(t["C"], t["L"], s=12, alpha=0.55, color=color, label=f"{r.name} runs")
        bc, bl = best_per_budget(t)
        ax.plot(bc, bl, "o-", color=color, lw=2.0, ms=5, label=f"{r.name}: best run per budget")
        if isinstance(r.parametric, ParametricResult) and np.isfinite(r.parametric.fit.G):
            fit = r.parametric.fit
            c = np.logspace(np.log10(t["C"].min()), np.log10(t["C"].max()), 100)
            ax.plot(c, fit.predict(fit.n_opt(c), fit.d_opt(c)), "--", color=color, lw=1.2,
                    label=f"{r.name}: parametric L(N_opt, D_opt){_flag(r.parametric)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(FormatStrFormatter("%.2g"))  # losses span < 10x: plain numbers, not 10^x
    ax.set_xlabel("Compute C (FLOPs)")
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title("Loss vs compute (thin lines: one model size across budgets)")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_frontier(results: list[GroupResult], path: Path) -> Path:
    """The IsoFLOP minima L_opt(C) of every group with their power-law frontiers, log-log:
    one plot comparing how the groups scale (e.g. noise types, AR vs MDLM).

    Args:
        results: All groups (those without a frontier are left out).
        path: Output PNG.

    Returns:
        ``path``.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    colors = colormaps["tab10"]
    for i, r in enumerate(results):
        if r.frontier is None:
            continue
        used = r.isoflop.used(r.allow_unbracketed)
        c = np.array([b.budget for b in used])
        ax.plot(c, [b.loss_opt for b in used], "o", color=colors(i % 10))
        grid = np.geomspace(c.min() / 1.5, c.max() * 1.5, 50)
        ci = r.isoflop_ci.intervals.get("frontier_exponent") if r.isoflop_ci else None
        spread = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        ax.plot(grid, r.frontier(grid), "-", color=colors(i % 10),
                label=f"{r.name}: L_opt ~ C^{r.frontier.exponent:.3f}{spread}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(FormatStrFormatter("%.2g"))
    ax.set_xlabel("Compute C (FLOPs)")
    ax.set_ylabel(f"IsoFLOP minimum: {LOSS_LABEL.lower()}")
    ax.set_title("Compute-optimal loss frontier (IsoFLOP parabola minima)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _flag(res: ParametricResult) -> str:
    """Label suffix that keeps an unconstrained fit from passing for a result."""
    return " [unconstrained]" if res.unconstrained else ""


def plot_parametric(res: ParametricResult, r: GroupResult, path: Path) -> Path:
    """(d) Parametric fit quality: predicted vs observed loss, coloured by N.

    Args:
        res: Parametric result of the group.
        r: The group (for its rows).
        path: Output PNG.

    Returns:
        ``path``.
    """
    fit = res.fit
    rows = r.table if res.rows == "all" else r.table.loc[single_epoch_mask(r.table, res.max_epochs)]
    observed = rows["L"].to_numpy()
    predicted = fit.predict(rows["N"].to_numpy(), rows["D"].to_numpy())
    rmse = float(np.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))
    fig = _new_figure()
    ax = fig.add_subplot()
    sc = ax.scatter(observed, predicted, c=np.log10(rows["N"]), cmap="viridis", s=18)
    fig.colorbar(sc, ax=ax, label="log10 N (parameters)")
    lims = [min(observed.min(), predicted.min()), max(observed.max(), predicted.max())]
    ax.plot(lims, lims, "k--", lw=1, label="y = x")
    ax.plot([], [], " ", label=(f"E={fit.E:.4g}, A={fit.A:.4g}, B={fit.B:.4g}\n"
                               f"alpha={fit.alpha:.3f}, beta={fit.beta:.3f}\n"
                               f"RMSE(ln L) = {rmse:.4f}"))
    ax.set_xlabel(f"Observed {LOSS_LABEL.lower()}")
    ax.set_ylabel(f"Predicted {LOSS_LABEL.lower()}")
    ax.set_title(f"Parametric fit L = E + A/N^alpha + B/D^beta ({r.name}){_flag(res)}")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_all(results: list[GroupResult], out_dir: str | Path) -> list[Path]:
    """Write every figure for every group into ``out_dir``.

    Args:
        results: Output of :func:`src.scaling.analyze.analyze`.
        out_dir: Folder for the PNGs (created).

    Returns:
        Paths of the written PNGs.
    """
    out = Path(out_dir)
    paths = [plot_loss_vs_compute(results, out / "loss_vs_compute.png")]
    if any(r.frontier is not None for r in results):
        paths.append(plot_frontier(results, out / "frontier.png"))
    for r in results:
        name = slug(r.name)
        param = None  # an unconstrained law's allocation would read as a prediction
        if isinstance(r.parametric, ParametricResult) and not r.parametric.unconstrained:
            param = r.parametric.fit
        if r.isoflop.budgets:
            paths.append(plot_isoflop(r.isoflop, out / f"isoflop_{name}.png", r.name))
        if r.isoflop.used():  # nothing to draw on log axes without a usable minimum
            paths.append(plot_optimal(r.isoflop, param, out / f"optimal_{name}.png", r.name))
        if isinstance(r.parametric, ParametricResult):
            paths.append(plot_parametric(r.parametric, r, out / f"parametric_{name}.png"))
    return paths
