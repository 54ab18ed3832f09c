"""How a backbone's initialization, forward multipliers and per-tensor learning rates scale
with its width and depth, so that hyperparameters tuned on a small model transfer.

- `sp`: standard parameterization (PyTorch's default inits, one learning rate).
- `mup`: maximal update parameterization (Yang et al. 2021, "Tensor Programs V", the Adam
  column of its tables), with m_w = width / base_width:
  hidden matrices (qkv, attention out, MLP) keep the 1/fan_in init and take lr / m_w;
  embedding, norms, biases, adaLN and time-embedding weights (one or no width-sized fan-in)
  keep lr; the input embedding's init does not shrink with width; the readout sees its input
  multiplied by 1 / m_w (zero-initialized weight, lr unscaled); attention logits are scaled by
  1 / head_dim (times sqrt(base_head_dim), so that base width equals `sp`).
- `completep`: mup plus depth (Dey et al. 2025, "Don't be lazy: CompleteP", Table 1, alpha = 1)
  with m_L = n_blocks / base_depth: every residual branch is multiplied by 1 / m_L; hidden
  learning rates get m_L^(alpha - 1) = 1; AdamW's eps is multiplied by 1 / (m_w m_L) and the
  hidden matrices' decoupled weight decay by m_w (so lr x decay does not change with width).
At base width (and depth) `mup` and `completep` compute exactly what `sp` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("sp", "mup", "completep")
# Parameter roles (DiT.param_role) and which of them are the width-sized matrices.
HIDDEN = "hidden"


@dataclass(frozen=True)
class Parameterization:
    """Multipliers of one backbone shape.

    Attributes:
        kind: sp | mup | completep.
        width_mult: m_w = width / base_width.
        depth_mult: m_L = n_blocks / base_depth (completep only; 1 otherwise).
        base_head_dim: head dim whose attention scale 1/sqrt(d) is kept (mup, completep).
    """

    kind: str = "sp"
    width_mult: float = 1.0
    depth_mult: float = 1.0
    base_head_dim: float | None = None

    @classmethod
    def build(cls, kind: str, dim: int, n_blocks: int, n_heads: int, base_width: int,
              base_depth: int, base_head_dim: int | None = None) -> "Parameterization":
        if kind not in KINDS:
            raise ValueError(f"unknown model.parameterization {kind!r}: use one of {', '.join(KINDS)}")
        if kind == "sp":
            return cls()
        if base_width < 1 or base_depth < 1:
            raise ValueError(f"model.base_width={base_width} and model.base_depth={base_depth} "
                             f"must be >= 1 for parameterization={kind}")
        head = base_head_dim if base_head_dim else base_width / n_heads
        return cls(kind, dim / base_width, n_blocks / base_depth if kind == "completep" else 1.0,
                   float(head))

    @property
    def is_sp(self) -> bool:
        return self.kind == "sp"

    @property
    def residual_scale(self) -> float:
        """Multiplier of every residual branch (CompleteP: 1 / m_L)."""
        return 1.0 / self.depth_mult

    @property
    def output_scale(self) -> float:
        """Multiplier of the readout's input (muP: 1 / m_w)."""
        return 1.0 if self.is_sp else 1.0 / self.width_mult

    def attn_scale(self, head_dim: int) -> float | None:
        """Attention logit scale; None = the backends' default 1 / sqrt(head_dim)."""
        if self.is_sp:
            return None
        return math.sqrt(self.base_head_dim) / head_dim

    def embed_init_bound(self, dim: int) -> float:
        """Uniform init bound of the input embedding: PyTorch's 1/sqrt(d) under sp, fixed at
        the base width's value under mup (its coordinates stay O(1) as width grows)."""
        return 1.0 / math.sqrt(dim if self.is_sp else dim / self.width_mult)

    def lr_mult(self, role: str) -> float:
        return 1.0 / self.width_mult if role == HIDDEN and not self.is_sp else 1.0

    def weight_decay_mult(self, role: str) -> float:
        return self.width_mult if role == HIDDEN and self.kind == "completep" else 1.0

    @property
    def eps_mult(self) -> float:
        return 1.0 / (self.width_mult * self.depth_mult) if self.kind == "completep" else 1.0
