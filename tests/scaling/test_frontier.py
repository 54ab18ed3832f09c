"""IsoFLOP bootstrap intervals, the loss frontier and compute multipliers on synthetic sweeps
from known laws."""

import numpy as np
import pandas as pd
import pytest

from src.scaling.analyze import analyze, compute_multipliers
from src.scaling.frontier import bootstrap_isoflop, compute_for_loss
from src.scaling.isoflop import PowerLaw, fit_isoflop
from src.scaling.parametric import ParametricFit
from src.scaling.published import CHINCHILLA
from src.scaling.report import summary_text, to_dict
from src.scaling.synthetic import isoflop_table
from src.scaling.table import prepare_table

BUDGETS = np.logspace(18, 20, 5)
# The law's compute-optimal exponents (Chinchilla eq. 4): a = beta / (alpha + beta).
TRUE_A = CHINCHILLA.beta / (CHINCHILLA.alpha + CHINCHILLA.beta)
TRUE_B = CHINCHILLA.alpha / (CHINCHILLA.alpha + CHINCHILLA.beta)


# Chinchilla without its irreducible term: the compute-optimal loss is then exactly a power
# law in C, L_opt = K C^(-alpha beta / (alpha + beta)), which the frontier fit assumes.
NO_FLOOR = ParametricFit(E=0.0, A=CHINCHILLA.A, B=CHINCHILLA.B, alpha=CHINCHILLA.alpha,
                         beta=CHINCHILLA.beta)


def sweep(noise: float = 0.005, seed: int = 0, multiplier: float = 1.0,
          law: ParametricFit = CHINCHILLA) -> pd.DataFrame:
    """A 5-size IsoFLOP sweep per budget; with `multiplier` m the losses are the law's at
    (N / sqrt(m), D / sqrt(m)), so this group needs exactly m times the compute for any loss."""
    table = isoflop_table(law=law, budgets=BUDGETS, n_per_budget=5, span_decades=0.8,
                          noise=noise, seed=seed)
    s = np.sqrt(multiplier)
    table["loss"] = law.predict(table["params"] / s, table["tokens"] / s) * np.exp(
        noise * np.random.default_rng(seed + 1).standard_normal(len(table)))
    return table


def test_bootstrap_intervals_cover_the_true_exponents_and_shrink_with_noise():
    wide = fit_isoflop(prepare_table(sweep(noise=0.01)))
    ci = bootstrap_isoflop(wide, n_boot=300, seed=0)
    assert ci.n_ok >= 290
    lo, hi = ci.intervals["a"]
    assert lo < TRUE_A < hi
    lo_b, hi_b = ci.intervals["b"]
    assert lo_b < TRUE_B < hi_b
    assert lo < wide.n_opt_law.exponent < hi
    narrow = bootstrap_isoflop(fit_isoflop(prepare_table(sweep(noise=0.001))), n_boot=300)
    assert np.ptp(narrow.intervals["a"]) < 0.3 * (hi - lo)
    # The frontier falls with compute, and its exponent's interval says so.
    assert ci.intervals["frontier_exponent"][1] < 0


def test_no_laws_no_bootstrap():
    one_budget = prepare_table(isoflop_table(budgets=[1e19], n_per_budget=5))
    assert bootstrap_isoflop(fit_isoflop(one_budget), n_boot=50) is None


@pytest.mark.slow  # bootstrap over many synthetic fits: ~14 s
def test_compute_multiplier_recovers_a_known_factor():
    table = pd.concat([sweep(law=NO_FLOOR).assign(group="ar"),
                       sweep(multiplier=8.0, seed=3, law=NO_FLOOR).assign(group="mdlm")])
    results = analyze(table, group_col="group", n_boot=100)
    (m,) = compute_multipliers(results, "ar")
    assert m.group == "mdlm" and m.reference == "ar"
    np.testing.assert_allclose(m.values, 8.0, rtol=0.1)
    assert all(lo < v < hi for v, (lo, hi) in zip(m.values, m.ci))
    report = to_dict(results, [m])
    assert report["compute_multipliers"][0]["group"] == "mdlm"
    text = summary_text(report)
    assert "compute multiplier mdlm vs ar" in text and "16x" in text
    assert "IsoFLOP laws (95% CI" in text


def test_reference_without_a_frontier_is_one_clear_error():
    table = pd.concat([isoflop_table(budgets=[1e19], n_per_budget=5).assign(group="ar"),
                       sweep().assign(group="mdlm")])
    results = analyze(table, group_col="group", n_boot=0)
    with pytest.raises(ValueError, match="reference group 'ar' has no IsoFLOP frontier"):
        compute_multipliers(results, "ar")
    with pytest.raises(ValueError, match="is not a group"):
        compute_multipliers(results, "gidd")


def test_compute_for_loss_inverts_the_frontier():
    law = PowerLaw(coefficient=50.0, exponent=-0.1, n_points=3, r2=1.0)
    c = np.array([1e12, 4e12])
    np.testing.assert_allclose(compute_for_loss(law, law(c)), c, rtol=1e-10)
