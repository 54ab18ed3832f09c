"""A Hydra multirun sweep through the submitit Slurm launcher on a local Slurm: every run is
cut by its time limit, checkpointed on submitit's USR2, requeued, resumed, and finishes at
its exact step count, equal to an uninterrupted run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.resume.helpers import (assert_same_training_state, load_last, run_dir_of,
                                  tiny_overrides, train_cli)
from tests.slurm.conftest import release_begin_time, squeue


@pytest.mark.slow
def test_sweep_requeues_on_time_limit_and_completes(slurm_env, tmp_path):
    steps = 150
    # 3-minute jobs, USR2 120 s before the limit (up to ~30 s early): at most ~60 s of
    # training per job; each run sleeps 75 s alone (0.5 s after each of 150 steps), so at
    # least two jobs however fast the machine (0.3 s let an idle machine finish in one).
    launcher = ["hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=3",
                "hydra.launcher.signal_delay_s=120", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.max_num_timeout=8", f"hydra.sweep.dir={tmp_path}/sweep"]
    overrides = [*tiny_overrides(tmp_path / "sl", steps=steps, every=10), "seed=0,1",
                 "+callbacks.slow._target_=tests.resume.helpers.SlowSteps",
                 "+callbacks.slow.seconds=0.5"]
    sweep = subprocess.Popen([sys.executable, "-m", "src.train", "-m", *launcher, *overrides],
                             cwd=ROOT, env=slurm_env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 1500
    while sweep.poll() is None and time.time() < deadline:
        release_begin_time(slurm_env)  # requeued jobs would otherwise wait ~2 min
        time.sleep(2)
    if sweep.poll() is None:
        sweep.kill()
        subprocess.run(["scancel", "-u", "root"], env=slurm_env)
        pytest.fail(f"sweep did not finish in time; queue: {squeue(slurm_env)}")
    out = sweep.stdout.read()
    assert sweep.returncode == 0, out[-4000:]

    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*.out"))
    for seed in (0, 1):
        run_dir = run_dir_of(tmp_path / "sl", steps, seed=seed)
        assert json.loads((run_dir / "result.json").read_text())["steps"] == steps
        assert "stopped by SIGUSR2" in logs, logs[-3000:]
    assert logs.count("stopped by SIGUSR2") >= 2  # at least one requeue per run

    # The requeued run equals an uninterrupted one (SlowSteps only changes timing).
    ref = train_cli(tiny_overrides(tmp_path / "ref", steps=steps, every=10))
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert_same_training_state(load_last(run_dir_of(tmp_path / "ref", steps)),
                               load_last(run_dir_of(tmp_path / "sl", steps)))
