"""Which sampler an algo uses by default: its config says so once (configs/algo/<name>.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml

#: The repo's configs/ (absent in an exported model folder: then there is no default to name).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def default_sampler(algo_name: str) -> str | None:
    """The sampler an algo's config selects (`configs/algo/<name>.yaml`, following its
    defaults: duo_distill inherits duo's): declared there once, read here for messages.
    Plain YAML, no OmegaConf: the samplers are vendored into exported models."""
    path = CONFIG_DIR / "algo" / f"{algo_name}.yaml"
    if not path.is_file():
        return None
    inherited = None
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("/sampler"):
                    return str(value)
        elif entry != "_self_":
            inherited = inherited or default_sampler(str(entry))
    return inherited
