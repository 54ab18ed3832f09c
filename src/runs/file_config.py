"""A run config read from a file is data: it may only name the repo's own classes, where
configs/ names them.

The command line and configs/ are trusted; a checkpoint's stored `run_config` is not (it may
come from a colleague, a published checkpoint or a scratch directory). Hydra's `instantiate`
follows every `_target_` it finds, so before a stored config is built this module checks it:

- in the sections a reader builds (`model`, `data`, `algo`, `sampler`, `optim`), every key is
  one some configs/ file has and its value is of a kind configs/ gives it
  (src/runs/config_schema.py); a `_target_`
  may stand only where configs/ puts one (`model`, `data`, `algo`, `algo.noise`, `sampler`) and
  must name one of the classes configs/ names there, Hydra's call controls (`_args_`,
  `_partial_`, `_recursive_`, `_convert_`) never appear, and `optim.optimizer` (a class path)
  is one configs/optim names;
- no value anywhere is an interpolation (`${...}`: a stored config is resolved; resolvers
  run code).

The other sections (trainer, logger, callbacks, ...) are never built from a file: a run may
name its own callback on the command line, and its checkpoints stay readable.

Anything else is refused in one line naming the file and the key, before anything is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any, NoReturn

import yaml

from src.runs.config_schema import BUILT_SECTIONS, GROUP_PACKAGES, schema_problem
from src.utils.cli import CONFIG_DIR, UserError

CALL_CONTROLS = ("_args_", "_partial_", "_recursive_", "_convert_")


class UnsafeConfig(UserError):
    """A stored config that would make the lab import or call something configs/ does not name."""


def _targets_in(tree: Any, prefix: str, out: dict[str, set[str]]) -> None:
    if isinstance(tree, Mapping):
        target = tree.get("_target_")
        if isinstance(target, str):
            out.setdefault(prefix, set()).add(target)
        for key, value in tree.items():
            if key != "_target_" and isinstance(key, str) and key != "defaults":
                _targets_in(value, f"{prefix}.{key}" if prefix else key, out)


@cache
def allowed_targets() -> dict[str, frozenset[str]]:
    """{location in a run config: the `_target_`s configs/ puts there}."""
    found: dict[str, set[str]] = {}
    for group, package in GROUP_PACKAGES.items():
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            _targets_in(yaml.safe_load(path.read_text()) or {}, package, found)
    return {loc: frozenset(t) for loc, t in found.items()}


@cache
def allowed_optimizers() -> frozenset[str]:
    names = {(yaml.safe_load(p.read_text()) or {}).get("optimizer")
             for p in (CONFIG_DIR / "optim").glob("*.yaml")}
    return frozenset(n for n in names if isinstance(n, str))


def check_file_config(tree: Any, source: str) -> None:
    """Refuse a stored run config that could run code (see the module docstring).

    Raises:
        UnsafeConfig: one line naming `source`, the key and the fix.
    """
    if not isinstance(tree, Mapping):
        raise UnsafeConfig(f"{source}: the stored run config is a {type(tree).__name__}, not a "
                           f"mapping: use a checkpoint written by src.train")
    allowed = allowed_targets()
    for key, value in _walk(tree, ""):
        leaf = key.rsplit(".", 1)[-1]
        if isinstance(value, str) and "${" in value:
            _refuse(source, key, f"an interpolation ({_short(value)}); a stored config is resolved")
        if key.split(".", 1)[0] not in BUILT_SECTIONS:
            continue
        if leaf in CALL_CONTROLS:
            _refuse(source, key, f"{leaf} is a Hydra call control, never part of a run config")
        if leaf == "_target_":
            where = key.rsplit(".", 1)[0] if "." in key else ""
            if where not in allowed:
                _refuse(source, key, f"a _target_ ({_short(value)}) where configs/ has a value")
            if not isinstance(value, str) or value not in allowed[where]:
                _refuse(source, key, f"{_short(value)} is not one of the classes configs/ names "
                                     f"for {where} ({', '.join(sorted(allowed[where]))})")
        if not isinstance(value, (Mapping, list, str, int, float, bool, type(None))):
            _refuse(source, key, f"a {type(value).__name__} value, not plain data")
        if leaf != "_target_" and not _in_list(key) and (problem := schema_problem(key, value)):
            _refuse(source, key, problem)
    optimizer = (tree.get("optim") or {}).get("optimizer") if isinstance(
        tree.get("optim"), Mapping) else None
    if optimizer is not None and optimizer not in allowed_optimizers():
        _refuse(source, "optim.optimizer", f"{_short(optimizer)} is not one of "
                                           f"{', '.join(sorted(allowed_optimizers()))}")


_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLAIN_STRING = re.compile(r"[A-Za-z0-9_.+-]+")


def file_overrides(source: str, prefix: str, values: Mapping[str, Any]) -> list[str]:
    """Hydra overrides `prefix.key=literal` for settings read from a file (an export's or a
    published model's config.json).

    Each key must be one configs/ has and each value of its kind (src/runs/config_schema.py),
    and is written as a literal: a file's string is never parsed as override grammar, where
    `{_target_: ...}` would become a mapping that `instantiate` calls.

    Raises:
        UnsafeConfig: one line naming `source` and the key.
    """
    out: list[str] = []
    for key, value in values.items():
        dotted = f"{prefix}.{key}"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            _refuse(source, dotted, "not a plain setting name")
        if isinstance(value, Mapping):
            out += file_overrides(source, dotted, value)
            continue
        if problem := schema_problem(dotted, value):
            _refuse(source, dotted, problem)
        out.append(f"{dotted}={_literal(source, dotted, value)}")
    return out


def _literal(source: str, key: str, value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, float) and math.isinf(value):  # Hydra's grammar reads inf / -inf
        return "inf" if value > 0 else "-inf"
    if isinstance(value, str) and _PLAIN_STRING.fullmatch(value):
        return value
    _refuse(source, key, f"{_short(value)} is not a plain number, flag or name")


def _walk(tree: Any, prefix: str):
    """(dotted key, value) for every key of nested mappings and lists (list items as key.N)."""
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree)
    for key, value in items:
        dotted = f"{prefix}.{key}" if prefix else str(key)
        yield dotted, value
        if isinstance(value, (Mapping, list)):
            yield from _walk(value, dotted)


def _in_list(key: str) -> bool:
    """Items of a list value (optim.betas.0) are its value, not keys of their own."""
    return any(part.isdigit() for part in key.split("."))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse(source: str, key: str, problem: str) -> NoReturn:
    raise UnsafeConfig(f"{source}: {key}: {problem}: refusing to build it (a config read from a "
                       f"file is data); use a file this lab wrote (src.train, src.export), or "
                       f"fix that key")
