"""FLOP budget -> steps (the reference's 17,383), errors, and the model_stats CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.models.dit import count_params
from src.models.flops import flops_per_token
from src.scaling.budget import flops_so_far, max_steps, step_flops, steps_for_budget

ROOT = Path(__file__).resolve().parents[2]
M113 = dict(dim=768, n_blocks=12, n_heads=12, vocab_size=32001, seq_len=2048)


def test_reference_113m_gives_17383_steps():
    fpt = flops_per_token(**M113, convention="reference")
    assert steps_for_budget(6e18, fpt, 256, 2048) == 17383
    # The reference's own formula (utils.flops_to_max_steps) on its profiled 449.41 GFLOPs.
    assert int(6e18 / 449.41e9 / 256 / 3) == 17383
    assert max_steps(6e18, convention="reference", global_batch_size=256, **M113) == 17383


def test_steps_truncate_and_fit_the_budget():
    fpt, batch, seq = 1.5e6, 8, 128
    per_step = step_flops(fpt, batch, seq)
    assert steps_for_budget(10 * per_step, fpt, batch, seq) == 10
    assert steps_for_budget(10 * per_step * (1 - 1e-9), fpt, batch, seq) == 9
    steps = steps_for_budget(6e18, flops_per_token(**M113, convention="full"), 256, 2048)
    fpt = flops_per_token(**M113, convention="full")
    assert flops_so_far(steps, fpt, 256, 2048) <= 6e18 < flops_so_far(steps + 1, fpt, 256, 2048)


def test_flops_so_far():
    assert flops_so_far(0, 2.0, 4, 8) == 0
    assert flops_so_far(3, 2.0, 4, 8) == 3 * 2.0 * 4 * 8
    with pytest.raises(ValueError, match="step must be >= 0"):
        flops_so_far(-1, 2.0, 4, 8)


def test_too_small_budget_names_the_minimum():
    minimum = r"too small for one step: the minimum budget is 4\.096e\+06"
    with pytest.raises(ValueError, match=minimum):
        steps_for_budget(1e6, 1000.0, 4, 1024)


def test_bad_inputs():
    with pytest.raises(ValueError, match="flops_budget must be a positive"):
        steps_for_budget(0, 1000.0, 4, 1024)
    with pytest.raises(ValueError, match="global_batch_size must be a positive"):
        steps_for_budget(1e9, 1000.0, 0, 1024)


def test_unknown_convention_lists_valid_ones():
    with pytest.raises(ValueError, match="valid conventions are reference, 6N, palm, gidd, full"):
        max_steps(6e18, convention="chinchilla", global_batch_size=256, **M113)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/model_stats.py", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )


def test_model_stats_cli_113m():
    proc = run_cli("model=113M", "flops_budget=6e18")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    stats = json.loads(lines[0])
    assert stats["params"] == 141_566_209
    assert stats["max_steps"]["reference"] == 17383
    assert stats["flops_per_token"]["6N"] == 6 * stats["non_embedding_params"]
    assert set(stats["max_steps"]) == set(stats["flops_per_token"])


def test_model_stats_cli_matches_real_model():
    import torch

    from src.models.dit import DiT

    proc = run_cli("model=0.13M", "vocab_size=500", "seq_len=64", "algo=ar")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    with torch.device("meta"):
        model = DiT(500, stats["dim"], stats["n_blocks"], stats["n_heads"])
    assert {k: stats[k] for k in ("params", "non_embedding_params")} == count_params(model)
    assert "max_steps" not in stats


def test_model_stats_cli_unknown_model():
    proc = run_cli("model=7B")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model '7B'" in lines[0] and "113M" in lines[0]
