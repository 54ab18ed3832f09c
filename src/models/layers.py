"""Building blocks of the DiT backbone (docs/algorithms.md, "DiT backbone")."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.models.attention import attention
from src.models.kv_cache import KVCache


class LayerNormFP32(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32 for bf16 stability."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.layer_norm(x.float(), (x.shape[-1],)) * self.weight.float()
        return y.to(x.dtype)


class TimestepEmbedder(nn.Module):
    """sigma -> 256 sinusoidal features -> Linear -> SiLU -> Linear (DiT, Peebles & Xie 2023)."""

    def __init__(self, cond_dim: int, freq_dim: int = 256, max_period: float = 1e4) -> None:
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim)
        )

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(
            -math.log(self.max_period) * torch.arange(half, device=sigma.device) / half
        )
        args = sigma.float()[:, None] * freqs[None]  # (B, half)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def rotary_tables(
    positions: torch.Tensor, head_dim: int, base: float = 1e4
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary embeddings (RoFormer, Su et al. 2021), half-split layout.

    Args:
        positions: (L,) or (B, L) integer positions; they follow the tokens, so a
            permuted order (Eso-LM) or a KV-cache offset is just other positions.

    Returns:
        cos, sin of shape (L, Dh) or (B, 1, L, Dh), float32.
    """
    inv_freq = 1.0 / base ** (
        torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.float()[..., None] * inv_freq  # (..., L, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., L, Dh)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B, 1, L, Dh): broadcast over heads
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, L, Dh) by the tables; computed in float32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation (optional, GPT mode without)."""

    def __init__(
        self, dim: int, n_heads: int, cond_dim: int | None, dropout: float, mlp_ratio: int = 4,
        residual_scale: float = 1.0, attn_scale: float | None = None,
        moe: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if dim % n_heads or (dim // n_heads) % 2:
            raise ValueError(f"dim {dim} must split into {n_heads} heads of even size")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        # CompleteP's 1/m_L on every residual branch, muP's attention scale (parameterization.py).
        self.residual_scale, self.attn_scale = residual_scale, attn_scale
        self.norm1, self.norm2 = LayerNormFP32(dim), LayerNormFP32(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        # The feed-forward: dense, or a mixture of experts of the same shape (src/models/moe.py).
        self.mlp = moe if moe is not None else nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * dim, dim),
        )
        self.dropout = nn.Dropout(dropout)
        self.adaln = None
        if cond_dim is not None:
            # adaLN-Zero: zero-init so every block starts as the identity (DiT sec. 3.2).
            self.adaln = nn.Linear(cond_dim, 6 * dim)
            nn.init.zeros_(self.adaln.weight)
            nn.init.zeros_(self.adaln.bias)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor],
        *,
        causal: bool,
        backend: str,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        b, length, dim = x.shape
        if self.adaln is not None:
            mods = self.adaln(c)[:, None].chunk(6, dim=-1)  # 6 x (B, 1, D)
            shift1, scale1, gate1, shift2, scale2, gate2 = mods
            h = modulate(self.norm1(x), shift1, scale1)
        else:
            h = self.norm1(x)
        qkv = self.qkv(h).view(b, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, Dh)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)
        a = attention(q, k, v, causal=causal, backend=backend, mask=mask, scale=self.attn_scale)
        a = self.attn_out(a.transpose(1, 2).reshape(b, length, dim))
        if self.adaln is None:
            x = x + self._branch(self.dropout(a))
            return x + self._branch(self.dropout(self.mlp(self.norm2(x))))
        x = x + self._branch(gate1 * self.dropout(a))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + self._branch(gate2 * self.dropout(self.mlp(h)))

    def _branch(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.residual_scale == 1.0 else h * self.residual_scale


class FinalLayer(nn.Module):
    """LayerNorm -> adaLN shift/scale -> Linear(d, V); zero-init so initial logits are 0."""

    def __init__(self, dim: int, vocab_size: int, cond_dim: int | None,
                 output_scale: float = 1.0) -> None:
        super().__init__()
        self.output_scale = output_scale  # muP's 1/m_w on the readout's input
        self.norm = LayerNormFP32(dim)
        self.linear = nn.Linear(dim, vocab_size)
        self.adaln = nn.Linear(cond_dim, 2 * dim) if cond_dim is not None else None
        for layer in (self.linear, self.adaln):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, select: torch.Tensor | None = None,
                logit_bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) logits, or (N, V) for the N positions where `select` (B, L) is True;
        `logit_bias` (V,) is added to every row (e.g. -inf on a token no row may predict)."""
        h = self.norm(x)
        if self.adaln is not None:
            shift, scale = self.adaln(c)[:, None].chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        if select is not None:
            h = h[select]  # the readout is per position: computing only the wanted rows is exact
        if self.output_scale != 1.0:
            h = h * self.output_scale
        bias = self.linear.bias if logit_bias is None else self.linear.bias + logit_bias
        return F.linear(h, self.linear.weight, bias)
