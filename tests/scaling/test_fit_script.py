"""End-to-end runs of scripts/fit_scaling_laws.py on synthetic data."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.scaling.published import CHINCHILLA, QUOKKA
from src.scaling.synthetic import isoflop_table, repeated_data_table

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts/fit_scaling_laws.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def two_group_csv(tmp_path_factory) -> Path:
    ar = isoflop_table(CHINCHILLA, seed=0).assign(algo="ar")
    mdlm = isoflop_table(QUOKKA, seed=1).assign(algo="mdlm")
    path = tmp_path_factory.mktemp("csv") / "runs.csv"
    pd.concat([ar, mdlm]).to_csv(path, index=False)
    return path


def test_json_report_and_plots(two_group_csv, tmp_path):
    out = tmp_path / "plots"
    proc = run_script(str(two_group_csv), "--json", "--n-boot", "8", "--out", str(out),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["group_col"] == "algo"
    assert set(report["groups"]) == {"ar", "mdlm"}
    for name, law in (("ar", CHINCHILLA), ("mdlm", QUOKKA)):
        g = report["groups"][name]
        iso, par = g["isoflop"], g["parametric"]
        assert iso["status"] == "ok" and len(iso["budgets"]) == 7
        assert iso["N_opt_law"]["exponent"] == pytest.approx(law.a, abs=0.03)
        assert iso["D_opt_law"]["exponent"] == pytest.approx(law.b, abs=0.03)
        assert par["status"] == "ok"
        assert par["alpha"] == pytest.approx(law.alpha, abs=0.02)
        assert par["beta"] == pytest.approx(law.beta, abs=0.02)
        assert par["E"] == pytest.approx(law.E, rel=0.03)
        assert par["a"] + par["b"] == pytest.approx(1.0)
        assert par["ci"]["n_boot"] == 8 and len(par["ci"]["alpha"]) == 2
        assert g["data_constrained"] == {"status": "skipped", "reason": "no unique_tokens column"}
        lo, hi = iso["ci"]["a"]
        assert lo < iso["N_opt_law"]["exponent"] < hi and iso["ci"]["n_boot"] == 8
        assert iso["frontier"]["exponent"] < 0
    # ar is a group: the other groups' compute multipliers are measured against it.
    (mult,) = report["compute_multipliers"]
    assert mult["reference"] == "ar" and mult["group"] == "mdlm" and len(mult["C"]) == 7
    expected = {"loss_vs_compute.png", "frontier.png"} | {f"{kind}_{g}.png" for kind in
                                          ("isoflop", "optimal", "parametric") for g in
                                          ("ar", "mdlm")}
    assert {Path(p).name for p in report["plots"]} == expected
    for p in report["plots"]:
        data = Path(p).read_bytes()
        assert len(data) > 10_000 and data.startswith(PNG_MAGIC)


def test_text_summary_and_data_constrained(tmp_path):
    path = tmp_path / "repeat.csv"
    repeated_data_table(seed=0).to_csv(path, index=False)
    proc = run_script(str(path), "--n-boot", "0", "--no-plots", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "== group all (140 runs)" in proc.stdout
    assert "Data-constrained (joint): R* = 1" in proc.stdout  # ~15
    assert "wrote" not in proc.stdout


def test_too_few_points_are_reported_as_skipped(tmp_path):
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"params": [1e7, 2e7, 4e7], "tokens": [1e9] * 3,
                  "loss": [3.2, 3.1, 3.0]}).to_csv(path, index=False)
    proc = run_script(str(path), "--json", "--out", str(tmp_path / "p"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    g = json.loads(proc.stdout)["groups"]["all"]
    assert g["isoflop"]["status"] == "skipped" and "budget" in g["isoflop"]["reason"]
    assert g["parametric"] == {"status": "skipped", "reason": "3 runs (need >= 6 for 5 parameters)"}


def test_missing_column_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"params": [1e7], "val_ppl": [20.0]}).to_csv(path, index=False)
    proc = run_script(str(path), "--json", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert "missing required column(s) tokens, loss" in proc.stderr
    assert "found columns: params, val_ppl" in proc.stderr


def test_run_folder_is_collected_first(tmp_path):
    rows = isoflop_table(seed=2, budgets=[1e18, 1e19], n_per_budget=5)
    for i, row in rows.iterrows():
        run = tmp_path / "runs" / f"r{i:02d}"
        run.mkdir(parents=True)
        record = {"algo": "ar", "params": row.params, "tokens": row.tokens,
                  "val_nll": row.loss, "flops_budget": row.flops}
        (run / "result.json").write_text(json.dumps(record))
    proc = run_script(str(tmp_path / "runs"), "--json", "--no-plots", "--n-boot", "0",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    g = json.loads(proc.stdout)["groups"]["ar"]
    assert g["n_rows"] == 10 and g["isoflop"]["status"] == "ok"
    assert "collected 10 finished run(s)" in proc.stderr


def test_max_epochs_counts_repeated_rows_as_fresh(tmp_path):
    """`--max-epochs 4` feeds the <= 4-epoch rows of a repeated-data table to the parametric
    fit (1-, 2- and 4-epoch rows: 3 x 20); the default keeps only the 1-epoch rows (20)."""
    from src.scaling.analyze import single_epoch_mask
    from src.scaling.table import prepare_table

    table = prepare_table(repeated_data_table(seed=0))
    assert single_epoch_mask(table).sum() == 20
    assert single_epoch_mask(table, 4.0).sum() == 60
    path = tmp_path / "repeat.csv"
    table.to_csv(path, index=False)
    reports = {}
    for extra in ((), ("--max-epochs", "4")):
        proc = run_script(str(path), "--json", "--n-boot", "0", "--no-plots", *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        reports[extra] = json.loads(proc.stdout)["groups"]["all"]["parametric"]
    assert reports[()]["rows"] == "single-epoch" and reports[()]["n_points"] == 20
    assert reports[("--max-epochs", "4")]["rows"] == "<= 4 epochs"
    assert reports[("--max-epochs", "4")]["n_points"] == 60
    bad = run_script(str(path), "--max-epochs", "0.5", "--no-plots", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --max-epochs must be >= 1 (one pass is fresh data), got 0.5"]
