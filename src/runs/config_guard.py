"""Refuse to resume (or to report as finished) a run folder under another config.

The folder's `config.yaml` holds the config it was started with. A semantic key whose value
differs from this command's stops the run with one line naming every such key and both
values, before anything is built or written. `training.allow_config_change=true` accepts a
deliberate change: the old file is kept as `config.prev<N>.yaml`, the change is appended to
`config_changes.log` and result.json lists it. Keys only one side has (an option added or
removed by a newer version of the code) are logged, not refused.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.runs.semantic import ABSENT, differences, semantic_values
from src.utils.cli import UserError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
CHANGES_FILE = "config_changes.log"


class ConfigChanged(UserError):
    """The run folder was started under another semantic config."""


def read_stored_config(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) and value != ABSENT else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())


def config_changes(stored: dict[str, Any], cfg: DictConfig) -> tuple[dict, list[str]]:
    """(changed semantic keys -> (stored, now), keys only one side has)."""
    diff = differences(semantic_values(stored), semantic_values(cfg))
    changed = {k: v for k, v in diff.items() if ABSENT not in (v[0], v[1])}
    one_sided = [k for k in diff if k not in changed]
    return changed, one_sided


def guard_run_config(run_dir: Path, cfg: DictConfig, *, allow_change: bool,
                     finished: bool) -> dict[str, tuple[Any, Any]]:
    """Check this command's config against the folder's; returns the accepted changes.

    Raises:
        ConfigChanged: a semantic key differs and `allow_change` is off.
    """
    stored = read_stored_config(run_dir)
    if stored is None:
        return {}
    changed, one_sided = config_changes(stored, cfg)
    if one_sided:
        log.info("options not in both %s/%s and this command (a newer or older version of the "
                 "code; kept at their defaults): %s", run_dir, CONFIG_FILE, ", ".join(one_sided))
    if not changed:
        return {}
    if not allow_change:
        raise ConfigChanged(_refusal(run_dir, changed, finished))
    log.warning("run %s: accepting a config change (training.allow_config_change=true): %s",
                run_dir, describe_changes(changed))
    if not finished:  # a finished run keeps the config its result belongs to
        _archive(run_dir, changed)
    return changed


def _refusal(run_dir: Path, changed: dict[str, tuple[Any, Any]], finished: bool) -> str:
    if finished:
        return (f"run {run_dir} finished under another config ({describe_changes(changed)}): "
                f"its result.json is not this config's; move that folder away (python -m "
                f"src.run_dir --migrate <run root> moves folders of older versions), or set "
                f"training.allow_config_change=true to accept its result as is")
    return (f"run {run_dir} was started under another config ({describe_changes(changed)}): "
            f"resuming would mix two configs; set training.allow_config_change=true to continue "
            f"it under this config deliberately, or train into another folder "
            f"(paths.log_dir=...)")


def _archive(run_dir: Path, changed: dict[str, tuple[Any, Any]]) -> None:
    """Keep the old config.yaml and log the change (nothing already written is lost)."""
    n = 1
    while (run_dir / f"config.prev{n}.yaml").exists():
        n += 1
    os.replace(run_dir / CONFIG_FILE, run_dir / f"config.prev{n}.yaml")
    with open(run_dir / CHANGES_FILE, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%F %T')} config.prev{n}.yaml -> config.yaml: "
                f"{describe_changes(changed)}\n")


def recorded_changes(run_dir: Path) -> list[str]:
    """The accepted config changes of a run, oldest first (for result.json)."""
    path = Path(run_dir) / CHANGES_FILE
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
