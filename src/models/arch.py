"""Architecture switches of the shared backbone (`model.arch`): what separates the published
diffusion LMs' networks from the DiT, as options of one backbone (docs/algorithms.md,
"Architecture options").

The defaults are the DiT exactly (LayerNorm with a weight, tanh-GELU MLP of 4d with biases,
full multi-head attention, RoPE base 10^4, a biased untied readout): a config without
`model.arch` builds the same parameters, computes the same function and counts the same
FLOPs as before these options existed. Named configs set them for each published shape
(configs/model/gidd_*.yaml: GIDD, von Ruette et al. 2025; configs/model/megadlm_*.yaml: the
Qwen/Llama-style decoder of Super Data Learners / MegaDLMs, Ni et al. 2025).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

NORMS = ("layernorm", "rmsnorm")
GAINS = ("w", "one_plus_w")  # y = w * norm(x) | (1 + w) * norm(x), w initialised to 0 (GIDD)
MLPS = ("gelu", "swiglu", "relu2")
QK_NORMS = ("none", "head", "all")  # per head (Qwen3 / MegaDLMs) | over all heads (GIDD)


@dataclass(frozen=True)
class Arch:
    """The backbone's architecture options (`model.arch` in configs/model/_dit.yaml).

    Attributes:
        norm: every norm's kind (block pre-norms, the final norm, QK-norm is always RMS).
        norm_gain: `w` (y = w n(x), w = 1 at init) or `one_plus_w` (y = (1 + w) n(x), w = 0).
        norm_eps: epsilon inside every norm.
        mlp: `gelu` (tanh GELU), `swiglu` (down(silu(gate) * up)), `relu2` (squared ReLU).
        mlp_hidden: the feed-forward's inner width; None = 4 x dim.
        mlp_bias: biases on the feed-forward's linear layers.
        n_kv_heads: key/value heads (grouped-query attention); None = n_heads.
        qk_norm: RMS-normalise queries and keys before RoPE: per head, over all heads, none.
        attn_softcap: logits -> cap * tanh(logits / cap) before the softmax; None = off.
        rope_base: RoPE's base theta.
        kv_slots: one learned key and value per head that every query attends (GIDD's
            "attention bias"): a sink without a position.
        linear_scale: every block linear's output x this (`fan_in` = in_features^-1/2,
            `fan_out` = out_features^-1/2: GIDD's weight scaling; None = 1), added before
            the bias.
        branch_scale: every residual branch x this (GIDD: resid_scale / n_blocks).
        head_bias: a bias on the readout.
        head_scale: the readout x this (GIDD's head_scaling).
        tie_embeddings: the readout's weight is the input embedding.
    """

    norm: str = "layernorm"
    norm_gain: str = "w"
    norm_eps: float = 1e-5
    mlp: str = "gelu"
    mlp_hidden: int | None = None
    mlp_bias: bool = True
    n_kv_heads: int | None = None
    qk_norm: str = "none"
    attn_softcap: float | None = None
    rope_base: float = 10_000.0
    kv_slots: bool = False
    linear_scale: float | str | None = None
    branch_scale: float = 1.0
    head_bias: bool = True
    head_scale: float = 1.0
    tie_embeddings: bool = False

    @classmethod
    def build(cls, options: Mapping[str, Any] | Arch | None) -> Arch:
        """An Arch from `model.arch` (None = the DiT's defaults).

        Raises:
            ValueError: an unknown key or an invalid value, in one line naming it.
        """
        if isinstance(options, Arch):
            return options
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown model.arch option(s) {unknown}: valid are {sorted(known)}")
        arch = cls(**options)
        arch._check()
        return arch

    def _check(self) -> None:
        for name, value, valid in (("norm", self.norm, NORMS), ("norm_gain", self.norm_gain, GAINS),
                                   ("mlp", self.mlp, MLPS), ("qk_norm", self.qk_norm, QK_NORMS)):
            if value not in valid:
                raise ValueError(f"model.arch.{name}={value!r}: one of {', '.join(valid)}")
        if not (self.linear_scale is None or isinstance(self.linear_scale, (int, float))
                or self.linear_scale in ("fan_in", "fan_out")):
            raise ValueError(f"model.arch.linear_scale={self.linear_scale!r}: a number, fan_in "
                             f"or fan_out")
        if self.linear_scale == "fan_out" and self.n_kv_heads is not None:
            raise ValueError("model.arch.linear_scale=fan_out scales q, k and v alike: it needs "
                             "n_kv_heads=null (GIDD has no grouped-query heads)")
        if self.attn_softcap is not None and not float(self.attn_softcap) > 0:
            raise ValueError(f"model.arch.attn_softcap={self.attn_softcap}: a positive cap or null")

    @property
    def is_default(self) -> bool:
        return self == Arch()

    def hidden(self, dim: int) -> int:
        """The feed-forward's inner width."""
        return 4 * dim if self.mlp_hidden is None else int(self.mlp_hidden)

    def kv_heads(self, n_heads: int) -> int:
        """Key/value heads; raises when they do not divide the query heads."""
        kv = n_heads if self.n_kv_heads is None else int(self.n_kv_heads)
        if kv < 1 or n_heads % kv:
            raise ValueError(f"model.arch.n_kv_heads={kv} must divide model.n_heads={n_heads}")
        return kv

    def kv_width(self, dim: int, n_heads: int | None) -> int:
        """Rows of the key (or value) projection: key/value heads x head dim. The shape
        helpers of src/models/flops.py may leave out `n_heads` only for the DiT's defaults
        (then it is `dim`)."""
        if n_heads is None:
            if not self.is_default:
                raise ValueError("counting a backbone with model.arch options needs n_heads")
            return dim
        return self.kv_heads(n_heads) * (dim // n_heads)

    def scale_of(self, in_features: int, out_features: int) -> float:
        """The output multiplier of a block linear of that shape."""
        if self.linear_scale == "fan_in":
            return in_features ** -0.5
        if self.linear_scale == "fan_out":
            return out_features ** -0.5
        return 1.0 if self.linear_scale is None else float(self.linear_scale)

    def mlp_in_width(self, dim: int) -> int:
        """Rows of the feed-forward's input matrix (SwiGLU stacks gate and up)."""
        return (2 if self.mlp == "swiglu" else 1) * self.hidden(dim)
