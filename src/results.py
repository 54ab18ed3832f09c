"""Run artefacts written atomically: result.json, samples.json, the resolved config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.utils.atomic import atomic_write_text

RESULT_FILE = "result.json"
FAILED_FILE = "failed.json"  # a run that diverged: never a result (src/callbacks/divergence.py)
__all__ = ["FAILED_FILE", "RESULT_FILE", "atomic_write_text", "read_failed", "read_result",
           "write_json"]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_failed(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / FAILED_FILE
    return json.loads(path.read_text()) if path.exists() else None
