"""Collect every run's ``result.json`` under a folder into one table."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.scaling.table import add_loss_column

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
# Columns every result.json carries (DESIGN.md "Runs, budgets and resume"); they
# lead the table so the CSV reads the same whatever optional keys appear.
LEADING_COLUMNS: tuple[str, ...] = (
    "run_dir", "algo", "model", "params", "non_embedding_params", "tokens", "steps",
    "flops", "flops_convention", "flops_budget", "seed", "unique_tokens", "epochs",
    "val_nll", "val_ppl", "loss", "wall_time_s", "tokens_per_s",
)


@dataclass
class Collection:
    """Result of scanning a run folder.

    Attributes:
        table: One row per finished run, sorted by ``run_dir``.
        unfinished: Run folders (config.yaml or checkpoints) with no result.json.
        unreadable: result.json files that could not be parsed as a JSON object.
    """

    table: pd.DataFrame
    unfinished: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


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


def _order_columns(columns: list[str]) -> list[str]:
    lead = [c for c in LEADING_COLUMNS if c in columns]
    return lead + sorted(c for c in columns if c not in lead)


def collect_runs(root: str | Path) -> Collection:
    """Read every ``result.json`` below ``root`` (recursively) into a table.

    One row per run with the union of keys as columns (nested keys dotted),
    ``run_dir`` relative to ``root`` (a ``run_dir`` key inside result.json is
    kept as ``recorded_run_dir``), and ``loss`` = ``val_nll`` when absent.
    Rows are sorted by ``run_dir`` so the output is deterministic.

    Args:
        root: Run folder, e.g. ``logs/``.

    Returns:
        A :class:`Collection` with the table and the unfinished/unreadable runs.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder not found: {root}")
    rows, unreadable, finished = [], [], set()
    for path in sorted(root.rglob(RESULT_FILE)):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable %s: %s", path, err)
            unreadable.append(path)
            continue
        if not isinstance(record, dict):
            log.warning("skipping %s: not a JSON object", path)
            unreadable.append(path)
            continue
        finished.add(path.parent)
        row = flatten(record)
        if "run_dir" in row:  # where the run was trained; keep it, but locate it by disk
            row["recorded_run_dir"] = row.pop("run_dir")
        row["run_dir"] = path.parent.relative_to(root).as_posix() or "."
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = add_loss_column(table)
        table = table.sort_values("run_dir", kind="stable").reset_index(drop=True)
        table = table[_order_columns(list(table.columns))]
    # A run with a broken result.json is reported as unreadable, not unfinished.
    seen = finished | {p.parent for p in unreadable}
    return Collection(table, find_unfinished(root, seen), unreadable)
