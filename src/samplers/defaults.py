"""Which sampler an algo uses by default: its config says so once (configs/algo/<name>.yaml)."""

from __future__ import annotations


def default_sampler(algo_name: str) -> str | None:
    """The sampler an algo's config selects (`configs/algo/<name>.yaml`, following its
    defaults: duo_distill inherits duo's): declared there once, read here for messages."""
    from omegaconf import OmegaConf

    from src.utils.cli import CONFIG_DIR

    path = CONFIG_DIR / "algo" / f"{algo_name}.yaml"
    if not path.is_file():
        return None
    inherited = None
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("/sampler"):
                    return str(value)
        elif entry != "_self_":
            inherited = inherited or default_sampler(str(entry))
    return inherited
