"""The one way every entry point builds a sampler: from a Hydra node (`configs/sampler/*.yaml`)
or a config name, with the `steps` override the CLIs share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.samplers.base import Sampler


def build_sampler(cfg: Mapping[str, Any] | str, *, steps: int | None = None,
                  **overrides: Any) -> Sampler:
    """Instantiate a sampler.

    Args:
        cfg: A config mapping with `_target_` (e.g. `cfg.sampler`), or the name of a file in
            configs/sampler/ (composed with its defaults).
        steps: Denoising steps, applied when the sampler takes them (None: its default).
        **overrides: Constructor kwargs that replace the config's.

    Raises:
        ValueError: Unknown name, or a config without `_target_`.
    """
    from hydra.utils import instantiate  # lazy: keep `import src.samplers` light
    from omegaconf import OmegaConf

    if isinstance(cfg, str):
        cfg = sampler_config(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    if "_target_" not in plain:
        raise ValueError("sampler config has no _target_: use one of configs/sampler/*.yaml")
    if steps is not None and "steps" in plain:
        plain["steps"] = int(steps)
    sampler = instantiate({**plain, **overrides})
    if not isinstance(sampler, Sampler):
        raise ValueError(f"{plain['_target_']} is not a Sampler: point _target_ at src.samplers")
    return sampler


def sampler_config(name: str) -> Any:
    """configs/sampler/<name>.yaml composed with its defaults (a DictConfig with _target_)."""
    from src.utils.cli import CONFIG_DIR, group_options

    options = group_options("sampler")
    if name not in options:
        raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(options)} "
                         f"({CONFIG_DIR.name}/sampler/)")
    from src.runs.identity import compose_train

    return compose_train([f"sampler={name}"]).sampler

