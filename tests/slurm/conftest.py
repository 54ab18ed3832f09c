"""A real single-node Slurm for the Slurm tests, brought up by the project's own script.

A test that cannot start Slurm (not root, no apt, no munge) is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from src.cluster import slurm_queue
from src.cluster.slurm_queue import BeginTimeRelease, squeue  # noqa: F401 (re-exported)
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


def release_begin_time(env: dict[str, str]) -> None:
    """Start requeued jobs soon (each requeue released once; see BeginTimeRelease)."""
    _RELEASE.setdefault("release", BeginTimeRelease(env))()


_RELEASE: dict[str, BeginTimeRelease] = {}


def wait_until_gone(env: dict[str, str], name: str | None, timeout: float,
                    release: bool = False) -> None:
    """Wait until no job (called `name`) is queued or running; fail after `timeout` s."""
    try:
        slurm_queue.wait_until_gone(env, name, timeout, BeginTimeRelease(env) if release else None)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None
