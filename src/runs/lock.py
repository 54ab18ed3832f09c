"""One training process per run folder, also across nodes of a shared file system.

A double `sbatch`, two terminals or a requeued job that starts while the old one still runs
must not both train into one folder (they would overwrite each other's checkpoints and
logs). The lock is a lease (filelock's SoftFileLease): a marker file created exclusively
(atomic on NFS, Lustre and GPFS, no fcntl support needed) and touched by a heartbeat
thread. A holder that died on this host is detected at once (its pid is gone); one that died
on another node is taken over when its marker has not been touched for `lease_s` seconds.

Policy for a second process: if the holder is alive on this host it exits at once with one
line; otherwise it waits up to 1.5 leases (a dead holder's lease runs out by then) and exits
with the same line if the holder is still alive. Only global rank 0 of a launch locks; the
other ranks of a multi-process job follow their rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import LeaseSettingsMismatch, SoftFileLease, Timeout

from src.utils.atomic import atomic_write_text
from src.utils.cli import UserError
from src.utils.runtime import is_launch_rank_zero

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
OWNER_FILE = ".run.lock.owner.json"


class RunLocked(UserError):
    """Another live process holds the run's lock."""


def _owner_record() -> dict[str, Any]:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            # scancel names an array element base_index: Slurm 22.05 refuses its own job id
            "slurm_array_task": f"{array}_{task}" if array and task else None,
            "since": time.strftime("%F %T"), "command": " ".join(sys.argv)[:300]}


def _scancel_id(owner: dict[str, Any] | None) -> str | None:
    if not owner:
        return None
    return owner.get("slurm_array_task") or owner.get("slurm_job_id")


def read_owner(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _alive_here(owner: dict[str, Any] | None) -> bool:
    if not owner or owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True  # exists, not ours to signal (or an unreadable record: assume alive)
    return True


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    job = f", Slurm job {_scancel_id(owner)}" if _scancel_id(owner) else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{job}, since {owner.get('since')}"


def _locked_message(run_dir: Path, owner: dict[str, Any] | None) -> str:
    cancel = f" (scancel {_scancel_id(owner)})" if _scancel_id(owner) else ""
    return (f"run {run_dir} is being trained by {describe(owner)}: not starting a second "
            f"process on it; wait for that one to finish or stop it{cancel}, then run again")


@contextmanager
def run_lock(run_dir: str | Path, lease_s: float = 60.0) -> Iterator[None]:
    """Hold the run's lock inside the block (rank 0 only; other ranks pass through).

    Raises:
        RunLocked: another live process holds it.
        ValueError: the holder uses another `training.lock_lease_s`.
    """
    run_dir = Path(run_dir)
    if not is_launch_rank_zero():
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = SoftFileLease(run_dir / LOCK_FILE, lease_duration=float(lease_s),
                         on_compromise=lambda c: log.warning(
                             "lost the run lock of %s (%s): another process may train into it",
                             run_dir, c.reason))
    try:
        _acquire(lock, run_dir, float(lease_s))
    except LeaseSettingsMismatch:
        raise ValueError(f"the run lock of {run_dir} is held with another training.lock_lease_s "
                         f"than {lease_s}: every job of a run must use the same value") from None
    try:
        atomic_write_text(run_dir / OWNER_FILE, json.dumps(_owner_record()) + "\n")
        yield
    finally:
        (run_dir / OWNER_FILE).unlink(missing_ok=True)
        lock.release()


def _acquire(lock: SoftFileLease, run_dir: Path, lease_s: float) -> None:
    try:
        lock.acquire(timeout=0)
        return
    except Timeout:
        pass
    owner = read_owner(run_dir)
    if _alive_here(owner):
        raise RunLocked(_locked_message(run_dir, owner))
    wait = 1.5 * lease_s
    log.warning("run %s is locked by %s; waiting up to %.0f s for its lease to run out",
                run_dir, describe(owner), wait)
    try:
        lock.acquire(timeout=wait, poll_interval=min(1.0, lease_s / 10))
    except Timeout:
        raise RunLocked(_locked_message(run_dir, read_owner(run_dir))) from None
