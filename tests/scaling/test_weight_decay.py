"""Weight-decay study table: paired by seed against no decay, and rebuilt from a curves.csv."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.scaling.weight_decay import decay_table, only_decay_varies

ROOT = Path(__file__).resolve().parents[2]


def _curve_rows(algo: str, u: int, wd: float, seed: int, floor: float) -> pd.DataFrame:
    steps = np.arange(10, 210, 10)
    nll = floor + 2.0 / np.sqrt(steps / 10)  # falls to `floor` + 0.45 at the last step
    delta = {"optim.weight_decay": wd} if wd else {}
    if seed:
        delta["seed"] = seed
    return pd.DataFrame({
        "run_dir": f"{algo}/u{u}/wd{wd}/s{seed}", "algo": algo, "label": algo,
        "delta": json.dumps(delta), "seed": seed, "unique_tokens": u, "step": steps,
        "tokens": steps * 4096.0, "flops": steps * 1e9, "nll": nll,
        "nll_se": 0.0 if algo == "ar" else 0.01, "final_nll": nll[-1],
        "final_se": 0.0 if algo == "ar" else 0.005})


def test_decay_rows_are_paired_with_the_same_seed_without_decay(tmp_path):
    frames = [_curve_rows(a, u, wd, s, floor=3.0 + wd * (1 if u == 4096 else -1) + 0.1 * s)
              for a in ("ar", "mdlm") for u in (4096, 131072) for wd in (0.0, 0.1, 0.3)
              for s in (0, 1)]
    frames.append(_curve_rows("ar", 4096, 0.0, 0, 3.0).assign(
        run_dir="ar/dropout", delta=json.dumps({"model.dropout": 0.1})))
    path = tmp_path / "curves.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "scripts/weight_decay_study.py", str(path), "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "left out (differs in more than weight decay): ar/dropout" in done.stderr
    table = pd.read_csv(out / "weight_decay.csv")
    assert len(table) == 2 * 2 * 3 * 2
    for r in table.itertuples():  # the seed offset cancels in the pairing
        expected = r.weight_decay * (1 if r.unique_tokens == 4096 else -1)
        assert r.vs_no_decay == pytest.approx(expected, abs=1e-9)
    text = (out / "weight_decay.md").read_text()
    assert "Seeds per cell: 2." in text and "| mdlm | 0.3 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| ar | 0.1 |"))
    assert "+0.100" in row and "-0.100" in row and "±" not in row  # AR's NLL is exact
    mdlm = next(line for line in text.splitlines() if line.startswith("| mdlm | 0.1 |"))
    assert f"± {math.sqrt(0.005 ** 2 / 2):.3f}" in mdlm


def test_only_decay_varies_and_a_missing_baseline_is_nan():
    assert only_decay_varies({"optim.weight_decay": 0.1, "seed": 1})
    assert not only_decay_varies({"optim.weight_decay": 0.1, "model.dropout": 0.1})
    best = pd.DataFrame({"algo": ["ar"], "unique_tokens": [4096], "seed": [0],
                         "repetitions": [606.0], "best_loss": [7.5], "best_se": [0.0],
                         "best_epoch": [40.0], "final_loss": [8.0], "final_se": [0.0]})
    assert math.isnan(decay_table(best, [0.1])["vs_no_decay"].iloc[0])
