"""The README's measured numbers come from committed data: each generated block equals the
file it quotes, and that file is what its recipe rebuilds from the committed data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from scripts.crossover import build
from scripts.rebuild_docs import README, RECIPES, ROOT, readme_blocks, retargeted, stale_blocks
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


@pytest.mark.parametrize("folder", sorted(RECIPES))
def test_each_quoted_file_is_what_its_recipe_rebuilds_from_the_committed_data(folder, tmp_path):
    """Rebuild every figure folder's tables from its committed data into tmp_path: the text
    files the README quotes must come out byte for byte (a hand edit or a stale table fails)."""
    command = RECIPES[folder]
    if not (ROOT / command[2]).exists():
        pytest.skip(f"{command[2]} is not committed yet (the README says the table is pending)")
    quoted = [Path(p) for p, _ in readme_blocks(README.read_text()) if p.startswith(folder + "/")]
    assert quoted, f"{folder} has committed data but no generated README block"
    subprocess.run(retargeted(command, folder, tmp_path), cwd=ROOT, check=True,
                   capture_output=True)
    for path in quoted:
        assert (tmp_path / path.relative_to(folder)).read_text() == (ROOT / path).read_text(), \
            f"{path} differs from what {' '.join(command[1:3])} rebuilds"
