"""What makes an AR export a standard transformers causal LM: padding-aware positions and
masks, and the backbone's KV-cache interface over a transformers `Cache`.

`GenerationMixin.generate` (greedy, sampling, beams, stopping criteria: what lm-eval's `hf`
model calls) feeds a left-padded batch with an `attention_mask` and a `DynamicCache`, then
one token per step. The backbone attends through a bool mask and extends a cache with
`update(layer, k, v)` / `commit()` / `length` (src/models/kv_cache.py); `CacheView` gives it
that interface over the transformers cache, whose per-layer `update` has the same contract.
"""

from __future__ import annotations

import torch

from src.models.attention import causal_allowed


class CacheView:
    """The backbone's KV-cache interface over a transformers `Cache` (keys and values are
    (B, H_kv, L, Dh) in both); transformers counts the tokens itself, so `commit` is empty."""

    def __init__(self, cache: object) -> None:
        self.cache = cache
        self.length = int(cache.get_seq_length())  # type: ignore[attr-defined]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(k, v, layer)  # type: ignore[attr-defined]

    def commit(self) -> None:
        """Nothing to do: the transformers cache grew in `update`."""


def padded_positions(attention_mask: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L) rotary positions of the last `length` tokens of a (B, L_total) 0/1 mask: each
    row counts its own real tokens from 0, so a left-padded prompt sits where an unpadded one
    would (padding gets position 0; its output is never used)."""
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return positions[:, -length:]


def causal_padding_mask(attention_mask: torch.Tensor, n_queries: int) -> torch.Tensor:
    """(B, 1, Lq, Lk) bool: query i attends key j when j <= its own position (the queries are
    the last Lq of the Lk keys) and key j is not padding. A padding query that would see no
    key sees its row's keys instead (no empty softmax, so no NaN that could reach the real
    tokens through a 0 x NaN product; its own output is never read)."""
    causal = causal_allowed(n_queries, attention_mask.shape[-1], attention_mask.device)
    allowed = causal[None, None] & attention_mask.bool()[:, None, None, :]
    empty = ~allowed.any(dim=-1, keepdim=True)
    return allowed | empty
