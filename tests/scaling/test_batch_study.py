"""Batch-size study: steps to a target, the critical-batch fit, lr* per batch size, checked on
synthetic sweeps whose true B_crit and lr* scaling are known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.scaling.batch_study import (
    ar_predicts,
    critical_batches,
    lr_batch_exponent,
    optimal_lr_by_batch,
    steps_to_targets,
)
from src.scaling.critical_batch import fit_critical_batch, steps_to_target

ROOT = Path(__file__).resolve().parents[2]


def test_steps_to_target_interpolates_between_validations_and_says_when_never_reached():
    steps = np.array([10, 20, 30, 40])
    nll = np.array([4.0, 3.0, 2.0, 2.5])
    assert steps_to_target(steps, nll, 2.5, stochastic=False) == pytest.approx(25.0)
    assert steps_to_target(steps, nll, 5.0, stochastic=False) is None  # crossed before 10
    assert steps_to_target(steps, nll, 1.9, stochastic=False) is None
    # a Monte-Carlo curve is smoothed first: a single lucky point does not count
    noisy = np.array([4.0, 3.0, 1.0, 3.0, 3.0, 3.0])
    assert steps_to_target(np.arange(6), noisy, 1.5, stochastic=False) is not None
    assert steps_to_target(np.arange(6), noisy, 1.5, stochastic=True) is None


def test_critical_batch_fit_recovers_the_hyperbola():
    batch = np.array([4, 8, 16, 32, 64, 128], float)
    rng = np.random.default_rng(0)
    steps = 300 * (1 + 24 / batch) * np.exp(rng.normal(0, 0.01, len(batch)))
    fit = fit_critical_batch(batch, steps, target=2.0)
    assert fit.b_crit == pytest.approx(24, rel=0.05)
    assert fit.s_min == pytest.approx(300, rel=0.03)
    assert fit.e_min == pytest.approx(fit.s_min * fit.b_crit)
    assert fit.loo[0] <= fit.b_crit <= fit.loo[1]
    assert fit.rms_log_residual < 0.02
    with pytest.raises(ValueError, match=">= 3 batch sizes"):
        fit_critical_batch(batch[:2], steps[:2], target=2.0)


B_CRIT = {"ar": 16.0, "mdlm": 48.0}
LR_STAR = {"ar": 2e-3, "mdlm": 4e-3}  # at B=16; both scale as sqrt(B)
BATCHES = (4, 8, 16, 32, 64)
LRS = (5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
SEQ = 128


def _loss(algo: str, batch: int, lr: float, step: np.ndarray) -> np.ndarray:
    """A sweep with a known answer: progress p = steps / (1 + B_crit / B), slowed by a
    mis-tuned lr (quadratic in octaves from lr* = LR_STAR (B / 16)^0.5); loss 2 + 3 e^(-p/400)."""
    lr_star = LR_STAR[algo] * (batch / 16) ** 0.5
    efficiency = 1 / (1 + 0.3 * math.log2(lr / lr_star) ** 2)
    progress = step * efficiency / (1 + B_CRIT[algo] / batch)
    return 2 + 3 * np.exp(-progress / 400)


def synthetic_sweep() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, curves = [], []
    for algo in B_CRIT:
        for b in BATCHES:
            total = 16 * 4000 // b  # one token budget: 4000 steps at B=16
            steps = np.linspace(total / 20, total, 20).round().astype(int)
            for lr in LRS:
                run = f"{algo}/b{b}/lr{lr}"
                nll = _loss(algo, b, lr, steps)
                runs.append({"run_dir": run, "algo": algo, "global_batch_size": b, "optim.lr": lr,
                             "seq_len": SEQ, "val_nll": nll[-1], "loss": nll[-1],
                             "val_draws": 8 if algo == "mdlm" else 1})
                curves.append(pd.DataFrame({"run_dir": run, "algo": algo, "step": steps,
                                            "nll": nll}))
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def test_batch_study_recovers_lr_scaling_and_critical_batch_of_a_known_sweep():
    runs, curves = synthetic_sweep()
    table = optimal_lr_by_batch(runs)
    for r in table.itertuples():
        truth = LR_STAR[r.algo] * (r.batch_size / 16) ** 0.5
        assert not r.at_edge or r.batch_size in (4, 64)
        if not r.at_edge:  # the grid is 2x apart: the parabola lands within half an octave
            assert abs(math.log2(r.lr_opt / truth)) < 0.5
    k = lr_batch_exponent(table).set_index("algo")["exponent_k"]
    assert k["ar"] == pytest.approx(0.5, abs=0.15) and k["mdlm"] == pytest.approx(0.5, abs=0.15)
    pred = ar_predicts(runs, table)
    # MDLM's lr* is one octave above AR's at every batch: transferring AR's costs loss
    assert (pred["octaves"].between(0.5, 1.5)).all()
    assert (pred["loss_cost"] >= 0).all()
    reach = steps_to_targets(runs, curves)
    fits = critical_batches(reach)
    assert set(fits["algo"]) == {"ar", "mdlm"}
    for r in fits.itertuples():
        if r.note:
            continue
        # the fastest lr per batch is lr*, so the fit sees the true hyperbola (up to the
        # lr grid's spacing and the linear interpolation between validations)
        assert r.b_crit == pytest.approx(B_CRIT[r.algo], rel=0.35), r
    # the critical batch orders the algos as built
    mean = fits.dropna(subset=["b_crit"]).groupby("algo")["b_crit"].mean()
    assert mean["mdlm"] > 2 * mean["ar"]


def test_batch_study_script_rebuilds_its_tables_from_committed_csvs(tmp_path):
    runs, curves = synthetic_sweep()
    runs.to_csv(tmp_path / "runs.csv", index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "scripts/batch_study.py", str(tmp_path / "runs.csv"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (out / "batch_lr.md").read_text()
    assert "B_crit" in text and "| 16 |" in text
    for name in ("loss_vs_lr.png", "critical_batch.png", "optimal_lr.csv", "critical_batch.csv"):
        assert (out / name).stat().st_size > 0
    json.dumps(text)  # plain text, no numpy leftovers
    missing = subprocess.run([sys.executable, "scripts/batch_study.py",
                              str(out / "optimal_lr.csv")], cwd=ROOT, capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "curves.csv" in missing.stderr


def test_a_target_crossed_before_the_first_validation_is_left_out_of_the_fit():
    batch = [4, 8, 16, 32, 64]
    reach = pd.DataFrame({"algo": "ar", "target": 2.0, "margin": 0.1, "batch_size": batch,
                          "steps": [300 * (1 + 16 / b) for b in batch], "tokens": 0.0,
                          "lr": 1e-3, "censored": [False, False, False, False, True]})
    fit = critical_batches(reach).iloc[0]
    assert fit["n_batches"] == 4 and fit["b_crit"] == pytest.approx(16, rel=1e-3)
