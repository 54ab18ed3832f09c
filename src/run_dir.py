"""Print the run directory (and a short job name) that `python -m src.train <overrides>` uses.

    python -m src.run_dir algo=mdlm model=113M training.flops_budget=6e18
    python -m src.run_dir --job-name algo=mdlm model=113M      # dlm-<10 hex chars>

`auto_resubmit.sh` calls it to name a run's Slurm jobs after the run (one name per run
directory), so that a second submission for the same run is recognised and skipped.
Composing the config is cheap: no data or model is built.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from src.utils.cli import CONFIG_DIR, check_group_choices, one_line_errors
from src.utils.resolvers import register_resolvers


def resolve_run_dir(overrides: list[str]) -> Path:
    """The absolute run directory of a training command with these Hydra overrides."""
    register_resolvers()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return Path(os.path.abspath(str(cfg.run_dir)))


def job_name(run_dir: Path) -> str:
    """A Slurm job name that is the same for every job of one run and differs between runs."""
    return "dlm-" + hashlib.sha1(str(run_dir).encode()).hexdigest()[:10]


def main(argv: list[str]) -> None:
    want_name = bool(argv) and argv[0] == "--job-name"
    overrides = argv[1:] if want_name else argv
    check_group_choices(overrides)
    run_dir = one_line_errors(resolve_run_dir)(overrides)
    print(job_name(run_dir) if want_name else run_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
