"""The shared DiT/GPT backbone. It knows nothing about algorithms or configs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.models.arch import Arch
from src.models.attention import resolve_backend
from src.models.kv_cache import KVCache
from src.models.layers import DiTBlock, FinalLayer, TimestepEmbedder, rotary_tables
from src.models.moe import MoEConfig, MoEFeedForward
from src.models.parameterization import HIDDEN, Parameterization

HIDDEN_WEIGHTS = ("qkv.weight", "attn_out.weight", "mlp.0.weight", "mlp.2.weight",
                  "mlp.router.weight", "mlp.experts_in", "mlp.experts_out")


class DiT(nn.Module):
    """Diffusion transformer (adaLN-Zero, rotary, untied embeddings) with a causal/GPT mode.

    With `adaln=True` the parameter count is
    P = 2 V d + V + n (12 d^2 + 781 d) + 259 d + 49408 at cond_dim 128 (docs/algorithms.md);
    AR keeps these layers by default so its size matches the diffusion models,
    `adaln=False` gives a plain GPT block. `arch` (src/models/arch.py) holds the switches
    that give the published GIDD and MegaDLMs networks; its defaults are this DiT.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        n_blocks: int,
        n_heads: int,
        cond_dim: int = 128,
        max_seq_len: int = 2048,
        dropout: float = 0.0,
        adaln: bool = True,
        attn_backend: str = "auto",
        parameterization: str = "sp",
        base_width: int = 256,
        base_depth: int = 4,
        base_head_dim: int | None = None,
        moe: Mapping[str, Any] | None = None,
        arch: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.n_blocks, self.n_heads = vocab_size, dim, n_blocks, n_heads
        self.max_seq_len = max_seq_len
        self.attn_backend = attn_backend
        self.parameterization = Parameterization.build(
            parameterization, dim, n_blocks, n_heads, base_width, base_depth, base_head_dim)
        p13n = self.parameterization
        cond = cond_dim if adaln else None
        self.embed = nn.Parameter(torch.empty(vocab_size, dim))
        if p13n.is_sp:
            nn.init.kaiming_uniform_(self.embed, a=math.sqrt(5))  # bound 1/sqrt(dim)
        else:
            bound = p13n.embed_init_bound(dim)
            nn.init.uniform_(self.embed, -bound, bound)
        self.sigma_embed = TimestepEmbedder(cond_dim) if adaln else None
        self.moe = MoEConfig.build(moe)
        self.arch = Arch.build(arch)
        self.blocks = nn.ModuleList(
            DiTBlock(dim, n_heads, cond, dropout, residual_scale=p13n.residual_scale,
                     attn_scale=p13n.attn_scale(dim // n_heads),
                     moe=self.moe.layer(dim) if self.moe.in_block(i) else None, arch=self.arch)
            for i in range(n_blocks)
        )
        self.final = FinalLayer(dim, vocab_size, cond, output_scale=p13n.output_scale,
                                arch=self.arch)

    def param_role(self, name: str) -> str:
        """What a parameter is to the parameterization: `hidden` (width x width matrices of
        the blocks), `embedding`, `output` (readout weight) or `vector` (the rest: norms,
        biases, adaLN and time-embedding weights, whose fan-in is not the width)."""
        if name == "embed":
            return "embedding"
        if name == "final.linear.weight":
            return "output"
        if name.startswith("blocks.") and name.endswith(HIDDEN_WEIGHTS):
            return HIDDEN
        return "vector"

    def moe_losses(self) -> dict[str, torch.Tensor] | None:
        """The weighted auxiliary loss of the MoE training forwards since the last call, with
        its parts (load balance, z-loss, dropped fraction), or None for a dense model.
        Collecting clears them."""
        layers = [b.mlp for b in self.blocks if isinstance(b.mlp, MoEFeedForward)]
        stats = [s for layer in layers for s in layer.stats]
        for layer in layers:
            layer.stats = []
        if not stats:
            return None
        aux = torch.stack([s.aux for s in stats]).sum()
        z = torch.stack([s.z for s in stats]).sum()
        return {"loss": self.moe.aux_loss_weight * aux + self.moe.z_loss_weight * z,
                "aux": aux.detach(), "z": z.detach(),
                "dropped": torch.stack([s.dropped for s in stats]).mean()}

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def new_kv_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        return KVCache(
            self.n_blocks, batch_size, self.arch.kv_heads(self.n_heads), self.head_dim, max_len,
            device=self.embed.device, dtype=dtype or self.embed.dtype,
        )

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | None = None,
        *,
        causal: bool = False,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        commit: bool = True,
        select: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for every position.

        Args:
            x: (B, L) token ids, or (B, L, V) probabilities (soft one-hots, DUO curriculum).
            sigma: (B,) noise level fed to the time embedding; None means 0.
            causal: causal attention (AR); with a KV cache the new tokens attend to the cache.
            positions: (L,) or (B, L) rotary positions; default 0..L-1 (offset by the cache).
            attn_mask: optional bool (B, 1|H, L, L_total) mask, True = attend (custom orders).
            kv_cache: cache to read and extend; `commit=False` reads without keeping the new KVs.
            select: optional (B, L) bool: return logits only at these positions (a loss that
                scores a subset skips the readout and softmax of the rest).
            logit_bias: optional (V,) added to the readout's bias (e.g. -inf on [MASK]).

        Returns:
            (B, L, V) logits, or (N, V) at the N selected positions in row-major order
            (float32 unless run under autocast).
        """
        b, length = x.shape[:2]
        start = kv_cache.length if kv_cache is not None else 0
        if start + length > self.max_seq_len:
            raise ValueError(
                f"sequence of {start + length} tokens exceeds the model's max_seq_len "
                f"{self.max_seq_len}: lower data.seq_len or raise model.max_seq_len"
            )
        h = x @ self.embed if x.is_floating_point() else F.embedding(x, self.embed)  # (B, L, D)
        c = None
        if self.sigma_embed is not None:
            if sigma is None:
                sigma = torch.zeros(b, device=h.device)
            c = F.silu(self.sigma_embed(sigma))  # (B, cond_dim)
        if positions is None:
            positions = torch.arange(start, start + length, device=h.device)
        rope = rotary_tables(positions, self.head_dim, self.arch.rope_base)
        backend = resolve_backend(self.attn_backend, h.device.type)
        for i, block in enumerate(self.blocks):
            h = block(
                h, c, rope, causal=causal, backend=backend, mask=attn_mask,
                kv_cache=kv_cache, layer=i,
            )
        if kv_cache is not None and commit:
            kv_cache.commit()
        tied = self.embed if self.arch.tie_embeddings else None
        return self.final(h, c, select, logit_bias, weight=tied)


def count_params(model: nn.Module) -> dict[str, int]:
    """Total and non-embedding parameters (non-embedding excludes the input embedding
    and the output head, the Kaplan et al. 2020 convention)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = 0
    if isinstance(model, DiT):  # the head: its own weight (+ bias), or a tied one's bias
        head = model.final.linear.parameters() if model.final.linear is not None else (
            [model.final.bias] if model.final.bias is not None else [])
        embedding = model.embed.numel() + sum(p.numel() for p in head)
    return {"params": total, "non_embedding_params": total - embedding}
