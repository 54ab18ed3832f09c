"""Analytic FLOP accounting for the DiT backbone (ALGORITHMS.md, "FLOP accounting").

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

from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONVENTIONS = ("reference", "6N", "palm", "gidd", "full")
ALGOS = ("ar", "mdlm", "duo", "duo_distill", "esolm", "gidd")
#: Algorithm options that change what runs per training sequence (anything else is an error).
ALGO_KWARGS: dict[str, dict[str, Any]] = {
    "ar": {},
    "mdlm": {},
    "gidd": {},
    "duo": {"soft_inputs": False},
    "duo_distill": {},
    "esolm": {"esolm_batch_split": 1.0, "alpha0": 1.0},
}
FREQ_DIM = 256  # TimestepEmbedder sinusoidal features (layers.py)
PROFILE_PATH = Path(__file__).resolve().parents[2] / "configs" / "flops" / "_reference_profile.yaml"


def _check_choice(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}: valid {what}s are {', '.join(valid)}")


def param_counts(
    *, dim: int, n_blocks: int, vocab_size: int, cond_dim: int = 128, adaln: bool = True
) -> dict[str, int]:
    """Parameters of `DiT` counted from its layers (equals `count_params` on the model).

    Returns:
        {"params", "non_embedding_params"}; non-embedding excludes the input embedding
        and the output head (weight + bias), as `src.models.dit.count_params` does.
    """
    d, c = dim, cond_dim
    block = 12 * d * d + 4 * d + d + 2 * d  # qkv, out, MLP weights; MLP biases 4d + d; 2 norms
    final = d  # final norm weight
    cond = 0
    if adaln:
        block += c * 6 * d + 6 * d
        final += c * 2 * d + 2 * d
        cond = FREQ_DIM * c + c + c * c + c
    embedding = vocab_size * d + d * vocab_size + vocab_size  # input table + head weight/bias
    non_embedding = n_blocks * block + final + cond
    return {"params": non_embedding + embedding, "non_embedding_params": non_embedding}


def model_forward_flops(
    *,
    dim: int,
    n_blocks: int,
    vocab_size: int,
    seq_len: int,
    cond_dim: int = 128,
    adaln: bool = True,
    soft_inputs: bool = False,
) -> int:
    """Matmul FLOPs of one `DiT.forward` call on one sequence of `seq_len` tokens.

    Args:
        soft_inputs: the input is (L, V) probabilities multiplied by the embedding
            (DUO curriculum, `x @ self.embed` in dit.py): adds 2 L V d.

    Returns:
        FLOPs, attention over the full seq_len x seq_len square (see module docstring).
    """
    per_token = 12 * n_blocks * dim * dim + dim * vocab_size
    per_sequence = 0
    if adaln:
        timestep = FREQ_DIM * cond_dim + cond_dim * cond_dim  # 256 -> c -> c, once per sequence
        # adaLN c -> 6d per block and c -> 2d in the final layer, on (B, c) not (B, L, c).
        per_sequence = timestep + (6 * n_blocks + 2) * cond_dim * dim
    flops = 2 * (seq_len * per_token + per_sequence) + 4 * n_blocks * seq_len * seq_len * dim
    if soft_inputs:
        flops += 2 * seq_len * vocab_size * dim
    return flops


def _algo_options(algo: str, algo_kwargs: dict[str, Any]) -> dict[str, Any]:
    _check_choice(algo, ALGOS, "algo")
    allowed = ALGO_KWARGS[algo]
    unknown = sorted(set(algo_kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"algo {algo!r} takes no option(s) {unknown}: "
            f"its options are {sorted(allowed) or 'none'}"
        )
    return {**allowed, **algo_kwargs}


def forward_flops(
    *,
    dim: int,
    n_blocks: int,
    n_heads: int,
    vocab_size: int,
    seq_len: int,
    algo: str = "mdlm",
    cond_dim: int = 128,
    adaln: bool = True,
    **algo_kwargs: Any,
) -> float:
    """Forward FLOPs one algorithm really runs per training sequence of `seq_len` tokens.

    - ar: the model on x[:, :-1], i.e. seq_len - 1 tokens, causal (ALGORITHMS.md, AR).
    - mdlm, gidd: seq_len tokens, bidirectional; duo too, plus 2 L V d while the
      curriculum feeds soft one-hots (`soft_inputs=True`).
    - duo_distill: the student's seq_len tokens plus one teacher forward (4/3 x duo).
    - esolm: a fraction `esolm_batch_split` of the rows runs the diffusion branch on
      seq_len tokens (only if alpha0 > 0); the other rows run the sequential branch on
      [z_0; x], 2 seq_len tokens with the head on all of them, as the reference's
      EsoLMDiT does (only if alpha0 < 1). With alpha0 = 1 (the scaling runs) the
      sequential rows are skipped, so their compute is 0 (reference `EsoLM._loss`).
      The result is the average over rows; the reference truncates
      int(batch_split * B), which is exact when batch_split * B is an integer.

    Returns:
        Forward FLOPs per sequence of the global batch (average over its rows).
    """
    if dim % n_heads:
        raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
    opts = _algo_options(algo, algo_kwargs)
    shape = dict(dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, cond_dim=cond_dim, adaln=adaln)
    if algo == "ar":
        return float(model_forward_flops(seq_len=seq_len - 1, **shape))
    if algo == "duo_distill":
        # Student forward + backward (3 forwards, counted by the caller's 3x) plus one frozen
        # teacher forward per sequence: 4/3 of a forward per training forward.
        return 4 / 3 * model_forward_flops(seq_len=seq_len, **shape)
    if algo != "esolm":
        soft = bool(opts.get("soft_inputs", False))
        return float(model_forward_flops(seq_len=seq_len, soft_inputs=soft, **shape))
    split, alpha0 = float(opts["esolm_batch_split"]), float(opts["alpha0"])
    if not (0.0 <= split <= 1.0 and 0.0 <= alpha0 <= 1.0):
        raise ValueError(f"esolm_batch_split {split} and alpha0 {alpha0} must lie in [0, 1]")
    diffusion = sequential = 0.0
    if alpha0 > 0:
        diffusion = split * model_forward_flops(seq_len=seq_len, **shape)
    if alpha0 < 1:
        sequential = (1 - split) * model_forward_flops(seq_len=2 * seq_len, **shape)
    if diffusion + sequential == 0:
        raise ValueError(
            f"esolm with esolm_batch_split={split}, alpha0={alpha0} runs no branch on any row"
        )
    return diffusion + sequential


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

    Args:
        profiled: use the profiled table when the shape matches one of its rows.
    """
    prof = _reference_profile()
    if profiled and adaln and (vocab_size, seq_len, cond_dim) == (
        prof["vocab_size"], prof["seq_len"], prof["cond_dim"]
    ):
        for d, n, h, flops in prof["sizes"].values():
            if (d, n, h) == (dim, n_blocks, n_heads):
                return float(flops)
    linear = model_forward_flops(
        dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, seq_len=seq_len, cond_dim=cond_dim,
        adaln=adaln,
    ) - 4 * n_blocks * seq_len * seq_len * dim
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
    algo: str = "mdlm",
    cond_dim: int = 128,
    adaln: bool = True,
    **algo_kwargs: Any,
) -> float:
    """Training FLOPs (forward + backward) per token of the global batch.

    A step of global batch B costs `flops_per_token * B * seq_len`. Conventions:

    - reference: 3 * F_ref / T with F_ref = `reference_forward_flops`, the scaling
      repo's profiled forward (no attention; ~= 6 (12 n d^2 + d V) per token). The
      reference applies the same profile to every algorithm, so this ignores `algo`.
    - 6N: 6 x non-embedding parameters (Kaplan et al. 2020; SMDM). Ignores `algo`.
    - palm: 6 N + 12 n d T with N = all parameters except the input embedding table
      (the head is a matmul; PaLM app. B, nanoGPT `estimate_mfu`). Ignores `algo`.
    - gidd: 72 n d^2 + 12 n d T (von Ruette et al.'s count). Ignores `algo`.
    - full: 3 x `forward_flops` / T: the exact structural count with attention of what
      `algo` runs (AR on T - 1 tokens, Eso-LM's 2T sequential rows, ...).
    """
    _check_choice(convention, CONVENTIONS, "convention")
    opts = _algo_options(algo, algo_kwargs)  # validate algo even where it is ignored
    shape = dict(
        dim=dim, n_blocks=n_blocks, n_heads=n_heads, vocab_size=vocab_size, seq_len=seq_len,
        cond_dim=cond_dim, adaln=adaln,
    )
    if convention == "full":
        return 3.0 * forward_flops(**shape, algo=algo, **opts) / seq_len
    if convention == "reference":
        return 3.0 * reference_forward_flops(**shape) / seq_len
    params = param_counts(
        dim=dim, n_blocks=n_blocks, vocab_size=vocab_size, cond_dim=cond_dim, adaln=adaln
    )
    attention = 12.0 * n_blocks * dim * seq_len
    if convention == "6N":
        return 6.0 * params["non_embedding_params"]
    if convention == "palm":
        return 6.0 * (params["params"] - vocab_size * dim) + attention
    return 72.0 * n_blocks * dim * dim + attention  # gidd
