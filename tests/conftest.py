"""Shared test setup: repo root on sys.path, quiet logs, small CPU thread count."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)
torch.set_flush_denormal(True)  # as setup_torch does in every entry point (before any op)


def train_tiny(root: Path, *overrides: str) -> dict:
    """Train a 0.13M byte-level run for 4 steps under `root` (later overrides win)."""
    from hydra import compose, initialize_config_dir

    from src.train import train
    from src.utils.cli import CONFIG_DIR
    from src.utils.resolvers import register_resolvers

    register_resolvers()
    args = ["model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "data.batch_size=4",
            "training.max_steps=4", "training.val_max_batches=2", "eval.num_samples=1",
            "eval.sample_steps=4", "trainer.enable_progress_bar=false",
            f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache", *overrides]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return train(compose("train", overrides=args))
