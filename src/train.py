"""Train one run: `python -m src.train [overrides]` (no arguments = CPU quickstart)."""

from __future__ import annotations

# Before torch loads (seconds): a stop signal during start-up gets a line, not a silent -15.
from src.resume.stop_signals import stop_during_startup

if __name__ == "__main__":
    stop_during_startup()

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src.algos.base import nll_metrics
from src.builders import build_algo, build_backbone, build_datamodule, build_trainer
from src.checkpoints import load_run
from src.callbacks.config_store import StoreConfig
from src.callbacks.divergence import (
    DivergenceGuard,
    Diverged,
    final_validation_failure,
    loss_threshold,
)
from src.callbacks.preemption import Preemption
from src.callbacks.step_checkpoint import StepCheckpoint
from src.callbacks.throughput import Throughput
from src.data.datamodule import DataProgress
from src.data.token_bytes import token_byte_lengths
from src.models.dit import count_params
from src.results import (FAILED_FILE, RESULT_FILE, RunResult, atomic_write_text, read_failed,
                         read_result, write_json)
from src.resume.selection import find_resume_checkpoint
from src.resume.stop_signals import StopSignals, StoppedEarly, catching_stop_signals
from src.runs.config_guard import guard_run_config, recorded_changes
from src.runs.failure import RunFailed, failure_message, mark_failed
from src.runs.identity import RunIdentity, assign_identity
from src.runs.lineage import prepare_start
from src.runs.lock import run_lock
from src.runs.plan import plan_run
from src.runs.precision import settle_precision
from src.runs.preflight import check_inputs_exist, check_train_config
from src.samplers.factory import build_sampler
from src.utils.resolvers import register_resolvers
from src.utils.cli import one_line_errors, run_cli
from src.utils.precision import PrecisionChoice
from src.utils.runtime import inference_autocast, is_launch_rank_zero, setup_torch
from src.utils.strategies import check_strategy_options, is_sharded_strategy

log = logging.getLogger(__name__)
register_resolvers()


def finished_message(run_dir: Path) -> str:
    return f"run already finished: {run_dir} ({RESULT_FILE} exists); nothing to do"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (or resume) the run described by `cfg`; returns its result row.

    The run folder is the config's identity (src/runs/identity.py); one process at a time
    trains into it (src/runs/lock.py), and only under the config it was started with
    (src/runs/config_guard.py).

    Raises:
        StoppedEarly: a stop signal (Slurm / submitit / TERM) arrived; a checkpoint of the
            last completed optimizer step is saved and the next job resumes from it.
    """
    check_train_config(cfg)  # before any folder exists
    check_inputs_exist(cfg)
    identity = assign_identity(cfg)
    run_dir = Path(cfg.run_dir)
    with run_lock(run_dir, float(cfg.training.lock_lease_s)):
        done = read_result(run_dir)
        precision = settle_precision(cfg, run_dir)  # `auto` -> this machine's, or the run's own
        if is_launch_rank_zero():
            guard_run_config(run_dir, cfg, allow_change=bool(cfg.training.allow_config_change),
                             finished=done is not None)
        if done is not None and not cfg.training.overwrite:
            # Checked before any data or model is built: later jobs of a chain end at once.
            rank_zero_only(print)(finished_message(run_dir), flush=True)
            return done
        failed = read_failed(run_dir)
        if failed is not None:
            if not cfg.training.overwrite:
                raise RunFailed(failure_message(run_dir, failed))
            if is_launch_rank_zero():
                (run_dir / FAILED_FILE).unlink(missing_ok=True)
        log.info("run dir %s%s", run_dir, _delta_note(identity))
        # Record stop signals from here on (not only during fit): a signal that arrives while
        # data is tokenized still ends the job cleanly.
        with catching_stop_signals() as stops:
            return _train(cfg, run_dir, stops, precision)


def _delta_note(identity: RunIdentity) -> str:
    if not identity.config_delta:
        return ""
    items = ", ".join(f"{k}={v}" for k, v in identity.config_delta.items())
    return f" (differs from its readable path's defaults in: {items})"


def _train(cfg: DictConfig, run_dir: Path, stops: StopSignals,
           precision: PrecisionChoice) -> dict[str, Any]:
    check_strategy_options(cfg.trainer.strategy, float(cfg.training.ema))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    dm = build_datamodule(cfg)
    tok = dm.tokenizer
    # A distillation's teacher run is loaded here and handed to the algo (algos load no files).
    teacher = {"teacher_run": load_run(cfg.algo.teacher_ckpt)} if cfg.algo.get("teacher_ckpt") \
        else {}
    algo = build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size), **teacher)
    algo.token_bytes = token_byte_lengths(tok)  # validation reports bits per byte
    algo.val_draws = int(cfg.training.val_draws)  # noise draws per validation batch (diffusion)
    sizes = count_params(algo.backbone)
    if int(cfg.eval.num_samples) > 0:  # a sampler that cannot sample this algo: say so now
        build_sampler(cfg.sampler).check_algo(algo)

    plan = plan_run(cfg, tok.vocab_size)  # steps, accumulation, FLOPs: before the trainer
    warmup = int(cfg.lr_scheduler.get("warmup_steps") or 0)
    if warmup >= plan.max_steps:
        log.warning("lr_scheduler.warmup_steps=%d is not shorter than the run's %d steps: the lr "
                    "never reaches optim.lr=%g; lower lr_scheduler.warmup_steps", warmup,
                    plan.max_steps, float(cfg.optim.lr))
    ckpt_dir = run_dir / "checkpoints"
    resume = find_resume_checkpoint(ckpt_dir, rank_zero=is_launch_rank_zero())
    if resume.path is not None:
        log.info("resuming from %s (step %d)", resume.path, resume.step)
    # training.init_from: the parent's weights are loaded now, or (fork) copied in as the
    # run's first checkpoint; a run with checkpoints of its own reads its lineage from them.
    start = prepare_start(cfg, algo, tok, resume.path, ckpt_dir, plan.tokens_per_step,
                          plan.flops_per_token, plan.max_steps)
    preemption = Preemption(stops)
    throughput = Throughput(plan.tokens_per_step, plan.flops_per_token,
                            int(cfg.trainer.log_every_n_steps))
    guard = DivergenceGuard(loss_threshold(cfg.training.diverge_above, tok.vocab_size),
                            int(cfg.training.diverge_patience))
    checkpoint = StepCheckpoint(ckpt_dir, int(cfg.training.ckpt_every_n_steps),
                                int(cfg.training.keep_last_k), list(cfg.training.keep_steps),
                                guard=guard)
    extra = [guard, checkpoint, preemption, throughput, DataProgress(), StoreConfig(cfg, tok),
             *start.callbacks]
    trainer = build_trainer(cfg, run_dir, extra, plan)
    sharded = is_sharded_strategy(trainer.strategy)
    dm.max_train_batches, dm.accumulation = plan.max_train_batches, plan.accumulation
    dm.val_max_batches = cfg.training.val_max_batches  # global over ranks, not Lightning's per rank

    if stops.received is not None:  # signalled during setup: nothing new to save
        raise StoppedEarly(str(run_dir), resume.step, stops.name, stops.submitit_requeue_handler())
    t0 = time.time()
    # StepCheckpoint saves the final step too and points last.ckpt at it (evaluate/sample read it).
    try:
        trainer.fit(algo, datamodule=dm,
                    ckpt_path=str(start.resume_from) if start.resume_from else None)
    except Diverged as err:
        raise mark_failed(cfg, run_dir, err.step, err.reason) from None
    if preemption.stopped_at is not None and trainer.global_step < plan.max_steps:
        raise StoppedEarly(str(run_dir), trainer.global_step, preemption.signal_name,
                           stops.submitit_requeue_handler())
    final = final_validation(trainer, algo, dm, int(cfg.training.final_val_draws))
    failure = final_validation_failure(final["val/nll"])
    if failure is not None:
        raise mark_failed(cfg, run_dir, trainer.global_step, failure)
    if final["val/nll"] > (guard.max_loss or math.inf):
        log.warning("final validation NLL %.4g is above training.diverge_above=%g while the "
                    "training loss stayed below it: over-fitting, recorded as a result",
                    final["val/nll"], guard.max_loss)

    step, lineage = trainer.global_step, start.lineage
    own_tokens = lineage.own_tokens(step)
    books = lineage.at_step(step)
    budget = cfg.training.flops_budget
    run = RunResult(
        algo=algo.name, model=str(cfg.model.name), data=str(cfg.data.tag), seed=int(cfg.seed),
        **sizes, vocab_size=tok.vocab_size, seq_len=plan.seq_len,
        global_batch_size=plan.global_batch, steps=step,
        tokens=own_tokens, flops=own_tokens * plan.flops_per_token,
        cumulative_tokens=books["cumulative_tokens"], cumulative_flops=books["cumulative_flops"],
        flops_per_token=plan.flops_per_token, flops_convention=str(cfg.flops.convention),
        flops_budget=None if budget is None else float(budget),
        # Data repetition: unique training tokens per epoch, and epochs of the data stream.
        unique_tokens=dm.train_tokens_per_epoch,
        epochs=dm.consumed_samples * plan.seq_len / dm.train_tokens_per_epoch,
        val_nll=final["val/nll"],
        val_nll_se=None if math.isnan(final["val/nll_se"]) else final["val/nll_se"],
        val_draws=algo.validation_draws(), val_bits_per_token=final["val/bits_per_token"],
        val_bpb=final.get("val/bpb"), val_ppl=final["val/ppl"],
        train_time_s=throughput.train_time_s, wall_time_s=time.time() - t0,
        tokens_per_s=own_tokens / max(throughput.train_time_s, 1e-9),
        precision=precision.value, precision_reason=precision.reason, run_dir=str(run_dir),
        config_hash=cfg.run_identity.config_hash,
        config_delta=OmegaConf.to_container(cfg.run_identity.config_delta),
        config_changes=recorded_changes(run_dir), parent=lineage.parent,
        baselines=dm.unigram_baseline() if trainer.is_global_zero else {},
    )
    result: dict[str, Any] = run.to_json()
    if trainer.is_global_zero:
        if sharded and int(cfg.eval.num_samples) > 0:
            # A sharded model's forward needs every rank; sample from last.ckpt instead.
            log.info("FSDP: no end-of-run samples; run python -m src.sample ckpt=%s", run_dir)
        result["samples"] = [] if sharded else generate_samples(cfg, algo, tok)
        write_json(run_dir / "samples.json", result["samples"])
        write_json(run_dir / RESULT_FILE, {k: v for k, v in result.items() if k != "samples"})
    return result


def final_validation(trainer: L.Trainer, algo: Any, dm: Any, draws: int) -> dict[str, float]:
    """The end-of-run validation metrics with `draws` noise draws per batch, from the
    float64 totals of the last validation. When the cadence already validated the final step
    in this process with as many draws, that is the same computation (same weights, EMA,
    noise keys): it is reused instead of running the whole split again."""
    same_draws = algo.val_draws == draws or not algo.stochastic_nll
    algo.val_draws = draws  # evaluate.py's default: it reproduces this number
    if not (algo.val_step == trainer.global_step and algo.val_totals[1] > 0 and same_draws):
        trainer.validate(algo, datamodule=dm, verbose=False)
    metrics = {f"val/{k}": v for k, v in nll_metrics(*algo.val_totals).items()}
    return {**metrics, "val/nll_se": algo.val_nll_se}


def generate_samples(cfg: DictConfig, algo: Any, tok: Any) -> list[str]:
    """A few unconditional samples from the run's sampler (decoded text)."""
    n = int(cfg.eval.num_samples)
    if n <= 0:
        return []
    sampler = build_sampler(cfg.sampler, steps=cfg.eval.sample_steps)
    g = torch.Generator(device=algo.device).manual_seed(int(cfg.seed))
    algo.eval()
    with inference_autocast(cfg.trainer.precision, algo.device):  # the training precision
        ids = sampler.sample(algo, n, int(cfg.data.seq_len), generator=g)
    return [tok.decode(row.tolist()) for row in ids]


def print_summary(result: dict[str, Any], print_chars: int) -> None:
    """What the quickstart prints at the end (entry point only)."""
    print(f"\n=== {result['algo']} {result['model']} on {result['data']}: "
          f"{result['steps']} steps, {result['tokens']:,} tokens, "
          f"{result['tokens_per_s']:,.0f} tokens/s ===")
    bpb = result.get("val_bpb")
    print(f"val/ppl {result['val_ppl']:.2f} (nll {result['val_nll']:.4f}, "
          f"{'n/a' if bpb is None else f'{bpb:.4f}'} bits/byte)   "
          f"unigram baseline ppl {result.get('unigram_ppl', float('nan')):.2f}")
    for i, text in enumerate(result.get("samples", [])):
        print(f"--- sample {i} ---\n{text[:print_chars]}")
    print(f"run dir: {result['run_dir']}")


def train_in_sweep(cfg: DictConfig) -> dict[str, Any]:
    """`train`, except that in a multirun a failed (diverged) point is reported in one line
    and the sweep goes on to its other points."""
    try:
        return train(cfg)
    except RunFailed as failure:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        rank_zero_only(print)(f"error: {failure}", file=sys.stderr, flush=True)
        return {}


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    setup_torch()
    try:
        result = one_line_errors(train_in_sweep)(cfg)
    except StoppedEarly as stop:
        rank_zero_only(print)(stop, flush=True)
        stop.hand_off()  # exit code 75, or submitit's requeue
    if "samples" in result:
        print_summary(result, int(cfg.eval.print_chars))
    metric = str(cfg.optimized_metric).replace("/", "_")
    return result.get(metric)


if __name__ == "__main__":
    run_cli(main, check_keys=True)
