"""Wall time, tokens and tokens/s of training, accumulated across resumptions."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class Throughput(L.Callback):
    """Logs perf/tokens, perf/flops and perf/tokens_per_s; its totals ride in the checkpoint."""

    def __init__(self, tokens_per_step: int, flops_per_token: float, log_every_n_steps: int = 10) -> None:
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.log_every = log_every_n_steps
        self.train_time_s = 0.0  # time inside training steps, all jobs of the run
        self._t0: float | None = None
        self._window = (0.0, 0)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._t0 is None:
            return
        dt = time.perf_counter() - self._t0
        self.train_time_s += dt
        window_time, window_batches = self._window
        self._window = (window_time + dt, window_batches + 1)
        step = trainer.global_step
        if step % self.log_every == 0 and self._window[0] > 0:
            micro_tokens = self.tokens_per_step / trainer.accumulate_grad_batches
            rate = self._window[1] * micro_tokens / self._window[0]
            trainer.lightning_module.log("perf/tokens_per_s", rate)
            tokens = float(step * self.tokens_per_step)
            trainer.lightning_module.log("perf/tokens", tokens)
            trainer.lightning_module.log("perf/flops", tokens * self.flops_per_token)
            self._window = (0.0, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"train_time_s": self.train_time_s}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_time_s = state_dict.get("train_time_s", 0.0)
