"""The run folder of a config: a readable path plus a hash of everything the path does not say.

The readable part is the `run_dir` template (experiment / algo / model / data / budget /
seed). Its *baseline* is the config those names select with no other override: the
experiment, algo, model and data files (by their names), with the run's seed, budget, step
count and paths. The *delta* is every semantic key (src/runs/semantic.py) whose value
differs from the baseline; a non-empty delta appends `-<8 hex>` (a hash of the delta) to the
folder:

    runs/quickstart/mdlm/1M/shakespeare/steps3/s0             # optim.lr at its default
    runs/quickstart/mdlm/1M/shakespeare/steps3/s0-6f0c2a91    # optim.lr=3e-3

The baseline is a function of the readable path alone, so two configs that share a folder
share a baseline and a delta: they agree on every semantic key. The same config always finds
its folder again, however it is spelled (`optim.lr=1e-3` at the default lands on the default
run). The delta is stored in config.yaml and result.json (`config_delta`) for people and for
`scripts/collect_runs.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from src.runs.semantic import differences, fingerprint, semantic_values
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers

# Config groups whose choice is named in the readable path, and the key that names it.
NAMED_GROUPS: tuple[tuple[str, str], ...] = (
    ("experiment", "experiment_name"), ("algo", "algo.name"), ("model", "model.name"),
    ("data", "data.tag"),
)
# Values the readable path states exactly; the baseline takes them from the run.
PATH_VALUES: tuple[str, ...] = ("seed", "training.flops_budget", "training.max_steps", "paths")
HASH_CHARS = 8


@dataclass(frozen=True)
class RunIdentity:
    """Where a run lives and why.

    Attributes:
        readable_dir: the `run_dir` template resolved (names, budget, seed).
        config_delta: semantic keys that differ from the baseline -> this run's values.
        config_hash: 8 hex chars of the delta's hash; None when the delta is empty.
    """

    readable_dir: str
    config_delta: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None

    @property
    def run_dir(self) -> str:
        return self.readable_dir + (f"-{self.config_hash}" if self.config_hash else "")

    def as_config(self) -> dict[str, Any]:
        """What config.yaml, checkpoints and result.json record."""
        return {"readable_dir": self.readable_dir, "config_hash": self.config_hash,
                "config_delta": dict(self.config_delta),
                "suffix": f"-{self.config_hash}" if self.config_hash else ""}


def _group_choices(cfg: DictConfig) -> list[str]:
    """`group=name` for each named group whose name is a config file (else the default)."""
    out = []
    for group, key in NAMED_GROUPS:
        name = OmegaConf.select(cfg, key)
        if name is not None and (CONFIG_DIR / group / f"{name}.yaml").is_file():
            out.append(f"{group}={name}")
    return out


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose configs/<name>.yaml (inside a Hydra app, or standalone)."""
    register_resolvers()
    if GlobalHydra.instance().is_initialized():
        return hydra.compose(name, overrides=overrides)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra.compose(name, overrides=overrides)


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose configs/train.yaml (inside a Hydra app, or standalone)."""
    return compose_config("train", overrides)


def baseline_config(cfg: DictConfig) -> DictConfig:
    """The config the readable path alone describes (see the module docstring)."""
    base = compose_train(_group_choices(cfg))
    with open_dict(base):
        for key in PATH_VALUES:
            value = OmegaConf.select(cfg, key)
            plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) \
                else value
            OmegaConf.update(base, key, plain, merge=False)
    return base


def config_delta(cfg: DictConfig) -> dict[str, Any]:
    """Semantic keys whose value differs from the baseline -> this config's values."""
    diff = differences(semantic_values(baseline_config(cfg)), semantic_values(cfg))
    return {key: new for key, (_, new) in diff.items()}


def identity_of(cfg: DictConfig) -> RunIdentity:
    """The identity of a composed training config (no file is read or written)."""
    stored = OmegaConf.select(cfg, "run_identity")
    readable = str(stored.readable_dir) if stored is not None else str(cfg.run_dir)
    delta = config_delta(cfg)
    digest = hashlib.sha256(fingerprint(delta).encode()).hexdigest()[:HASH_CHARS]
    return RunIdentity(readable, delta, digest if delta else None)


def assign_identity(cfg: DictConfig) -> RunIdentity:
    """Compute the identity and write it into `cfg` (run_dir and a run_identity block)."""
    identity = identity_of(cfg)
    with open_dict(cfg):
        cfg.run_identity = identity.as_config()
        cfg.run_dir = identity.run_dir
    return identity


def resolve_run_dir(overrides: list[str]) -> Path:
    """The absolute run folder of `python -m src.train <overrides>` (composes, builds nothing)."""
    return Path(identity_of(compose_train(overrides)).run_dir).absolute()
