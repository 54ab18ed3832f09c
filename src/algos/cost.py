"""What a run's algorithm costs per training sequence, from its config alone: the algo class
(`_target_`) states its backbone passes (`Algo.training_passes`); src/models/flops.py turns
passes into FLOPs without knowing any algorithm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from src.models.flops import BackbonePass


def algo_passes(algo_cfg: Mapping[str, Any] | DictConfig, seq_len: int) -> list[BackbonePass]:
    """`training_passes` of the class `algo_cfg._target_` names."""
    plain = OmegaConf.to_container(algo_cfg, resolve=True) if isinstance(algo_cfg, DictConfig) \
        else dict(algo_cfg)
    return get_class(str(plain["_target_"])).training_passes(plain, int(seq_len))
