"""An independent forward of the reference DiT (kuleshov-group/mdlm `models/dit.py`, DUO and
scaling-dllms share it), written from its description over its own state-dict keys: the
oracle the import is checked against. Inference only (no dropout), plain SDPA attention
standing in for flash_attn_varlen_qkvpacked_func (bidirectional, one sequence per row)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _layer_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x.float(), [x.shape[-1]]) * weight[None, None, :]


def _timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def _linear(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def reference_forward(sd: dict[str, torch.Tensor], indices: torch.Tensor, sigma: torch.Tensor,
                      n_heads: int) -> torch.Tensor:
    """DIT.forward(indices, sigma) of the reference, on its state dict `sd`."""
    x = sd["vocab_embed.embedding"][indices]
    c = F.silu(_linear(F.silu(_linear(_timestep_embedding(sigma), sd, "sigma_map.mlp.0")),
                       sd, "sigma_map.mlp.2"))
    b, s, d = x.shape
    head = d // n_heads
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, head, 2).float() / head))
    freqs = torch.einsum("i,j->ij", torch.arange(s).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(n_blocks):
        p = f"blocks.{i}"
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            _linear(c, sd, f"{p}.adaLN_modulation")[:, None].chunk(6, dim=2)
        h = _layer_norm(x, sd[f"{p}.norm1.weight"]) * (1 + scale_msa) + shift_msa
        qkv = _linear(h, sd, f"{p}.attn_qkv").view(b, s, 3, n_heads, head)
        q, k, v = qkv.unbind(2)  # (b, s, h, d)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2))
        x = x + gate_msa * _linear(att.transpose(1, 2).reshape(b, s, d), sd, f"{p}.attn_out")
        h = _layer_norm(x, sd[f"{p}.norm2.weight"]) * (1 + scale_mlp) + shift_mlp
        h = _linear(F.gelu(_linear(h, sd, f"{p}.mlp.0"), approximate="tanh"), sd, f"{p}.mlp.2")
        x = x + gate_mlp * h
    shift, scale = _linear(c, sd, "output_layer.adaLN_modulation")[:, None].chunk(2, dim=2)
    x = _layer_norm(x, sd["output_layer.norm_final.weight"]) * (1 + scale) + shift
    return _linear(x, sd, "output_layer.linear")
