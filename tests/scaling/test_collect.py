"""Collecting result.json files into a table, and reading/validating CSVs."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.scaling.collect import collect_runs, flatten
from src.scaling.table import MissingColumnsError, load_table, prepare_table

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, record) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json").write_text(json.dumps(record))


@pytest.fixture()
def run_tree(tmp_path: Path) -> Path:
    base = {"algo": "mdlm", "model": "6M", "params": 6e6, "non_embedding_params": 5e6,
            "steps": 100, "val_ppl": 20.0, "wall_time_s": 10.0, "tokens_per_s": 1e5}
    _write(tmp_path / "mdlm/6M/f1e15/s1", {**base, "tokens": 2e7, "val_nll": 3.1, "seed": 1})
    _write(tmp_path / "mdlm/6M/f1e15/s0", {**base, "tokens": 2e7, "val_nll": 3.0, "seed": 0,
                                           "extra": {"gen_ppl": 50.0}})
    _write(tmp_path / "ar/6M/f1e15/s0", {**base, "algo": "ar", "tokens": 2e7, "val_nll": 2.9,
                                         "loss": 2.95, "flops": 1e15, "run_dir": "/old/ar"})
    (tmp_path / "ar/6M/f1e15/s0/checkpoints").mkdir()
    # Started, not finished: src/train.py writes config.yaml, then checkpoints/.
    (tmp_path / "ar/19M/f1e15/s0").mkdir(parents=True)
    (tmp_path / "ar/19M/f1e15/s0/config.yaml").write_text("seed: 0\n")
    (tmp_path / "ar/34M/f1e15/s0/checkpoints").mkdir(parents=True)
    (tmp_path / "ar/34M/f1e15/s0/checkpoints/last.ckpt").write_bytes(b"x")
    (tmp_path / "ar/34M/f1e15/s0/wandb/files").mkdir(parents=True)
    (tmp_path / "ar/34M/f1e15/s0/wandb/files/config.yaml").write_text("{}\n")
    # Hydra's job folders under <log_dir>/.hydra are not runs.
    (tmp_path / ".hydra/2026-01-01/00-00-00/.hydra").mkdir(parents=True)
    (tmp_path / ".hydra/2026-01-01/00-00-00/.hydra/config.yaml").write_text("{}\n")
    return tmp_path


def test_flatten_nested():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": [1, 2]}) == {
        "a": 1, "b.c": 2, "b.d.e": 3, "f": "[1, 2]"}


def test_collect_runs(run_tree):
    found = collect_runs(run_tree)
    table = found.table
    assert list(table["run_dir"]) == ["ar/6M/f1e15/s0", "mdlm/6M/f1e15/s0", "mdlm/6M/f1e15/s1"]
    assert list(table["loss"]) == [2.95, 3.0, 3.1]  # explicit loss kept, else val_nll
    assert table.columns[0] == "run_dir"
    assert "extra.gen_ppl" in table.columns and "flops" in table.columns
    assert pd.isna(table.loc[1, "flops"])
    assert table.loc[0, "recorded_run_dir"] == "/old/ar"
    assert [p.relative_to(run_tree).as_posix() for p in found.unfinished] == [
        "ar/19M/f1e15/s0", "ar/34M/f1e15/s0"]


def test_collect_script_writes_csv(run_tree, tmp_path):
    out = tmp_path / "out" / "runs.csv"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/collect_runs.py"), str(run_tree),
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 unfinished" in proc.stdout
    csv = pd.read_csv(out)
    assert len(csv) == 3 and csv["loss"].tolist() == [2.95, 3.0, 3.1]
    assert list(csv.columns) == list(collect_runs(run_tree).table.columns)


def test_missing_column_error_names_missing_and_found(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"params": [1.0], "loss": [2.0], "algo": ["ar"]}).to_csv(path, index=False)
    with pytest.raises(MissingColumnsError) as err:
        load_table(path)
    message = str(err.value)
    assert "missing required column(s) tokens" in message
    assert "found columns: params, loss, algo" in message
    assert "\n" not in message


def test_prepare_table_compute_and_loss_fallbacks():
    raw = pd.DataFrame({"params": [1e8, 1e8, 2e8], "tokens": [1e9, 2e9, 0.0],
                        "val_nll": [3.0, 2.9, 2.8], "flops": [7e17, None, 1e18]})
    prepared = prepare_table(raw)
    assert len(prepared) == 2  # zero tokens dropped
    assert prepared["L"].tolist() == [3.0, 2.9]
    assert prepared["C"].tolist() == pytest.approx([7e17, 6 * 1e8 * 2e9])  # flops, else 6ND
    assert prepared["budget"].tolist() == prepared["C"].tolist()


def test_split_groups_by_several_columns():
    from src.scaling.table import split_groups

    df = pd.DataFrame({"algo": ["ar", "ar", "mdlm", "ar"], "optim.lr": [1e-3, 3e-3, 1e-3, 1e-3],
                       "loss": [1.0, 2.0, 3.0, 4.0]})
    groups = split_groups(df, "algo,optim.lr")
    assert sorted(groups) == ["algo=ar, optim.lr=0.001", "algo=ar, optim.lr=0.003",
                              "algo=mdlm, optim.lr=0.001"]
    assert groups["algo=ar, optim.lr=0.001"]["loss"].tolist() == [1.0, 4.0]
    assert sorted(split_groups(df, "algo")) == ["ar", "mdlm"]  # one column: its values


def test_swept_keys_become_columns_with_each_runs_value(tmp_path):
    base = {"algo": "ar", "model": "1M", "params": 1e6, "tokens": 1e6, "val_nll": 3.0}
    for name, lr, delta in (("s0", 0.001, {}), ("s0-abc", 0.003, {"optim.lr": 0.003})):
        _write(tmp_path / name, {**base, "config_delta": delta})
        (tmp_path / name / "config.yaml").write_text(
            f"optim:\n  lr: {lr}\n  betas: [0.9, 0.99]\ntrainer:\n  devices: 1\nrun_dir: x\n")
    table = collect_runs(tmp_path).table
    assert table["optim.lr"].tolist() == [0.001, 0.003]
    assert "optim.betas" not in table.columns  # not swept
    columns = list(table.columns)  # the leading result columns, then the swept axes, then the rest
    assert columns.index("loss") + 1 == columns.index("optim.lr") < columns.index("config_delta")


def test_collect_script_adds_earlier_csvs_and_refuses_a_run_twice(run_tree, tmp_path):
    script = str(REPO / "scripts/collect_runs.py")
    earlier = tmp_path / "earlier.csv"
    assert subprocess.run([sys.executable, script, str(run_tree), "--out", str(earlier)],
                          capture_output=True, cwd=tmp_path).returncode == 0
    other = tmp_path / "other"
    _write(other / "mdlm/6M/f1e15/s2", {"algo": "mdlm", "model": "6M", "params": 6e6,
                                        "steps": 100, "tokens": 2e7, "val_nll": 3.2, "seed": 2})
    out = tmp_path / "merged.csv"
    proc = subprocess.run([sys.executable, script, str(other), "--out", str(out),
                           "--add", str(earlier)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = pd.read_csv(out)
    assert sorted(merged["val_nll"]) == [2.9, 3.0, 3.1, 3.2]
    assert set(merged["collected_from"]) == {str(other), str(earlier)}
    # the same runs once from their folders and once from the CSV: one point counted twice
    twice = subprocess.run([sys.executable, script, str(run_tree), "--out", str(out),
                            "--add", str(earlier)], capture_output=True, text=True, cwd=tmp_path)
    assert twice.returncode == 2 and "the same run appears twice" in twice.stderr
