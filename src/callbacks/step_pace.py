"""A fixed pause after every optimizer step: stretches a tiny run over wall time without
using CPU, so that a short Slurm job does only part of it (time-limit tests) or a chaos
sweep's faults find it running. Changes timing only, never the training state.

    python -m src.train ... +callbacks.pace._target_=src.callbacks.step_pace.SlowSteps \
        +callbacks.pace.seconds=0.25
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class SlowSteps(L.Callback):
    """Sleeps `seconds` after every training batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.seconds)
