"""Run artefacts written atomically: result.json, samples.json, the resolved config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.utils.atomic import atomic_write_text

RESULT_FILE = "result.json"
__all__ = ["RESULT_FILE", "atomic_write_text", "read_result", "write_json"]


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None
