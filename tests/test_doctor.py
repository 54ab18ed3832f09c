"""`python -m src.doctor`: the machine, measured peaks, what auto picks, a predicted quickstart."""

from __future__ import annotations

import json

import pytest
import torch

from src import doctor


@pytest.fixture
def quick_peaks(monkeypatch):
    """Skip the 2 s of matmuls (matmul_peak itself is exercised by bench scripts)."""
    peaks = {torch.float32: 1e11, torch.bfloat16: 4e11}
    monkeypatch.setattr(doctor, "matmul_peak", lambda device, dtype, **kw: peaks[dtype])


def test_report_names_every_fact(quick_peaks):
    report = doctor.diagnose(predict=False)
    assert report["matmul_gflops"] == {"fp32": 100.0, "bf16": 400.0}
    assert report["auto"]["precision"] in ("bf16-mixed", "32-true")
    if report["device"] == "cpu":
        assert report["auto"]["attention"] == "math"
    assert report["cpu"]["physical_cores"] >= 1 and report["cpu"]["memory_gib"] > 0
    text = doctor.format_report(report)
    for needle in ("instruction sets", "fast bf16 matmuls", "physical cores", "CUDA", "flash",
                   "fp32 100.0 GFLOP/s, bf16 400.0 GFLOP/s", "auto     precision", "threads",
                   "compile"):
        assert needle in text, needle


def test_json_cli(quick_peaks, capsys):
    assert doctor.main(["--json", "--no-predict"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"cpu", "cuda", "flash_attn", "matmul_gflops", "auto", "doctor_s"} <= set(out)


def test_prediction_adds_up_from_timed_steps(tmp_path):
    q = doctor.predict_quickstart("cpu", "32-true", (
        "model=0.13M", "data=shakespeare_byte", "data.seq_len=32", "training.max_steps=10",
        "training.val_every_n_steps=4", "training.val_max_batches=2",
        f"paths.cache_dir={tmp_path}"))
    assert q["step_s"] > 0 and q["steps"] == 10
    assert q["validations"] == 3  # steps 4 and 8, then the final one (10 is off the cadence)
    assert q["predicted_s"] == pytest.approx(
        doctor.QUICKSTART_FIXED_S + 10 * q["step_s"] + q["validation_s"])
