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

from src.callbacks.divergence import (Diverged, DivergenceGuard, final_validation_failure,
                                      loss_threshold)
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


class _Trainer(SimpleNamespace):
    """Just what DivergenceGuard reads: one process, no accumulation."""

    def __init__(self) -> None:
        super().__init__(global_step=0, accumulate_grad_batches=1, strategy=SimpleNamespace(
            reduce_boolean_decision=lambda flag, all: flag))


def _feed(guard, trainer, losses) -> None:
    for loss in losses:
        guard.on_train_batch_start(trainer, None, None, 0)
        trainer.global_step += 1
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, 0)


def test_one_spike_of_a_monte_carlo_loss_is_not_divergence():
    # MDLM's 1/t-weighted batch loss at initialization: 24.2 once, then back under 22.2
    guard, trainer = DivergenceGuard(22.2, patience=3), _Trainer()
    _feed(guard, trainer, [5.5, 24.2, 5.4, 23.0, 23.5, 5.3])
    assert guard.streak == 0
    with pytest.raises(Diverged) as err:
        _feed(guard, trainer, [30.0, 40.0, 50.0])  # steps 7-9: a real blow-up
    assert err.value.step == 7 and "train loss 30 > training.diverge_above=22.2 and above " \
        "it for 3 steps in a row" in err.value.reason
    # the streak is part of a checkpoint: resumed mid-streak, it fails at the same step
    before, trainer = DivergenceGuard(22.2, patience=3), _Trainer()
    _feed(before, trainer, [30.0, 40.0])
    resumed = DivergenceGuard(22.2, patience=3)
    resumed.load_state_dict(before.state_dict())
    with pytest.raises(Diverged) as again:
        _feed(resumed, trainer, [50.0])
    assert again.value.step == 1


def test_patience_one_and_non_finite_losses_fail_at_once():
    with pytest.raises(Diverged, match="train loss 24.2 > training.diverge_above=22.2$"):
        _feed(DivergenceGuard(22.2, patience=1), _Trainer(), [5.5, 24.2])
    with pytest.raises(Diverged, match="not finite") as err:
        _feed(DivergenceGuard(22.2, patience=3), _Trainer(), [5.5, float("nan")])
    assert err.value.step == 2
    with pytest.raises(ValueError, match="diverge_patience=0 must be >= 1"):
        DivergenceGuard(22.2, patience=0)


def test_no_periodic_checkpoint_while_the_loss_is_above_the_threshold(tmp_path):
    guard = DivergenceGuard(22.2, patience=3)
    guard.streak = 1
    saved = []
    ckpt = StepCheckpoint(tmp_path, 1, guard=guard)
    ckpt._save = lambda trainer, step: saved.append(step)
    trainer = SimpleNamespace(global_step=5, should_stop=False, max_steps=100)
    ckpt._step_before = 4
    ckpt.on_train_batch_end(trainer, None, None, None, 0)
    guard.streak = 0
    trainer.global_step, ckpt._step_before = 6, 5
    ckpt.on_train_batch_end(trainer, None, None, None, 0)
    assert saved == [6]
