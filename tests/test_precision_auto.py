"""`trainer.precision=auto` picks by hardware, device-free: mocked CUDA devices (sm70, sm75,
sm80, sm90) and CPUs with and without bf16 units; a run records and keeps its precision."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from src.utils import precision as P
from src.utils.hardware import CpuInfo, CudaDevice, Hardware, cpu_native_bf16, detect_cuda
from tests.conftest import train_tiny

AVX2_ONLY = frozenset({"avx", "avx2", "fma", "sse4_2"})
SAPPHIRE = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
AVX512_NO_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni"}  # Skylake / Cascade Lake


def cpu(flags: frozenset[str], onednn: bool = True) -> CpuInfo:
    return CpuInfo("mock CPU", flags, 2, 2, 2**34, cpu_native_bf16(flags, onednn))


def gpus(*capabilities: tuple[int, int]) -> tuple[CudaDevice, ...]:
    return tuple(CudaDevice(i, f"GPU{i}", cc, 2**34) for i, cc in enumerate(capabilities))


@pytest.mark.parametrize("flags, expected", [
    (AVX2_ONLY, "32-true"), (AVX512_NO_BF16, "32-true"), (SAPPHIRE, "bf16-mixed"),
    (frozenset({"avx512f", "avx512_bf16"}), "bf16-mixed"),      # Cooper Lake / Zen 4
    (frozenset({"fp", "asimd", "bf16"}), "bf16-mixed"),         # ARM with the BF16 extension
    (frozenset({"fp", "asimd"}), "32-true"),
])
def test_cpu_choice_follows_bf16_units(flags, expected):
    choice = P.choose_precision(Hardware(cpu(flags)), "cpu")
    assert choice.value == expected
    assert "CPU mock CPU" in choice.reason
    # Units oneDNN may not use (DNNL_MAX_CPU_ISA=AVX2) are no units: bf16 is emulated there.
    assert P.choose_precision(Hardware(cpu(flags, onednn=False)), "cpu").value == "32-true"


@pytest.mark.parametrize("capabilities, expected", [
    (((7, 0),), "32-true"),            # V100
    (((7, 5),), "32-true"),            # T4
    (((8, 0),), "bf16-mixed"),         # A100
    (((9, 0),), "bf16-mixed"),         # H100
    (((8, 0), (7, 0)), "32-true"),     # a mixed node: the slowest device decides
])
def test_cuda_choice_follows_tensor_cores(capabilities, expected):
    hw = Hardware(cpu(AVX2_ONLY), gpus(*capabilities))
    assert P.choose_precision(hw, "cuda").value == expected
    # The CPU's units do not matter for a CUDA run, and vice versa.
    assert P.choose_precision(Hardware(cpu(SAPPHIRE), gpus(*capabilities)), "cuda").value \
        == expected
    assert P.choose_precision(hw, "cpu").value == "32-true"


def test_detect_cuda_reads_torch_device_properties(monkeypatch):
    props = {0: SimpleNamespace(name="Tesla V100", major=7, minor=0, total_memory=16 * 2**30),
             1: SimpleNamespace(name="H100", major=9, minor=0, total_memory=80 * 2**30)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[i])
    devices = detect_cuda()
    assert [d.sm for d in devices] == ["sm70", "sm90"]
    assert [d.native_bf16 for d in devices] == [False, True]
    assert P.device_type("auto") == "cuda" and P.device_type("gpu") == "cuda"


def test_auto_resolves_and_explains_once(caplog):
    hw = Hardware(cpu(AVX2_ONLY))
    with caplog.at_level(logging.INFO, logger="src.utils.precision"):
        first = P.resolve_precision("auto", "cpu", hw)
        P.resolve_precision("auto", "cpu", hw)
    assert first.value == "32-true" and first.reason.startswith("auto: CPU mock CPU has no bf16")
    lines = [r.getMessage() for r in caplog.records if "precision: 32-true" in r.getMessage()]
    assert len(lines) <= 1  # once per process (an earlier test may already have logged it)


def test_explicit_bf16_without_units_warns_with_the_measured_slowdown(caplog, monkeypatch):
    monkeypatch.setattr(P, "_logged", set())
    monkeypatch.setattr(P, "measured_slowdown", lambda dtype, device: 14.6)
    with caplog.at_level(logging.INFO, logger="src.utils.precision"):
        choice = P.resolve_precision("bf16-mixed", "cpu", Hardware(cpu(AVX2_ONLY)))
    assert choice.value == "bf16-mixed"  # trained as asked
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "14.6x slower than fp32" in warnings[0]
    assert "auto would pick 32-true" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="src.utils.precision"):
        P.resolve_precision("bf16-mixed", "cpu", Hardware(cpu(SAPPHIRE)))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_measured_slowdown_is_a_real_ratio():
    ratio = P.measured_slowdown(torch.bfloat16, "cpu", n=64, budget_s=0.05)
    assert ratio is not None and ratio > 0


@pytest.mark.parametrize("native, expected", [(False, "32-true"), (True, "bf16-mixed")])
def test_a_run_records_auto_resolution_and_resumes_under_it(tmp_path, monkeypatch, native,
                                                            expected):
    """The run folder is the same on both machine kinds; config.yaml and result.json carry the
    resolved value; a rerun on the other kind keeps the stored precision."""
    def fake(flags: frozenset[str]) -> Hardware:
        return Hardware(cpu(flags))
    monkeypatch.setattr(P, "_detected", fake(SAPPHIRE if native else AVX2_ONLY))
    first = train_tiny(tmp_path, "training.max_steps=2", "eval.num_samples=0")
    run_dir = Path(first["run_dir"])
    # auto is the default: it is not part of the run's identity on either machine kind.
    assert not any(k.startswith("trainer.") for k in first["config_delta"])
    assert first["precision"] == expected and first["precision_reason"].startswith("auto: ")
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["trainer"]["precision"] == expected
    assert json.loads((run_dir / "result.json").read_text())["precision"] == expected
    # The other machine kind continues the run (2 more steps) under the stored value.
    monkeypatch.setattr(P, "_detected", fake(AVX2_ONLY if native else SAPPHIRE))
    monkeypatch.setattr(P, "measured_slowdown", lambda dtype, device: 9.0)
    again = train_tiny(tmp_path, "training.max_steps=2", "eval.num_samples=0",
                       "training.overwrite=true")
    assert again["run_dir"] == first["run_dir"]
    assert again["precision"] == expected
    assert "the run's own" in again["precision_reason"]


def test_a_stored_precision_is_data_checked_before_use(tmp_path):
    from src.runs.precision import stored_precision
    (tmp_path / "config.yaml").write_text("trainer:\n  precision: ${oc.env:HOME}\n")
    with pytest.raises(ValueError, match="is not a precision"):
        stored_precision(tmp_path)
    (tmp_path / "config.yaml").write_text("trainer:\n  precision: bf16-mixed\n")
    assert stored_precision(tmp_path) == "bf16-mixed"
