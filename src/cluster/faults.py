"""The faults a cluster throws at a sweep, injected on purpose (scripts/chaos_sweep.py).

Each injector acts through the interfaces a real cluster fault comes through: Slurm's client
commands (scancel, scontrol), a signal to the training process, a full file system. Targets
are found from the outside too: a run is "training" while its lock's owner record
(src/runs/lock.py) names a live process.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.cluster.slurm_queue import squeue
from src.runs.lock import OWNER_FILE

#: Every kind of fault the chaos sweep knows, in the order its table lists them.
FAULT_KINDS = ("scancel", "sigkill", "drain", "time_limit", "duplicate", "disk_full")


@dataclass
class Training:
    """A run some process is training now."""

    run_dir: Path
    pid: int
    job: str | None
    host: str | None


@dataclass
class Fault:
    """One injected fault: when, what, at which run / job / node, and what was seen."""

    kind: str
    time: float
    target: str
    detail: str = ""


def alive(pid: int) -> bool:
    """Whether process `pid` still exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, not ours to signal
    return True


def training_runs(runs_root: Path) -> list[Training]:
    """The runs under `runs_root` whose lock owner is a live process on this machine."""
    found = []
    for owner_file in sorted(Path(runs_root).rglob(OWNER_FILE)):
        try:
            owner = json.loads(owner_file.read_text())
            pid = int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone between listing and reading
        if not alive(pid):
            continue  # a dead holder
        found.append(Training(owner_file.parent.resolve(), pid, owner.get("slurm_job_id"),
                              owner.get("host")))
    return found


def _scontrol(env: Mapping[str, str], *args: str) -> str:
    proc = subprocess.run(["scontrol", *args], env=dict(env), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scontrol {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def job_fields(env: Mapping[str, str], job: str) -> dict[str, str]:
    """`scontrol show job` as key -> value (RunTime, TimeLimit, NodeList, JobState, ...)."""
    text = _scontrol(env, "show", "job", "-o", str(job))
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", text))


def minutes(duration: str) -> float:
    """A Slurm duration ([days-]hh:mm:ss or mm:ss) in minutes."""
    days, _, clock = duration.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


class Injector:
    """Injects faults into a sweep's running jobs and processes; keeps the record.

    Args:
        env: environment for the Slurm commands (SLURM_CONF).
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.faults: list[Fault] = []
        self.shortened: dict[str, str] = {}  # job -> its time limit before time_limit cut it
        self.drained: dict[str, float] = {}  # node -> when it was drained
        self.ballast: Path | None = None  # the file filling a run's disk, while it does
        self.ballast_victim: Training | None = None
        self.ballast_since = 0.0

    def _record(self, kind: str, target: str, detail: str = "") -> Fault:
        fault = Fault(kind, time.time(), target, detail)
        self.faults.append(fault)
        return fault

    # ---- the faults -----------------------------------------------------------------------
    def scancel(self, run: Training) -> Fault:
        """Cancel the job training `run` (what a user or an admin does), by the id squeue
        shows: this Slurm refuses an array element's own SLURM_JOB_ID ("invalid JobId")."""
        shown = next((j["id"] for j in squeue(self.env) if j["job"] == str(run.job)), None)
        if shown is None:
            raise RuntimeError(f"job {run.job} is not in the queue")
        proc = subprocess.run(["scancel", shown], env=self.env, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0 or proc.stderr.strip():
            raise RuntimeError(f"scancel {shown}: {proc.stderr.strip()}")
        return self._record("scancel", str(run.run_dir), f"job {shown}")

    def sigkill(self, run: Training) -> Fault:
        """SIGKILL the training process (the OOM killer; a segfault): nothing runs after it."""
        os.kill(run.pid, signal.SIGKILL)
        return self._record("sigkill", str(run.run_dir), f"pid {run.pid}, job {run.job}")

    def drain(self, node: str) -> Fault:
        """Drain `node`: its running jobs go on, nothing new starts there until `undrain`."""
        _scontrol(self.env, "update", f"NodeName={node}", "State=DRAIN", "Reason=chaos")
        self.drained[node] = time.time()
        return self._record("drain", node)

    def undrain(self, node: str) -> None:
        _scontrol(self.env, "update", f"NodeName={node}", "State=RESUME")
        since = self.drained.pop(node)
        for fault in reversed(self.faults):
            if fault.kind == "drain" and fault.target == node:
                fault.detail = f"resumed after {time.time() - since:.0f} s"
                break

    def time_limit(self, run: Training, signal_delay_s: float) -> Fault:
        """Cut the time limit of `run`'s job so that Slurm's warning signal (sent
        `signal_delay_s` before the limit) comes within about half a minute: a genuine
        time-limit preemption, delivered by Slurm."""
        fields = job_fields(self.env, str(run.job))
        elapsed = minutes(fields["RunTime"])
        limit = max(1, math.ceil(elapsed + signal_delay_s / 60 - 0.5))
        self.shortened.setdefault(str(run.job), fields["TimeLimit"])
        _scontrol(self.env, "update", f"JobId={run.job}", f"TimeLimit={limit}")
        return self._record("time_limit", str(run.run_dir),
                            f"job {run.job}: {fields['TimeLimit']} -> {limit} min after "
                            f"{elapsed:.1f} min")

    def restore_time_limits(self, queue: list[dict[str, str]]) -> None:
        """A requeued job gets its time limit back (else each restart is preempted at once)."""
        for job in queue:
            if job["state"] == "PENDING" and job["job"] in self.shortened:
                _scontrol(self.env, "update", f"JobId={job['job']}",
                          f"TimeLimit={self.shortened.pop(job['job'])}")

    def duplicate(self, run: Training, command: list[str], log: Path) -> subprocess.Popen:
        """Submit `run`'s point a second time while it trains (`command`: the launch)."""
        self._record("duplicate", str(run.run_dir), f"while job {run.job} trains it")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2],
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def fill_disk(self, run: Training) -> Fault:
        """Fill the file system holding `run` (a small tmpfs of its own) to the last byte."""
        self.ballast = run.run_dir / ".chaos-ballast"
        written = fill(self.ballast)
        self.ballast_victim, self.ballast_since = run, time.time()
        return self._record("disk_full", str(run.run_dir), f"{written / 2**20:.1f} MiB ballast")

    def free_disk(self, reason: str) -> None:
        assert self.ballast is not None
        self.ballast.unlink(missing_ok=True)
        self.faults[[f.kind for f in self.faults].index("disk_full")].detail += (
            f"; freed after {time.time() - self.ballast_since:.0f} s ({reason})")
        self.ballast = self.ballast_victim = None

    def as_dict(self) -> list[dict[str, Any]]:
        return [vars(f) for f in self.faults]


def fill(path: Path, chunk: int = 1 << 20) -> int:
    """Write zeros to `path` until its file system refuses; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        while chunk >= 4096:
            try:
                written += f.write(bytes(chunk))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk //= 2  # the last few blocks, in smaller writes
    return written
