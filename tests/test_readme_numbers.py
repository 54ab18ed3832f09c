"""The README's measured numbers come from committed data: each generated block equals the
file it quotes, and that file is what its recipe rebuilds from the committed data."""

from __future__ import annotations

import pandas as pd

from scripts.crossover import build
from scripts.rebuild_docs import README, ROOT, readme_blocks, stale_blocks
from src.scaling.curves import curves_from_frame


def test_readme_blocks_equal_their_files():
    blocks = readme_blocks(README.read_text())
    paths = {path for path, _ in blocks}
    assert {"docs/figures/crossover/crossover.md", "docs/figures/mdlm_bracket/fit.txt"} <= paths
    assert stale_blocks(README.read_text()) == []


def test_crossover_table_is_rebuilt_from_the_committed_curves():
    folder = ROOT / "docs" / "figures" / "crossover"
    curves = curves_from_frame(pd.read_csv(folder / "curves.csv"))
    *_, text = build(curves, "ar", "mdlm")
    assert text == (folder / "crossover.md").read_text()
    # Every run of the sweep is there, each with its final validation and its SE.
    runs = pd.read_csv(folder / "runs.csv")
    assert len(curves) == len(runs)
    diffusion = runs[runs["algo"] != "ar"]
    assert (diffusion["val_nll_se"] > 0).all() and (diffusion["val_draws"] > 1).all()
