"""python -m src.export ckpt=<run dir | .ckpt> out=<folder>: see src/export/hf_export.py."""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from src.export.hf_export import export
from src.runs.preflight import check_required
from src.utils.cli import one_line_errors, run_cli
from src.utils.resolvers import register_resolvers
from src.utils.runtime import setup_torch

register_resolvers()


def run_export(cfg: DictConfig) -> dict:
    check_required(cfg)
    return export(cfg.ckpt, cfg.out)


@hydra.main(config_path="../../configs", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_torch()
    print(json.dumps(one_line_errors(run_export)(cfg), indent=2))


if __name__ == "__main__":
    run_cli(main)
