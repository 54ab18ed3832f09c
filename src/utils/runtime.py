"""Process-wide torch settings, applied once by the entry points (never at import)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any

import torch

log = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may use: Slurm's allocation, else the affinity mask, else all."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def setup_torch(threads: int | None = None) -> None:
    """Fast matmuls on GPUs (TF32), a sane CPU thread count, quiet known-harmless warnings."""
    if threads is None and "OMP_NUM_THREADS" not in os.environ:
        threads = available_cpus()
    if threads:
        torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("high")
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def inference_autocast(precision: str, device: torch.device | str) -> Any:
    """The autocast a run trained under (Lightning's `trainer.precision`), for sampling and
    judging outside Lightning: `bf16-mixed` / `16-mixed` -> autocast to that dtype on the
    run's device; anything else -> full precision (a no-op context)."""
    device_type = torch.device(device).type
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
    if dtype is None or (dtype == torch.float16 and device_type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 of its launch, read from the environment before
    any process group exists (torchrun: RANK; srun: SLURM_PROCID; Lightning's own launcher:
    LOCAL_RANK / NODE_RANK of the processes it spawns)."""
    return all(os.environ.get(var, "0") in ("", "0") for var in RANK_VARIABLES)
