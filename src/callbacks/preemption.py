"""Stop cleanly on a cluster's stop signal: checkpoint at the next optimizer step, then exit.

The signal handlers (src/resume/stop_signals.py) only record the signal. At every
optimizer-step boundary this callback asks all ranks whether any of them got one (a single
all-reduce of one flag: ranks may get the signal at different steps, or only rank 0 may get
it) and, if so, ends fit at this step; StepCheckpoint (which runs after this callback) saves
it, and fit returns. `src.train` turns that into a `StoppedEarly` exit:
exit code 75, or submitit's requeue inside a submitit job.

We do not use Lightning's SLURMEnvironment auto-requeue (src/builders.py turns it off): it
saves from inside the signal handler, possibly mid-step, and requeues behind our back.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import lightning as L

from src.resume.stop_signals import StopSignals

log = logging.getLogger(__name__)


class Preemption(L.Callback):
    """Turns a recorded stop signal into `trainer.should_stop` at a step boundary.

    Attributes:
        stopped_at: the optimizer step at which training stopped on a signal (None = did not).
        signal_name: the signal this rank received (None when only another rank got one).
    """

    def __init__(self, stops: StopSignals) -> None:
        self.stops = stops
        self.stopped_at: int | None = None
        self.signal_name: str | None = None
        self._step_before: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its own SIGTERM handler when fit starts; with several processes it
        # broadcasts from inside the handler and aborts at the next batch without a
        # checkpoint. Ours only records; Lightning's teardown puts the original one back.
        self.stops.reassert(signal.SIGTERM)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self._step_before or self.stopped_at is not None:
            return  # only at optimizer-step boundaries (all ranks reach the same ones)
        received = self.stops.received is not None
        if not trainer.strategy.reduce_boolean_decision(received, all=False):
            return
        # End fit as if max_steps were this step, not through `should_stop`: that would also
        # run an extra validation here, which costs time and is not in the uninterrupted log.
        # StepCheckpoint saves because the step is the (new) last one.
        trainer.fit_loop.epoch_loop.max_steps = trainer.global_step
        self.stopped_at = trainer.global_step
        self.signal_name = self.stops.name
        if trainer.is_global_zero:
            log.warning("stop signal (%s): saving a checkpoint at step %d and stopping",
                        self.signal_name or "received by another rank", trainer.global_step)
