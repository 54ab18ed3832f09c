"""Decoding plans of Eso-LM samplers: which positions are decoded at which step.

A plan fixes, before any network call, the decoding order of the masked positions and
how many of them each step decodes. Diffusion steps t -> s unmask
Binomial(remaining, (alpha_s - alpha_t) / (1 - alpha_t)) positions (the MDLM reverse
posterior's unmasking probability; Eso-LM sec. 4), chosen in a random order; the
positions still masked at t = 0 (about (1 - alpha_0) of them) follow, one per step,
left to right (the sequential phase). Orders:

- ``random``: any masked position, uniformly (Eso-LM's diffusion sampler).
- ``block``: the same per-step counts, but positions are taken block by block
  (left block first, random inside a block).
- ``block_ar``: block-autoregressive (semi-AR): each block in turn runs its own
  diffusion schedule over ``steps // n_blocks`` steps.

Plans depend only on the generator, never on the network output, so a cached and an
uncached sampler given the same generator decode the same positions at the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from src.samplers.categorical import uniform64

ORDERS = ("random", "block", "block_ar")


@dataclass
class DecodePlan:
    """Attributes:
    order: (n, L) positions in decoding order (masked positions first, the rest after).
    counts: (n, S) positions each step decodes (diffusion steps, then sequential ones).
    n_diffusion_steps: S_d, the diffusion part of the S steps.
    """

    order: torch.Tensor
    counts: torch.Tensor
    n_diffusion_steps: int

    @property
    def n_steps(self) -> int:
        return self.counts.shape[1]

    def queries(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (n, W) decoded at `step`, in order, and which of the W slots are real."""
        start = self.counts[:, :step].sum(1)  # (n,)
        count = self.counts[:, step]
        width = int(count.max()) if count.numel() else 0
        slot = torch.arange(width, device=count.device)
        idx = (start[:, None] + slot).clamp_max(self.order.shape[1] - 1)
        return self.order.gather(1, idx), slot[None, :] < count[:, None]


def unmask_probs(alphas: list[float]) -> list[float]:
    """(alpha_s - alpha_t) / (1 - alpha_t) for consecutive grid points t -> s."""
    out = []
    for a_t, a_s in zip(alphas[:-1], alphas[1:]):
        out.append(min(max((a_s - a_t) / (1.0 - a_t), 0.0), 1.0) if a_t < 1.0 else 1.0)
    return out


def binomial_counts(
    remaining: torch.Tensor, probs: list[float], generator: torch.Generator | None
) -> torch.Tensor:
    """(n, S) counts: step k unmasks Binomial(still masked, probs[k]) of `remaining` (n,)."""
    src = generator.device if generator is not None else remaining.device
    left = remaining.double().to(src)  # drawn where the generator lives
    out = torch.zeros(len(left), len(probs), dtype=torch.long, device=remaining.device)
    for k, p in enumerate(probs):
        c = torch.binomial(left, torch.full_like(left, p), generator=generator)
        out[:, k] = c.long().to(remaining.device)
        left = left - c
    return out


def decode_plan(
    masked: torch.Tensor,
    alpha: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    *,
    order: str = "random",
    block_size: int = 32,
    generator: torch.Generator | None = None,
) -> DecodePlan:
    """Plan the decoding of the masked positions of (n, L) `masked`.

    Args:
        masked: (n, L) bool, positions to generate.
        alpha: the schedule alpha(t) (Eso-LM's scaled one, alpha(0) = alpha_0).
        steps: diffusion steps on the grid t = linspace(1, 0, steps + 1).
        order: one of ORDERS.
        block_size: block length of the block orders.
        generator: source of every random choice of the plan.

    Returns:
        The plan; the positions that diffusion does not decode follow left to right.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown sampler.order={order!r}: use one of {ORDERS}")
    if block_size < 1:
        raise ValueError(f"sampler.block_size={block_size} must be >= 1")
    n, length = masked.shape
    device = masked.device
    u = uniform64((n, length), generator, device)
    block = (torch.arange(length, device=device) // block_size).expand(n, length)
    n_groups = 1
    group = torch.zeros_like(block)
    key = u if order == "random" else block.double() + u  # "block": left blocks first
    if order == "block_ar":
        n_groups = -(-length // block_size)
        group, key = block, u
    # Sort by (group, key): masked positions of group 0 first, ..., others last.
    big = float(length + 2)
    sort_key = torch.where(masked, group.double() * big + key, torch.inf)
    by_key = sort_key.argsort(dim=1)  # (n, L) positions
    group_sorted = group.gather(1, by_key)
    masked_sorted = masked.gather(1, by_key)
    per_group = torch.stack([(masked & (group == g)).sum(1) for g in range(n_groups)], 1)
    group_start = per_group.cumsum(1) - per_group  # (n, G)
    group_steps = max(1, steps // n_groups)  # block_ar: every block gets its own schedule
    ts = torch.linspace(1.0, 0.0, group_steps + 1, dtype=torch.float64, device=device)
    probs = unmask_probs(alpha(ts).double().tolist())
    counts, decoded = [], torch.zeros(n, n_groups, dtype=torch.long, device=device)
    for g in range(n_groups):
        c = binomial_counts(per_group[:, g], probs, generator)
        counts.append(c)
        decoded[:, g] = c.sum(1)
    # Positions diffusion decodes: the first `decoded` of each group (in key order); the
    # others follow left to right (the sequential phase), unmasked positions last.
    rank = torch.arange(length, device=device).expand(n, length)
    within = rank - group_start.gather(1, group_sorted)
    by_diffusion = masked_sorted & (within < decoded.gather(1, group_sorted))
    final_key = torch.where(
        by_diffusion, rank.double(),
        torch.where(masked_sorted, length + by_key.double(), 3.0 * length + by_key),
    )
    final_order = by_key.gather(1, final_key.argsort(dim=1))
    diffusion_counts = torch.cat(counts, dim=1)
    remaining = masked.sum(1) - decoded.sum(1)  # (n,) decoded left to right afterwards
    tail = int(remaining.max()) if n else 0
    seq_counts = (torch.arange(tail, device=device)[None, :] < remaining[:, None]).long()
    return DecodePlan(final_order, torch.cat([diffusion_counts, seq_counts], 1),
                      diffusion_counts.shape[1])

