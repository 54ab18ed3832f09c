"""Process-wide torch settings, applied once by the entry points (never at import)."""

from __future__ import annotations

import logging
import os
import warnings

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


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 of its launch, read from the environment before
    any process group exists (torchrun: RANK; srun: SLURM_PROCID; Lightning's own launcher:
    LOCAL_RANK / NODE_RANK of the processes it spawns)."""
    return all(os.environ.get(var, "0") in ("", "0") for var in RANK_VARIABLES)
