"""The reference DiT's state dict (MDLM / DUO / scaling-dllms `models/dit.py`) in this repo's
key names, and back.

The two backbones compute the same function (same qkv split 'b s (three h d)', the same
half-split rotary on q and k, adaLN chunks in the same order, weight-only fp32 LayerNorm,
tanh-GELU MLP): only the names differ, so the import is a renaming, checked against an
independent re-implementation of the reference forward (tests/export/reference_dit.py).
"""

from __future__ import annotations

import re

import torch

#: (reference key pattern, our key template); anything else is an error, except DROPPED.
KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"vocab_embed\.embedding", "embed"),
    (r"sigma_map\.mlp\.(\d+)\.(weight|bias)", r"sigma_embed.mlp.\1.\2"),
    (r"blocks\.(\d+)\.attn_qkv\.weight", r"blocks.\1.qkv.weight"),
    (r"blocks\.(\d+)\.adaLN_modulation\.(weight|bias)", r"blocks.\1.adaln.\2"),
    (r"blocks\.(\d+)\.(norm1|norm2|attn_out)\.weight", r"blocks.\1.\2.weight"),
    (r"blocks\.(\d+)\.mlp\.(\d+)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"output_layer\.norm_final\.weight", "final.norm.weight"),
    (r"output_layer\.linear\.(weight|bias)", r"final.linear.\1"),
    (r"output_layer\.adaLN_modulation\.(weight|bias)", r"final.adaln.\1"),
)
#: Buffers the reference stores that this backbone recomputes.
DROPPED = (r"rotary_emb\.inv_freq",)
#: Wrappers around the backbone in reference checkpoints (Lightning module, HF model,
#: torch.compile), stripped before renaming.
PREFIXES = ("backbone.", "model.", "_orig_mod.")


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def is_reference(state: dict[str, torch.Tensor]) -> bool:
    """True when the keys are the reference DiT's (after the wrappers are stripped)."""
    return "vocab_embed.embedding" in strip_prefixes(state)


def from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference DiT state dict to this repo's DiT keys.

    Raises:
        ValueError: a key that is neither mapped nor a known dropped buffer (a different
            architecture: say which key).
    """
    out = {}
    for key, value in strip_prefixes(state).items():
        if any(re.fullmatch(p, key) for p in DROPPED):
            continue
        for pattern, template in KEY_MAP:
            if re.fullmatch(pattern, key):
                out[re.sub(f"^{pattern}$", template, key)] = value
                break
        else:
            raise ValueError(f"unexpected key {key!r} in a reference DiT state dict: not a "
                             "MDLM / DUO DiT backbone (see src/export/reference.py)")
    return out


def to_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `from_reference` (what a reference DiT would load)."""
    inverse = (
        (r"embed", "vocab_embed.embedding"),
        (r"sigma_embed\.mlp\.(\d+)\.(weight|bias)", r"sigma_map.mlp.\1.\2"),
        (r"blocks\.(\d+)\.qkv\.weight", r"blocks.\1.attn_qkv.weight"),
        (r"blocks\.(\d+)\.adaln\.(weight|bias)", r"blocks.\1.adaLN_modulation.\2"),
        (r"blocks\.(\d+)\.(norm1|norm2|attn_out)\.weight", r"blocks.\1.\2.weight"),
        (r"blocks\.(\d+)\.mlp\.(\d+)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
        (r"final\.norm\.weight", "output_layer.norm_final.weight"),
        (r"final\.linear\.(weight|bias)", r"output_layer.linear.\1"),
        (r"final\.adaln\.(weight|bias)", r"output_layer.adaLN_modulation.\1"),
    )
    out = {}
    for key, value in state.items():
        for pattern, template in inverse:
            if re.fullmatch(pattern, key):
                out[re.sub(f"^{pattern}$", template, key)] = value
                break
        else:
            raise ValueError(f"{key!r} has no reference DiT counterpart")
    return out


def shape_facts(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Backbone sizes readable from our-key weights (the head count is not: it must come
    from a config)."""
    vocab, dim = state["embed"].shape
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    facts = {"vocab_size": int(vocab), "dim": int(dim), "n_blocks": len(blocks),
             "adaln": "final.adaln.weight" in state}
    if "sigma_embed.mlp.0.weight" in state:
        facts["cond_dim"] = int(state["sigma_embed.mlp.0.weight"].shape[0])
    return facts
