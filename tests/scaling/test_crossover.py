"""The crossover finder on synthetic curves with a known crossing, and the curve reader."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from src.scaling.crossover import (
    best_table,
    extrapolate,
    find_crossover,
    first_lasting_win,
    series_name,
    summarize,
)
from src.scaling.curves import ValCurve, load_curve

TOKENS = 2_457_600  # one compute budget: 600 steps x 4096 tokens
BUDGETS = (4096, 8192, 16384, 32768, 65536, 131072, 262144)


def ar_best(u):
    return 2.0 + 30.0 * np.asarray(u, float) ** -0.4


def mdlm_best(u):
    return 2.3 + 8.0 * np.asarray(u, float) ** -0.4


# ar_best == mdlm_best where 22 U^-0.4 = 0.3: U* = (22 / 0.3)^2.5
U_STAR = (22.0 / 0.3) ** 2.5


def synthetic_curve(algo: str, u: int, best: float, seed: int = 0, best_epoch: float = 10.0,
                    delta: dict | None = None) -> ValCurve:
    """A U-shaped validation curve in log epochs with its minimum `best` at `best_epoch`."""
    epochs = np.geomspace(0.5, TOKENS / u, 40)
    best_epoch = min(best_epoch, TOKENS / u / 2)
    # Five points at the minimum: a NELBO curve's moving average (window 5) reaches it too.
    epochs = np.sort(np.append(epochs, best_epoch * np.array([0.99, 0.995, 1.0, 1.005, 1.01])))
    nll = best + 0.3 * np.log(epochs / best_epoch) ** 2
    tokens = epochs * u
    return ValCurve(run_dir=Path(f"/runs/{algo}/u{u}/s{seed}"), algo=algo, label=algo,
                    unique_tokens=u, steps=np.arange(epochs.size) * 10, nll=nll,
                    tokens=tokens, flops=tokens * 1e6, delta=dict(delta or {}), seed=seed)


def synthetic_table(seeds=(0,), offsets=None) -> pd.DataFrame:
    offsets = offsets or {}
    curves = []
    for seed in seeds:
        for u in BUDGETS:
            curves.append(synthetic_curve("ar", u, float(ar_best(u)), seed))
            curves.append(synthetic_curve("mdlm", u, float(mdlm_best(u)) + offsets.get(seed, 0.0),
                                          seed, best_epoch=40.0))
    return best_table(curves)


def test_best_table_finds_each_runs_minimum_and_its_epoch():
    table = synthetic_table()
    ar = table[(table.series == "ar") & (table.unique_tokens == 8192)].iloc[0]
    assert ar.best_loss == pytest.approx(float(ar_best(8192)))  # exact NLL: the point itself
    assert ar.best_se == 0.0
    row = table[(table.series == "mdlm") & (table.unique_tokens == 8192)].iloc[0]
    # A NELBO curve's best is the minimum of its 5-point moving average: at or above the
    # raw minimum, near it on a smooth curve.
    assert float(mdlm_best(8192)) <= row.best_loss < float(mdlm_best(8192)) + 1e-4
    assert row.best_epoch == pytest.approx(40.0, rel=0.01)  # 300 epochs at U = 8192
    assert row.repetitions == pytest.approx(TOKENS / 8192)
    assert row.final_loss > row.best_loss


def test_smoothed_best_removes_most_of_the_best_of_noise_bias():
    """A flat NELBO curve with noisy points: the raw minimum of 60 points sits ~2.3 SE
    below the truth; the moving average's minimum sits far closer."""
    rng = np.random.default_rng(0)
    raw, smooth = [], []
    for _ in range(200):
        c = synthetic_curve("mdlm", 8192, 3.0)
        c.nll = np.full(60, 3.0) + rng.normal(0, 0.05, 60)
        c.steps, c.tokens, c.flops = np.arange(60), np.arange(60.0) + 1, np.arange(60.0) + 1
        raw.append(c.nll.min())
        smooth.append(c.selection_nll[c.best_index])
    assert np.mean(raw) < 3.0 - 2.0 * 0.05
    assert 3.0 - np.mean(smooth) < 0.5 * (3.0 - np.mean(raw))


def test_crossover_is_the_first_lasting_win_and_interpolates_near_the_true_crossing():
    c = find_crossover(synthetic_table())
    reps = TOKENS / np.array(BUDGETS, float)
    # MDLM wins at every U below U* (~46k): from U = 32768, i.e. 75 repetitions, on.
    assert c.repetitions == pytest.approx(TOKENS / 32768)
    assert not c.below_range
    true = TOKENS / U_STAR
    assert reps[reps < true].max() < c.interpolated < reps[reps > true].min()
    assert c.interpolated == pytest.approx(true, rel=0.15)
    # Exact synthetic laws: the saturating fits recover the crossing itself.
    assert c.extrapolated.unique_tokens == pytest.approx(U_STAR, rel=0.02)
    assert c.extrapolated.repetitions == pytest.approx(true, rel=0.02)


def test_a_win_that_does_not_last_is_not_the_crossover():
    reps = np.array([5.0, 10.0, 20.0, 40.0, 80.0])
    gaps = np.array([0.5, -0.1, 0.2, -0.1, -0.3])  # a noisy early win at 10 repetitions
    k, x = first_lasting_win(reps, gaps)
    assert reps[k] == 40.0 and 20.0 < x < 40.0
    assert first_lasting_win(reps, np.array([0.5, 0.4, 0.3, 0.2, 0.1])) == (None, None)
    assert first_lasting_win(reps, -np.ones(5)) == (0, None)


def test_per_seed_crossovers_give_the_spread():
    # Seed 1's MDLM is 0.05 nats worse: it wins only from a larger repetition count.
    c = find_crossover(synthetic_table(seeds=(0, 1), offsets={1: 0.05}))
    assert c.per_seed[0] == pytest.approx(TOKENS / 32768)
    assert c.per_seed[1] > c.per_seed[0]
    assert c.seed_spread == (c.per_seed[0], c.per_seed[1])
    row = c.gaps[c.gaps.unique_tokens == 16384].iloc[0]
    assert row.n_pairs == 2 and row.gap_min < row.gap < row.gap_max


def test_no_crossover_and_below_range_are_reported_as_such():
    never = synthetic_table(offsets={0: 1.0})
    c = find_crossover(never)
    assert c.repetitions is None and c.interpolated is None
    always = synthetic_table(offsets={0: -1.0})
    c = find_crossover(always)
    assert c.below_range and c.repetitions == pytest.approx(TOKENS / max(BUDGETS))


def test_extrapolation_finds_a_crossing_beyond_the_sampled_budgets():
    # Only budgets where AR still wins: the fits must place U* beyond them.
    wide = best_table([synthetic_curve(a, u, float(f(u)))
                       for u in (65536, 131072, 262144, 524288, 1048576)
                       for a, f in (("ar", ar_best), ("mdlm", mdlm_best))])
    c = find_crossover(wide)
    assert c.repetitions is None
    assert c.extrapolated.unique_tokens == pytest.approx(U_STAR, rel=0.02)
    assert extrapolate(wide, "ar", "mdlm").repetitions == pytest.approx(TOKENS / U_STAR, rel=0.02)


def test_series_are_algo_plus_swept_keys_except_the_data_budget_and_seed():
    c = synthetic_curve("ar", 4096, 5.0, delta={"model.dropout": 0.1, "data.unique_tokens": 4096,
                                                "data.seed": 1})
    assert series_name(c) == "ar model.dropout=0.1"
    s = summarize(best_table([c, synthetic_curve("ar", 4096, 6.0, seed=1, delta=c.delta)]))
    assert s.iloc[0].n_seeds == 2 and s.iloc[0].best_loss == pytest.approx(5.5)
    with pytest.raises(ValueError, match="no runs of series 'duo'"):
        find_crossover(synthetic_table(), challenger="duo")


def write_run(run_dir: Path, algo: str, u: int, val: list[tuple[int, float]], seed: int = 0) -> None:
    """A run folder as src.train leaves it: metrics.csv, config.yaml, result.json."""
    (run_dir / "logs").mkdir(parents=True)
    lines = ["step,perf/tokens,perf/flops,val/nll,train/loss"]
    for step in range(0, 100, 10):  # training rows log counters at steps 9, 19, ...
        lines.append(f"{step + 9},{(step + 10) * 4096},{(step + 10) * 4096 * 2e6},,1.0")
    lines += [f"{s},,,{v}," for s, v in val]
    (run_dir / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")
    cfg = {"algo": {"name": algo}, "model": {"name": "0.13M"}, "seed": seed,
           "data": {"seq_len": 128, "unique_tokens": u},
           "training": {"global_batch_size": 32},
           "run_identity": {"config_delta": {"data.unique_tokens": u}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / "result.json").write_text(json.dumps({
        "algo": algo, "params": 1000, "tokens": 409600, "val_nll": val[-1][1], "seed": seed,
        "unique_tokens": u, "flops_per_token": 2e6, "status": "finished"}))


def test_load_curve_reads_tokens_flops_and_epochs_at_each_validation(tmp_path):
    write_run(tmp_path / "r", "ar", 8192, [(19, 5.0), (39, 4.0), (59, 4.5)])
    c = load_curve(tmp_path / "r")
    assert list(c.steps) == [19, 39, 59] and list(c.nll) == [5.0, 4.0, 4.5]
    np.testing.assert_allclose(c.tokens, [20 * 4096, 40 * 4096, 60 * 4096])
    np.testing.assert_allclose(c.flops, c.tokens * 2e6)
    np.testing.assert_allclose(c.epochs, c.tokens / 8192)
    assert c.best_index == 1 and c.seed == 0 and c.algo == "ar"
    assert "U=8,192" in c.label


def test_crossover_script_writes_table_figures_and_json(tmp_path):
    from scripts.crossover import main

    root = tmp_path / "runs"
    for u, (ar, md) in {4096: (6.0, 5.5), 16384: (5.0, 4.9), 65536: (4.0, 4.6)}.items():
        write_run(root / f"ar/u{u}", "ar", u, [(19, ar + 1), (39, ar), (59, ar + 2)])
        # A NELBO curve: its best is the minimum of its 5-point moving average (md).
        write_run(root / f"mdlm/u{u}", "mdlm", u,
                  [(19, md + 1), (29, md), (39, md), (49, md), (59, md)])
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out)]) == 0
    text = (out / "crossover.md").read_text()
    # The last validation (step 59) comes after 60 x 4096 tokens: 15 epochs of U = 16,384.
    assert "Crossover: from 15 repetitions on" in text
    report = json.loads((out / "crossover.json").read_text())
    assert report["crossover_repetitions"] == pytest.approx(15.0)
    assert {p.name for p in out.glob("*.png")} == {"curves_epochs.png", "curves_flops.png",
                                                   "best.png"}


def test_crossover_interval_from_paired_seeds():
    """Seeds 0.04 nats apart: the interval holds the crossing and ends on budgets where the
    gap's 95% t-interval excludes zero."""
    c = find_crossover(synthetic_table(seeds=(0, 1), offsets={0: -0.02, 1: 0.02}))
    lower, upper = c.interval
    assert "t-intervals over seeds" in c.interval_method and "7 degrees" in c.interval_method
    assert lower < c.interpolated < upper
    g = c.gaps.set_index("repetitions")
    assert g.loc[lower, "gap_lo"] > 0 and (g.loc[upper:, "gap_hi"] < 0).all()
    # Between them every budget's interval straddles zero (undecided), or the win does not last.
    inside = g[(g.index > lower) & (g.index < upper)]
    assert ((inside.gap_lo <= 0) | (inside.gap_hi >= 0)).all()


def test_one_seed_interval_uses_the_monte_carlo_errors():
    curves = []
    for u in BUDGETS:
        ar = synthetic_curve("ar", u, float(ar_best(u)))
        md = synthetic_curve("mdlm", u, float(mdlm_best(u)), best_epoch=40.0)
        md.nll_se = np.full(len(md.nll), 0.05)  # SE of each point; the 5-point mean: 0.05/sqrt(5)
        curves += [ar, md]
    c = find_crossover(best_table(curves))
    assert "Monte-Carlo standard errors alone" in c.interval_method
    assert c.gaps.gap_se.to_numpy() == pytest.approx(0.05 / np.sqrt(5))
    lower, upper = c.interval
    assert lower is not None and upper is not None and lower < c.interpolated <= upper
    # A budget with an unknown SE (a run older than the estimator) is never "significant".
    curves[1].nll_se = None
    c = find_crossover(best_table(curves))
    assert np.isnan(c.gaps.gap_se.iloc[-1])


def test_curves_csv_rebuilds_the_same_report(tmp_path):
    """The committed curves.csv alone reproduces crossover.md (what the README quotes)."""
    from scripts.crossover import main

    root = tmp_path / "runs"
    for u, (ar, md) in {4096: (6.0, 5.5), 16384: (5.0, 4.9), 65536: (4.0, 4.6)}.items():
        for seed in (0, 1):
            write_run(root / f"ar/u{u}/s{seed}", "ar", u,
                      [(19, ar + 1), (39, ar + 0.01 * seed), (59, ar + 2)], seed=seed)
            write_run(root / f"mdlm/u{u}/s{seed}", "mdlm", u,
                      [(19, md + 1), (29, md), (39, md - 0.02 * seed), (49, md), (59, md)],
                      seed=seed)
    first, again = tmp_path / "a", tmp_path / "b"
    assert main([str(root), "--out", str(first)]) == 0
    assert main([str(first / "curves.csv"), "--out", str(again)]) == 0
    assert (again / "crossover.md").read_text() == (first / "crossover.md").read_text()
    assert "95% interval" in (first / "crossover.md").read_text()
