"""What a Slurm queue holds, and the small interventions a driver of many jobs needs (the
local-cluster tests and scripts/chaos_sweep.py): read it, start requeued jobs soon, wait
for it to empty. Only the Slurm client commands are used (squeue, scontrol)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping

# squeue fields: unique job id (%A: one per array element), display id (%i: "base_index" for
# an array element), state, reason, name.
_FORMAT = "%A|%i|%T|%r|%j"


def squeue(env: Mapping[str, str], name: str | None = None) -> list[dict[str, str]]:
    """Jobs in the queue, each {"job", "id", "state", "reason", "name"} (only those called
    `name` when given); `job` is what SLURM_JOB_ID holds inside it."""
    # -r: one row per array element (a pending array is one collapsed row otherwise)
    args = ["squeue", "-h", "-r", "-o", _FORMAT] + (["-n", name] if name else [])
    out = subprocess.run(args, env=dict(env), capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [{"job": r[0], "id": r[1], "state": r[2], "reason": r[3], "name": r[4]}
            for r in rows if len(r) == 5]


class BeginTimeRelease:
    """Starts requeued jobs soon: Slurm holds a requeued job ~2 min (Reason=BeginTime). Not at
    once: a job restarted within a second of its last instance's end is killed by slurmctld
    ("Killing non-startable batch job: Job credential revoked") and a sweep waits forever.
    Each requeue is released once (5 s out): moving it again would keep pushing it back."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._released: dict[str, float] = {}  # job -> when its begin time was last moved

    def __call__(self, jobs: list[dict[str, str]] | None = None) -> list[str]:
        """Release the held jobs among `jobs` (default: the whole queue); the ones moved."""
        moved = []
        for job in squeue(self.env) if jobs is None else jobs:
            if job["state"] != "PENDING" or job["reason"] != "BeginTime":
                continue
            if time.time() - self._released.get(job["job"], -1e9) < 30:
                continue
            self._released[job["job"]] = time.time()
            subprocess.run(["scontrol", "update", f"JobId={job['job']}", "StartTime=now+5"],
                           env=self.env, capture_output=True, check=False)
            moved.append(job["job"])
        return moved


def wait_until_gone(env: Mapping[str, str], name: str | None, timeout: float,
                    release: BeginTimeRelease | None = None) -> None:
    """Wait until no job (called `name`) is queued or running.

    Raises:
        TimeoutError: some still are after `timeout` seconds (listed).
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        if release is not None:
            release()
        if not squeue(env, name):
            return
        time.sleep(2)
    raise TimeoutError(f"Slurm jobs still queued after {timeout:.0f} s: {squeue(env, name)}")
