"""auto_resubmit.sh: the sbatch chain it builds (fast, with stand-ins for sbatch/squeue), and
a real run on a local Slurm whose budget needs several time-limited jobs (slow)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.resume.helpers import (assert_same_training_state, load_last, metric_rows,
                                  read_records, recorder_overrides, run_dir_of, tiny_overrides,
                                  train_cli)
from tests.slurm.conftest import wait_until_gone

SCRIPT = str(ROOT / "auto_resubmit.sh")
CPU_TEMPLATE = str(ROOT / "scripts" / "slurm" / "cpu.sbatch")


def _fake_bin(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _resubmit(args: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, *args], cwd=cwd or ROOT, env=env or dict(os.environ),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def fake_slurm(tmp_path) -> tuple[dict[str, str], Path]:
    """sbatch that logs its arguments and prints job ids 101, 102, ...; squeue with an empty queue
    unless $FAKE_QUEUE is set."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.log"
    _fake_bin(bin_dir, "sbatch", f'n=$(( $(wc -l < {log} 2>/dev/null || echo 0) + 101 ))\n'
                                 f'printf "%s\\n" "$*" >> {log}\necho "$n;cluster"\n')
    _fake_bin(bin_dir, "squeue", 'printf "%s" "${FAKE_QUEUE:-}"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return env, log


def _overrides(tmp_path: Path) -> list[str]:
    return ["model=0.13M", "data=shakespeare_byte", f"paths.log_dir={tmp_path}/runs",
            "optim.lr=3e-4"]


def test_chain_of_dependent_jobs(fake_slurm, tmp_path):
    env, log = fake_slurm
    proc = _resubmit(["-n", "3", "--time", "00:10:00", "--sbatch=--cpus-per-task=1", "-t",
                      CPU_TEMPLATE, "--", *_overrides(tmp_path)], env)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 3
    assert "--dependency" not in calls[0]
    assert "--dependency=afterany:101 " in calls[1] and "--dependency=afterany:102 " in calls[2]
    names = {arg for call in calls for arg in call.split() if arg.startswith("--job-name=")}
    assert len(names) == 1  # every job of the run carries the run's name
    for call in calls:
        assert "--time=00:10:00" in call and "--cpus-per-task=1" in call
        assert "--open-mode=append" in call and call.endswith(" ".join(_overrides(tmp_path)))
    assert f"--output={run_dir_of(tmp_path, 600)}/slurm-%j.out" in calls[0]
    assert "submitted job 3/3: 103" in proc.stdout


def test_dry_run_prints_and_submits_nothing(fake_slurm, tmp_path):
    env, log = fake_slurm
    proc = _resubmit(["--dry-run", "-n", "2", "--", *_overrides(tmp_path)], env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("sbatch ")]
    assert len(lines) == 2 and "--dependency=afterany:JOB1" in lines[1]
    assert "gpu.sbatch" in lines[0] and not log.exists()


def test_second_submission_is_skipped_while_jobs_are_queued(fake_slurm, tmp_path):
    env, log = fake_slurm
    proc = _resubmit(["-n", "2", "--", *_overrides(tmp_path)], {**env, "FAKE_QUEUE": "7\n8\n"})
    assert proc.returncode == 0, proc.stderr
    assert "already queued or running" in proc.stdout and "7,8" in proc.stdout
    assert not log.exists()


def test_finished_run_is_not_submitted(fake_slurm, tmp_path):
    env, log = fake_slurm
    name = subprocess.run(["python", "-m", "src.run_dir", *_overrides(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(name).mkdir(parents=True)
    (Path(name) / "result.json").write_text(json.dumps({"steps": 1}))
    proc = _resubmit(["--", *_overrides(tmp_path)], env)
    assert proc.returncode == 0 and "run already finished" in proc.stdout
    assert not log.exists()


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown flag '--bogus'"),
    (["-n", "0"], "-n must be a positive integer"),
    (["-t", "nope.sbatch"], "no sbatch template 'nope.sbatch'"),
    (["--", "algo=nope"], "unknown algo 'nope'"),
])
def test_bad_usage_is_one_clear_line(fake_slurm, args, message):
    env, log = fake_slurm
    proc = _resubmit(args, env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


# ---- slow: a real local Slurm --------------------------------------------------------------------
@pytest.mark.slow
def test_budget_spanning_time_limited_jobs_matches_uninterrupted_run(slurm_env, tmp_path):
    """2-minute jobs, USR1 60 s before the limit (Slurm may send it up to ~30 s early): each
    job trains for less than 60 s, while the run sleeps 140 s alone (0.25 s after each of its
    280 x 2 micro-batches), so at least three jobs train whatever the machine's speed; the
    result equals the uninterrupted run's, bit for bit."""
    steps, every = 280, 10
    extra = ("training.global_batch_size=8", "model.dropout=0.1", "training.ema=0.9")
    ref = train_cli([*tiny_overrides(tmp_path / "ref", *extra, steps=steps, every=every),
                     *recorder_overrides(tmp_path / "ref" / "steps.jsonl")])
    assert ref.returncode == 0, ref.stderr[-3000:]

    overrides = [*tiny_overrides(tmp_path / "sl", *extra, steps=steps, every=every),
                 *recorder_overrides(tmp_path / "sl" / "steps.jsonl"),
                 "+callbacks.slow._target_=tests.resume.helpers.SlowSteps",
                 "+callbacks.slow.seconds=0.25"]
    args = ["-n", "10", "-t", CPU_TEMPLATE, "--time", "00:02:00", "--sbatch=--cpus-per-task=1",
            "--sbatch=--signal=B:USR1@60", "--"]
    proc = _resubmit([*args, *overrides], slurm_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().split("job name: ")[-1]
    again = _resubmit([*args, *overrides], slurm_env, cwd=tmp_path)
    assert "already queued or running" in again.stdout  # no duplicate chain

    wait_until_gone(slurm_env, name, timeout=1500)
    run_dir = run_dir_of(tmp_path / "sl", steps)
    logs = "".join(p.read_text() for p in sorted(run_dir.glob("slurm-*.out")))
    stopped = logs.count("stopped early with a checkpoint: the next job resumes")
    assert stopped >= 2, logs[-4000:]  # >= 3 jobs trained
    assert logs.count("run already finished") >= 1  # the chain's leftover jobs exit at once
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == steps

    ref_dir = run_dir_of(tmp_path / "ref", steps)
    assert_same_training_state(load_last(ref_dir), load_last(run_dir))
    assert metric_rows(ref_dir) == metric_rows(run_dir)
    records = read_records(tmp_path / "sl" / "steps.jsonl")
    assert records == read_records(tmp_path / "ref" / "steps.jsonl")
    assert len(records) == steps * 2
