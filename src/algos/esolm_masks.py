"""Orders and attention masks of Eso-LM (B) (Sahoo et al. 2025, "Esoteric Language Models").

Eso-LM (B) attends causally over a *permuted* order in which clean tokens come first,
then masked ones. Rotary positions follow the tokens (their true positions), so the
model knows where each token sits whatever the feeding order, and the keys/values of
a token never depend on tokens fed after it: that is what makes KV caching exact.
"""

from __future__ import annotations

import torch


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """(B, L) permutations -> their inverses: inv[b, perm[b, i]] = i."""
    ar = torch.arange(perm.shape[-1], device=perm.device).expand_as(perm)
    return torch.empty_like(perm).scatter_(-1, perm, ar)


def clean_first_order(masked: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L) feeding order of the diffusion branch: clean positions first, then masked.

    Args:
        masked: (B, L) bool, True where z_t is [MASK].
        u: (B, L) uniforms in [0, 1) giving the random order inside each group; None
            keeps both groups left to right (a deterministic order, e.g. for evaluation
            with MDLM's samplers).

    Returns:
        (B, L) int64 positions in feeding order (a permutation per row).
    """
    if u is None:
        length = masked.shape[-1]
        u = torch.arange(length, device=masked.device, dtype=torch.float64) / length
        u = u.expand(masked.shape)
    # Keys in [0, 1) for clean and [2, 3) for masked tokens: one sort gives both groups.
    return torch.argsort(masked.to(u.dtype) * 2 + u, dim=-1)


def sequential_ranks(masked0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, L) rank of every position in the sequential branch's order.

    Clean tokens of z_0 come first in random order (the order in which diffusion
    decoded them is random too), then the positions still masked at t = 0 from left to
    right, the order in which the sampler's sequential phase decodes them.
    """
    length = masked0.shape[-1]
    pos = torch.arange(length, device=masked0.device, dtype=u.dtype) / length
    key = torch.where(masked0, 2 + pos, u)
    return invert_permutation(torch.argsort(key, dim=-1))


def sequential_attention_mask(masked0: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Bool mask (B, 1, 2L, 2L) of the sequential branch on the input [z_0 ; x].

    Queries/keys 0..L-1 are z_0, L..2L-1 are x (both at rotary positions 0..L-1).
    - x^j attends to x^k with rank(k) <= rank(j): causal over the sorted order, so the
      keys/values of x equal those the sampler caches for decoded tokens.
    - a masked z_0^i attends to itself (it carries the position to predict) and to x^k
      with rank(k) < rank(i): every clean token and the masked positions left of i,
      so its output models p(x^i | x_{clean}, x_{masked, < i}) (Eso-LM eq. for L_AR).
    - a clean z_0^i only attends to itself (its output is not used).
    True = attend (the backbone's convention).
    """
    b, length = masked0.shape
    eye = torch.eye(length, dtype=torch.bool, device=masked0.device).expand(b, length, length)
    before = rank[:, None, :] < rank[:, :, None]  # (B, Lq, Lk): key sorted before query
    z_to_x = before & masked0[:, :, None]
    x_to_x = before | eye
    top = torch.cat([eye, z_to_x], dim=-1)
    bottom = torch.cat([torch.zeros_like(eye), x_to_x], dim=-1)
    return torch.cat([top, bottom], dim=1)[:, None]


def branch_rows(batch_size: int, fraction: float, device: torch.device) -> torch.Tensor:
    """(B,) bool: rows that run the diffusion branch, spread evenly over the batch.

    Row i is chosen when floor((i + 1) f) > floor(i f) (a Bresenham pattern), so the
    floor(B f) chosen rows interleave with the others and keep the stratified times
    of the whole batch well spread (a contiguous block would take one arc of t only).
    """
    i = torch.arange(batch_size, device=device, dtype=torch.float64)
    return torch.floor((i + 1) * fraction) > torch.floor(i * fraction)
