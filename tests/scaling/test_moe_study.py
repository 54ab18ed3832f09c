"""scripts/moe_study.py: the dense-vs-MoE table from committed curves and results alone."""

from __future__ import annotations

import json

import pandas as pd

from scripts.moe_study import main


def _curve(run: str, algo: str, experts: int, nll: list[float], final: float) -> pd.DataFrame:
    n = len(nll)
    delta = {"model.moe.num_experts": experts} if experts else {}
    return pd.DataFrame({"run_dir": run, "algo": algo, "label": f"{algo} 0.13M",
                         "delta": json.dumps(delta), "seed": 0, "unique_tokens": 1000,
                         "step": range(1, n + 1), "tokens": [500.0 * (i + 1) for i in range(n)],
                         "flops": [1e9 * (i + 1) for i in range(n)], "nll": nll,
                         "nll_se": 0.0 if algo == "ar" else 0.01, "final_nll": final,
                         "final_se": 0.0})


def test_table_from_committed_curves_and_runs(tmp_path):
    curves = pd.concat([
        _curve("ar/dense", "ar", 0, [6.0, 5.5, 5.6, 5.7], 5.71),
        _curve("ar/moe", "ar", 8, [6.0, 5.4, 5.8, 5.9], 5.95),
        _curve("mdlm/dense", "mdlm", 0, [7.0, 6.8, 6.6, 6.5, 6.4, 6.3], 6.31)])
    curves.to_csv(tmp_path / "curves.csv", index=False)
    pd.DataFrame({"run_dir": ["ar/dense", "ar/moe", "mdlm/dense"],
                  "params": [1000, 3000, 1100]}).to_csv(tmp_path / "runs.csv", index=False)
    assert main([str(tmp_path / "curves.csv"), "--out", str(tmp_path / "out")]) == 0
    lines = (tmp_path / "out" / "moe.md").read_text().splitlines()
    assert lines[2] == "| AR | dense | 5.710 | 5.500 (1.0) | 2.0 | 1,000 |"
    assert lines[3] == "| AR | 8 experts | 5.950 | 5.400 (1.0) | 2.0 | 3,000 |"
    # MDLM's best is on the 5-point moving average (the last point averages 6.4, 6.3, 6.5...)
    assert lines[4].startswith("| MDLM | dense | 6.310 (bound) | 6.")
    assert (tmp_path / "out" / "moe.png").stat().st_size > 5_000
