"""Tiny trained runs of every algo, exported once per session (shared by the export tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from src.train import train
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers

register_resolvers()

#: name -> overrides; every algo, Eso-LM with a sequential part, an EMA run, a BPE run.
RUNS = {
    "ar": ["algo=ar"],
    "mdlm": ["algo=mdlm", "algo.time_conditioning=true", "training.ema=0.9"],
    "duo": ["algo=duo"],
    "gidd": ["algo=gidd"],
    "esolm": ["algo=esolm", "algo.alpha_0=0.5"],
}


def train_tiny(root: Path, *overrides: str) -> dict:
    args = ["model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
            "training.max_steps=3", "training.val_max_batches=1", "eval.num_samples=0",
            "trainer.enable_progress_bar=false", "optim.lr=3e-3",
            f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache", *overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return train(compose("train", overrides=args))


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("export_runs")
    return {name: train_tiny(root, *overrides)["run_dir"] for name, overrides in RUNS.items()}


@pytest.fixture(scope="session")
def exports(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    from src.export.hf_export import export

    root = tmp_path_factory.mktemp("exports")
    return {name: Path(export(run, root / name)["out"]) for name, run in tiny_runs.items()}
