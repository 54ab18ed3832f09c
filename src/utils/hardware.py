"""What this machine is: CPU model, instruction sets, cores, memory, CUDA devices.

Read from the OS and torch only (no measurement here: src/utils/matmul_peak.py measures).
The precision policy (src/utils/precision.py) and `python -m src.doctor` read it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

# /proc/cpuinfo flag -> name printed by the doctor.
CPU_FEATURES: tuple[tuple[str, str], ...] = (
    ("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
    ("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX"), ("amx_bf16", "AMX-BF16"),
    ("asimd", "NEON"), ("bf16", "ARM-BF16"), ("sve", "SVE"),
)


@dataclass(frozen=True)
class CudaDevice:
    """One visible CUDA device."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int

    @property
    def sm(self) -> str:
        return f"sm{self.capability[0]}{self.capability[1]}"

    @property
    def native_bf16(self) -> bool:
        """bf16 tensor cores: Ampere (sm80) and newer. V100 (sm70) and T4 (sm75) emulate it."""
        return self.capability >= (8, 0)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU this process runs on.

    Attributes:
        native_bf16: bf16 matmul units oneDNN uses (AVX512-BF16 or AMX on x86, the BF16
            extension on ARM). Without them a bf16 matmul is emulated and runs many times
            slower than fp32 (an AVX2 EPYC: 0.5 against 7.5 GFLOP/s at 512^3).
    """

    model: str
    flags: frozenset[str]
    logical_cpus: int
    physical_cores: int
    memory_bytes: int
    native_bf16: bool

    def features(self) -> list[str]:
        return [name for flag, name in CPU_FEATURES if flag in self.flags]


@dataclass(frozen=True)
class Hardware:
    cpu: CpuInfo
    cuda: tuple[CudaDevice, ...] = field(default_factory=tuple)


def _cpuinfo() -> tuple[str, frozenset[str]]:
    path = Path("/proc/cpuinfo")
    model, flags = platform.processor() or platform.machine(), frozenset()
    if not path.is_file():
        return model, flags
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and model in ("", platform.machine()):
            model = value.strip() or model
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int]) -> int:
    """Distinct physical cores among `cpus` (hyper-threads of one core count once)."""
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(),
                       (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))  # no topology: count each logical CPU
    return max(len(cores), 1)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def onednn_bf16() -> bool:
    """Whether torch's oneDNN takes a bf16 path at all (False under DNNL_MAX_CPU_ISA=AVX2,
    which turns a bf16 matmul into a 2 GFLOP/s emulation on a CPU that has the units)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_native_bf16(flags: frozenset[str], onednn: bool | None = None) -> bool:
    """Whether bf16 matmuls run on bf16 units here (see CpuInfo.native_bf16): the CPU has
    them and oneDNN may use them. oneDNN's own check alone is not enough: it also says yes
    for AVX-512 CPUs without bf16 units (Skylake), where bf16 is emulated."""
    onednn = onednn_bf16() if onednn is None else onednn
    if flags:
        return onednn and bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
    # No /proc/cpuinfo (macOS, containers hiding it): ask torch's own CPU probes.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return onednn and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def detect_cpu() -> CpuInfo:
    model, flags = _cpuinfo()
    cpus = usable_cpus()
    return CpuInfo(model=model, flags=flags, logical_cpus=len(cpus),
                   physical_cores=physical_cores(cpus), memory_bytes=_memory_bytes(),
                   native_bf16=cpu_native_bf16(flags))


def detect_cuda() -> tuple[CudaDevice, ...]:
    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(CudaDevice(i, props.name, (props.major, props.minor), props.total_memory))
    return tuple(out)


def detect() -> Hardware:
    return Hardware(cpu=detect_cpu(), cuda=detect_cuda())


def flash_attn_status(devices: tuple[CudaDevice, ...]) -> str:
    """Whether flash-attn is importable and usable (it needs sm80+ and half precision)."""
    if importlib.util.find_spec("flash_attn") is None:
        return "not installed (SDPA's flash kernels are used instead; pip install flash-attn)"
    if not devices:
        return "installed, unusable here (needs a CUDA device)"
    old = [d.sm for d in devices if d.capability < (8, 0)]
    if old:
        return f"installed, unusable on {', '.join(old)} (flash-attn 2 needs sm80+)"
    try:
        import flash_attn  # noqa: F401  (import errors: a build for another torch / CUDA)
    except Exception as err:  # noqa: BLE001 - any import failure is what we report
        return f"installed, fails to import: {type(err).__name__}: {str(err).splitlines()[0]}"
    return f"usable (flash-attn {getattr(flash_attn, '__version__', '?')})"
