"""Print the run directory (and a short job name) that `python -m src.train <overrides>` uses.

    python -m src.run_dir algo=mdlm model=113M training.flops_budget=6e18
    python -m src.run_dir --job-name algo=mdlm model=113M      # dlm-<10 hex chars>
    python -m src.run_dir --migrate runs/ [--apply]            # folders of older versions

`auto_resubmit.sh` calls it to name a run's Slurm jobs after the run (one name per run
directory), so that a second submission for the same run is recognised and skipped.
Composing the config is cheap: no data or model is built.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from src.runs.identity import resolve_run_dir
from src.runs.migrate import apply_moves, plan_moves
from src.utils.cli import check_group_choices, one_line_errors

__all__ = ["job_name", "resolve_run_dir"]


def job_name(run_dir: Path) -> str:
    """A Slurm job name that is the same for every job of one run and differs between runs."""
    return "dlm-" + hashlib.sha1(str(run_dir).encode()).hexdigest()[:10]


def migrate(argv: list[str]) -> None:
    if not argv or not Path(argv[0]).is_dir():
        raise SystemExit("error: usage: python -m src.run_dir --migrate <run root> [--apply]")
    moves = plan_moves(argv[0])
    if "--apply" in argv[1:]:
        print("\n".join(apply_moves(moves)) or "nothing to move")
        return
    for move in moves:
        delta = ", ".join(f"{k}={v}" for k, v in move.config_delta.items())
        print(f"mv {move.source} {move.target}    # {delta}")
    print(f"{len(moves)} folder(s) to move; run again with --apply to move them")


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m src.run_dir [--job-name] [overrides ...] | --migrate <run root> "
              f"[--apply]\n{__doc__}")
        return
    if argv and argv[0] == "--migrate":
        one_line_errors(migrate)(argv[1:])
        return
    want_name = bool(argv) and argv[0] == "--job-name"
    overrides = argv[1:] if want_name else argv
    check_group_choices(overrides)
    run_dir = one_line_errors(resolve_run_dir)(overrides)
    print(job_name(run_dir) if want_name else run_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
