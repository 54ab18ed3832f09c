"""Tiny end-to-end runs of Eso-LM on CPU: train, validate, sample (cached sampler)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import train_tiny as tiny_run

@pytest.mark.parametrize("alpha_0,sampler", [(1.0, "esolm"), (0.5, "esolm_block_ar")])
def test_esolm_trains_validates_and_samples(tmp_path, alpha_0, sampler):
    result = tiny_run(tmp_path, "algo=esolm", f"algo.alpha_0={alpha_0}", f"sampler={sampler}")
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert on_disk["algo"] == "esolm" and on_disk["steps"] == 4
    assert 0 < on_disk["val_nll"] < 8
    assert len(result["samples"]) == 1 and len(result["samples"][0]) > 0
