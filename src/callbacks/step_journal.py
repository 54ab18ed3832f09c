"""An outside witness of who trained which run when: one JSON line per optimizer step.

For audits of a cluster's behaviour (scripts/chaos_sweep.py): every training process appends
(run folder, host, pid, Slurm job, step, time) after each optimizer step it completes, to a
file per run in a folder of the caller's choosing, kept off the run's own disk so that a
run whose disk fills still leaves its trace. From these lines one can tell whether two
processes ever trained one run at once and how many steps were computed twice.

    python -m src.train ... +callbacks.journal._target_=src.callbacks.step_journal.StepJournal \
        +callbacks.journal.folder=/some/journal
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import lightning as L


def journal_file(folder: str | Path, run_dir: str | Path) -> Path:
    """The journal of `run_dir` inside `folder` (one file per run folder)."""
    key = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    return Path(folder) / f"{key}.jsonl"


class StepJournal(L.Callback):
    """Appends a line per completed optimizer step (global rank 0 only).

    Args:
        folder: where the per-run journal files go (created).
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self._last: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last:  # mid-accumulation: no new step
            return
        self._last = step
        row = {"run_dir": str(Path(trainer.default_root_dir).resolve()),
               "host": socket.gethostname(), "pid": os.getpid(),
               "job": os.environ.get("SLURM_JOB_ID"),
               "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
               "step": step, "time": time.time()}
        self.folder.mkdir(parents=True, exist_ok=True)
        # One short O_APPEND write per line: lines of concurrent writers never interleave.
        with open(journal_file(self.folder, trainer.default_root_dir), "a") as f:
            f.write(json.dumps(row) + "\n")
