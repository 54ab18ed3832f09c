"""Parametric law (Chinchilla approach 3), compute-optimal allocation and bootstrap."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from src.scaling.bootstrap import bootstrap_parametric
import pandas as pd

from src.scaling.analyze import analyze
from src.scaling.data_constrained import DataConstrainedFit
from src.scaling.parametric import (ParametricFit, fit_parametric, huber, objective,
                                    unconstrained_reason)
from src.scaling.published import CHINCHILLA
from src.scaling.report import _data_constrained_lines, data_constrained_dict
from src.scaling.table import FitError


@pytest.fixture(scope="module")
def fitted(chinchilla_rows) -> ParametricFit:
    return fit_parametric(chinchilla_rows["N"], chinchilla_rows["D"], chinchilla_rows["L"])


def test_huber_is_quadratic_then_linear():
    r = np.array([-0.5, 0.0005, 0.002])
    loss, grad = huber(r, 1e-3)
    assert loss == pytest.approx([1e-3 * (0.5 - 0.5e-3), 0.5 * 0.0005**2, 1e-3 * 1.5e-3])
    assert grad == pytest.approx([-1e-3, 0.0005, 1e-3])


def test_objective_gradient_matches_finite_differences(chinchilla_rows):
    log_n, log_d, log_l = (np.log(chinchilla_rows[k].to_numpy()) for k in ("N", "D", "L"))
    x = np.array([6.5, 5.5, 0.4, 0.3, 0.3])
    _, grad = objective(x, log_n, log_d, log_l, delta=1.0)  # smooth regime
    numeric = approx_fprime(x, lambda v: objective(v, log_n, log_d, log_l, 1.0)[0], 1e-7)
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_exact_law_value_at_truth_is_zero(chinchilla_rows):
    n, d = chinchilla_rows["N"].to_numpy(), chinchilla_rows["D"].to_numpy()
    exact = np.log(CHINCHILLA.predict(n, d))
    value, _ = objective(CHINCHILLA.vector(), np.log(n), np.log(d), exact)
    assert value == pytest.approx(0.0, abs=1e-12)


def test_recovers_chinchilla_law(fitted):
    assert fitted.alpha == pytest.approx(CHINCHILLA.alpha, abs=0.02)
    assert fitted.beta == pytest.approx(CHINCHILLA.beta, abs=0.02)
    assert fitted.E == pytest.approx(CHINCHILLA.E, rel=0.03)
    assert fitted.a == pytest.approx(CHINCHILLA.a, abs=0.02)


def test_compute_optimal_allocation_minimises_loss():
    law = CHINCHILLA
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    assert law.G == pytest.approx(g)
    assert law.a == pytest.approx(0.28 / 0.62) and law.b == pytest.approx(0.34 / 0.62)
    for c in (1e19, 1e22, 1e25):
        n = np.logspace(5, 14, 20001)
        brute = n[np.argmin(law.predict(n, c / (6 * n)))]
        assert float(law.n_opt(c)) == pytest.approx(brute, rel=2e-3)
        assert 6 * law.n_opt(c) * law.d_opt(c) == pytest.approx(c, rel=1e-12)


def test_too_few_rows_raise_fit_error():
    with pytest.raises(FitError, match="need >= 6"):
        fit_parametric(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(FitError, match="distinct"):
        fit_parametric(np.full(8, 1e8), np.logspace(9, 10, 8), np.full(8, 3.0))


def test_bootstrap_intervals_contain_truth_and_are_deterministic(chinchilla_rows, fitted):
    args = (chinchilla_rows["N"], chinchilla_rows["D"], chinchilla_rows["L"], fitted)
    ci = bootstrap_parametric(*args, n_boot=40, seed=0)
    assert ci.n_ok == 40
    for key in ("E", "A", "B", "alpha", "beta", "G", "a", "b"):
        lo, hi = ci.intervals[key]
        assert lo <= getattr(CHINCHILLA, key) <= hi, key
        assert lo <= getattr(fitted, key) <= hi, key
    again = bootstrap_parametric(*args, n_boot=5, seed=0)
    first = bootstrap_parametric(*args, n_boot=5, seed=0)
    assert again.intervals == first.intervals


# MDLM rows of a CPU micro-ladder (params, tokens, val nll; budgets 1e12, 2e12, 4e12 FLOPs):
# the loss falls all the way to the smallest size at every budget.
EDGE_MINIMA_ROWS = [
    (41826, 4969472, 2.5042), (81042, 2423808, 2.6437), (132546, 1436672, 2.8998),
    (225618, 803840, 2.9643), (383682, 463872, 3.3017),
    (41826, 9938944, 2.3644), (81042, 4848640, 2.4186), (132546, 2873344, 2.5601),
    (225618, 1607680, 2.8601), (383682, 927744, 3.0200),
    (41826, 19878912, 2.2600), (81042, 9698304, 2.3060), (132546, 5747712, 2.4448),
    (225618, 3216384, 2.4420), (383682, 1856512, 2.7509),
]


def test_plausible_fit_is_not_flagged(fitted):
    assert unconstrained_reason(fitted) is None


def test_minima_at_the_ladder_edge_flag_the_fit_unconstrained(caplog):
    df = pd.DataFrame(EDGE_MINIMA_ROWS, columns=["params", "tokens", "loss"])
    (group,) = analyze(df, n_boot=0)
    fit = group.parametric.fit
    assert fit.alpha > 3.0  # A / N^alpha has collapsed into a step
    assert "alpha=" in group.parametric.unconstrained
    assert "sample sizes on both sides" in group.parametric.unconstrained
    assert "parametric fit unconstrained" in caplog.text


def test_degenerate_base_law_flags_the_data_constrained_fit():
    df = pd.DataFrame(EDGE_MINIMA_ROWS, columns=["params", "tokens", "loss"])
    (group,) = analyze(df, n_boot=0)
    base = group.parametric.fit
    dc = data_constrained_dict(DataConstrainedFit(5.0, base, "joint", 0.1, 15, 6))
    assert dc["status"] == "unconstrained" and "alpha=" in dc["reason"]
    assert any("UNCONSTRAINED" in line for line in _data_constrained_lines(dc))
