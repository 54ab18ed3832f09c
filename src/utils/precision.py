"""`trainer.precision=auto`: bf16 only where bf16 matmuls are fast, fp32 elsewhere.

bf16 autocast pays where the device has bf16 matmul units: CUDA sm80+ (A100, H100) and CPUs
whose oneDNN runs bf16 natively (AVX512-BF16 / AMX, ARM BF16). Elsewhere it is emulated:
on an AVX2-only CPU a 512^3 bf16 matmul ran at 0.5 GFLOP/s against 7.5 in fp32, so the
quickstart took hours instead of minutes; V100 and T4 have no bf16 tensor cores. `auto`
resolves once per process to `bf16-mixed` or `32-true`, logs why, and train.py records the
resolved value in config.yaml and result.json (a run resumes under its stored value).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from src.utils.hardware import Hardware, detect

log = logging.getLogger(__name__)

AUTO = "auto"
BF16, FP32 = "bf16-mixed", "32-true"
# The autocast dtype of Lightning's mixed precisions (what sampling, benchmarks and the
# doctor run under to match training).
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Lightning precision values whose matmuls run in a 16-bit type.
HALF_PRECISIONS = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16,
                   "bf16": torch.bfloat16, "16-mixed": torch.float16, "16-true": torch.float16,
                   "16": torch.float16}


@dataclass(frozen=True)
class PrecisionChoice:
    value: str   # a Lightning `precision` value
    reason: str  # one line: why


def device_type(accelerator: str | None) -> str:
    """The torch device type Lightning's `accelerator` runs on ("auto": CUDA when present)."""
    acc = str(accelerator or "auto").lower()
    if acc in ("gpu", "cuda"):
        return "cuda"
    if acc == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return acc


def fast_bf16(hw: Hardware, device: str) -> tuple[bool, str]:
    """(bf16 matmuls are fast on `device`, the reason in words)."""
    if device == "cuda":
        if not hw.cuda:
            return False, "no CUDA device is visible"
        slow = [f"{d.name} ({d.sm})" for d in hw.cuda if not d.native_bf16]
        if slow:
            return False, f"{', '.join(slow)} has no bf16 tensor cores (sm80+ has)"
        names = sorted({f"{d.name} ({d.sm})" for d in hw.cuda})
        return True, f"{', '.join(names)} has bf16 tensor cores"
    if device == "cpu":
        cpu = hw.cpu
        if cpu.native_bf16:
            units = [f for f in cpu.features() if "BF16" in f] or ["bf16 units"]
            return True, f"CPU {cpu.model} has native bf16 matmul units ({', '.join(units)})"
        return False, (f"CPU {cpu.model} has no bf16 matmul path (no AVX512-BF16 / AMX / "
                       f"ARM BF16 units, or oneDNN may not use them): bf16 would be emulated, "
                       f"many times slower than fp32")
    return False, f"device type {device!r}: bf16 speed unknown, fp32 is the safe choice"


def choose_precision(hw: Hardware, device: str) -> PrecisionChoice:
    """What `auto` resolves to on `device` of this hardware (pure: tests pass mock hardware)."""
    fast, why = fast_bf16(hw, device)
    return PrecisionChoice(BF16 if fast else FP32, why)


_detected: Hardware | None = None
_logged: set[tuple[str, str, str]] = set()


def hardware() -> Hardware:
    """This machine, detected once per process."""
    global _detected
    if _detected is None:
        _detected = detect()
    return _detected


def resolve_precision(requested: str, accelerator: str | None = "auto",
                      hw: Hardware | None = None, why: str = "as requested") -> PrecisionChoice:
    """The Lightning precision a run uses: `auto` resolved for this machine, an explicit value
    kept (`why` says where it came from), with one warning line where it is a 16-bit type this
    device emulates. Logged once per (value, device)."""
    device = device_type(accelerator)
    hw = hw or hardware()
    requested = str(requested)
    if requested == AUTO:
        choice = choose_precision(hw, device)
        choice = PrecisionChoice(choice.value, f"auto: {choice.reason}")
    else:
        choice = PrecisionChoice(requested, why)
    key = (requested, choice.value, device)
    if key not in _logged:
        _logged.add(key)
        log.info("precision: %s (%s)", choice.value, choice.reason)
        if requested != AUTO:
            _warn_if_slow(requested, device, hw)
    return choice


def _warn_if_slow(requested: str, device: str, hw: Hardware) -> None:
    dtype = HALF_PRECISIONS.get(requested)
    if dtype is None:
        return
    if dtype == torch.bfloat16:
        fast, why = fast_bf16(hw, device)
    else:  # fp16: tensor cores on CUDA sm70+, emulated on CPUs
        fast = device == "cuda" and any(d.capability >= (7, 0) for d in hw.cuda)
        why = f"no fp16 matmul units on this {device}"
    if fast:
        return
    ratio = measured_slowdown(dtype, device) if device in ("cpu", "cuda") else None
    speed = f"a {dtype} matmul measured {ratio:.1f}x slower than fp32 here" if ratio else why
    log.warning("trainer.precision=%s on a device without fast %s matmuls (%s): %s; training as "
                "asked (trainer.precision=auto would pick %s)", requested, dtype, why, speed,
                choose_precision(hw, device).value)


def measured_slowdown(dtype: torch.dtype, device: str, n: int = 256,
                      budget_s: float = 0.3) -> float | None:
    """fp32 matmul throughput over `dtype`'s at n^3, measured (src/utils/matmul_peak.py)."""
    from src.utils.matmul_peak import matmul_peak

    try:
        fp32 = matmul_peak(device, torch.float32, seconds=budget_s / 2, sizes=(n,))
        half = matmul_peak(device, dtype, seconds=budget_s / 2, sizes=(n,))
    except RuntimeError:  # a dtype the device cannot multiply at all
        return None
    return fp32 / max(half, 1e-12)
