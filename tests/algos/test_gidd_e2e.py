"""Tiny end-to-end runs of GIDD on CPU: train, validate (unclipped ELBO), sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.algos.test_esolm_e2e import tiny_run


@pytest.mark.parametrize("sampler", ["gidd_ancestral", "gidd_adaptive"])
def test_gidd_trains_validates_and_samples(tmp_path, sampler):
    result = tiny_run(tmp_path, "algo=gidd", f"sampler={sampler}")
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert on_disk["algo"] == "gidd" and on_disk["steps"] == 4
    assert 0 < on_disk["val_nll"] < 8
    assert len(result["samples"]) == 1
