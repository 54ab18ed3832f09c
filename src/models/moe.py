"""Mixture-of-experts feed-forward: token-choice top-k routing with a capacity limit.

Replaces a block's dense MLP (d -> 4d -> d, tanh-GELU) by E experts of the same shape and
a router (d -> E, no bias). Each token picks its top-k experts by router probability; its
output is the gate-weighted sum of their outputs (gates = the top-k probabilities,
renormalised to sum to 1 when k > 1, the raw probability for k = 1 as in Switch).
Each expert takes at most C = ceil(capacity_factor * N * k / E) of the N tokens of the
forward, first choices before second choices, earlier tokens first (GShard's priority);
an assignment past C is dropped (the token keeps its residual stream for that choice)
and counted. `capacity_factor=None` never drops.

Auxiliary losses, collected per forward and added to the training loss by the algo
(src/algos/base.py): the load-balancing loss of Switch (Fedus et al. 2021, eq. 4),
E * sum_e f_e P_e with f_e the fraction of the N k assignments routed to e (before the
capacity cut) and P_e the mean router probability of e; and the router z-loss of ST-MoE
(Zoph et al. 2022, eq. 5), mean_tokens logsumexp(router logits)^2.

Each (token, choice) pair writes one row of its choice's output, so the combine uses no
scatter-add: the same routing gives bitwise the same result on every run (exact resume).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class MoEConfig:
    """`model.moe`: which blocks get experts and how the auxiliary losses are weighted."""

    num_experts: int = 0  # 0 = dense
    top_k: int = 1
    every: int = 1  # experts in blocks every-1, 2 every-1, ... (1 = every block)
    capacity_factor: float | None = 1.25
    aux_loss_weight: float = 0.01
    z_loss_weight: float = 0.001

    @classmethod
    def build(cls, cfg: Mapping[str, Any] | None) -> MoEConfig:
        out = cls(**dict(cfg or {}))
        if out.num_experts < 0 or (out.num_experts == 0 and out.top_k != 1):
            raise ValueError(f"model.moe.num_experts={out.num_experts} with top_k={out.top_k}: "
                             f"use num_experts >= top_k >= 1 for experts, or num_experts=0 "
                             f"top_k=1 for the dense model")
        if out.num_experts and out.every < 1:
            raise ValueError(f"model.moe.every={out.every} must be >= 1")
        return out

    @property
    def enabled(self) -> bool:
        return self.num_experts > 0

    def in_block(self, index: int) -> bool:
        return self.enabled and (index + 1) % self.every == 0

    def layer(self, dim: int) -> MoEFeedForward:
        return MoEFeedForward(dim, self.num_experts, self.top_k, self.capacity_factor)


@dataclass
class RoutingStats:
    """One forward's auxiliary losses (scalars with gradients) and dropped fraction."""

    aux: torch.Tensor
    z: torch.Tensor
    dropped: torch.Tensor


def load_balancing_loss(probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Switch's E * sum_e f_e P_e. probs: (N, E) router probabilities; chosen: (N, k) the
    experts each token picked (f_e counts all N k assignments)."""
    n_experts = probs.shape[-1]
    counts = F.one_hot(chosen, n_experts).sum(dim=(0, 1)).to(probs.dtype)  # (E,)
    fraction = counts / chosen.numel()
    return n_experts * (fraction * probs.mean(0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's mean_tokens (logsumexp_e logits)^2."""
    return torch.logsumexp(logits, dim=-1).square().mean()


class MoEFeedForward(nn.Module):
    """See the module docstring. Experts are stacked tensors (E, ...), so parameter names
    stay few: `router.weight`, `experts_in` / `experts_in_bias`, `experts_out` /
    `experts_out_bias`."""

    def __init__(self, dim: int, num_experts: int, top_k: int, capacity_factor: float | None,
                 mlp_ratio: int = 4) -> None:
        super().__init__()
        if num_experts < 1 or not 1 <= top_k <= num_experts:
            raise ValueError(f"model.moe: need num_experts >= 1 and 1 <= top_k <= num_experts, "
                             f"got {num_experts} experts, top_k {top_k}")
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"model.moe.capacity_factor={capacity_factor} must be > 0 (or null "
                             "for no limit)")
        hidden = mlp_ratio * dim
        self.num_experts, self.top_k, self.capacity_factor = num_experts, top_k, capacity_factor
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts_in = nn.Parameter(torch.empty(num_experts, hidden, dim))
        self.experts_in_bias = nn.Parameter(torch.empty(num_experts, hidden))
        self.experts_out = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.experts_out_bias = nn.Parameter(torch.empty(num_experts, dim))
        for weight, bias, fan_in in ((self.experts_in, self.experts_in_bias, dim),
                                     (self.experts_out, self.experts_out_bias, hidden)):
            bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init, per expert
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        #: RoutingStats of the forwards since the algo last collected them.
        self.stats: list[RoutingStats] = []

    def capacity(self, n_tokens: int) -> int:
        if self.capacity_factor is None:
            return n_tokens
        return math.ceil(self.capacity_factor * n_tokens * self.top_k / self.num_experts)

    def expert(self, e: int, h: torch.Tensor) -> torch.Tensor:
        """Expert e's MLP on (n, d) rows (what the dense block's nn.Sequential computes)."""
        hidden = F.gelu(F.linear(h, self.experts_in[e], self.experts_in_bias[e]),
                        approximate="tanh")
        return F.linear(hidden, self.experts_out[e], self.experts_out_bias[e])

    def route(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor]:
        """(logits (N, E), probs (N, E) float32, chosen (N, k), gates (N, k))."""
        logits = self.router(h).float()
        probs = logits.softmax(-1)
        top, chosen = probs.topk(self.top_k, dim=-1)
        gates = top / top.sum(-1, keepdim=True) if self.top_k > 1 else top
        return logits, probs, chosen, gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        h = x.reshape(-1, shape[-1])  # (N, d)
        n = h.shape[0]
        logits, probs, chosen, gates = self.route(h)
        # Position of each (choice, token) in its expert's queue: choice-major, then token.
        order = chosen.t().reshape(-1)  # (k N,)
        onehot = F.one_hot(order, self.num_experts)
        queue = ((onehot.cumsum(0) - 1) * onehot).sum(-1)  # 0-based slot
        kept = (queue < self.capacity(n)).view(self.top_k, n)  # (k, N)
        out = torch.zeros_like(h)
        for j in range(self.top_k):
            y = torch.zeros_like(h)
            for e in range(self.num_experts):
                # Run even on zero rows: every expert stays in the graph (DDP needs a
                # gradient, zero or not, for every parameter).
                rows = torch.nonzero((chosen[:, j] == e) & kept[j]).squeeze(-1)
                y[rows] = self.expert(e, h[rows]).to(y.dtype)
            out = out + gates[:, j, None].to(h.dtype) * y
        if self.training and torch.is_grad_enabled():  # a training forward: its losses count
            dropped = 1.0 - kept.float().mean()
            self.stats.append(RoutingStats(load_balancing_loss(probs, chosen),
                                           router_z_loss(logits), dropped.detach()))
        return out.view(shape)

    def active_params(self) -> int:
        """Parameters one token uses: the router and k experts."""
        per_expert = sum(p[0].numel() for p in (self.experts_in, self.experts_in_bias,
                                                 self.experts_out, self.experts_out_bias))
        return self.router.weight.numel() + self.top_k * per_expert
