"""What a sweep must look like after a cluster threw faults at it (scripts/chaos_sweep.py):
one result per point, equal to an undisturbed run's, and never two processes training one
run at once (read from the StepJournal's lines, src/callbacks/step_journal.py)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: result.json fields that measure the machine, not the run (and the folder it was written to).
UNCOMPARED = ("train_time_s", "wall_time_s", "tokens_per_s", "run_dir")


@dataclass(frozen=True)
class Session:
    """One process's stretch of training on one run: its first and last journaled step."""

    host: str
    pid: int
    job: str | None
    first_step: int
    last_step: int
    start: float
    end: float
    steps: int


def read_journals(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Journal lines by run folder (every file in `folder`; a torn last line is skipped)."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            rows[row["run_dir"]].append(row)
    return dict(rows)


def sessions(rows: list[dict[str, Any]]) -> list[Session]:
    """The training processes of one run, in the order they started."""
    by_process: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_process[(row["host"], int(row["pid"]))].append(row)
    found = []
    for (host, pid), mine in by_process.items():
        mine.sort(key=lambda r: r["time"])
        found.append(Session(host, pid, mine[0].get("job"), mine[0]["step"], mine[-1]["step"],
                             mine[0]["time"], mine[-1]["time"], len(mine)))
    return sorted(found, key=lambda s: s.start)


def overlaps(found: list[Session]) -> list[tuple[Session, Session]]:
    """Pairs of sessions whose training stretches intersect in time (two trainers at once)."""
    return [(a, b) for i, a in enumerate(found) for b in found[i + 1:]
            if a.start <= b.end and b.start <= a.end]


def steps_recomputed(rows: list[dict[str, Any]]) -> int:
    """Optimizer steps computed more than once: lost to a fault and trained again."""
    return len(rows) - len({int(r["step"]) for r in rows})


def result_differences(mine: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Fields of two result.json that differ, other than timings and the folder."""
    keys = (set(mine) | set(reference)) - set(UNCOMPARED)
    return sorted(k for k in keys if mine.get(k) != reference.get(k))


def state_differences(mine: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Tensors of two checkpoints' model and optimizer state that are not bitwise equal."""
    wrong = []
    for name, tensor in reference["state_dict"].items():
        other = mine["state_dict"].get(name)
        if other is None or not torch.equal(other, tensor):
            wrong.append(f"state_dict.{name}")
    theirs, ours = reference["optimizer_states"][0]["state"], mine["optimizer_states"][0]["state"]
    for index, slots in theirs.items():
        for slot, value in slots.items():
            other = ours.get(index, {}).get(slot)
            if not isinstance(value, torch.Tensor):
                same = other == value
            else:
                same = isinstance(other, torch.Tensor) and torch.equal(other, value)
            if not same:
                wrong.append(f"optimizer.{index}.{slot}")
    return wrong
