"""Learning-rate multipliers: linear warmup, then cosine, constant or WSD."""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

SCHEDULES = ("cosine", "constant", "wsd")


def _multiplier(
    step: int, *, name: str, warmup_steps: int, max_steps: int, min_lr_ratio: float,
    decay_frac: float,
) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    if name == "cosine":
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    # WSD (warmup-stable-decay, Hu et al. 2024): constant, then a linear decay over the
    # last `decay_frac` of training down to min_lr_ratio.
    decay_start = max_steps - int(decay_frac * max_steps)
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
    return 1.0 - (1.0 - min_lr_ratio) * progress


def lr_lambda(
    name: str, *, warmup_steps: float, max_steps: int, min_lr_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> Callable[[int], float]:
    """A picklable step -> multiplier function for torch's LambdaLR.

    `warmup_steps` below 1 is a fraction of `max_steps` (sweeps over budgets keep the
    same warmup share whatever their length).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}: use lr_scheduler=one of {SCHEDULES}")
    if 0 < warmup_steps < 1:
        warmup_steps = round(warmup_steps * max_steps)
    return partial(
        _multiplier, name=name, warmup_steps=int(warmup_steps), max_steps=max_steps,
        min_lr_ratio=min_lr_ratio, decay_frac=decay_frac,
    )
