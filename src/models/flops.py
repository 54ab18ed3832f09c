"""Analytic FLOP accounting for the DiT backbone (docs/algorithms.md, "FLOP accounting").

Everything is counted structurally from the layers in `src/models/layers.py`: every
`nn.Linear` weight is a multiply-add per input row, and a multiply-add is 2 FLOPs
(the convention of Kaplan et al. 2020 and of `torch.utils.flop_counter`). Biases,
norms, rotary and other elementwise work are not counted (they are O(d) per token).

Per block and token: qkv 3d^2 + out d^2 + MLP 8d^2 = 12 d^2 multiply-adds; the head
adds d V per token. With adaLN the conditioning runs once per *sequence*, not per
token: TimestepEmbedder 256->c->c, and c->6d per block plus c->2d in the final layer
(the adaLN input is (B, cond_dim), see `DiTBlock.forward`). Attention adds the score
and value matmuls, 2 * 2 * L_q * L_k * d FLOPs per block.

Causal attention is counted with the full L_q * L_k: the model computes every score
(the `math` backend and SDPA's CPU kernel materialise or tile the full square), the
flop counter's SDPA formula ignores `is_causal` (torch/utils/flop_counter.py: "We
aren't accounting for causal attention here") and PaLM (Chowdhery et al. 2022, app. B)
and nanoGPT count the full square too. A causal-aware kernel (flash) does ~half.

Training = 3 x forward (backward = 2 x forward: grads w.r.t. inputs and weights;
Kaplan et al. 2020, sec. 2.1). These are model FLOPs: a flash-style attention backward
that recomputes QK^T (counted as 2.5 x by the flop counter) is not charged, as in
PaLM's MFU definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.models.arch import Arch

CONVENTIONS = ("reference", "6N", "palm", "gidd", "full")
FREQ_DIM = 256  # TimestepEmbedder sinusoidal features (layers.py)
PROFILE_PATH = Path(__file__).resolve().parents[2] / "configs" / "flops" / "_reference_profile.yaml"


def _check_choice(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}: valid {what}s are {', '.join(valid)}")


def moe_blocks(n_blocks: int, moe: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """(blocks with experts, experts E, top_k) of `model.moe` (src/models/moe.py); (0, 0, 0)
    for a dense model."""
    experts = int((moe or {}).get("num_experts") or 0)
    if experts <= 0:
        return 0, 0, 0
    every = int(moe.get("every", 1))
    return n_blocks // every, experts, int(moe.get("top_k", 1))


def mlp_matmuls(*, dim: int, n_blocks: int, moe: Mapping[str, Any] | None = None,
                arch: Mapping[str, Any] | Arch | None = None) -> int:
    """Multiply-adds per token of the feed-forwards: d h_in + h d per dense block (8 d^2 for the
    DiT's 4d GELU MLP; SwiGLU's h_in = 2h); a MoE block runs its router (d E) and top_k experts
    (8 d^2 each): the *active* parameters."""
    n_moe, experts, top_k = moe_blocks(n_blocks, moe)
    a = Arch.build(arch)
    dense = dim * a.mlp_in_width(dim) + a.hidden(dim) * dim
    return dense * (n_blocks - n_moe + top_k * n_moe) + dim * experts * n_moe


def attention_matmuls(*, dim: int, n_heads: int | None,
                      arch: Mapping[str, Any] | Arch | None = None) -> int:
    """Multiply-adds per token and block of the attention projections: q and out d^2 each, k
    and v d * (n_kv_heads / n_heads) d each (4 d^2 with full multi-head attention)."""
    return 2 * dim * dim + 2 * dim * Arch.build(arch).kv_width(dim, n_heads)


def score_keys(seq_len: int, arch: Mapping[str, Any] | Arch | None = None) -> int:
    """Keys each query scores: the sequence, plus the learned slot with `arch.kv_slots`."""
    return seq_len + (1 if Arch.build(arch).kv_slots else 0)


def param_counts(
    *, dim: int, n_blocks: int, vocab_size: int, cond_dim: int = 128, adaln: bool = True,
    moe: Mapping[str, Any] | None = None, n_heads: int | None = None,
    arch: Mapping[str, Any] | Arch | None = None,
) -> dict[str, int]:
    """Parameters of `DiT` counted from its layers (equals `count_params` on the model).

    Returns:
        {"params", "non_embedding_params", "active_params", "active_non_embedding_params"};
        non-embedding excludes the input embedding and the output head (weight + bias), as
        `src.models.dit.count_params` does; active counts what one token uses (a MoE
        block: router + top_k experts; equal to the totals for a dense model).
    """
    d, c, a = dim, cond_dim, Arch.build(arch)
    n_moe, experts, top_k = moe_blocks(n_blocks, moe)
    kv_width = a.kv_width(d, n_heads)
    ffn = mlp_matmuls(dim=d, n_blocks=1, arch=a) + (  # MLP weights and biases
        a.mlp_in_width(d) + d if a.mlp_bias else 0)
    block = attention_matmuls(dim=d, n_heads=n_heads, arch=a) + ffn + 2 * d  # qkv, out, MLP; norms
    if a.qk_norm != "none":  # per head: two head-dim weights; over all heads: q and k widths
        block += 2 * (d // n_heads) if a.qk_norm == "head" else d + kv_width
    block += 2 * kv_width if a.kv_slots else 0
    final = d  # final norm weight
    cond = 0
    if adaln:
        block += c * 6 * d + 6 * d
        final += c * 2 * d + 2 * d
        cond = FREQ_DIM * c + c + c * c + c
    head = (0 if a.tie_embeddings else d * vocab_size) + (vocab_size if a.head_bias else 0)
    embedding = vocab_size * d + head  # input table + head weight/bias
    non_embedding = n_blocks * block + final + cond
    extra_total = n_moe * ((experts - 1) * ffn + d * experts)  # more experts + the router
    extra_active = n_moe * ((top_k - 1) * ffn + d * experts)
    return {"params": non_embedding + embedding + extra_total,
            "non_embedding_params": non_embedding + extra_total,
            "active_params": non_embedding + embedding + extra_active,
            "active_non_embedding_params": non_embedding + extra_active}


def model_forward_flops(
    *,
    dim: int,
    n_blocks: int,
    vocab_size: int,
    seq_len: int,
    cond_dim: int = 128,
    adaln: bool = True,
    soft_inputs: bool = False,
    moe: Mapping[str, Any] | None = None,
    n_heads: int | None = None,
    arch: Mapping[str, Any] | Arch | None = None,
) -> int:
    """Matmul FLOPs of one `DiT.forward` call on one sequence of `seq_len` tokens.

    Args:
        soft_inputs: the input is (L, V) probabilities multiplied by the embedding
            (DUO curriculum, `x @ self.embed` in dit.py): adds 2 L V d.

    Returns:
        FLOPs, attention over the full seq_len x seq_len square (see module docstring).
    """
    a = Arch.build(arch)
    per_token = n_blocks * attention_matmuls(dim=dim, n_heads=n_heads, arch=a) \
        + mlp_matmuls(dim=dim, n_blocks=n_blocks, moe=moe, arch=a) \
        + dim * vocab_size  # the readout is a matmul, tied or not
    per_sequence = 0
    if adaln:
        timestep = FREQ_DIM * cond_dim + cond_dim * cond_dim  # 256 -> c -> c, once per sequence
        # adaLN c -> 6d per block and c -> 2d in the final layer, on (B, c) not (B, L, c).
        per_sequence = timestep + (6 * n_blocks + 2) * cond_dim * dim
    flops = 2 * (seq_len * per_token + per_sequence) \
        + 4 * n_blocks * seq_len * score_keys(seq_len, a) * dim
    if soft_inputs:
        flops += 2 * seq_len * vocab_size * dim
    return flops


def skipped_readout_flops(*, dim: int, vocab_size: int, positions: int) -> float:
    """Training FLOPs of the readout (d -> V matmul: forward 2 d V, backward 4 d V per token)
    at `positions` tokens whose logits a loss never reads. Budgets book the full readout (the
    model's cost, as the reference counts it); MDLM skips it at clean positions, which score
    exactly 0 under SUBS (`DiT.forward(select=...)`), so its steps execute this much less."""
    return 6.0 * dim * vocab_size * positions


@dataclass(frozen=True)
class BackbonePass:
    """One backbone forward an algorithm runs per training sequence (its cost interface:
    `Algo.training_passes`, src/algos/base.py). The backbone knows no algorithm names.

    Attributes:
        tokens: sequence length of this forward (AR: L - 1; Eso-LM's sequential rows: 2 L).
        rows: fraction of the batch's rows that run it (Eso-LM splits rows between branches).
        soft_inputs: (L, V) probabilities multiplied into the embedding (DUO curriculum).
        backward: whether gradients flow through it (x3 for training; a frozen teacher: x1).
    """

    tokens: int
    rows: float = 1.0
    soft_inputs: bool = False
    backward: bool = True


def forward_flops(
    *,
    dim: int,
    n_blocks: int,
    n_heads: int,
    vocab_size: int,
    seq_len: int,
    cond_dim: int = 128,
    adaln: bool = True,
    passes: Sequence[BackbonePass] | None = None,
    moe: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | Arch | None = None,
) -> float:
    """Forward FLOPs per training sequence: the sum over the algorithm's passes of
    rows x `model_forward_flops(tokens)` (default: one pass over the seq_len tokens)."""
    if dim % n_heads:
        raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
    passes = [BackbonePass(seq_len)] if passes is None else list(passes)
    if not passes or all(p.rows <= 0 for p in passes):
        raise ValueError("the algorithm runs no backbone pass on any row")
    shape = dict(dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, cond_dim=cond_dim, adaln=adaln,
                 moe=moe, n_heads=n_heads, arch=arch)
    return float(sum(p.rows * model_forward_flops(seq_len=p.tokens, soft_inputs=p.soft_inputs,
                                                  **shape) for p in passes))


def training_flops(passes: Sequence[BackbonePass], **shape: Any) -> float:
    """Forward + backward FLOPs per training sequence: 3 x each pass with gradients
    (backward = 2 x forward, Kaplan et al. 2020 sec. 2.1), 1 x a frozen one."""
    return sum((3.0 if p.backward else 1.0) * forward_flops(passes=[p], **shape) for p in passes)


@lru_cache(maxsize=1)
def _reference_profile() -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(PROFILE_PATH))  # type: ignore[return-value]


def reference_forward_flops(
    *,
    dim: int,
    n_blocks: int,
    n_heads: int,
    vocab_size: int,
    seq_len: int,
    cond_dim: int = 128,
    adaln: bool = True,
    profiled: bool = True,
    moe: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | Arch | None = None,
) -> float:
    """Forward FLOPs of one sequence as the reference's profiler (calflops) reports them.

    For the reference ladder at V 32001, T 2048 (adaLN, cond_dim 128) this is the
    profiled number itself (configs/flops/_reference_profile.yaml). Otherwise it is an
    analytic model of what calflops counts: all linear layers (2 x the multiply-adds
    above, adaLN included) but no attention matmuls, plus the elementwise ops it
    patches: layer_norm 4/element (no affine), GELU 1/element (2 norms + 4d GELU =
    12 d per block-token, 4 d for the final norm), and h * T per block-token (the
    eager flex_attention's elementwise work on the (h, T, T) scores). It matches all
    28 profiled sizes to 3.2e-5 relative (the table keeps 5-6 significant digits)
    and gives the same max_steps as the table for each of them at 6e18, batch 256.

    With `arch` options the linear part follows the options (GQA, SwiGLU, ...) and the
    elementwise part keeps the DiT's model: the reference never profiled those networks.

    Args:
        profiled: use the profiled table when the shape matches one of its rows.
    """
    prof = _reference_profile()
    dense = moe_blocks(n_blocks, moe)[0] == 0 and Arch.build(arch).is_default
    if profiled and adaln and dense and (vocab_size, seq_len, cond_dim) == (
        prof["vocab_size"], prof["seq_len"], prof["cond_dim"]
    ):
        for d, n, h, flops in prof["sizes"].values():
            if (d, n, h) == (dim, n_blocks, n_heads):
                return float(flops)
    linear = model_forward_flops(
        dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, seq_len=seq_len, cond_dim=cond_dim,
        adaln=adaln, moe=moe, n_heads=n_heads, arch=arch,
    ) - 4 * n_blocks * seq_len * score_keys(seq_len, arch) * dim
    elementwise = seq_len * (n_blocks * (n_heads * seq_len + 12 * dim) + 4 * dim)
    return float(linear + elementwise)


def flops_per_token(
    *,
    dim: int,
    n_blocks: int,
    n_heads: int,
    vocab_size: int,
    seq_len: int,
    convention: str,
    cond_dim: int = 128,
    adaln: bool = True,
    passes: Sequence[BackbonePass] | None = None,
    moe: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | Arch | None = None,
) -> float:
    """Training FLOPs (forward + backward) per token of the global batch.

    A step of global batch B costs `flops_per_token * B * seq_len`. Conventions:

    - reference: 3 * F_ref / T with F_ref = `reference_forward_flops`, the scaling
      repo's profiled forward (no attention; ~= 6 (12 n d^2 + d V) per token). The
      reference applies the same profile to every algorithm, so this ignores `passes`.
    - 6N: 6 x non-embedding parameters (Kaplan et al. 2020; SMDM). Ignores `passes`.
    - palm: 6 N + 12 n d T with N = all parameters except the input embedding table
      (the head is a matmul; PaLM app. B, nanoGPT `estimate_mfu`). Ignores `passes`.
    - gidd: 72 n d^2 + 12 n d T (von Ruette et al.'s count; 6 x the block matmuls with
      `arch` options). Ignores `passes`.
    - full: `training_flops` of the passes / T: the exact structural count with attention
      of what the algorithm runs (AR on T - 1 tokens, Eso-LM's 2T sequential rows, a
      distillation teacher's forward, ...); default one pass over T tokens.

    With `moe` (model.moe) every convention counts the *active* parameters per token:
    the router and top_k experts of each MoE block (an expert's capacity drops are not
    subtracted: they are the routing's failure, not a saving the budget should buy).
    `arch` (model.arch) counts each option's own matmuls and parameters.
    """
    _check_choice(convention, CONVENTIONS, "convention")
    a = Arch.build(arch)
    shape = dict(
        dim=dim, n_blocks=n_blocks, n_heads=n_heads, vocab_size=vocab_size, seq_len=seq_len,
        cond_dim=cond_dim, adaln=adaln, moe=moe, arch=a,
    )
    if convention == "full":
        return training_flops([BackbonePass(seq_len)] if passes is None else passes,
                              **shape) / seq_len
    if convention == "reference":
        return 3.0 * reference_forward_flops(**shape) / seq_len
    params = param_counts(
        dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, cond_dim=cond_dim, adaln=adaln,
        moe=moe, n_heads=n_heads, arch=a,
    )
    attention = 12.0 * n_blocks * dim * seq_len
    if convention == "6N":
        return 6.0 * params["active_non_embedding_params"]
    if convention == "palm":  # a tied table is also the readout's matmul
        table = 0 if a.tie_embeddings else vocab_size * dim
        return 6.0 * (params["active_params"] - table) + attention
    # gidd: 6 x (4 d^2 attention + 8 d^2 MLP) per block = 72 n d^2 when dense
    return 6.0 * (n_blocks * attention_matmuls(dim=dim, n_heads=n_heads, arch=a)
                  + mlp_matmuls(dim=dim, n_blocks=n_blocks, moe=moe, arch=a)) + attention
