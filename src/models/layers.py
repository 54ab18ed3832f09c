"""Building blocks of the DiT backbone (docs/algorithms.md, "DiT backbone")."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.models.arch import Arch
from src.models.attention import attention, causal_allowed
from src.models.kv_cache import KVCache


class NormFP32(nn.Module):
    """LayerNorm (no bias) or RMSNorm with a weight gain, computed in float32 for bf16 stability.

    `gain="w"`: y = w * n(x), w initialised to 1 (the DiT); `gain="one_plus_w"`: y = (1 + w) * n(x),
    w initialised to 0 (GIDD's RMSNorm). RMSNorm: n(x) = x / sqrt(mean(x^2) + eps).
    """

    def __init__(self, dim: int, kind: str = "layernorm", gain: str = "w",
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.kind, self.gain, self.eps = kind, gain, float(eps)
        self.weight = nn.Parameter(torch.ones(dim) if gain == "w" else torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.float()
            if self.kind == "layernorm":
                n = F.layer_norm(xf, (x.shape[-1],), eps=self.eps)
            else:
                n = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
            w = self.weight.float()
            y = n * (1 + w if self.gain == "one_plus_w" else w)
        return y.to(x.dtype)


def make_norm(dim: int, arch: Arch, kind: str | None = None) -> NormFP32:
    """A norm of `arch`'s kind and gain convention (`kind` overrides the kind: QK-norm is RMS)."""
    return NormFP32(dim, kind or arch.norm, arch.norm_gain, arch.norm_eps)


class SwiGLU(nn.Module):
    """silu(gate) * up of a (..., 2h) input whose halves are [gate, up] (Shazeer 2020)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


class SquaredReLU(nn.Module):
    """relu(x)^2 (So et al. 2021, Primer; GIDD's MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


ACTIVATIONS = {"gelu": lambda: nn.GELU(approximate="tanh"), "swiglu": SwiGLU, "relu2": SquaredReLU}


def feed_forward(dim: int, arch: Arch) -> nn.Sequential:
    """Linear(d, h or 2h) -> activation -> Linear(h, d): keys mlp.0 / mlp.2 for every kind."""
    hidden = arch.hidden(dim)
    return nn.Sequential(nn.Linear(dim, arch.mlp_in_width(dim), bias=arch.mlp_bias),
                         ACTIVATIONS[arch.mlp](), nn.Linear(hidden, dim, bias=arch.mlp_bias))


def scaled(layer: nn.Linear, x: torch.Tensor, scale: float) -> torch.Tensor:
    """layer(x) with the matmul's output x `scale` before the bias (GIDD's ScaledLinear)."""
    if scale == 1.0:
        return layer(x)
    y = F.linear(x, layer.weight) * scale
    return y if layer.bias is None else y + layer.bias


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
    """Pre-norm transformer block with adaLN-Zero modulation (optional, GPT mode without).

    `arch` (src/models/arch.py) switches the norm, the feed-forward, grouped-query heads,
    QK-norm, the logit soft-cap, key/value slots and the linear / branch scales; its defaults
    are the DiT block, parameter for parameter.
    """

    def __init__(
        self, dim: int, n_heads: int, cond_dim: int | None, dropout: float,
        residual_scale: float = 1.0, attn_scale: float | None = None,
        moe: nn.Module | None = None, arch: Arch | None = None,
    ) -> None:
        super().__init__()
        arch = arch or Arch()
        if dim % n_heads or (dim // n_heads) % 2:
            raise ValueError(f"dim {dim} must split into {n_heads} heads of even size")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.n_kv_heads = arch.kv_heads(n_heads)
        self.kv_width = kv_width = arch.kv_width(dim, n_heads)
        # CompleteP's 1/m_L on every residual branch (parameterization.py) x GIDD's branch scale;
        # muP's attention scale.
        self.residual_scale = residual_scale * arch.branch_scale
        self.attn_scale, self.softcap = attn_scale, arch.attn_softcap
        self.norm1, self.norm2 = make_norm(dim, arch), make_norm(dim, arch)
        self.qkv = nn.Linear(dim, dim + 2 * kv_width, bias=False)  # rows: [q, k, v]
        self.attn_out = nn.Linear(dim, dim, bias=False)
        # The feed-forward: dense, or a mixture of experts of the same shape (src/models/moe.py).
        if moe is not None and (arch.mlp != "gelu" or arch.mlp_hidden is not None):
            raise ValueError("model.moe experts are 4d GELU MLPs: leave model.arch.mlp and "
                             "mlp_hidden at their defaults with model.moe.num_experts > 0")
        self.mlp = moe if moe is not None else feed_forward(dim, arch)
        # Output multipliers of qkv, attn_out, mlp.0, mlp.2 (GIDD's weight scaling; 1 = off).
        # (fused q/k/v: each of GIDD's three projections is d -> d, one scale for all rows).
        hidden = arch.hidden(dim)
        self.scales = (arch.scale_of(dim, dim),
                       arch.scale_of(dim, dim), arch.scale_of(dim, hidden),
                       arch.scale_of(hidden, dim))
        self.dropout = nn.Dropout(dropout)
        self.adaln = None
        if cond_dim is not None:
            # adaLN-Zero: zero-init so every block starts as the identity (DiT sec. 3.2).
            self.adaln = nn.Linear(cond_dim, 6 * dim)
            nn.init.zeros_(self.adaln.weight)
            nn.init.zeros_(self.adaln.bias)
        self.qk_norm = arch.qk_norm
        self.q_norm = self.k_norm = None
        if arch.qk_norm != "none":
            per_head = arch.qk_norm == "head"
            self.q_norm = make_norm(self.head_dim if per_head else dim, arch, kind="rmsnorm")
            self.k_norm = make_norm(self.head_dim if per_head else kv_width, arch, kind="rmsnorm")
        self.k_slot = self.v_slot = None
        if arch.kv_slots:  # GIDD's learned key/value "attention bias", zero at init
            self.k_slot = nn.Parameter(torch.zeros(self.n_kv_heads, self.head_dim))
            self.v_slot = nn.Parameter(torch.zeros(self.n_kv_heads, self.head_dim))

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
        q, k, v = scaled(self.qkv, h, self.scales[0]).split(
            [dim, self.kv_width, self.kv_width], dim=-1)
        if self.qk_norm == "all":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)
        if self.k_slot is not None:
            k, v, mask, causal = self._with_slots(k, v, q.shape[-2], mask, causal)
        if self.n_kv_heads != self.n_heads:  # grouped-query: query head j reads kv head j // g
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        a = attention(q, k, v, causal=causal, backend=backend, mask=mask, scale=self.attn_scale,
                      softcap=self.softcap)
        a = scaled(self.attn_out, a.transpose(1, 2).reshape(b, length, dim), self.scales[1])
        if self.adaln is None:
            x = x + self._branch(self.dropout(a))
            return x + self._branch(self.dropout(self._feed_forward(self.norm2(x))))
        x = x + self._branch(gate1 * self.dropout(a))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + self._branch(gate2 * self.dropout(self._feed_forward(h)))

    def _with_slots(self, k: torch.Tensor, v: torch.Tensor, n_queries: int,
                    mask: torch.Tensor | None, causal: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Keys/values with the learned slot first (no position, attended by every query) and
        the mask that says so; a causal mask becomes explicit (aligned bottom-right)."""
        b, lk = k.shape[0], k.shape[-2]
        k = torch.cat([self.k_slot.to(k.dtype)[None, :, None].expand(b, -1, 1, -1), k], dim=2)
        v = torch.cat([self.v_slot.to(v.dtype)[None, :, None].expand(b, -1, 1, -1), v], dim=2)
        allowed = causal_allowed(n_queries, lk, k.device) if causal else torch.ones(
            n_queries, lk, dtype=torch.bool, device=k.device)
        if mask is not None:
            allowed = allowed & mask
        slot = torch.ones(*allowed.shape[:-1], 1, dtype=torch.bool, device=k.device)
        return k, v, torch.cat([slot, allowed], dim=-1), False

    def _feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.scales[2:] == (1.0, 1.0) or not isinstance(self.mlp, nn.Sequential):
            return self.mlp(h)
        return scaled(self.mlp[2], self.mlp[1](scaled(self.mlp[0], h, self.scales[2])),
                      self.scales[3])

    def _branch(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.residual_scale == 1.0 else h * self.residual_scale


class FinalLayer(nn.Module):
    """Norm -> adaLN shift/scale -> Linear(d, V); zero-init so initial logits are 0.

    With `arch.tie_embeddings` the readout's weight is the input embedding, passed to
    `forward` (a bias, if any, is this layer's own `bias`)."""

    def __init__(self, dim: int, vocab_size: int, cond_dim: int | None,
                 output_scale: float = 1.0, arch: Arch | None = None) -> None:
        super().__init__()
        arch = arch or Arch()
        # muP's 1/m_w on the readout's input x GIDD's head scaling (the readout is linear).
        self.output_scale = output_scale * arch.head_scale
        self.norm = make_norm(dim, arch)
        self.linear = None if arch.tie_embeddings else nn.Linear(dim, vocab_size,
                                                                  bias=arch.head_bias)
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if (
            arch.tie_embeddings and arch.head_bias) else None
        self.adaln = nn.Linear(cond_dim, 2 * dim) if cond_dim is not None else None
        for layer in (self.linear, self.adaln):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, select: torch.Tensor | None = None,
                logit_bias: torch.Tensor | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) logits, or (N, V) for the N positions where `select` (B, L) is True;
        `logit_bias` (V,) is added to every row (e.g. -inf on a token no row may predict);
        `weight` is the tied embedding (None: this layer's own)."""
        h = self.norm(x)
        if self.adaln is not None:
            shift, scale = self.adaln(c)[:, None].chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        if select is not None:
            h = h[select]  # the readout is per position: computing only the wanted rows is exact
        if self.output_scale != 1.0:
            h = h * self.output_scale
        bias = self.bias if self.linear is None else self.linear.bias
        if logit_bias is not None:
            bias = logit_bias if bias is None else bias + logit_bias
        return F.linear(h, self.linear.weight if weight is None else weight, bias)
