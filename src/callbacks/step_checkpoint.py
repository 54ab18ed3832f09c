"""Step checkpoints: every N optimizer steps, when training stops early, and at the end.

Files in `dirpath`: `stepNNNNNNNN.ckpt` (the newest `keep_last_k`) and `last.ckpt`, a hard
link to the newest (a copy where the filesystem has no hard links), which the next job and
`src.evaluate` / `src.sample` read.

A save happens in two phases. At the step's end (the state Lightning resumes from) the
checkpoint is written atomically to a hidden `.pending` file; it is committed (renamed to
its step name, `last.ckpt` re-pointed, old files pruned) at the next batch start or when
fit ends, after the loggers are flushed. So a committed checkpoint always comes with every
metric row of the steps it covers, including that step's validation: a job killed at any
moment resumes with logs that have no gaps.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from src.callbacks.divergence import Diverged, DivergenceGuard, nonfinite_parameters
from src.resume.atomic_io import fsync_dir
from src.resume.selection import LAST, remove_path, step_file_name, step_files

log = logging.getLogger(__name__)

MIN_KEPT = 2  # the newest step file and the one before it (the fallback)


def point_last_at(target: Path) -> None:
    """Atomically make `last.ckpt` next to `target` the same file as `target` (a relative
    symbolic link when `target` is a distributed checkpoint's folder)."""
    last, tmp = target.with_name(LAST), target.with_name(f".{LAST}.tmp-link")
    remove_path(tmp)
    if target.is_dir():
        os.symlink(target.name, tmp)
        os.replace(tmp, last)
        return
    try:
        os.link(target, tmp)  # no bytes copied: a multi-GB checkpoint costs one inode
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, last)


class StepCheckpoint(Checkpoint):
    """Saves at step boundaries (never mid gradient-accumulation), keeps the last K.

    Args:
        dirpath: checkpoint folder (run_dir/checkpoints).
        every_n_steps: periodic save interval in optimizer steps (0 = only stops and the end).
        keep_last_k: step files kept (`last.ckpt` is the newest of them); at least
            MIN_KEPT whatever the value, so that a corrupt newest file costs one save
            interval, never the run.
        keep_steps: steps always saved and never pruned (branch points for
            `training.init_from` with `training.init_step`, e.g. WSD cool-downs).
        guard: the run's DivergenceGuard: no periodic save while its loss streak lasts.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int, keep_last_k: int = 2,
                 keep_steps: tuple[int, ...] | list[int] = (),
                 guard: DivergenceGuard | None = None) -> None:
        if keep_last_k < 0:
            raise ValueError(f"training.keep_last_k must be >= 0, got {keep_last_k}")
        if any(int(s) < 1 for s in keep_steps):
            raise ValueError(f"training.keep_steps must be steps >= 1, got {list(keep_steps)}")
        self.dirpath = Path(dirpath)
        self.every_n_steps, self.keep_last_k = int(every_n_steps), int(keep_last_k)
        self.keep_steps = frozenset(int(s) for s in keep_steps)
        self.guard = guard  # its streak above diverge_above pauses the periodic saves
        self._pending: tuple[int, Path] | None = None
        self._saved_step: int | None = None
        self._step_before: int | None = None  # global_step when the current batch started
        self._last_batch_stepped = False

    # ---- hooks -------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._commit(trainer)  # the previous step's rows are logged by now
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        self._last_batch_stepped = step != self._step_before
        if not self._last_batch_stepped:
            return  # mid-accumulation: the partial gradients are not in a checkpoint
        periodic = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if periodic and self.guard is not None and self.guard.streak > 0:
            # The loss is above training.diverge_above: keep the checkpoints from before it.
            log.info("step %d: no periodic checkpoint while the training loss is above "
                     "training.diverge_above (%d steps so far)", step, self.guard.streak)
            periodic = False
        if periodic or step in self.keep_steps or trainer.should_stop or step >= trainer.max_steps:
            self._save(trainer, step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if self._last_batch_stepped and self._saved_step != step:
            self._save(trainer, step)  # stopped by something else at an unsaved step
        self._commit(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        # The pending state is a complete step; only its logs may lack a row. Keep it.
        self._commit(trainer)

    # ---- saving ------------------------------------------------------------------------------
    def _save(self, trainer: L.Trainer, step: int) -> None:
        bad = nonfinite_parameters(trainer.lightning_module)
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            # Never write poisoned weights (keep-last-K would prune the good ones after it).
            raise Diverged(step, f"non-finite weights ({', '.join(bad[:3]) or 'on another rank'})")
        pending = self.dirpath / f".{step_file_name(step)}.pending"
        # Every rank calls it (sharded strategies need that); the full state, not weights only.
        trainer.save_checkpoint(pending, weights_only=False)
        self._pending, self._saved_step = (step, pending), step

    def _commit(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        step, pending = self._pending
        self._pending = None
        if not trainer.is_global_zero:
            return
        if not pending.exists():  # its write failed (e.g. disk full) and raised already
            log.warning("checkpoint for step %d was not written: nothing to commit", step)
            return
        for logger in trainer.loggers:
            logger.save()
        final = self.dirpath / step_file_name(step)
        if final.is_dir() and not final.is_symlink():
            remove_path(final)  # a folder is not replaced by a rename
        os.replace(pending, final)
        point_last_at(final)
        self._prune()
        fsync_dir(self.dirpath)
        log.info("checkpoint saved: %s (step %d)", final, step)

    def _prune(self) -> None:
        files = [(s, p) for s, p in step_files(self.dirpath) if s not in self.keep_steps]
        for _, path in files[: max(len(files) - max(self.keep_last_k, MIN_KEPT), 0)]:
            remove_path(path)

    # ---- Lightning bookkeeping ---------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return "StepCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None  # nothing to restore: the files on disk are the state
