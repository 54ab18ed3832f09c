"""Move run folders written before run identities existed to the folder their config now gets.

Before, every run of (experiment, algo, model, data, budget, seed) shared one folder, so a
sweep over anything else (lr, batch size, schedule, ...) trained its first point and
reported it for all the others. A folder whose stored config differs from its readable
path's defaults belongs at `<folder>-<hash>` now; one whose config matches them stays.

    python -m src.run_dir --migrate runs/           # print the moves
    python -m src.run_dir --migrate runs/ --apply   # make them
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.runs.config_guard import CONFIG_FILE
from src.runs.identity import identity_of


@dataclass(frozen=True)
class Move:
    source: Path
    target: Path
    config_delta: dict[str, Any]


def _run_configs(root: Path) -> list[Path]:
    """config.yaml files of runs: written by src.train (they hold run_dir), outside hidden
    folders (Hydra's .hydra) and not nested in another run (e.g. a logger's own files)."""
    found = []
    for path in sorted(root.rglob(CONFIG_FILE)):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if any(path.parent != f.parent and f.parent in path.parents for f in found):
            continue
        if "run_dir:" in path.read_text(encoding="utf-8", errors="replace"):
            found.append(path)
    return found


def plan_moves(root: str | Path) -> list[Move]:
    """The folders under `root` that must move, and where."""
    moves = []
    for path in _run_configs(Path(root)):
        stored = OmegaConf.load(path)
        if "run_identity" in stored:
            continue  # written with identities: already where it belongs
        identity = identity_of(stored)
        if identity.config_hash:
            run = path.parent
            moves.append(Move(run, run.with_name(f"{run.name}-{identity.config_hash}"),
                              identity.config_delta))
    return moves


def apply_moves(moves: list[Move]) -> list[str]:
    """Rename each folder (never over an existing one); returns what was done or skipped."""
    report = []
    for move in moves:
        if move.target.exists():
            report.append(f"skipped {move.source}: {move.target} exists")
            continue
        os.rename(move.source, move.target)
        report.append(f"moved {move.source} -> {move.target}")
    return report
