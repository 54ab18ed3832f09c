"""The repo's own schema for the sections of a run config that are built into objects, read
off configs/: every key some config file puts there, and the kinds of value it takes.

A config read from a file (a checkpoint's `run_config`, an export's config.json) is checked
against it: a key no config file has, or a value of another kind (a mapping where configs/
has a number, a string where it has a flag), is refused before anything is built. A key whose
default is null, `???` or an interpolation is open: it takes any plain value.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from omegaconf import OmegaConf

from src.utils.cli import CONFIG_DIR

# Config groups whose files fill the built sections, and where each group sits.
GROUP_PACKAGES = {"model": "model", "data": "data", "algo": "algo", "noise": "algo.noise",
                  "sampler": "sampler", "optim": "optim"}
BUILT_SECTIONS = ("model", "data", "algo", "sampler", "optim")
OPEN = "any plain value"


def kind_of(value: Any) -> str:
    """The schema's name for a value's kind."""
    if isinstance(value, bool):
        return "a flag"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return OPEN if "${" in value else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return "null" if value is None else type(value).__name__


def _collect(tree: Any, prefix: str, out: dict[str, set[str]]) -> None:
    if not isinstance(tree, Mapping):
        return
    for key, value in tree.items():
        if key == "defaults" or not isinstance(key, str):
            continue
        dotted = f"{prefix}.{key}"
        if value != "???":  # required: the files that fill it give its kind
            out.setdefault(dotted, set()).add(OPEN if value is None else kind_of(value))
        _collect(value, dotted, out)


def _load(path) -> Any:
    """A config file as written (OmegaConf's YAML: `1e-3` is a number, as Hydra reads it)."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


@cache
def schema() -> dict[str, frozenset[str]]:
    """{dotted key under a built section: the kinds configs/ gives it}."""
    found: dict[str, set[str]] = {section: {"a mapping"} for section in BUILT_SECTIONS}
    for group, package in GROUP_PACKAGES.items():
        found.setdefault(package, set()).add("a mapping")
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            _collect(_load(path), package, found)
    # Experiments (`# @package _global_`) may set keys of any section.
    for path in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
        tree = _load(path)
        for section in BUILT_SECTIONS:
            _collect(tree.get(section), section, found)
    return {key: frozenset(kinds) for key, kinds in found.items()}


def schema_problem(key: str, value: Any) -> str | None:
    """Why `value` cannot stand at `key` of a built section, or None when it can."""
    known = schema()
    parts = key.split(".")
    for depth in range(len(parts) - 1, 0, -1):  # under an open key, anything plain goes
        if OPEN in known.get(".".join(parts[:depth]), ()):
            return None
    if key not in known:
        return "not a key any configs/ file has"
    kinds = known[key]
    kind = kind_of(value)
    if OPEN in kinds or kind in kinds or (kind == "a whole number" and "a number" in kinds):
        return None
    return f"{kind} ({value!r:.60}) where configs/ has {' or '.join(sorted(kinds))}"
