"""A real single-node Slurm for the Slurm tests, brought up by the project's own script.

A test that cannot start Slurm (not root, no apt, no munge) is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SLURM_DIR = Path(os.environ.get("DLM_SLURM_DIR", "/tmp/dlm-slurm"))


def local_slurm(folder: Path, nodes: int = 1) -> dict[str, str]:
    """Bring up (or find running) scripts/local_slurm.sh's cluster of `nodes` slurmd in
    `folder`; the environment to use it with, or skip the test saying why it cannot start."""
    env = {**os.environ, "DLM_SLURM_DIR": str(folder), "DLM_SLURM_NODES": str(nodes)}
    try:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "local_slurm.sh"), "up"], env=env,
                              capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot start a local Slurm: {e}")
    if proc.returncode != 0:
        pytest.skip(f"cannot start a local Slurm (DLM_SLURM_NODES={nodes} "
                    f"scripts/local_slurm.sh up): "
                    f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    # One thread per process, the same as the uninterrupted reference runs (bitwise equality).
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    """Environment for sbatch / squeue / submitit against the local cluster."""
    return local_slurm(SLURM_DIR)


def squeue(env: dict[str, str], name: str | None = None) -> list[dict[str, str]]:
    """Jobs in the queue: id, state, reason (optionally only those called `name`)."""
    args = ["squeue", "-h", "-o", "%i|%T|%r|%j"] + (["-n", name] if name else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [{"id": r[0], "state": r[1], "reason": r[2], "name": r[3]} for r in rows]


_released: dict[str, float] = {}  # job id -> when its begin time was last moved


def release_begin_time(env: dict[str, str]) -> None:
    """Start requeued jobs soon: Slurm holds a requeued job ~2 min (Reason=BeginTime). Not at
    once: a job restarted within a second of its last instance's end is killed by slurmctld
    ("Killing non-startable batch job: Job credential revoked") and the sweep waits forever.
    Each requeue is released once (5 s out): moving it again would keep pushing it back."""
    for job in squeue(env):
        if job["state"] != "PENDING" or job["reason"] != "BeginTime":
            continue
        if time.time() - _released.get(job["id"], -1e9) < 30:
            continue
        _released[job["id"]] = time.time()
        subprocess.run(["scontrol", "update", f"JobId={job['id']}", "StartTime=now+5"],
                       env=env, capture_output=True)


def wait_until_gone(env: dict[str, str], name: str | None, timeout: float,
                    release: bool = False) -> None:
    """Wait until no job (called `name`) is queued or running; fail after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if release:
            release_begin_time(env)
        if not squeue(env, name):
            return
        time.sleep(2)
    raise AssertionError(f"Slurm jobs still queued after {timeout:.0f} s: {squeue(env, name)}")
