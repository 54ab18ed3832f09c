"""Reject training overrides that name keys no code reads, with the nearest known key.

Hydra answers a mistyped key (`training.max_step=10`) with "use +training.max_step=10", and
that adds a key nobody reads: the run trains with the default silently. Here, before Hydra
composes anything, a key under training / data / model / algo / optim must exist in the
composed config or (added with `+`) be an argument of the class that node builds (the algo's
constructor chain for `algo.*`, the backbone's for `model.*`, the datamodule's for `data.*`);
`training.*` and `optim.*` keys are read by name, so only existing ones count; `trainer.*` keys
must exist or be arguments of Lightning's Trainer (`trainer.max_step=10` names `max_steps`).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

CHECKED_NODES = ("training", "data", "model", "algo", "optim", "trainer")
# `trainer.*` becomes keyword arguments of Lightning's Trainer (src/builders.py), except the
# ones the run plan sets from the lab's own keys.
TRAINER_CLASS = "lightning.pytorch.Trainer"
SET_BY_THE_LAB = {"max_steps": "training.max_steps", "max_epochs": "training.max_steps",
                  "accumulate_grad_batches": "training.global_batch_size",
                  "val_check_interval": "training.val_every_n_steps",
                  "check_val_every_n_epoch": "training.val_every_n_steps",
                  "default_root_dir": "paths.log_dir", "callbacks": "callbacks",
                  "logger": "logger", "plugins": "trainer", "use_distributed_sampler": "trainer"}


def _constructor_args(target: str | None) -> set[str]:
    """Keyword arguments the class `target` (and the bases its **kwargs reach) accepts."""
    if not target:
        return set()
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - an unknown target is reported by the build itself
        return set()
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names.update(n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names - {"self"}


def _known(cfg: DictConfig, node: str) -> set[str]:
    keys = set(cfg[node].keys()) if node in cfg else set()
    if node in ("algo", "model", "data"):
        keys |= _constructor_args(OmegaConf.select(cfg, f"{node}._target_"))
    if node == "trainer":
        keys |= _constructor_args(TRAINER_CLASS) - set(SET_BY_THE_LAB)
    return keys


def _split(arg: str) -> tuple[str, str] | None:
    """(prefix +/++/'', dotted key) of a `key=value` override under a checked node."""
    head, sep, _ = arg.partition("=")
    if not sep or "@" in head or head.startswith("~"):
        return None
    prefix = "++" if head.startswith("++") else "+" if head.startswith("+") else ""
    key = head[len(prefix):]
    if "." not in key or key.split(".")[0] not in CHECKED_NODES:
        return None
    return prefix, key


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    """Whether the key exists, whatever its value (also `???`, which `in` does not see)."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def first_values(argv: list[str]) -> list[str]:
    """Sweep overrides at their first value (`optim.lr=1e-3,3e-3` -> `optim.lr=1e-3`)."""
    out = []
    for arg in argv:
        head, sep, value = arg.partition("=")
        if sep and "," in value and not value.startswith(("[", "{", "'", '"')) and \
                not head.startswith("hydra."):
            value = value.split(",")[0]
        out.append(f"{head}{sep}{value}")
    return out


def check_override_keys(argv: list[str], compose: Any) -> None:
    """Raise one ValueError for the first override whose key no code reads.

    Args:
        argv: the command's overrides.
        compose: overrides -> composed config (the entry point's own config).
    """
    checked = [(arg, parts) for arg in argv if (parts := _split(arg)) is not None]
    if not checked:
        return
    # Values under the checked nodes do not change the structure: compose without them.
    cfg = compose([a for a in first_values(argv) if _split(a) is None])
    for _, (prefix, key) in checked:
        if _has_key(cfg, key):
            continue
        node, leaf = key.split(".", 1)
        first, known = leaf.split(".")[0], _known(cfg, node)
        if prefix and first in known:
            continue  # an argument the class takes (e.g. +algo.t_curriculum={...} for MDLM)
        lab = difflib.get_close_matches(first, sorted(SET_BY_THE_LAB), n=1) \
            if node == "trainer" else []
        nearest = difflib.get_close_matches(first, sorted(known), n=1)
        if lab and (not nearest or first not in known):
            raise ValueError(f"{prefix}{key} is not a setting of this run (the lab sets "
                             f"trainer.{lab[0]} itself: use {SET_BY_THE_LAB[lab[0]]})")
        if nearest:
            hint = f"did you mean {node}.{nearest[0]}?"
        else:
            hint = f"known keys: {', '.join(sorted(known))}"
        why = "; an added key that no code reads would be ignored silently" if prefix else ""
        raise ValueError(f"{prefix}{key} is not a setting of this run ({hint}){why}")
