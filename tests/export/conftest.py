"""Tiny trained runs of every algo, exported once per session (shared by the export tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import train_tiny as tiny

#: name -> overrides; every algo, Eso-LM with a sequential part, an EMA run, a MoE run,
#: GIDD's and MegaDLMs' networks.
RUNS = {
    "ar": ["algo=ar"],
    "mdlm": ["algo=mdlm", "algo.time_conditioning=true", "training.ema=0.9"],
    "duo": ["algo=duo"],
    "gidd": ["algo=gidd"],
    "esolm": ["algo=esolm", "algo.alpha_0=0.5"],
    "ar_moe": ["algo=ar", "model.moe.num_experts=4", "model.moe.top_k=2"],
    # The published architectures as backbone options (configs/model/*_tiny.yaml).
    "gidd_arch": ["algo=gidd", "model=gidd_tiny", "algo.time_conditioning=false"],
    "mdlm_gqa": ["algo=mdlm", "model=megadlm_tiny", "sampler=low_confidence"],
}


def train_tiny(root: Path, *overrides: str) -> dict:
    """3 steps, no end-of-run samples (tests/conftest.py's tiny run)."""
    return tiny(root, "training.max_steps=3", "training.val_max_batches=1",
                "eval.num_samples=0", "optim.lr=3e-3", *overrides)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("export_runs")
    return {name: train_tiny(root, *overrides)["run_dir"] for name, overrides in RUNS.items()}


@pytest.fixture(scope="session")
def exports(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    from src.export.hf_export import export

    root = tmp_path_factory.mktemp("exports")
    return {name: Path(export(run, root / name)["out"]) for name, run in tiny_runs.items()}


#: lm-eval's own process: offline, one thread, quiet transformers.
LM_EVAL_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "TRANSFORMERS_VERBOSITY": "error"}


def lm_eval_hf(export: Path, task: str, include: Path, out: Path) -> subprocess.CompletedProcess:
    """`lm_eval --model hf` on an export (batch 4, fp32, CPU), samples logged under `out`."""
    return subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
         f"pretrained={export},trust_remote_code=True,dtype=float32", "--tasks", task,
         "--include_path", str(include), "--device", "cpu", "--batch_size", "4",
         "--output_path", str(out), "--log_samples"], cwd=out.parent,
        env={**os.environ, **LM_EVAL_ENV}, capture_output=True, text=True, timeout=600,
        check=False)
