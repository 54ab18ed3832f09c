"""Collect every run's ``result.json`` under a folder into one table.

Besides the result keys, every hyperparameter a sweep varied beyond the readable run path
becomes a column named by its config key (``optim.lr``, ``model.parameterization``...):
the union of the runs' ``config_delta`` keys, each run's value read from its own
``config.yaml`` (so the point at the default value has it too).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.results import RESULT_FIELDS
from src.runs.semantic import semantic_values
from src.scaling.table import add_loss_column

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
FAILED_FILE = "failed.json"  # a diverged run (src/runs/failure.py): never a result
CONFIG_FILE = "config.yaml"
# The columns of src.train's RunResult lead the table, in its order (nested and list fields
# last), so the CSV reads the same whatever optional keys appear.
LEADING_COLUMNS: tuple[str, ...] = (
    "run_dir", *(f for f in RESULT_FIELDS if f not in ("run_dir", "config_delta",
                                                        "config_changes", "parent")), "loss",
)


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    """The semantic values of a run's config.yaml, or None when it has none we can read."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return semantic_values(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    except Exception as err:  # noqa: BLE001 - a damaged config only costs its columns
        log.warning("cannot read %s: %s", path, err)
        return None


def _delta_keys(record: dict[str, Any], run_dir: Path) -> list[str]:
    """The keys this run differs in from its readable path's defaults."""
    delta = record.get("config_delta")
    if isinstance(delta, dict):
        return list(delta)
    if not (run_dir / CONFIG_FILE).is_file():
        return []
    try:  # written before run identities: compute it from the stored config
        from omegaconf import OmegaConf

        from src.runs.identity import config_delta

        return list(config_delta(OmegaConf.load(run_dir / CONFIG_FILE)))
    except Exception as err:  # noqa: BLE001
        log.warning("cannot derive the config delta of %s: %s", run_dir, err)
        return []


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def add_swept_columns(rows: list[dict[str, Any]], run_dirs: list[Path],
                      deltas: list[list[str]]) -> list[str]:
    """Add one column per swept key to each row (in place); returns the keys."""
    keys = sorted(set().union(*deltas)) if deltas else []
    if not keys:
        return []
    for row, run_dir in zip(rows, run_dirs):
        values = _run_config(run_dir) or {}
        for key in keys:
            row[key] = _cell(values.get(key))
    return keys


@dataclass
class Collection:
    """Result of scanning a run folder.

    Attributes:
        table: One row per finished run, sorted by ``run_dir``.
        unfinished: Run folders (config.yaml or checkpoints) with no result.json.
        unreadable: result.json files that could not be parsed as a JSON object.
        failed: Runs that diverged (failed.json) -> the reason; rows only with
            ``include_failed`` (loss NaN, ``status`` failed).
    """

    table: pd.DataFrame
    unfinished: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts with dotted keys; lists become JSON strings.

    Args:
        record: Parsed JSON object.
        prefix: Key prefix used by the recursion.

    Returns:
        A flat dict, e.g. ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.
    """
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _run_dir_of_marker(path: Path) -> Path:
    # src/train.py writes <run>/config.yaml first, then <run>/checkpoints/last.ckpt.
    parent = path.parent
    return parent.parent if parent.name == "checkpoints" else parent


def _hidden(path: Path, root: Path) -> bool:
    # Hydra's own output folders live under <log_dir>/.hydra/: they are not runs.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_unfinished(root: Path, finished: set[Path]) -> list[Path]:
    """Find run folders that started (config.yaml or checkpoints) but wrote no result.json.

    Args:
        root: Folder to scan.
        finished: Run folders that do have a result.json.

    Returns:
        Sorted outermost run folders without a result.json, outside hidden
        folders and outside finished runs.
    """
    markers = [*root.rglob("config.yaml"), *root.rglob("checkpoints"), *root.rglob("*.ckpt")]
    candidates = {_run_dir_of_marker(m) for m in markers if not _hidden(m, root)}
    out = []
    for run_dir in sorted(candidates):
        enclosing = finished | set(out)
        # Nested markers (e.g. a logger's own config.yaml) belong to the enclosing run.
        if not any(run_dir == f or f in run_dir.parents for f in enclosing):
            out.append(run_dir)
    return out


def _order_columns(columns: list[str], swept: list[str]) -> list[str]:
    """Leading columns, then the swept hyperparameters, then the rest alphabetically."""
    lead = [c for c in LEADING_COLUMNS if c in columns] + [c for c in swept if c in columns]
    return lead + sorted(c for c in columns if c not in lead)


def _read_record(path: Path, unreadable: list[Path]) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping unreadable %s: %s", path, err)
        unreadable.append(path)
        return None
    if not isinstance(record, dict):
        log.warning("skipping %s: not a JSON object", path)
        unreadable.append(path)
        return None
    return record


def collect_runs(root: str | Path, include_failed: bool = False) -> Collection:
    """Read every ``result.json`` below ``root`` (recursively) into a table.

    One row per run with the union of keys as columns (nested keys dotted),
    ``run_dir`` relative to ``root`` (a ``run_dir`` key inside result.json is
    kept as ``recorded_run_dir``), and ``loss`` = ``val_nll`` when absent.
    Rows are sorted by ``run_dir`` so the output is deterministic.

    Args:
        root: Run folder, e.g. ``logs/``.
        include_failed: Also a row for each diverged run (``status`` failed, loss NaN):
            an lr sweep's diverged points are data; a scaling fit's are not.

    Returns:
        A :class:`Collection` with the table and the unfinished/unreadable/failed runs.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder not found: {root}")
    rows, unreadable, finished = [], [], set()
    run_dirs: list[Path] = []
    deltas: list[list[str]] = []
    failed: dict[Path, str] = {}
    failed_axes: list[list[str]] = []
    files = [(p, False) for p in root.rglob(RESULT_FILE)] + [(p, True) for p in root.rglob(FAILED_FILE)]
    for path, is_failure in sorted(files):
        if _hidden(path, root) or (record := _read_record(path, unreadable)) is None:
            continue
        finished.add(path.parent)
        delta_keys = _delta_keys(record, path.parent)
        if is_failure:
            failed[path.parent] = str(record.get("reason", "diverged"))
            if not include_failed:
                failed_axes.append(delta_keys)  # the sweep's axes include its keys
                continue
            record = {**record, "status": "failed", "val_nll": float("nan")}
        run_dirs.append(path.parent)
        deltas.append(delta_keys)
        row = flatten({k: v for k, v in record.items() if k != "config_delta"})
        row["config_delta"] = _cell(record.get("config_delta"))
        if "run_dir" in row:  # where the run was trained; keep it, but locate it by disk
            row["recorded_run_dir"] = row.pop("run_dir")
        row["run_dir"] = path.parent.relative_to(root).as_posix() or "."
        rows.append(row)
    swept = add_swept_columns(rows, run_dirs, deltas + failed_axes)
    table = pd.DataFrame(rows)
    if len(table):
        table = add_loss_column(table)
        table = table.sort_values("run_dir", kind="stable").reset_index(drop=True)
        table = table[_order_columns(list(table.columns), swept)]
    # A run with a broken result.json is reported as unreadable, not unfinished.
    seen = finished | {p.parent for p in unreadable}
    return Collection(table, find_unfinished(root, seen), unreadable, failed)
