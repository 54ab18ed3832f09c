"""Published diffusion LMs whose networks are not the DiT, read as backbone options.

- GIDD (dvruette/gidd-easydel, `model_type: gidd`, GiddForDiffusionLM): its HF folder's
  config.json and weights.
- MegaDLMs / Super Data Learners (JinjieNi/MegaDLMs, `DiffLM` in
  tools/weights_conversion/hf_configs): the HF conversion of a Megatron run.

Each reader turns the publisher's config into `model.*` / `model.arch.*` / `algo.*` settings
(checked literals, src/runs/file_config.py) and renames the publisher's keys to this
backbone's (q, k, v projections stacked into `qkv`; SwiGLU's gate and up stacked into
`mlp.0`). Every config field that changes the function is either mapped or refused: a
setting the backbone cannot express is one error naming it, never a silent approximation.
Verified against independent re-implementations of the publishers' forwards
(tests/export/reference_gidd.py, reference_megadlm.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from src.runs.file_config import file_overrides
from src.utils.cli import UserError

GIDD_MASK_ID = 3  # GiddForDiffusionLM.generate's mask_token_id (its tokenizer's [MASK])


def is_gidd(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "gidd" or "GiddForDiffusionLM" in (
        config.get("architectures") or [])


def is_megadlm(config: dict[str, Any]) -> bool:
    return "DiffLM" in (config.get("architectures") or []) or str(
        (config.get("auto_map") or {}).get("AutoConfig", "")).startswith("configuration_dlm.")


def require(values: dict[str, Any], where: str, keys: tuple[str, ...], what: str) -> None:
    """Refuse a config (or a run's args) without these settings; `what` says what it is not."""
    missing = [k for k in keys if values.get(k) is None]
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)}: {what}")


def refuse_unless(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise UserError(f"{where}: {what}: this backbone cannot compute that network "
                        f"(see src/models/arch.py for the options it has)")


Rules = list[tuple[str, Callable[..., str] | None]]


def rename(state: dict[str, torch.Tensor], rules: Rules, where: str,
           layout: str = "this format's layout") -> dict[str, torch.Tensor]:
    """Apply (regex, new-key builder of its groups or None = drop) rules; an unmatched key is
    an error naming `layout`."""
    out = {}
    for key, value in state.items():
        for pattern, build in rules:
            if (m := re.fullmatch(pattern, key)) is not None:
                if build is not None:
                    out[build(*m.groups())] = value
                break
        else:
            raise UserError(f"{where}: unexpected weight {key!r}: not {layout}")
    return out


def _stack(state: dict[str, torch.Tensor], parts: tuple[str, ...], into: str,
           n_blocks: int, where: str) -> None:
    """blocks.{n}.<parts...> -> blocks.{n}.<into>, rows concatenated in that order."""
    for n in range(n_blocks):
        keys = [f"blocks.{n}.{p}" for p in parts]
        missing = [k for k in keys if k not in state]
        if missing:
            raise UserError(f"{where}: block {n} lacks {missing[0]}")
        state[f"blocks.{n}.{into}"] = torch.cat([state.pop(k) for k in keys], dim=0)


def _blocks(state: dict[str, torch.Tensor]) -> int:
    return len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})


LAYER = r"model\.layers\.(\d+)\."
#: Keys both publishers name alike (HF Llama-style attention and embeddings).
SHARED_RULES: Rules = [
    (r"model\.embed_tokens\.weight", lambda: "embed"),
    (LAYER + r"self_attn\.(q|k|v)_proj\.weight", lambda n, p: f"blocks.{n}.{p}_proj"),
    (LAYER + r"self_attn\.o_proj\.weight", lambda n: f"blocks.{n}.attn_out.weight"),
    (LAYER + r"self_attn\.(q|k)_norm\.weight", lambda n, p: f"blocks.{n}.{p}_norm.weight"),
    (r"model\.norm\.weight", lambda: "final.norm.weight"),
]


def gidd_state(raw: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """GiddForDiffusionLM keys -> this backbone's."""
    layer = LAYER
    rules: Rules = [
        *SHARED_RULES,
        (layer + r"self_attn\.(k|v)_bias", lambda n, p: f"blocks.{n}.{p}_slot"),
        (layer + r"mlp\.up_proj\.(weight|bias)", lambda n, p: f"blocks.{n}.mlp.0.{p}"),
        (layer + r"mlp\.down_proj\.(weight|bias)", lambda n, p: f"blocks.{n}.mlp.2.{p}"),
        (layer + r"attn_layernorm\.weight", lambda n: f"blocks.{n}.norm1.weight"),
        (layer + r"mlp_layernorm\.weight", lambda n: f"blocks.{n}.norm2.weight"),
        (r"lm_head\.weight", lambda: "final.linear.weight"),
        (r"model\.frequencies", None),  # RoPE table, recomputed from rope_theta
    ]
    state = rename(raw, rules, where)
    _stack(state, ("q_proj", "k_proj", "v_proj"), "qkv.weight", _blocks(state), where)
    return state


def gidd_settings(config: dict[str, Any], where: str) -> tuple[list[str], int]:
    """(overrides, mask id) of a GiddConfig: model shape, arch options, the GIDD algo."""
    require(config, where, ("hidden_size", "num_hidden_layers", "num_attention_heads"),
            "not a complete model config")
    d, n, h = (int(config[k]) for k in ("hidden_size", "num_hidden_layers",
                                        "num_attention_heads"))
    refuse_unless(int(config.get("head_dim") or d // h) * h == d, where,
                   f"head_dim {config.get('head_dim')} x {h} heads != hidden_size {d}")
    refuse_unless(not config.get("rope_scaling"), where, "rope_scaling is set")
    refuse_unless(not config.get("is_causal", False), where,
                   "is_causal=true (an autoregressive GIDD)")
    tied = bool(config.get("tie_word_embeddings", False))
    scaling = config.get("weight_scaling", "fan_in")
    arch = {
        "norm": "rmsnorm", "norm_gain": "one_plus_w",
        "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
        "mlp": "relu2", "mlp_hidden": int(config.get("intermediate_size", 4 * d)),
        "mlp_bias": bool(config.get("mlp_bias", False)),
        "qk_norm": "all" if config.get("use_qk_norm", True) else "none",
        "attn_softcap": float(config.get("attn_soft_cap", 30.0)),
        "rope_base": float(config.get("rope_theta", 10000.0)),
        "kv_slots": bool(config.get("attention_bias", False)),
        "linear_scale": scaling if isinstance(scaling, str) else float(scaling),
        "branch_scale": float(config.get("resid_scale", 4.0)) / n,
        "head_bias": False,
        # GIDD's tied readout is `hidden @ embed.T`, without head_scaling.
        "head_scale": 1.0 if tied else float(config.get("head_scaling", 1.0)),
        "tie_embeddings": tied,
    }
    lo, hi = float(config.get("min_log_snr", -9.0)), float(config.get("max_log_snr", 9.0))
    refuse_unless(lo == -hi, where, f"log-SNR range [{lo}, {hi}] is not symmetric")
    overrides = ["algo=gidd", "algo.time_conditioning=false", "sampler=gidd_adaptive",
                 *file_overrides(where, "model", {"n_heads": h, "max_seq_len": int(
                     config.get("max_position_embeddings", 1024))}),
                 *file_overrides(where, "model.arch", arch),
                 *file_overrides(where, "algo", {"mix_scale": 1.0,
                                                 "mix_shift": float(config.get("noise_type", 0.0)),
                                                 "log_snr_clip": hi})]
    return overrides, int(config.get("mask_token_id", GIDD_MASK_ID))


def megadlm_state(raw: dict[str, torch.Tensor], where: str, tied: bool
                  ) -> dict[str, torch.Tensor]:
    """DiffLM (Qwen3-style) keys -> this backbone's."""
    layer = LAYER
    rules: Rules = [
        *SHARED_RULES,
        (layer + r"mlp\.(gate|up)_proj\.weight", lambda n, p: f"blocks.{n}.{p}"),
        (layer + r"mlp\.down_proj\.weight", lambda n: f"blocks.{n}.mlp.2.weight"),
        (layer + r"input_layernorm\.weight", lambda n: f"blocks.{n}.norm1.weight"),
        (layer + r"post_attention_layernorm\.weight", lambda n: f"blocks.{n}.norm2.weight"),
        # A tied readout is the embedding (a file may still carry the copy).
        (r"lm_head\.weight", None if tied else (lambda: "final.linear.weight")),
        (layer + r"self_attn\.rotary_emb\.inv_freq", None),  # recomputed from rope_theta
    ]
    state = rename(raw, rules, where)
    n = _blocks(state)
    _stack(state, ("q_proj", "k_proj", "v_proj"), "qkv.weight", n, where)
    _stack(state, ("gate", "up"), "mlp.0.weight", n, where)  # SwiGLU halves [gate, up]
    return state


def megadlm_settings(config: dict[str, Any], where: str) -> tuple[list[str], int]:
    """(overrides, mask id) of a DLMConfig: model shape, arch options, masked diffusion."""
    require(config, where, ("hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "mask_token_id"), "not a complete model config")
    d, h = int(config["hidden_size"]), int(config["num_attention_heads"])
    refuse_unless(int(config.get("head_dim") or d // h) * h == d, where,
                   f"head_dim {config.get('head_dim')} x {h} heads != hidden_size {d}")
    refuse_unless(config.get("hidden_act", "silu") == "silu", where,
                   f"hidden_act={config.get('hidden_act')} (SwiGLU needs silu)")
    refuse_unless(not config.get("rope_scaling"), where, "rope_scaling is set")
    refuse_unless(not config.get("use_sliding_window", False), where, "sliding-window attention")
    refuse_unless(config.get("attn_mask_type", "bidirectional") == "bidirectional", where,
                   f"attn_mask_type={config.get('attn_mask_type')} (an autoregressive model)")
    arch = {
        "norm": "rmsnorm", "norm_gain": "w", "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
        "mlp": "swiglu", "mlp_hidden": int(config["intermediate_size"]), "mlp_bias": False,
        "n_kv_heads": int(config.get("num_key_value_heads") or h), "qk_norm": "head",
        "rope_base": float(config.get("rope_theta", 10000.0)), "head_bias": False,
        "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
    }
    overrides = ["algo=mdlm", "algo.time_conditioning=false", "sampler=low_confidence",
                 *file_overrides(where, "model", {"n_heads": h, "max_seq_len": int(
                     config.get("max_position_embeddings", 2048))}),
                 *file_overrides(where, "model.arch", arch)]
    return overrides, int(config["mask_token_id"])
