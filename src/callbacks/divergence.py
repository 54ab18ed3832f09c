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
    """Raises `Diverged` at the step whose loss is not finite, or once the loss has stayed
    above `max_loss` for `patience` optimizer steps in a row.

    One step above the threshold is not divergence for a Monte-Carlo loss: MDLM's per-batch
    NELBO weights a token by 1/t (ALGORITHMS.md, the continuous-time ELBO), so a small batch
    that draws a tiny t can read 4x its mean at initialization (measured: 24.2 nats against
    a 22.2 threshold at step 28 of a 4-sequence byte MDLM that trains normally). A diverging
    run stays above it. While a streak lasts, StepCheckpoint skips its periodic saves, so
    the checkpoints kept are from before it.

    Args:
        max_loss: a training loss above this also counts as divergence (None: only NaN/inf).
        patience: consecutive optimizer steps above `max_loss` that fail the run (>= 1).
    """

    def __init__(self, max_loss: float | None = None, patience: int = 1) -> None:
        if int(patience) < 1:
            raise ValueError(f"training.diverge_patience={patience} must be >= 1")
        self.max_loss = None if max_loss is None else float(max_loss)
        self.patience = int(patience)
        self.streak = 0  # consecutive steps above max_loss, up to the last finished one
        self._first: tuple[int, float] | None = None  # (step, loss) where the streak began
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
        step_loss = self._worst * trainer.accumulate_grad_batches  # Lightning divides it
        finite = math.isfinite(self._worst)
        above = self.max_loss is not None and step_loss > self.max_loss
        reduce = trainer.strategy.reduce_boolean_decision
        # One collective per healthy step; every rank takes the same branch.
        if not reduce(above or not finite, all=False):
            self.streak, self._first = 0, None
            return
        if reduce(not finite, all=False):
            raise Diverged(trainer.global_step, "train loss not finite")
        self.streak += 1
        if self._first is None:
            self._first = (trainer.global_step, step_loss)
        if self.streak >= self.patience:
            step, first = self._first
            run = f" and above it for {self.streak} steps in a row" if self.patience > 1 else ""
            raise Diverged(step, f"train loss {first:.4g} > training.diverge_above="
                                 f"{self.max_loss:g}{run}")

    def state_dict(self) -> dict[str, Any]:
        """The streak travels with a checkpoint: a resumed run fails where an uninterrupted
        one would."""
        return {"streak": self.streak, "first": self._first}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.streak = int(state_dict.get("streak", 0))
        first = state_dict.get("first")
        self._first = None if first is None else (int(first[0]), float(first[1]))
