"""Build samplers from Hydra configs (`configs/sampler/*.yaml`) or by short name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.samplers.ancestral import MDLMAncestral
from src.samplers.ar import ARSampler
from src.samplers.base import Sampler
from src.samplers.duo import DUOAncestral

#: Short names accepted by `build_sampler`; a config with `_target_` works for any class.
SAMPLERS: dict[str, type[Sampler]] = {
    "ar": ARSampler,
    "ancestral": MDLMAncestral,
    "mdlm_ancestral": MDLMAncestral,
    "duo_ancestral": DUOAncestral,
}


def build_sampler(cfg: Mapping[str, Any] | str, **overrides: Any) -> Sampler:
    """Instantiate a sampler from a Hydra node (`_target_` + kwargs) or a short name.

    Args:
        cfg: A config mapping with `_target_` (e.g. `cfg.sampler`), or a name in `SAMPLERS`.
        **overrides: Constructor kwargs that replace the config's.

    Returns:
        The sampler instance.

    Raises:
        ValueError: Unknown name, or a config without `_target_`.
    """
    if isinstance(cfg, str):
        if cfg not in SAMPLERS:
            raise ValueError(f"unknown sampler {cfg!r}: choose one of {sorted(SAMPLERS)}")
        return SAMPLERS[cfg](**overrides)
    if "_target_" not in cfg:
        raise ValueError("sampler config has no _target_: use one of configs/sampler/*.yaml")
    from hydra.utils import instantiate  # lazy: keep `import src.samplers` light

    sampler = instantiate(cfg, **overrides)
    if not isinstance(sampler, Sampler):
        raise ValueError(f"{cfg['_target_']} is not a Sampler: point _target_ at src.samplers")
    return sampler
