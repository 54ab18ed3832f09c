"""Megatron-LM (Megatron-Core) legacy checkpoints, as MegaDLMs trains them, read as data.

A legacy checkpoint is `<dir>/latest_checkpointed_iteration.txt` naming `iter_NNNNNNN/`
(or `release/`) with one `mp_rank_00/model_optim_rng.pt`: a pickle holding `args` (an
argparse Namespace of the run's flags), `model` (the state dict) and optimizer / RNG state.
Its pickle names classes of Megatron and Transformer Engine (enums in `args`, `io.BytesIO`
"extra state"). Nothing named in the file is imported: torch's `weights_only` unpickler
reads it with an inert stand-in for every class the file names (`Inert`), and refuses what
torch refuses outright (os / builtins functions). The key layout and the fused-QKV order are
those of MegaDLMs' converter (tools/weights_conversion/megatron_to_hf_te.py): per key/value
group, the group's query heads, then its key head, then its value head; `linear_fc1` stacks
[gate, up] for SwiGLU.

Only a single-rank checkpoint can be read (merge tensor / pipeline shards with Megatron's
tools/checkpoint/convert.py); the distributed `torch_dist` format is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import serialization

from src.export.published import Rules, refuse_unless, rename, require
from src.runs.file_config import file_overrides
from src.utils.cli import UserError

LEGACY_FILE = "model_optim_rng.pt"
TRACKER = "latest_checkpointed_iteration.txt"


class Inert:
    """Stands for a class a checkpoint names: never imported, never run; keeps what the
    pickle gives it (constructor arguments, state) as plain attributes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def is_megatron(path: Path) -> bool:
    return (path.is_dir() and ((path / TRACKER).is_file() or any(path.glob("mp_rank_*"))
                               or (path / LEGACY_FILE).is_file())) or path.name == LEGACY_FILE


def legacy_file(path: Path) -> Path:
    """The one `model_optim_rng.pt` of a checkpoint folder (the tracker's iteration)."""
    if path.is_file():
        return path
    if (path / ".metadata").is_file() or (path / "common.pt").is_file():
        raise UserError(f"{path}: a Megatron torch_dist (distributed) checkpoint: convert it to "
                        f"the legacy format first (Megatron's tools/checkpoint/convert.py "
                        f"--ckpt-format torch), or to Hugging Face with MegaDLMs' "
                        f"megatron_to_hf_te.py")
    if (path / TRACKER).is_file():
        step = (path / TRACKER).read_text().strip()
        path = path / ("release" if step == "release" else f"iter_{int(step):07d}")
        if (path / ".metadata").is_file():
            return legacy_file(path)
    if (path / LEGACY_FILE).is_file():
        return path / LEGACY_FILE
    ranks = sorted(p for p in path.glob("mp_rank_*") if p.is_dir())
    if len(ranks) != 1:
        names = ", ".join(p.name for p in ranks[:4])
        raise UserError(f"{path}: {len(ranks)} model-parallel ranks ({names}): merge them into "
                        f"one with Megatron's tools/checkpoint/convert.py first")
    if not (ranks[0] / LEGACY_FILE).is_file():
        raise UserError(f"{ranks[0]}: no {LEGACY_FILE}")
    return ranks[0] / LEGACY_FILE


def _plain(value: Any) -> Any:
    """An unpickled object as plain data: a stand-in's state, else the object."""
    if isinstance(value, Inert):
        return getattr(value, "state", None)
    return value


def load_legacy(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(args as a dict, the model's tensors) of a legacy checkpoint file, read as data."""
    try:
        names = serialization.get_unsafe_globals_in_checkpoint(str(path))
        stand_ins = [(type(n.rpartition(".")[2], (Inert,), {"__module__": n.rpartition(".")[0]}), n)
                     for n in names]
        with serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for refused files
        why = str(err).splitlines()[-1][:160]
        raise UserError(f"{path}: refused as a Megatron checkpoint ({why})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise UserError(f"{path}: no `model` state dict: not a Megatron legacy checkpoint")
    args = _plain(obj.get("args"))
    args = dict(args) if isinstance(args, dict) else vars(args) if args is not None else {}
    state = {k: v for k, v in obj["model"].items() if isinstance(v, torch.Tensor)
             and not k.endswith("_extra_state")}
    return args, state


def megatron_settings(args: dict[str, Any], where: str) -> list[str]:
    """model / model.arch overrides of a Megatron GPT run's args (masked diffusion algo)."""
    require(args, where, ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size"),
            "not a GPT run's checkpoint (its args lack them)")
    d, h = int(args["hidden_size"]), int(args["num_attention_heads"])
    refuse_unless(int(args.get("kv_channels") or d // h) * h == d, where,
                   f"kv_channels {args.get('kv_channels')} x {h} heads != hidden_size {d}")
    refuse_unless(args.get("position_embedding_type", "rope") == "rope", where,
                   f"position_embedding_type={args.get('position_embedding_type')}")
    refuse_unless(float(args.get("rotary_percent", 1.0)) == 1.0, where, "rotary_percent < 1")
    refuse_unless(not args.get("rotary_interleaved", False), where, "interleaved rotary")
    refuse_unless(not args.get("use_rope_scaling", False), where, "RoPE scaling")
    refuse_unless(not args.get("add_bias_linear", False), where, "biases on linear layers")
    refuse_unless(not args.get("add_qkv_bias", False), where, "a QKV bias")
    norm = str(args.get("normalization", "LayerNorm"))
    refuse_unless(norm == "RMSNorm", where, f"normalization={norm} (a LayerNorm with a bias)")
    swiglu, relu2 = bool(args.get("swiglu", False)), bool(args.get("squared_relu", False))
    refuse_unless(swiglu or relu2, where, "an erf-GELU MLP (this backbone's GELU is tanh)")
    tied = not bool(args.get("untie_embeddings_and_output_weights", False))
    arch = {
        "norm": "rmsnorm", "norm_gain": "one_plus_w" if args.get("apply_layernorm_1p") else "w",
        "norm_eps": float(args.get("norm_epsilon", 1e-5)),
        "mlp": "swiglu" if swiglu else "relu2", "mlp_hidden": int(args["ffn_hidden_size"]),
        "mlp_bias": False,
        "n_kv_heads": int(args["num_query_groups"]) if args.get("group_query_attention") else h,
        "qk_norm": "head" if args.get("qk_layernorm") else "none",
        "rope_base": float(args.get("rotary_base", 10000)), "head_bias": False,
        "tie_embeddings": tied,
    }
    length = int(args.get("max_position_embeddings") or args.get("seq_length") or 2048)
    return ["algo=mdlm", "algo.time_conditioning=false", "sampler=low_confidence",
            *file_overrides(where, "model", {"n_heads": h, "max_seq_len": length}),
            *file_overrides(where, "model.arch", arch)]


LAYER = r"decoder\.layers\.(\d+)\."


def megatron_rules(tied: bool) -> Rules:
    """Megatron-Core key -> this backbone's (TE fuses each pre-norm into the next linear;
    the local spec names it on its own). A tied readout is the embedding."""
    block: list[tuple[str, str]] = [
        (r"self_attention\.linear_qkv\.weight", "qkv_grouped"),
        (r"self_attention\.linear_qkv\.layer_norm_weight", "norm1.weight"),
        (r"input_layernorm\.weight", "norm1.weight"),
        (r"self_attention\.q_layernorm\.weight", "q_norm.weight"),
        (r"self_attention\.k_layernorm\.weight", "k_norm.weight"),
        (r"self_attention\.linear_proj\.weight", "attn_out.weight"),
        (r"mlp\.linear_fc1\.layer_norm_weight", "norm2.weight"),
        (r"pre_mlp_layernorm\.weight", "norm2.weight"),
        (r"mlp\.linear_fc1\.weight", "mlp.0.weight"),  # [gate, up]
        (r"mlp\.linear_fc2\.weight", "mlp.2.weight"),
    ]
    return [(r"embedding\.word_embeddings\.weight", lambda: "embed"),
            *((LAYER + pattern, lambda n, ours=ours: f"blocks.{n}.{ours}")
              for pattern, ours in block),
            (r"decoder\.final_layernorm\.weight", lambda: "final.norm.weight"),
            (r"output_layer\.weight", None if tied else (lambda: "final.linear.weight")),
            (r".*rotary_pos_emb\.inv_freq", None)]


def ungroup_qkv(weight: torch.Tensor, heads: int, groups: int) -> torch.Tensor:
    """Megatron's fused QKV rows (per group: its heads / groups query heads, one key head, one
    value head) -> [all query heads, all key heads, all value heads]."""
    hidden = weight.shape[1]
    head_dim = weight.shape[0] // (heads + 2 * groups)
    per_group = weight.view(groups, (heads // groups + 2) * head_dim, hidden)
    q, k, v = per_group.split([heads // groups * head_dim, head_dim, head_dim], dim=1)
    return torch.cat([q.reshape(-1, hidden), k.reshape(-1, hidden), v.reshape(-1, hidden)])


def megatron_state(model: dict[str, torch.Tensor], args: dict[str, Any], where: str
                   ) -> dict[str, torch.Tensor]:
    """Megatron-Core keys -> this backbone's (a tied readout is the embedding)."""
    heads = int(args["num_attention_heads"])
    groups = int(args["num_query_groups"]) if args.get("group_query_attention") else heads
    tied = not bool(args.get("untie_embeddings_and_output_weights", False))
    unwrapped = {k.removeprefix("module.").removeprefix("language_model."): v
                 for k, v in model.items()}
    out = rename(unwrapped, megatron_rules(tied), where, "a Megatron-Core GPT layout")
    for key in [k for k in out if k.endswith(".qkv_grouped")]:
        out[key.replace("qkv_grouped", "qkv.weight")] = ungroup_qkv(out.pop(key), heads, groups)
    return out
