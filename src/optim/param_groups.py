"""AdamW parameter groups: weight decay optionally off for norms, biases and embeddings."""

from __future__ import annotations

import torch.nn as nn


def param_groups(
    model: nn.Module, weight_decay: float, decay_norm_bias_embed: bool = False
) -> list[dict]:
    """Split parameters into decayed and non-decayed groups.

    Matrices of linear layers are decayed; 1-d parameters (LayerNorm weights, biases)
    and the embedding table are not, unless `decay_norm_bias_embed` is set.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = name.split(".")[-1] == "embed" or "embedding" in name
        if decay_norm_bias_embed or (p.dim() >= 2 and not is_embedding):
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
