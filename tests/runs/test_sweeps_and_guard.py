"""A sweep over a key outside the readable path trains every point; a folder refuses another
config; one process at a time trains a run (two real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.runs.identity import compose_train
from src.runs.lock import OWNER_FILE, RunLocked, run_lock
from src.scaling.collect import collect_runs
from src.train import main as train_main
from src.train import train
from tests.cli import cli_error
from tests.conftest import ROOT
from tests.resume.helpers import run_dir_for, tiny_overrides

QUIET = ["eval.num_samples=0", "trainer.enable_progress_bar=false"]


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow  # a whole -m sweep in a subprocess: ~23 s
def test_lr_multirun_trains_both_points(tmp_path):
    """The issue's command: before run identities the second point printed 'run already
    finished' and reported the first point's result."""
    proc = _run(["-m", "optim.lr=1e-3,3e-3", "training.max_steps=3", *QUIET,
                 f"paths.log_dir={tmp_path}/runs", f"paths.cache_dir={tmp_path}/cache",
                 f"hydra.sweep.dir={tmp_path}/sweep"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run already finished" not in proc.stdout
    parent = tmp_path / "runs/quickstart/mdlm/1M/shakespeare/steps3"
    results = {p.parent.name: json.loads(p.read_text()) for p in parent.glob("*/result.json")}
    assert sorted(results) == ["s0", "s0-0f322fbe"]  # the default lr keeps the old folder
    for name, lr in (("s0", 0.001), ("s0-0f322fbe", 0.003)):
        assert OmegaConf.load(parent / name / "config.yaml").optim.lr == lr
    assert results["s0"]["config_delta"] == {}
    assert results["s0-0f322fbe"]["config_delta"] == {"optim.lr": 0.003}
    assert results["s0"]["val_nll"] != results["s0-0f322fbe"]["val_nll"]
    table = collect_runs(tmp_path / "runs").table
    assert table["optim.lr"].tolist() == [0.001, 0.003]  # the swept axis, default included


def _tiny(root: Path, *extra: str) -> list[str]:
    return tiny_overrides(root, *extra, steps=6, every=3)


def test_changed_config_is_refused_then_accepted_deliberately(tmp_path):
    crash = ["+callbacks.crash._target_=tests.resume.helpers.CrashAt", "+callbacks.crash.step=3"]
    run_dir = run_dir_for(_tiny(tmp_path))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train(_tiny(tmp_path, *crash)))
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    # The folder's config as an older version of the code (another default lr) wrote it.
    stored = OmegaConf.load(run_dir / "config.yaml")
    stored.optim.lr, stored.optim.weight_decay = 0.002, 0.05
    OmegaConf.save(stored, run_dir / "config.yaml")

    error = cli_error(train_main, "src.train", *_tiny(tmp_path))
    assert f"run {run_dir} was started under another config" in error
    assert "optim.lr: 0.002 -> 0.001" in error and "optim.weight_decay: 0.05 -> 0.0" in error
    assert "training.allow_config_change=true" in error
    assert not (run_dir / "result.json").exists()  # nothing written by the refused command

    result = train(compose_train([*_tiny(tmp_path), "training.allow_config_change=true"]))
    assert result["steps"] == 6 and len(result["config_changes"]) == 1
    assert "optim.lr: 0.002 -> 0.001" in result["config_changes"][0]
    assert OmegaConf.load(run_dir / "config.prev1.yaml").optim.lr == 0.002  # kept, not lost


# ---- the run lock ------------------------------------------------------------------------------
@pytest.mark.slow  # two concurrent training processes: ~25 s
def test_second_process_on_a_running_run_exits_with_one_line(tmp_path):
    slow = ["+callbacks.slow._target_=tests.resume.helpers.SlowSteps", "+callbacks.slow.seconds=0.3"]
    args = [*tiny_overrides(tmp_path, *slow, steps=40, every=10)]
    run_dir = run_dir_for(args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run_dir / OWNER_FILE).exists():
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.1)
        second = _run(args)
        assert first.poll() is None, "the first run ended before the second one was refused"
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert second.returncode == 1 and len(errors) == 1, second.stderr[-2000:]
        assert f"run {run_dir} is being trained by pid {first.pid}" in errors[0]
        assert first.wait(timeout=300) == 0, first.communicate()[1][-2000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 40
    assert "run already finished" in _run(args).stdout  # and the lock was released


def test_lock_of_a_killed_holder_is_taken_over_at_once(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from src.runs.lock import run_lock\n"
         f"with run_lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
        with run_lock(tmp_path):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.time()
    with run_lock(tmp_path):  # dead on this host: no lease to wait out
        assert time.time() - start < 5
    assert not (tmp_path / OWNER_FILE).exists()


def test_only_launch_rank_zero_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with run_lock(tmp_path / "run"):
        assert not (tmp_path / "run").exists()


def test_locked_message_names_the_id_scancel_takes(monkeypatch, tmp_path):
    from src.runs.lock import _locked_message, _owner_record

    monkeypatch.setenv("SLURM_JOB_ID", "48")  # an array element's own id: scancel refuses it
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert "(scancel 48)" in _locked_message(tmp_path, _owner_record())
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    message = _locked_message(tmp_path, _owner_record())
    assert "Slurm job 42_5" in message and "(scancel 42_5)" in message
