"""Key/value cache for causal decoding (AR sampling, Eso-LM's causal-over-permutation order)."""

from __future__ import annotations

import torch


class KVCache:
    """Preallocated per-layer keys and values, filled in the order tokens are fed.

    Tokens are appended in *feeding* order; their rotary positions are whatever the
    caller passed, so a permuted order (Eso-LM) caches exactly like left-to-right.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        head_dim: int,
        max_len: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layers, batch_size, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens committed to the cache
        self._pending = 0

    def update(
        self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, l, Dh) new keys/values for `layer`; return all keys/values so far."""
        n = k_new.shape[-2]
        end = self.length + n
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} tokens > max_len {self.max_len}")
        self.k[layer, :, :, self.length : end] = k_new.to(self.k.dtype)
        self.v[layer, :, :, self.length : end] = v_new.to(self.v.dtype)
        self._pending = n
        return self.k[layer, :, :, :end].to(k_new.dtype), self.v[layer, :, :, :end].to(v_new.dtype)

    def commit(self) -> None:
        """Advance past the tokens of the last forward pass (called once per forward)."""
        self.length += self._pending
        self._pending = 0
