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

#: (reference key, our key) templates; {n} = a number, {p} = weight|bias, {m} = a block
#: sub-module whose names agree. Anything else is an error, except DROPPED.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("vocab_embed.embedding", "embed"),
    ("sigma_map.mlp.{n}.{p}", "sigma_embed.mlp.{n}.{p}"),
    ("blocks.{n}.attn_qkv.weight", "blocks.{n}.qkv.weight"),
    ("blocks.{n}.adaLN_modulation.{p}", "blocks.{n}.adaln.{p}"),
    ("blocks.{n}.{m}.weight", "blocks.{n}.{m}.weight"),
    ("blocks.{n}.mlp.{k}.{p}", "blocks.{n}.mlp.{k}.{p}"),
    ("output_layer.norm_final.weight", "final.norm.weight"),
    ("output_layer.linear.{p}", "final.linear.{p}"),
    ("output_layer.adaLN_modulation.{p}", "final.adaln.{p}"),
)
_FIELDS = {"n": r"\d+", "k": r"\d+", "p": "weight|bias", "m": "norm1|norm2|attn_out"}


def _regex(template: str) -> re.Pattern[str]:
    """A key template as a regex with one named group per field."""
    parts = re.split(r"\{(\w)\}", template)
    body = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_FIELDS[part]})"
                   for i, part in enumerate(parts))
    return re.compile(body)


def _rename(state: dict[str, torch.Tensor], pairs: list[tuple[str, str]],
            what: str) -> dict[str, torch.Tensor]:
    compiled = [(_regex(a), b) for a, b in pairs]
    out = {}
    for key, value in state.items():
        for regex, template in compiled:
            if (m := regex.fullmatch(key)) is not None:
                out[template.format(**m.groupdict())] = value
                break
        else:
            raise ValueError(f"unexpected key {key!r} in {what} (see src/export/reference.py)")
    return out


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


def rotary_head_dim(state: dict[str, torch.Tensor]) -> int | None:
    """The head dimension the reference's rotary buffer was built for (`inv_freq` holds
    head_dim / 2 frequencies, 1 / 10000^(2i / head_dim)), or None when the file has none.

    Raises:
        ValueError: frequencies of another RoPE base, which this backbone does not use.
    """
    inv_freq = strip_prefixes(state).get("rotary_emb.inv_freq")
    if inv_freq is None or inv_freq.dim() != 1:
        return None
    head_dim = 2 * inv_freq.numel()
    expected = 1.0 / 10_000 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if not torch.allclose(inv_freq.double(), expected, rtol=1e-4):
        raise ValueError("rotary_emb.inv_freq is not RoPE with base 10000 (this backbone's): "
                         "a different architecture; it cannot be imported as a DiT")
    return head_dim


def from_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference DiT state dict to this repo's DiT keys.

    Raises:
        ValueError: a key that is neither mapped nor a known dropped buffer (a different
            architecture: say which key).
    """
    kept = {k: v for k, v in strip_prefixes(state).items()
            if not any(re.fullmatch(p, k) for p in DROPPED)}
    return _rename(kept, list(KEY_MAP), "a reference DiT state dict: not a MDLM / DUO DiT "
                                        "backbone")


def to_reference(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `from_reference` (what a reference DiT would load)."""
    return _rename(state, [(ours, ref) for ref, ours in KEY_MAP], "this repo's DiT keys")


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
