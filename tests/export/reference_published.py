"""Independent forwards of the two published non-DiT networks, written for the import tests
from reading the publishers' code, over their own state-dict keys and config.json fields:

- GIDD: dvruette/gidd-easydel `gidd_easydel/model/modeling_gidd_hf.py` (GiddForDiffusionLM);
- MegaDLMs: JinjieNi/MegaDLMs `tools/weights_conversion/hf_configs/*/modeling_dlm.py` (DiffLM).

Functional float32 code that shares nothing with src/: if the import mapped a key, a scale or
an option wrongly, the logits would differ.
"""

from __future__ import annotations

from typing import Any

import torch


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float, one_plus: bool) -> torch.Tensor:
    x = x.float()
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return (1.0 + weight if one_plus else weight) * normed


def _rope_tables(length: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / torch.pow(torch.tensor(float(base)),
                          torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]  # (L, Dh/2)
    return angles.cos(), angles.sin()


def _rope_neox(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, L, H, Dh): the two halves rotated as pairs (GIDD's is_neox_style=True, and
    the HF `rotate_half` convention, which is the same rotation)."""
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[None, :, None], sin[None, :, None]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def gidd_forward(state: dict[str, torch.Tensor], config: dict[str, Any],
                 ids: torch.Tensor) -> torch.Tensor:
    """GiddForDiffusionLM(ids) logits, all positions attending all (no attention_mask)."""
    d, n, heads = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    hd, eps = d // heads, config["rms_norm_eps"]
    branch = config["resid_scale"] / n
    ws = config["weight_scaling"]

    def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        scale = w.shape[1] ** -0.5 if ws == "fan_in" else (
            w.shape[0] ** -0.5 if ws == "fan_out" else float(ws))
        y = (x @ w.T) * scale
        return y if b is None else y + b

    batch, length = ids.shape
    cos, sin = _rope_tables(length, hd, config["rope_theta"])
    h = state["model.embed_tokens.weight"][ids]
    for i in range(n):
        p = f"model.layers.{i}."
        x = _rms(h, state[p + "attn_layernorm.weight"], eps, one_plus=True)
        q = linear(x, state[p + "self_attn.q_proj.weight"])
        k = linear(x, state[p + "self_attn.k_proj.weight"])
        v = linear(x, state[p + "self_attn.v_proj.weight"])
        if config["use_qk_norm"]:
            q = _rms(q, state[p + "self_attn.q_norm.weight"], eps, one_plus=True)
            k = _rms(k, state[p + "self_attn.k_norm.weight"], eps, one_plus=True)
        q, k, v = (t.view(batch, length, heads, hd) for t in (q, k, v))
        q, k = _rope_neox(q, cos, sin), _rope_neox(k, cos, sin)
        if config["attention_bias"]:
            k = torch.cat([state[p + "self_attn.k_bias"].expand(batch, 1, heads, hd), k], dim=1)
            v = torch.cat([state[p + "self_attn.v_bias"].expand(batch, 1, heads, hd), v], dim=1)
        scores = torch.einsum("bqhd,bkhd->bhqk", q * hd ** -0.5, k)
        cap = config["attn_soft_cap"]
        probs = torch.softmax((cap * torch.tanh(scores / cap)).float(), dim=-1)
        out = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, d)
        h = h + branch * linear(out, state[p + "self_attn.o_proj.weight"])
        x = _rms(h, state[p + "mlp_layernorm.weight"], eps, one_plus=True)
        up = linear(x, state[p + "mlp.up_proj.weight"], state.get(p + "mlp.up_proj.bias"))
        down = linear(torch.relu(up) ** 2, state[p + "mlp.down_proj.weight"],
                      state.get(p + "mlp.down_proj.bias"))
        h = h + branch * down
    h = _rms(h, state["model.norm.weight"], eps, one_plus=True)
    if config["tie_word_embeddings"]:
        return h @ state["model.embed_tokens.weight"].T
    return (h @ state["lm_head.weight"].T) * config["head_scaling"]


def megadlm_forward(state: dict[str, torch.Tensor], config: dict[str, Any],
                    ids: torch.Tensor) -> torch.Tensor:
    """DiffLM(ids) logits: bidirectional, no mask (its DLMModel passes causal_mask=None)."""
    d, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads, hd = config["num_key_value_heads"], d // heads
    eps = config["rms_norm_eps"]
    batch, length = ids.shape
    cos, sin = _rope_tables(length, hd, config["rope_theta"])
    h = state["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = _rms(h, state[p + "input_layernorm.weight"], eps, one_plus=False)
        q = (x @ state[p + "self_attn.q_proj.weight"].T).view(batch, length, heads, hd)
        k = (x @ state[p + "self_attn.k_proj.weight"].T).view(batch, length, kv_heads, hd)
        v = (x @ state[p + "self_attn.v_proj.weight"].T).view(batch, length, kv_heads, hd)
        q = _rms(q, state[p + "self_attn.q_norm.weight"], eps, one_plus=False)
        k = _rms(k, state[p + "self_attn.k_norm.weight"], eps, one_plus=False)
        q, k = _rope_neox(q, cos, sin), _rope_neox(k, cos, sin)
        group = heads // kv_heads  # repeat_kv: query head j reads key/value head j // group
        k = k[:, :, torch.arange(heads) // group]
        v = v[:, :, torch.arange(heads) // group]
        probs = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) * hd ** -0.5, dim=-1)
        out = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, d)
        h = h + out @ state[p + "self_attn.o_proj.weight"].T
        x = _rms(h, state[p + "post_attention_layernorm.weight"], eps, one_plus=False)
        gate = torch.nn.functional.silu(x @ state[p + "mlp.gate_proj.weight"].T)
        up = x @ state[p + "mlp.up_proj.weight"].T
        h = h + (gate * up) @ state[p + "mlp.down_proj.weight"].T
    h = _rms(h, state["model.norm.weight"], eps, one_plus=False)
    head = state["model.embed_tokens.weight"] if config["tie_word_embeddings"] else \
        state["lm_head.weight"]
    return h @ head.T


def gidd_layout(config: dict[str, Any], vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random (non-zero) weights under GiddForDiffusionLM's keys and shapes."""
    g = torch.Generator().manual_seed(seed)
    d, inner = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]

    def rnd(*shape: int, std: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    state = {"model.embed_tokens.weight": rnd(vocab, d, std=1.0),
             "model.norm.weight": rnd(d)}
    if not config["tie_word_embeddings"]:
        state["lm_head.weight"] = rnd(vocab, d)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[p + f"self_attn.{name}.weight"] = rnd(d, d, std=1.0)
        if config["use_qk_norm"]:
            state[p + "self_attn.q_norm.weight"] = rnd(d)
            state[p + "self_attn.k_norm.weight"] = rnd(d)
        if config["attention_bias"]:
            state[p + "self_attn.k_bias"] = rnd(heads, d // heads, std=1.0)
            state[p + "self_attn.v_bias"] = rnd(heads, d // heads, std=1.0)
        state[p + "mlp.up_proj.weight"] = rnd(inner, d, std=1.0)
        state[p + "mlp.down_proj.weight"] = rnd(d, inner, std=1.0)
        if config["mlp_bias"]:
            state[p + "mlp.up_proj.bias"] = rnd(inner)
            state[p + "mlp.down_proj.bias"] = rnd(d)
        state[p + "attn_layernorm.weight"] = rnd(d)
        state[p + "mlp_layernorm.weight"] = rnd(d)
    return state


def megadlm_layout(config: dict[str, Any], vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under DiffLM's keys and shapes (as megatron_to_hf_te.py writes them,
    with its rotary inv_freq buffers)."""
    g = torch.Generator().manual_seed(seed)
    d, inner = config["hidden_size"], config["intermediate_size"]
    hd = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * hd

    def rnd(*shape: int, std: float = 0.3, mean: float = 0.0) -> torch.Tensor:
        return mean + torch.randn(*shape, generator=g) * std

    state = {"model.embed_tokens.weight": rnd(vocab, d, std=1.0),
             "model.norm.weight": rnd(d, mean=1.0)}
    if not config["tie_word_embeddings"]:
        state["lm_head.weight"] = rnd(vocab, d)
    inv_freq = 1.0 / config["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        state[p + "self_attn.q_proj.weight"] = rnd(d, d, std=0.2)
        state[p + "self_attn.k_proj.weight"] = rnd(kv, d, std=0.2)
        state[p + "self_attn.v_proj.weight"] = rnd(kv, d, std=0.2)
        state[p + "self_attn.o_proj.weight"] = rnd(d, d, std=0.2)
        state[p + "self_attn.q_norm.weight"] = rnd(hd, mean=1.0)
        state[p + "self_attn.k_norm.weight"] = rnd(hd, mean=1.0)
        state[p + "mlp.gate_proj.weight"] = rnd(inner, d, std=0.2)
        state[p + "mlp.up_proj.weight"] = rnd(inner, d, std=0.2)
        state[p + "mlp.down_proj.weight"] = rnd(d, inner, std=0.2)
        state[p + "input_layernorm.weight"] = rnd(d, mean=1.0)
        state[p + "post_attention_layernorm.weight"] = rnd(d, mean=1.0)
        state[p + "self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    return state
