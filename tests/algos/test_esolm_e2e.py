"""Tiny end-to-end runs of Eso-LM on CPU: train, validate, sample (cached sampler)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.train import train
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers

register_resolvers()


def tiny_run(root: Path, *overrides: str) -> dict:
    args = ["model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
            "training.max_steps=4", "training.val_max_batches=2", "eval.num_samples=1",
            "eval.sample_steps=4", "trainer.enable_progress_bar=false",
            f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache", *overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return train(compose("train", overrides=args))


@pytest.mark.parametrize("alpha_0,sampler", [(1.0, "esolm"), (0.5, "esolm_block_ar")])
def test_esolm_trains_validates_and_samples(tmp_path, alpha_0, sampler):
    result = tiny_run(tmp_path, "algo=esolm", f"algo.alpha_0={alpha_0}", f"sampler={sampler}")
    on_disk = json.loads((Path(result["run_dir"]) / "result.json").read_text())
    assert on_disk["algo"] == "esolm" and on_disk["steps"] == 4
    assert 0 < on_disk["val_nll"] < 8
    assert len(result["samples"]) == 1 and len(result["samples"][0]) > 0
