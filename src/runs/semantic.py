"""Which config keys change what a run computes (semantic) and which do not.

A key is semantic unless it is listed below: a new option is part of a run's identity until
someone decides otherwise here (and in the README's "Run identity" section). Not semantic:
- where things go and what is logged: paths, loggers, callbacks, checkpoint cadence, the
  run folder itself, validation cadence (validation never touches the training state);
- how the global batch is computed, as long as it stays the same: devices, nodes,
  strategy (DDP / FSDP), the per-device micro-batch, data-loader workers, torch.compile and
  the attention backend (the same math, to float tolerance);
- the end-of-run samples (eval.*, sampler.*), which do not enter result.json's metrics;
- labels that are already in the readable part of the folder (experiment_name, algo.name,
  model.name, data.tag).
"""

from __future__ import annotations

import json
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

NON_SEMANTIC: tuple[str, ...] = (
    "run_dir", "run_identity", "paths", "logger", "callbacks", "eval", "sampler",
    "optimized_metric", "experiment_name", "algo.name", "model.name", "data.tag",
    "algo.cache_dir", "data.cache_dir", "data.batch_size", "data.num_workers",
    "data.max_train_batches", "model.attn_backend",
    "training.val_every_n_steps", "training.ckpt_every_n_steps", "training.keep_last_k",
    "training.keep_steps", "training.overwrite", "training.compile",
    "training.allow_config_change", "training.lock_lease_s", "training.diverge_above",
    "training.diverge_patience",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
    "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.num_sanity_val_steps",
)
ABSENT = "<absent>"  # a key one config has and the other lacks


def is_semantic(key: str) -> bool:
    return not any(key == p or key.startswith(p + ".") for p in NON_SEMANTIC)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted.key: leaf}; lists stay leaves (e.g. optim.betas)."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def semantic_values(cfg: DictConfig | dict) -> dict[str, Any]:
    """The semantic leaves of a config, resolved, as {dotted.key: value}.

    `training.max_steps` is left out when a FLOP budget sets the step count instead.
    """
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out = {k: v for k, v in flatten(tree).items() if is_semantic(k)}
    if out.get("training.flops_budget") not in (None, "None", "null"):
        out.pop("training.max_steps", None)
    return out


def canonical(value: Any) -> Any:
    """One spelling per value: 1 == 1.0 == 1e0, so `optim.lr=1` and `optim.lr=1.0` agree."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (old value, new value)} for every key whose canonical value differs."""
    out = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if canonical(a) != canonical(b):
            out[key] = (a, b)
    return out


def fingerprint(delta: dict[str, Any]) -> str:
    """Canonical JSON of a {key: value} mapping (the input of the run's config hash)."""
    return json.dumps(canonical(delta), sort_keys=True, separators=(",", ":"))
