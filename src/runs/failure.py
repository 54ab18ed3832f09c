"""A run that diverged is marked failed (failed.json), never reported as a result.

src.train writes the record when DivergenceGuard (src/callbacks/divergence.py) finds a
training loss that is not finite or above `training.diverge_above`, or the final validation an
NLL that is not finite; a later job of the same run stops at once with the same line;
scripts/collect_runs.py lists failed runs apart from finished ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.results import FAILED_FILE, RESULT_FILE, write_json
from src.utils.cli import UserError
from src.utils.runtime import is_launch_rank_zero


class RunFailed(UserError):
    """The run diverged (in this job or an earlier one): marked failed, never a result."""


def failure_message(run_dir: Path, record: dict[str, Any]) -> str:
    return (f"run {run_dir} diverged at step {record['step']} ({record['reason']}): marked "
            f"failed ({FAILED_FILE}, no {RESULT_FILE}; collect_runs.py skips it). Lower optim.lr "
            f"or lengthen the warmup (another config: its own folder), or set "
            f"training.overwrite=true to retry this one from its last good checkpoint")


def mark_failed(cfg: DictConfig, run_dir: Path, step: int, reason: str) -> RunFailed:
    """Write failed.json (rank 0) and return the error that ends the run."""
    record = {"status": "failed", "step": step, "reason": reason, "algo": str(cfg.algo.name),
              "model": str(cfg.model.name), "data": str(cfg.data.tag), "seed": int(cfg.seed),
              "config_hash": cfg.run_identity.config_hash,
              "config_delta": OmegaConf.to_container(cfg.run_identity.config_delta)}
    if is_launch_rank_zero():
        write_json(run_dir / FAILED_FILE, record)
    return RunFailed(failure_message(run_dir, record))
