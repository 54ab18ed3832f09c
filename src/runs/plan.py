"""The run plan: every number the trainer and the data stream need, computed from the config
before anything is built (steps from the FLOP budget, accumulation from the global batch and
the number of processes, validation cadence in micro-batches), then passed in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, ListConfig

from src.scaling.budget import run_flops_per_token, steps_for_budget
from src.utils.precision import device_type


@dataclass(frozen=True)
class RunPlan:
    """What one run does.

    Attributes:
        max_steps: optimizer steps (from training.flops_budget when set).
        world_size: training processes (devices x nodes).
        accumulation: micro-batches per optimizer step on each process.
        seq_len, global_batch: tokens per sequence, sequences per optimizer step.
        flops_per_token: training FLOPs per token under the run's convention.
        val_every_n_steps: validation cadence in optimizer steps.
    """

    max_steps: int
    world_size: int
    accumulation: int
    seq_len: int
    global_batch: int
    flops_per_token: float
    val_every_n_steps: int

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def max_train_batches(self) -> int:
        """Micro-batches each process consumes over the run (the data stream's length)."""
        return self.max_steps * self.accumulation

    @property
    def val_check_interval(self) -> int:
        """Validation cadence in micro-batches (Lightning counts batches, not steps)."""
        return self.val_every_n_steps * self.accumulation


def world_size(trainer_cfg: DictConfig) -> int:
    """The processes Lightning will start for `trainer_cfg` (devices x num_nodes): an int, a
    list of device ids, or `auto` (every visible GPU on a GPU accelerator, else one)."""
    devices, accelerator = trainer_cfg.get("devices", "auto"), str(trainer_cfg.get("accelerator"))
    if isinstance(devices, (list, ListConfig)):
        per_node = len(devices)
    elif str(devices).lstrip("-").isdigit() and int(devices) > 0:
        per_node = int(devices)
    else:  # auto / -1
        gpu = device_type(accelerator) == "cuda"
        per_node = torch.cuda.device_count() if gpu else 1
    return max(per_node, 1) * int(trainer_cfg.get("num_nodes", 1))


def accumulation_steps(global_batch: int, micro_batch: int, processes: int) -> int:
    per_step = micro_batch * processes
    if global_batch % per_step:
        raise ValueError(
            f"training.global_batch_size={global_batch} is not a multiple of data.batch_size "
            f"({micro_batch}) x {processes} processes: change one of them"
        )
    return global_batch // per_step


def plan_run(cfg: DictConfig, vocab_size: int) -> RunPlan:
    """The plan of `cfg` for a tokenizer of `vocab_size` ids."""
    seq_len, global_batch = int(cfg.data.seq_len), int(cfg.training.global_batch_size)
    fpt = run_flops_per_token(cfg, vocab_size)
    budget = cfg.training.flops_budget
    steps = (steps_for_budget(float(budget), fpt, global_batch, seq_len)
             if budget is not None else int(cfg.training.max_steps))
    processes = world_size(cfg.trainer)
    return RunPlan(steps, processes,
                   accumulation_steps(global_batch, int(cfg.data.batch_size), processes),
                   seq_len, global_batch, fpt, int(cfg.training.val_every_n_steps))
