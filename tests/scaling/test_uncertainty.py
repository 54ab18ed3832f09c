"""Intervals that include between-budget and between-run variation, the sensitivity rows,
and the flags for exponents the data do not constrain and multipliers that extrapolate."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import linregress

from src.scaling.analyze import analyze, compute_multipliers
from src.scaling.isoflop import fit_isoflop
from src.scaling.published import CHINCHILLA
from src.scaling.report import summary_text, to_dict
from src.scaling.synthetic import isoflop_table
from src.scaling.table import prepare_table
from src.scaling.uncertainty import (
    case_bootstrap,
    constrained_reason,
    sensitivity,
    slope_t_interval,
    t_intervals,
    three_point_table,
)

TRUE_A = CHINCHILLA.beta / (CHINCHILLA.alpha + CHINCHILLA.beta)


def test_slope_t_interval_is_the_textbook_one():
    rng = np.random.default_rng(0)
    c = np.logspace(18, 21, 6)
    y = 0.1 * c ** 0.5 * np.exp(0.05 * rng.standard_normal(6))
    lo, hi = slope_t_interval(c, y)
    ref = linregress(np.log(c), np.log(y))
    half = 2.776 * ref.stderr  # t(0.975, 4 dof)
    assert (lo, hi) == pytest.approx((ref.slope - half, ref.slope + half), rel=1e-3)
    assert slope_t_interval(c[:2], y[:2]) is None  # two budgets: no residual to measure


def test_three_budgets_give_honest_width():
    """One residual degree of freedom: t = 12.7. A 3-budget fit whose minima scatter by a
    few percent around the law is, correctly, almost unconstrained."""
    c = np.array([1e12, 2e12, 4e12])
    n_opt = 3e4 * (c / 1e12) ** 0.5 * np.array([1.0, 1.15, 0.95])
    lo, hi = slope_t_interval(c, n_opt)
    assert hi - lo > 2.0
    assert constrained_reason("a", (lo, hi)) is not None
    assert constrained_reason("a", (0.4, 0.6)) is None
    assert "fewer than 3 budgets" in constrained_reason("a", None)


def _prepared(noise: float, seed: int = 0, n_per_budget: int = 7) -> pd.DataFrame:
    raw = isoflop_table(budgets=np.logspace(18, 20, 5), n_per_budget=n_per_budget,
                        span_decades=0.8, noise=noise, seed=seed)
    return prepare_table(raw)


def test_case_bootstrap_covers_the_true_exponent_and_counts_its_drops():
    fit = fit_isoflop(_prepared(0.01))
    ci = case_bootstrap(fit.used(), n_boot=200, seed=1)
    lo, hi = ci.intervals["a"]
    assert lo < TRUE_A < hi
    assert 0 < ci.n_ok <= ci.n_boot
    assert case_bootstrap(fit.used()[:1]) is None  # one budget: no law


def test_t_interval_covers_the_truth_at_the_nominal_rate():
    """Coverage over 200 synthetic sweeps: a 95% interval must not cover ~50% of the time
    (what intervals that ignore the scatter between budgets do)."""
    hits = 0
    for seed in range(200):
        fit = fit_isoflop(_prepared(0.01, seed=seed))
        lo, hi = t_intervals(fit.used())["a"]
        hits += lo < TRUE_A < hi
    assert hits >= 180


def test_sensitivity_rows():
    df = _prepared(0.002)
    rows = sensitivity(df)
    sizes = np.sort(df["N"].unique())
    assert rows[0].choice == "full fit" and rows[-1].choice == "3-point parabolas"
    assert len(rows) == 2 + sizes.size  # full, each size left out, 3-point
    full = rows[0].exponents["a"]
    assert full == pytest.approx(TRUE_A, abs=0.05)
    for row in rows[1:]:  # with little noise no reasonable choice moves a far
        if row.reason is None:
            assert row.exponents["a"] == pytest.approx(full, abs=0.1), row.choice
    three = three_point_table(df)
    for _, rows_c in three.groupby("budget"):
        assert rows_c["N"].nunique() == 3


def test_three_point_table_centres_on_the_lowest_loss():
    df = pd.DataFrame({"N": [1, 2, 3, 4, 5, 6.0], "L": [5, 4, 3, 2.5, 2.6, 3.0],
                       "budget": [1e12] * 6})
    assert sorted(three_point_table(df)["N"]) == [3, 4, 5]
    df["L"] = [1, 2, 3, 4, 5, 6.0]  # lowest at an end: the three nearest sizes
    assert sorted(three_point_table(df)["N"]) == [1, 2, 3]


def test_report_prints_intervals_sensitivity_and_extrapolation():
    raw_ref = isoflop_table(budgets=np.logspace(18, 20, 3), n_per_budget=5, span_decades=0.8,
                            noise=0.01, seed=0, group="ar")
    raw = isoflop_table(budgets=np.logspace(18, 20, 3), n_per_budget=5, span_decades=0.8,
                        noise=0.01, seed=1, group="mdlm")
    raw["loss"] *= 1.05  # worse at every size: needs more compute than measured for AR's loss
    both = pd.concat([raw_ref, raw])
    both["non_embedding_params"] = both["params"] * 0.8
    results = analyze(both, group_col="group", n_boot=50)
    mult = compute_multipliers(results, "ar")[0]
    assert mult.extrapolation is not None and (mult.extrapolation > 1).any()
    report = to_dict(results, [mult], source="synthetic", group_col="group")
    text = summary_text(report)
    assert "95% t-intervals across budgets" in text and "Case bootstrap over runs" in text
    assert "sensitivity N = non-embedding" in text and "sensitivity 3-point parabolas" in text
    assert "EXTRAPOLATED" in text
    u = report["groups"]["ar"]["isoflop_uncertainty"]
    assert set(u["t_interval"]) == {"a", "b", "frontier_exponent"}
