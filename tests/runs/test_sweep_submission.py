"""Submitting a sweep: one job array for all points, and a pre-launch check that composes a
cover of the points (every override value once), not each point."""

from __future__ import annotations

import itertools
import subprocess
import sys

from hydra_plugins.dlm_sweeper.covering_sweeper import covering_points
from tests.conftest import ROOT


def test_the_cover_holds_every_override_value_with_few_points():
    values = {"algo": ["ar", "mdlm", "duo", "esolm", "gidd"], "model": [f"m{i}" for i in range(10)],
              "budget": ["1", "2", "3", "4", "5"], "seed": ["0", "1", "2", "3"]}
    batch = [[f"{k}={v}" for k, v in zip(values, combo)]
             for combo in itertools.product(*values.values())]
    assert len(batch) == 1000
    cover = covering_points(batch)
    assert {o for p in cover for o in p} == {o for p in batch for o in p}
    assert len(cover) <= 24  # one point per (key, value) at worst; the product needs ~10
    assert covering_points([]) == []


def test_a_typo_in_one_value_fails_the_sweep_before_any_point_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "src.train", "-m", "model=0.13M,0.13MM", "training.max_steps=1",
         f"paths.log_dir={tmp_path}/runs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "0.13MM" in proc.stderr
    assert not list((tmp_path / "runs").rglob("result.json"))  # 0.13M did not train first


def test_dry_run_submits_the_sweep_as_one_job_array(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/sweep_dry_run.py", "--out", str(tmp_path), "--",
         "experiment=isoflop_ladder", "algo=ar,mdlm", "model=6M,19M",
         "training.flops_budget=1e18,2e18"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "points submitted:          8" in proc.stdout
    assert "sbatch calls:              1" in proc.stdout
    assert "--array=0-7%8" in proc.stdout
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))
