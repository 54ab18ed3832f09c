"""Process-wide torch settings, applied once by the entry points (never at import)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any

import torch

from src.utils.hardware import physical_cores, usable_cpus
from src.utils.precision import AUTOCAST_DTYPES, resolve_precision

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Torch's intra-op threads: one per physical core this process may use (hyper-threads
    share a core's matmul units and slow oneDNN down), capped by Slurm's allocation."""
    cores = physical_cores(usable_cpus())
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cores = min(cores, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(cores, 1)


def torch_threads() -> int:
    """The threads setup_torch gives torch here (OMP_NUM_THREADS wins when it is set)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else default_threads()


def setup_torch(threads: int | None = None) -> None:
    """Fast matmuls on GPUs (TF32), one CPU thread per physical core, denormals flushed to
    zero on the CPU, quiet known-harmless warnings. Call it first thing in a process: the
    CPU's flush-to-zero mode is per thread, and torch's worker threads copy it from the
    main thread when they start."""
    # As a model trains, attention softmaxes sharpen and their tiny probabilities fall below
    # 1.2e-38 (float32 denormals), which x86 multiplies ~10x slower: the quickstart's fp32
    # steps slowed from 0.38 to 0.62 s over 600 steps (attention bmm 0.9 -> 10 ms). Flushed,
    # they stay at the start's speed; values that small change no sum we report.
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads or torch_threads())
    torch.set_float32_matmul_precision("high")
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def inference_autocast(precision: str, device: torch.device | str) -> Any:
    """The autocast a run trained under (Lightning's `trainer.precision`), for sampling and
    judging outside Lightning: `bf16-mixed` / `16-mixed` -> autocast to that dtype on the
    run's device; `auto` (an imported run) -> what auto picks on that device; anything else
    -> full precision (a no-op context)."""
    device_type = torch.device(device).type
    if str(precision) == "auto":
        precision = resolve_precision("auto", device_type).value
    dtype = AUTOCAST_DTYPES.get(str(precision))
    if dtype is None or (dtype == torch.float16 and device_type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 of its launch, read from the environment before
    any process group exists (torchrun: RANK; srun: SLURM_PROCID; Lightning's own launcher:
    LOCAL_RANK / NODE_RANK of the processes it spawns)."""
    return all(os.environ.get(var, "0") in ("", "0") for var in RANK_VARIABLES)
