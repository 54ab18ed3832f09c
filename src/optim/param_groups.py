"""Optimizer parameter groups (weight decay optionally off for norms, biases and embeddings;
per-group lr / decay / eps under muP and CompleteP) and the optimizer built on them."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn
from hydra.utils import get_class


def _decayed(name: str, p: nn.Parameter, decay_norm_bias_embed: bool) -> bool:
    is_embedding = name.split(".")[-1] == "embed" or "embedding" in name
    return decay_norm_bias_embed or (p.dim() >= 2 and not is_embedding)


def param_groups(
    model: nn.Module, weight_decay: float, decay_norm_bias_embed: bool = False,
    lr: float | None = None, eps: float | None = None,
) -> list[dict]:
    """Split parameters into decayed and non-decayed groups.

    Matrices of linear layers are decayed; 1-d parameters (LayerNorm weights, biases)
    and the embedding table are not, unless `decay_norm_bias_embed` is set. Under muP /
    CompleteP (`model.parameterization`) each group also carries its own lr, decay and eps
    (src/models/parameterization.py); `lr` and `eps` are then the base values.
    """
    p13n = getattr(model, "parameterization", None)
    if p13n is not None and not p13n.is_sp:
        return _scaled_groups(model, p13n, weight_decay, decay_norm_bias_embed, lr, eps)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if _decayed(name, p, decay_norm_bias_embed) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _scaled_groups(model: nn.Module, p13n: Any, weight_decay: float, decay_nbe: bool,
                   lr: float | None, eps: float | None) -> list[dict]:
    """One group per (decayed, lr multiplier, decay multiplier), in parameter order."""
    if lr is None or eps is None:
        raise ValueError("muP / CompleteP parameter groups need the base lr and eps")
    buckets: dict[tuple[bool, float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        role, decayed = model.param_role(name), _decayed(name, p, decay_nbe)
        key = (decayed, p13n.lr_mult(role), p13n.weight_decay_mult(role) if decayed else 0.0)
        buckets.setdefault(key, []).append(p)
    return [{"params": params, "lr": lr * lr_mult, "eps": eps * p13n.eps_mult,
             "weight_decay": weight_decay * wd_mult}
            for (_, lr_mult, wd_mult), params in buckets.items()]


def build_optimizer(path: str, groups: list[dict], *, fused: bool = False,
                    **kwargs: Any) -> torch.optim.Optimizer:
    """`optim.optimizer` (a class path: torch.optim.AdamW, pytorch_optimizer.LaProp, ...) on
    `groups`; `fused` is passed only to optimizers that take it."""
    try:
        cls = get_class(path)
    except Exception as err:  # noqa: BLE001 - import or attribute errors: one line
        cause = err.__cause__ or err
        raise ValueError(f"optim.optimizer={path!r} cannot be imported "
                         f"({type(cause).__name__}: {str(cause).splitlines()[0]}); "
                         f"use e.g. optim=adamw or optim=laprop") from None
    if "fused" in inspect.signature(cls).parameters:
        kwargs["fused"] = fused
    return cls(groups, **kwargs)
