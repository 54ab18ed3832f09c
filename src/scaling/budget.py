"""FLOP budget -> number of optimizer steps, and FLOPs spent so far.

A step of global batch B sequences of T tokens costs `flops_per_token * B * T`
(`src.models.flops.flops_per_token`, any convention). The step count is truncated,
as the reference scaling repo does (`utils.flops_to_max_steps`:
int(budget / F_fwd / B / 3)), so a run never exceeds its budget: 113M, 6e18 FLOPs,
B 256, T 2048 under the `reference` convention gives 17,383 steps.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from src.algos.cost import algo_passes
from src.models.flops import flops_per_token as _flops_per_token


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def step_flops(flops_per_token: float, global_batch_size: int, seq_len: int) -> float:
    """Training FLOPs of one optimizer step over the whole global batch."""
    _positive(flops_per_token=flops_per_token, global_batch_size=global_batch_size, seq_len=seq_len)
    return flops_per_token * global_batch_size * seq_len


def steps_for_budget(
    flops_budget: float, flops_per_token: float, global_batch_size: int, seq_len: int
) -> int:
    """Largest number of whole steps whose FLOPs fit in `flops_budget`.

    floor(budget / (flops_per_token * B * T)), computed on the exact rational values
    of the floats so that a budget that is an exact multiple of the step cost is not
    lost to rounding. For the `reference` convention this equals the reference's
    int(budget / F_fwd / B / 3) (flops_per_token = 3 F_fwd / T).

    Raises:
        ValueError: a non-positive input, or a budget below one step (the message
            names the minimum budget).
    """
    _positive(flops_budget=flops_budget)
    per_step = step_flops(flops_per_token, global_batch_size, seq_len)
    steps = math.floor(
        Fraction(flops_budget) / (Fraction(flops_per_token) * global_batch_size * seq_len)
    )
    if steps < 1:
        raise ValueError(
            f"flops_budget {flops_budget:.4g} is too small for one step: the minimum budget "
            f"is {per_step:.4g} FLOPs (one step of {global_batch_size} x {seq_len} tokens "
            f"at {flops_per_token:.4g} FLOPs/token)"
        )
    return steps


def max_steps(
    flops_budget: float,
    *,
    convention: str,
    global_batch_size: int,
    seq_len: int,
    dim: int,
    n_blocks: int,
    n_heads: int,
    vocab_size: int,
    cond_dim: int = 128,
    adaln: bool = True,
    passes: Any = None,
) -> int:
    """`steps_for_budget` for a backbone shape under a named convention (`passes`: what the
    algorithm runs per sequence, `Algo.training_passes`; default one pass).

    Raises:
        ValueError: unknown convention (listing the valid ones), or a budget too small for
            one step (naming the minimum).
    """
    fpt = _flops_per_token(
        dim=dim, n_blocks=n_blocks, n_heads=n_heads, vocab_size=vocab_size, seq_len=seq_len,
        convention=convention, cond_dim=cond_dim, adaln=adaln, passes=passes,
    )
    return steps_for_budget(flops_budget, fpt, global_batch_size, seq_len)


def run_flops_per_token(cfg: Any, vocab_size: int) -> float:
    """FLOPs per training token of a run config (`cfg.flops.convention`, the model shape, the
    algorithm's passes, data.seq_len): what src.train budgets and records."""
    m, seq_len = cfg.model, int(cfg.data.seq_len)
    return _flops_per_token(
        dim=int(m.dim), n_blocks=int(m.n_blocks), n_heads=int(m.n_heads), vocab_size=vocab_size,
        seq_len=seq_len, convention=str(cfg.flops.convention), cond_dim=int(m.cond_dim),
        adaln=bool(m.adaln), passes=algo_passes(cfg.algo, seq_len), moe=m.get("moe"),
        arch=m.get("arch"),
    )


def flops_so_far(step: int, flops_per_token: float, global_batch_size: int, seq_len: int) -> float:
    """Training FLOPs spent after `step` completed optimizer steps (0 at step 0)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step * step_flops(flops_per_token, global_batch_size, seq_len)
