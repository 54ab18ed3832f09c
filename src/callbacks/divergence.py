"""Stop a run whose training diverged, before it can overwrite a good checkpoint.

At every optimizer-step boundary every rank reports whether a loss of the step was not
finite or above `max_loss` (one all-reduce of a flag, like Preemption); StepCheckpoint also
refuses to save weights that are not finite (a NaN gradient can poison the weights while the
step's loss, computed before the update, was still finite). Either way `Diverged` is raised:
fit ends, the checkpoints already committed stay as they are, and src.train marks the run
failed (failed.json, no result.json) instead of finished.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


AUTO_FACTOR = 4.0  # `auto`: a loss 4x a uniform guess's (ln V) is no longer training


def loss_threshold(setting: float | str | None, vocab_size: int) -> float | None:
    """`training.diverge_above`: a number, `auto` (4 ln V nats), or null (NaN / inf only).

    At initialization every algo's loss is about ln V (a uniform prediction); a healthy run
    stays below it, a diverging one leaves it by orders of magnitude within a few steps.
    """
    if setting in (None, "null", "None"):
        return None
    if setting == "auto":
        return AUTO_FACTOR * math.log(vocab_size)
    value = float(setting)
    if not value > 0:
        raise ValueError(f"training.diverge_above={setting} must be > 0, auto or null")
    return value


def final_validation_failure(val_nll: float) -> str | None:
    """Why the end-of-run validation marks a run failed, or None when it is a result.

    Only a non-finite NLL fails it: divergence shows in the training loss, which the guard
    watches every step. A finite held-out NLL above `diverge_above` with a healthy training
    loss is over-fitting (an AR model repeating 4096 tokens for 600 epochs reaches 43 nats
    on held-out text while its best validation loss came at step ~50); dropping such runs
    would hide exactly the repeated-data points a data-constrained study needs.
    """
    return None if math.isfinite(val_nll) else f"validation NLL {val_nll}"


class Diverged(RuntimeError):
    """Training diverged at `step`; `reason` says how."""

    def __init__(self, step: int, reason: str) -> None:
        self.step, self.reason = step, reason
        super().__init__(f"training diverged at step {step}: {reason}")


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of the parameters holding a NaN or an infinity."""
    return [name for name, p in module.named_parameters() if not bool(torch.isfinite(p).all())]


class DivergenceGuard(L.Callback):
    """Raises `Diverged` at the step whose loss is not finite (or above `max_loss`).

    Args:
        max_loss: a training loss above this also counts as divergence (None: only NaN/inf).
    """

    def __init__(self, max_loss: float | None = None) -> None:
        self.max_loss = None if max_loss is None else float(max_loss)
        self._step_before: int | None = None
        self._worst: float = -math.inf  # largest (or non-finite) loss of the current step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._step_before != trainer.global_step:
            self._step_before, self._worst = trainer.global_step, -math.inf

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        value = float(loss.detach()) if loss is not None else math.nan
        self._worst = value if not math.isfinite(value) else max(self._worst, value)
        if trainer.global_step == self._step_before:
            return  # mid-accumulation: decide at the step boundary
        bad = not math.isfinite(self._worst) or (
            self.max_loss is not None and self._worst * trainer.accumulate_grad_batches > self.max_loss)
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            loss_text = "not finite" if not math.isfinite(self._worst) else (
                f"{self._worst * trainer.accumulate_grad_batches:.4g} > "
                f"training.diverge_above={self.max_loss:g}")
            raise Diverged(trainer.global_step, f"train loss {loss_text}")
