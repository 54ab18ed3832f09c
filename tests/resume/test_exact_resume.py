"""An interrupted and resumed run ends bitwise-equal to the uninterrupted one (CPU, fp32):
weights, optimizer + scheduler state, EMA, step counters, data position, logged metrics, and
the same samples (ids hash) and losses at every micro-batch.

Fast variants run in-process (a crash, a stop signal, a corrupt newest checkpoint); the slow
one kills `python -m src.train` with SIGKILL three times at random moments.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.resume.stop_signals import EXIT_INCOMPLETE, StoppedEarly
from src.runs.identity import identity_of
from src.train import train
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers
from tests.conftest import ROOT
from tests.resume.helpers import (assert_same_training_state, flip_tensor_byte, load_last,
                                  metric_rows,
                                  read_records, recorder_overrides, run_dir_for, run_dir_of,
                                  tiny_overrides)

register_resolvers()
STEPS, EVERY = 10, 3
# Dropout, EMA and 2-step gradient accumulation: every piece of state a resume must restore.
EXTRA = ("model.dropout=0.1", "training.ema=0.9", "training.global_batch_size=8")


def _cfg(root: Path, *extra: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=tiny_overrides(root, *EXTRA, *extra, steps=STEPS,
                                                         every=EVERY))


def _callback(name: str, target: str, **kwargs: object) -> list[str]:
    return [f"+callbacks.{name}._target_=tests.resume.helpers.{target}",
            *(f"+callbacks.{name}.{k}={v}" for k, v in kwargs.items())]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (its recorder file next to the runs)."""
    root = tmp_path_factory.mktemp("reference")
    train(_cfg(root, *recorder_overrides(root / "steps.jsonl")))
    return root


def _assert_matches_reference(reference: Path, root: Path) -> None:
    ref_dir, run_dir = run_dir_of(reference, STEPS), run_dir_of(root, STEPS)
    assert_same_training_state(load_last(ref_dir), load_last(run_dir))
    assert metric_rows(ref_dir) == metric_rows(run_dir)
    assert read_records(reference / "steps.jsonl") == read_records(root / "steps.jsonl")


def test_crash_then_resume_is_bitwise_equal(reference, tmp_path):
    rec = recorder_overrides(tmp_path / "steps.jsonl")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(tmp_path, *rec, *_callback("crash", "CrashAt", step=8)))
    ckpts = run_dir_of(tmp_path, STEPS) / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step*.ckpt")) == ["step00000003.ckpt",
                                                                 "step00000006.ckpt"]
    result = train(_cfg(tmp_path, *rec))
    assert result["steps"] == STEPS
    _assert_matches_reference(reference, tmp_path)


def test_stop_signal_checkpoints_at_step_boundary_then_resumes(reference, tmp_path):
    rec = recorder_overrides(tmp_path / "steps.jsonl")
    with pytest.raises(StoppedEarly) as stop:
        train(_cfg(tmp_path, *rec, *_callback("sig", "SignalAt", step=4, signame="SIGUSR1")))
    # The signal came while step 5 ran (both micro-batches): it is saved, then training stops.
    assert stop.value.step == 5 and stop.value.signal_name == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored
    last = load_last(run_dir_of(tmp_path, STEPS))
    assert last["global_step"] == 5 and last["algo_state"]["micro_step"] == 10
    train(_cfg(tmp_path, *rec))
    _assert_matches_reference(reference, tmp_path)


def test_corrupt_newest_checkpoint_falls_back_with_one_warning(reference, tmp_path, caplog):
    rec = recorder_overrides(tmp_path / "steps.jsonl")
    with pytest.raises(RuntimeError):
        train(_cfg(tmp_path, *rec, *_callback("crash", "CrashAt", step=8)))
    ckpts = run_dir_of(tmp_path, STEPS) / "checkpoints"
    last = ckpts / "last.ckpt"
    with open(last, "r+b") as f:  # a truncated file: what a full disk or a dead node leaves
        f.truncate(last.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        train(_cfg(tmp_path, *rec))
    lines = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "resuming from step00000003.ckpt (step 3)" in lines[0]
    # last.ckpt and step 6 were one file (hard link): both set aside, nothing deleted.
    assert {p.name for p in ckpts.glob("*.corrupt")} == {"last.ckpt.corrupt",
                                                         "step00000006.ckpt.corrupt"}
    _assert_matches_reference(reference, tmp_path)


def test_flipped_weight_byte_is_caught_and_keep_last_k_1_still_falls_back(reference, tmp_path,
                                                                         caplog):
    rec = recorder_overrides(tmp_path / "steps.jsonl")
    with pytest.raises(RuntimeError):
        train(_cfg(tmp_path, *rec, "training.keep_last_k=1", *_callback("crash", "CrashAt", step=8)))
    ckpts = run_dir_of(tmp_path, STEPS) / "checkpoints"
    # keep_last_k=1 still keeps the step before the newest: the fallback.
    assert sorted(p.name for p in ckpts.glob("step*.ckpt")) == ["step00000003.ckpt",
                                                                 "step00000006.ckpt"]
    flip_tensor_byte(ckpts / "step00000006.ckpt")
    torch.load(ckpts / "last.ckpt", weights_only=True)  # torch alone would not notice
    with caplog.at_level(logging.WARNING):
        train(_cfg(tmp_path, *rec, "training.keep_last_k=1"))
    lines = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
    assert len(lines) == 1 and "do not match their checksums" in lines[0]
    assert "resuming from step00000003.ckpt (step 3)" in lines[0]
    _assert_matches_reference(reference, tmp_path)


def test_no_loadable_checkpoint_starts_from_scratch(reference, tmp_path, caplog):
    cfg = _cfg(tmp_path, *recorder_overrides(tmp_path / "steps.jsonl"))
    ckpts = Path(identity_of(cfg).run_dir) / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "last.ckpt").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records if "unreadable checkpoint" in r.getMessage()]
    assert len(lines) == 1 and "training from scratch" in lines[0]
    assert (ckpts / "last.ckpt.corrupt").read_bytes() == b"not a checkpoint"
    _assert_matches_reference(reference, tmp_path)


# ---- slow: SIGKILL a real process three times ------------------------------------------------
def _wait_for_checkpoint_then_kill(proc: subprocess.Popen, ckpts: Path, rng: random.Random,
                                   after: set[str]) -> bool:
    """Kill `proc` a random moment after a checkpoint newer than `after` appears.

    Returns False if the run finished first.
    """
    while proc.poll() is None:
        new = {p.name for p in ckpts.glob("step*.ckpt")} - after
        if new:
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere inside the next steps / a save
            if proc.poll() is not None:
                return False
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_three_times_then_resume_is_bitwise_equal(tmp_path):
    steps, every = 80, 5
    args = [*tiny_overrides(tmp_path / "a", *EXTRA, steps=steps, every=every),
            *recorder_overrides(tmp_path / "a" / "steps.jsonl")]
    # ~0.15 s per step: each life does a few checkpoints' worth, the kills land at random
    # steps (and inside saves), and the run cannot finish before the third kill.
    slow = ["+callbacks.slow._target_=tests.resume.helpers.SlowSteps", "+callbacks.slow.seconds=0.05"]
    ref = subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]

    run_args = [*tiny_overrides(tmp_path / "b", *EXTRA, steps=steps, every=every),
                *recorder_overrides(tmp_path / "b" / "steps.jsonl"), *slow]
    ckpts = run_dir_for(run_args) / "checkpoints"
    rng, kills, seen = random.Random(1234), 0, set()
    while kills < 3:
        proc = subprocess.Popen([sys.executable, "-m", "src.train", *run_args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = _wait_for_checkpoint_then_kill(proc, ckpts, rng, seen)
        assert killed, "the run finished before it was killed 3 times: make it longer"
        kills += 1
        seen = {p.name for p in ckpts.glob("step*.ckpt")}
    final = subprocess.run([sys.executable, "-m", "src.train", *run_args], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]

    ref_dir, run_dir = run_dir_of(tmp_path / "a", steps), run_dir_of(tmp_path / "b", steps)
    assert load_last(run_dir)["global_step"] == steps
    assert_same_training_state(load_last(ref_dir), load_last(run_dir))
    assert metric_rows(ref_dir) == metric_rows(run_dir)
    records = read_records(tmp_path / "b" / "steps.jsonl")
    assert records == read_records(tmp_path / "a" / "steps.jsonl")
    assert len(records) == steps * 2  # every (step, micro-batch) seen, none skipped


def test_sigterm_exits_75_and_resume_matches(tmp_path):
    """A real process: SIGTERM -> checkpoint at the next step, exit code 75, then resume."""
    steps = STEPS
    args = [*tiny_overrides(tmp_path, *EXTRA, steps=steps, every=EVERY),
            *_callback("sig", "SignalAt", step=4, signame="SIGTERM")]
    proc = subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == EXIT_INCOMPLETE, proc.stderr[-3000:]
    assert "stopped by SIGTERM at step 5" in proc.stdout
    assert load_last(run_dir_of(tmp_path, steps))["global_step"] == 5
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
