"""A diverging run stops with one line, keeps its good checkpoints, is marked failed and never
counted as a result; in a sweep the other points still train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.callbacks.divergence import Diverged, final_validation_failure, loss_threshold
from src.callbacks.step_checkpoint import StepCheckpoint
from src.scaling.collect import collect_runs
from src.train import main as train_main
from tests.cli import cli_error
from tests.conftest import ROOT
from tests.resume.helpers import tiny_overrides

# lr 10 on the tiny byte-level MDLM: the loss leaves 4 ln V = 22.2 nats at step 3 (27.6).
DIVERGING = ("optim.lr=10", "training.keep_last_k=1")


def test_lr_sweep_with_a_diverging_point(tmp_path):
    args = ["-m", *tiny_overrides(tmp_path, "training.keep_last_k=1", steps=8, every=1),
            "optim.lr=1e-3,10", f"hydra.sweep.dir={tmp_path}/sweep"]
    proc = subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]  # the sweep went on past the failure
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "diverged at step 3 (train loss 27.63 > " in errors[0]
    found = collect_runs(tmp_path / "runs")
    assert len(found.table) == 1 and found.table["optim.lr"].tolist() == [0.001]
    (failed_dir, reason), = found.failed.items()
    assert "train loss" in reason and not (failed_dir / "result.json").exists()
    # Its good checkpoints stay (keep_last_k=1: step 2, before the loss left the threshold).
    last = torch.load(failed_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    with_failed = collect_runs(tmp_path / "runs", include_failed=True).table
    assert with_failed["status"].fillna("").tolist() == ["", "failed"]

    # A later job of the failed run stops at once with the same line.
    again = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, *DIVERGING, steps=8,
                                                                 every=1))
    assert f"run {failed_dir} diverged at step 3" in again and "training.overwrite=true" in again


def test_non_finite_weights_are_never_saved(tmp_path):
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight[0, 0] = float("nan")
    trainer = SimpleNamespace(lightning_module=module, strategy=SimpleNamespace(
        reduce_boolean_decision=lambda flag, all: flag))
    with pytest.raises(Diverged, match="non-finite weights"):
        StepCheckpoint(tmp_path, 1)._save(trainer, 5)
    assert not list(tmp_path.iterdir())


def test_thresholds():
    assert loss_threshold("auto", 258) == pytest.approx(4 * 5.5530, rel=1e-4)
    assert loss_threshold(None, 258) is None and loss_threshold(12, 258) == 12.0
    with pytest.raises(ValueError, match="must be > 0"):
        loss_threshold(-1, 258)


def test_over_fitting_is_a_result_and_a_non_finite_validation_is_not():
    # 43.3 nats > 4 ln 4096 = 33.3: AR at U=4096 after 600 epochs, training loss healthy.
    assert final_validation_failure(43.31) is None
    assert final_validation_failure(2.5) is None
    assert "nan" in final_validation_failure(float("nan"))
    assert "inf" in final_validation_failure(float("inf"))
