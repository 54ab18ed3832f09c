"""The scaling-dllms reference DiT (s-sahoo/scaling-dllms `models/dit.py`) as it trains, for
scripts/bench_reference.py: re-written here from reading it, op for op where speed depends
on it, never imported from it.

What the reference does per block, and so does this module:
- a LayerNorm that upcasts to fp32 and returns fp32 (then `x * weight`);
- adaLN modulation through a TorchScript function, residual adds through TorchScript
  `residual + gate * dropout(x)` (the reference turns on TorchScript's CPU fuser);
- qkv through `einops.rearrange(... 'b s (three h d) -> b s three h d').contiguous()`;
- rotary tables cached as (1, L, 3, 1, Dh) and sliced to half, re-expanded by einops per call;
- attention through `torch.compile(flex_attention, dynamic=True)` with no block mask
  (bidirectional), inputs made contiguous in (B, H, L, Dh) and rearranged back;
- the optimizer is torch.optim.AdamW with its defaults (the per-parameter loop on CPU).
Inference-only paths (KV caches, Eso-LM masks, label embeddings) are left out.
"""

from __future__ import annotations

import math
from typing import Optional

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F

# The reference sets these at import time (module level of models/dit.py).
torch._C._jit_set_profiling_mode(False)
torch._C._jit_set_profiling_executor(False)
torch._C._jit_override_can_fuse_on_cpu(True)


@torch.jit.script
def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


@torch.jit.script
def _gated_residual_train(x: torch.Tensor, scale: torch.Tensor,
                          residual: Optional[torch.Tensor], prob: float) -> torch.Tensor:
    out = scale * F.dropout(x, p=prob, training=True)
    if residual is not None:
        out = residual + out
    return out


_flex = None


def flex_attention_fn():
    """The reference's attention kernel: flex_attention compiled with dynamic shapes."""
    global _flex
    if _flex is None:
        from torch.nn.attention.flex_attention import flex_attention
        _flex = torch.compile(flex_attention, dynamic=True)
    return _flex


class RefLayerNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.amp.autocast("cuda", enabled=False):  # only CUDA autocast is switched off
            x = F.layer_norm(x.float(), [self.dim])
        return x * self.weight[None, None, :]


class RefRotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10_000) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float()
                                                        / head_dim))
        self.cached: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = x.shape[1]
        if self.cached is None or self.cached[0] != length:
            t = torch.arange(length, device=x.device).type_as(self.inv_freq)
            emb = torch.cat([torch.outer(t, self.inv_freq)] * 2, dim=-1)
            cos = emb.cos()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
            sin = emb.sin()[None, :, None, None, :].repeat(1, 1, 3, 1, 1)
            cos[:, :, 2], sin[:, :, 2] = 1.0, 0.0  # identity on v
            self.cached = (length, cos, sin)
        return self.cached[1], self.cached[2]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    cos = einops.repeat(cos, "... d -> ... 1 (2 d)")
    sin = einops.repeat(sin, "... d -> ... 1 (2 d)")
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def _split_rotary(qkv: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
    with torch.amp.autocast("cuda", enabled=False):
        cos, sin = (r.to(qkv.dtype) for r in rope)
        cos = cos[0, :, 0, 0, : cos.shape[-1] // 2]
        sin = sin[0, :, 0, 0, : sin.shape[-1] // 2]
        q, k, v = qkv.chunk(3, dim=2)
        return _rotate(q.squeeze(2), cos, sin), _rotate(k.squeeze(2), cos, sin), v.squeeze(2)


class RefBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, cond_dim: int, dropout: float,
                 attention: str) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.attention = n_heads, dropout, attention
        self.norm1, self.norm2 = RefLayerNorm(dim), RefLayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        if self.attention == "flex":
            out = flex_attention_fn()(q, k, v, block_mask=None)
        else:  # SDPA stands in where flex attention cannot compile (reported by the bench)
            out = F.scaled_dot_product_attention(q, k, v)
        return einops.rearrange(out.transpose(1, 2).contiguous(), "b s h d -> b s (h d)")

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                c: torch.Tensor) -> torch.Tensor:
        skip = x
        shift1, scale1, gate1, shift2, scale2, gate2 = \
            self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        h = _modulate(self.norm1(x), shift1, scale1)
        qkv = einops.rearrange(self.attn_qkv(h), "b s (three h d) -> b s three h d", three=3,
                               h=self.n_heads).contiguous()
        q, k, v = _split_rotary(qkv, rope)
        x = _gated_residual_train(self.attn_out(self._attend(q, k, v)), gate1, skip,
                                  self.dropout)
        h = _modulate(self.norm2(x), shift2, scale2)
        return _gated_residual_train(self.mlp(h), gate2, x, self.dropout)


class RefTimestep(nn.Module):
    def __init__(self, cond_dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(),
                                 nn.Linear(cond_dim, cond_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class ReferenceDiT(nn.Module):
    """forward(ids, sigma) -> (B, L, V) logits, as the reference's DIT (adaLN, bidirectional)."""

    def __init__(self, vocab_size: int, dim: int, n_blocks: int, n_heads: int,
                 cond_dim: int = 128, dropout: float = 0.0, attention: str = "flex") -> None:
        super().__init__()
        self.vocab_embed = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.vocab_embed, a=math.sqrt(5))
        self.sigma_map = RefTimestep(cond_dim)
        self.rotary = RefRotary(dim // n_heads)
        self.blocks = nn.ModuleList(RefBlock(dim, n_heads, cond_dim, dropout, attention)
                                    for _ in range(n_blocks))
        self.norm_final = RefLayerNorm(dim)
        self.final_adaLN = nn.Linear(cond_dim, 2 * dim)
        self.linear = nn.Linear(dim, vocab_size)
        for layer in (self.final_adaLN, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, ids: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = self.vocab_embed[ids]
        c = F.silu(self.sigma_map(sigma))
        rope = self.rotary(x)
        with torch.amp.autocast("cuda", dtype=torch.bfloat16):  # a no-op on CPU, as there
            for block in self.blocks:
                x = block(x, rope, c)
            shift, scale = self.final_adaLN(c)[:, None].chunk(2, dim=2)
            return self.linear(_modulate(self.norm_final(x), shift, scale))


def reference_mdlm_loss(model: ReferenceDiT, x0: torch.Tensor, mask_id: int,
                        generator: torch.Generator, eps: float = 1e-3) -> torch.Tensor:
    """The reference MDLM training loss (log-linear schedule, SUBS): mask with prob t, score
    masked tokens with -log p(x0) / t (its `_process_model_output` + `nll_per_token`)."""
    b = x0.shape[0]
    t = (1 - eps) * torch.rand(b, device=x0.device, generator=generator) + eps
    sigma = -torch.log1p(-(1 - eps) * t)
    move = torch.rand(x0.shape, device=x0.device, generator=generator) < t[:, None]
    xt = torch.where(move, mask_id, x0)
    logits = model(xt, sigma)
    logits[:, :, mask_id] = -1e6
    log_p = logits.log_softmax(-1)
    nll = -log_p.gather(-1, x0[..., None]).squeeze(-1)
    return (nll * move / t[:, None]).sum() / x0.numel()
