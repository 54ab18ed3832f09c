"""lr* per shape from an lr sweep (src/scaling/transfer.py, scripts/lr_transfer.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scripts.lr_transfer import main
from src.scaling.transfer import drift, optimal_lr, summary_markdown, transfer_table

GRID = 1e-3 * 2.0 ** np.arange(7)  # 1e-3 .. 6.4e-2


def _loss(lr: np.ndarray, lr_star: float) -> np.ndarray:
    return 2.0 + 0.05 * (np.log2(lr) - math.log2(lr_star)) ** 2


def test_parabola_recovers_the_optimum_between_grid_points():
    fit = optimal_lr(GRID, _loss(GRID, 5.5e-3))
    assert fit.lr == pytest.approx(5.5e-3, rel=1e-6) and not fit.at_edge
    assert fit.loss == pytest.approx(2.0)


def test_edge_and_diverged_points():
    edge = optimal_lr(GRID, _loss(GRID, 1e-4))
    assert edge.at_edge and edge.lr == GRID[0]  # reported at the edge, never extrapolated
    losses = _loss(GRID, 4e-3)
    losses[-2:] = np.nan  # the two largest lrs diverged
    fit = optimal_lr(GRID, losses)
    assert fit.n_diverged == 2 and fit.n_points == 5 and fit.lr == pytest.approx(4e-3)


def _sweep() -> pd.DataFrame:
    rows = []
    for kind in ("sp", "mup"):
        for width in (32, 64, 128):
            # SP: lr* halves with each doubling of width; muP: it stays.
            lr_star = 8e-3 * (32 / width if kind == "sp" else 1.0)
            for lr, loss in zip(GRID, _loss(GRID, lr_star) - 0.1 * math.log2(width)):
                rows.append({"algo": "ar", "model.parameterization": kind, "model.dim": width,
                             "optim.lr": lr, "loss": loss})
    return pd.DataFrame(rows)


def test_drift_in_octaves():
    table = transfer_table(_sweep())
    assert set(table["axis"]) == {"model.dim"}
    moves = drift(table).set_index("parameterization")["drift_octaves"]
    assert moves["sp"] == pytest.approx(-2.0, abs=1e-6) and moves["mup"] == pytest.approx(0.0, abs=1e-6)


def test_script_writes_table_and_plot(tmp_path, capsys):
    _sweep().to_csv(tmp_path / "runs.csv", index=False)
    assert main([str(tmp_path / "runs.csv"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| ar | mup | 0 | model.dim | 128 |" in out
    report = json.loads((tmp_path / "out" / "optimal_lr.json").read_text())
    assert len(report["optimal_lr"]) == 6 and len(report["drift"]) == 2
    assert (tmp_path / "out" / "loss_vs_lr.png").stat().st_size > 10_000


def test_two_seeds_get_their_own_lr_and_a_mean_curve(tmp_path):
    """Each seed is fitted alone and the seed-mean curve once more; a seed that diverged at
    an lr makes that lr diverged in the mean (never averaged over the survivors)."""
    one = _sweep()
    two = one.assign(seed=1, loss=one["loss"] + 0.01)
    runs = pd.concat([one.assign(seed=0), two], ignore_index=True)
    runs.loc[(runs["seed"] == 1) & (runs["optim.lr"] == GRID[-1]), "loss"] = math.nan
    table = transfer_table(runs)
    assert set(table["seed"]) == {"0", "1", "mean"} and len(table) == 18
    mean = table[table["seed"] == "mean"].set_index(["parameterization", "value"])
    zero = table[table["seed"] == "0"].set_index(["parameterization", "value"])
    assert (mean["loss_opt"] - zero["loss_opt"]).abs().max() == pytest.approx(0.005, abs=1e-9)
    assert (mean["n_diverged"] == 1).all() and (mean["n_points"] == len(GRID) - 1).all()
    moves = drift(table)
    assert len(moves) == 6
    md = summary_markdown(table, moves)
    assert md.splitlines()[0] == ("| algo | param. | seed | width 32: lr* (loss) | width 64: lr* "
                                  "(loss) | width 128: lr* (loss) | lr* drift 32 -> 128 |")
    assert "| AR | muP | mean | 0.008 (" in md and "+0.00 octaves |" in md
    assert "| AR | SP | 1 |" in md and "-2.00 octaves |" in md
