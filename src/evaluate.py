"""Perplexity (bound, for diffusion models) of a checkpoint on any dataset.

    python -m src.evaluate ckpt=runs/quickstart/mdlm/1M/shakespeare/steps1500/s0
    python -m src.evaluate ckpt=<run> data=text_files data.path=my.txt
"""

from __future__ import annotations

import logging
import math
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from src.algos.base import nll_metrics
from src.checkpoints import load_run
from src.data.token_bytes import token_byte_lengths
from src.runs.preflight import check_device, check_required
from src.results import emit
from src.utils.resolvers import register_resolvers
from src.utils.cli import one_line_errors, run_cli
from src.utils.precision import resolve_precision
from src.utils.runtime import setup_torch

log = logging.getLogger(__name__)
register_resolvers()


LOCAL_SOURCES = ("auto", "text", "json", "parquet")


def evaluation_data(data: DictConfig | None) -> DictConfig | None:
    """Local files given for evaluation are all evaluated: a plain file set becomes the
    validation split (nothing is carved off for a training split that is never used)."""
    if data is None or str(data.get("source")) not in LOCAL_SOURCES:
        return data
    path = data.get("path")
    if path is None or isinstance(path, DictConfig):
        return data
    out = data.copy()
    out.path = {"validation": path}
    return out


def check_evaluate_config(cfg: DictConfig) -> None:
    check_required(cfg)
    if not int(cfg.repeats) >= 1:
        raise ValueError(f"repeats={cfg.repeats} must be >= 1 (Monte-Carlo passes)")
    if cfg.draws is not None and not int(cfg.draws) >= 1:
        raise ValueError(f"draws={cfg.draws} must be >= 1 (noise draws per batch; null = the "
                         f"run's training.final_val_draws)")
    if cfg.max_batches is not None and not int(cfg.max_batches) >= 1:
        raise ValueError(f"max_batches={cfg.max_batches} must be >= 1 (or null for all)")
    check_device(cfg.device, "device")


def default_draws(run_cfg: DictConfig) -> int:
    """The draws of the run's own end-of-run validation, so that `repeats=1` reproduces
    result.json's val_nll (runs older than the key drew once)."""
    training = run_cfg.training
    return int(training.get("final_val_draws", training.get("val_draws", 1)))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    check_evaluate_config(cfg)
    run = load_run(cfg.ckpt, data=evaluation_data(cfg.get("data")))
    accelerator = "auto" if cfg.device == "auto" else cfg.device
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=True,
        precision=resolve_precision(run.cfg.trainer.precision, accelerator).value,
    )
    run.datamodule.val_max_batches = cfg.max_batches  # global cap: the same for any world size
    run.algo.token_bytes = token_byte_lengths(run.datamodule.tokenizer)
    run.algo.val_draws = int(cfg.draws if cfg.draws is not None else default_draws(run.cfg))
    draw_sums: list[float] = []
    tokens = n_bytes = 0.0
    for i in range(int(cfg.repeats)):
        run.algo.eval_pass = i  # fresh diffusion noise per pass (pass 0 = training's validation)
        trainer.validate(run.algo, datamodule=run.datamodule, verbose=False)
        draw_sums += run.algo.val_draw_sums
        tokens, n_bytes = run.algo.val_totals[1], run.algo.val_totals[2]
    metrics = nll_metrics(sum(draw_sums) / len(draw_sums), tokens, n_bytes)
    se = run.algo.nll_standard_error(torch.tensor(draw_sums), tokens)
    return {
        "checkpoint": str(run.checkpoint_path), "algo": run.algo.name,
        "data": str(run.cfg.data.get("tag", run.cfg.data.get("source"))),
        "tokens": tokens, "bytes": n_bytes, **metrics,
        "nll_se": None if math.isnan(se) else se, "draws": len(draw_sums),
        "is_bound": run.algo.name != "ar",
    }


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    setup_torch()
    emit(one_line_errors(evaluate)(cfg), cfg.out)


if __name__ == "__main__":
    run_cli(main)
