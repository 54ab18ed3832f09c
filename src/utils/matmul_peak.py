"""The machine's measured matmul peak: the denominator of every MFU this lab reports.

Measured, not read off a datasheet: the doctor, scripts/bench_train.py and
scripts/bench_reference.py all divide by this same number, on the same device and dtype.
"""

from __future__ import annotations

import time

import torch

CPU_SIZES = (256, 512, 1024)
CUDA_SIZES = (1024, 2048, 4096, 8192)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device | str, dtype: torch.dtype, seconds: float = 1.5,
                sizes: tuple[int, ...] | None = None) -> float:
    """Best FLOP/s of square matmuls over a few sizes (2 n^3 FLOPs each), about `seconds`
    in all. An emulated dtype (bf16 on an AVX2 CPU) gets at least one multiply per size,
    so its (low) number is still measured rather than guessed."""
    device = torch.device(device)
    sizes = sizes or (CUDA_SIZES if device.type == "cuda" else CPU_SIZES)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up (oneDNN / cuBLAS pick their kernels)
        _sync(device)
        reps, t0 = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            if reps % 4 == 0 or device.type != "cuda":
                _sync(device)
                if time.perf_counter() - t0 >= seconds / len(sizes):
                    break
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best
