"""Data-constrained law: effective data D' and the R* fit (Muennighoff et al. 2023)."""

import numpy as np
import pandas as pd
import pytest

from src.scaling.data_constrained import effective_data, fit_data_constrained, unique_and_repeats
from src.scaling.published import CHINCHILLA
from src.scaling.table import FitError, prepare_table

R_STAR = 15.4


def test_effective_data_limits():
    u = 1e9
    assert effective_data(u, 0.0, R_STAR) == pytest.approx(u)  # one epoch = fresh data
    # First repetitions are worth almost as much as fresh data: D' ~ U (1 + R).
    assert effective_data(u, 1.0, R_STAR) == pytest.approx(2 * u, rel=0.04)
    assert effective_data(u, 1.0, R_STAR) < 2 * u
    # Returns decay: D' saturates at U (1 + R*).
    assert effective_data(u, 1e4, R_STAR) == pytest.approx(u * (1 + R_STAR), rel=1e-9)
    assert effective_data(u, R_STAR, R_STAR) == pytest.approx(u * (1 + R_STAR * (1 - np.exp(-1))))


def test_repeats_from_epochs_or_token_ratio():
    df = pd.DataFrame({"D": [4e9, 4e9, 1e9, 2e9], "unique_tokens": [1e9, 1e9, 4e9, np.nan],
                       "epochs": [4.0, np.nan, np.nan, np.nan]})
    unique, repeats = unique_and_repeats(df)
    assert repeats == pytest.approx([3.0, 3.0, 0.0, 0.0])
    assert unique == pytest.approx([1e9, 1e9, 1e9, 2e9])


def test_recovers_r_star_with_known_base_law(repeated_rows):
    fit = fit_data_constrained(repeated_rows, base=CHINCHILLA, n_boot=30)
    assert fit.mode == "fixed-base"
    assert fit.r_star == pytest.approx(R_STAR, rel=0.05)
    lo, hi = fit.r_star_ci
    assert lo <= R_STAR <= hi


def test_recovers_r_star_and_base_law_jointly(repeated_rows):
    fit = fit_data_constrained(repeated_rows, n_boot=10)
    assert fit.mode == "joint"
    assert fit.r_star == pytest.approx(R_STAR, rel=0.1)
    assert fit.base.alpha == pytest.approx(CHINCHILLA.alpha, abs=0.02)
    assert fit.base.beta == pytest.approx(CHINCHILLA.beta, abs=0.02)
    assert fit.base.E == pytest.approx(CHINCHILLA.E, rel=0.03)
    lo, hi = fit.r_star_ci
    assert lo < fit.r_star < hi


def test_wrong_r_star_fits_worse(repeated_rows):
    # Ignoring repetition (R* -> infinity, D' = D) must predict losses too low.
    unique, repeats = unique_and_repeats(repeated_rows)
    many = repeats >= 31
    naive = CHINCHILLA.predict(repeated_rows["N"][many], repeated_rows["D"][many])
    assert np.all(naive < repeated_rows["L"][many].to_numpy() - 0.01)


def test_skips_without_unique_tokens_or_repeats(chinchilla_rows):
    with pytest.raises(FitError, match="unique_tokens"):
        fit_data_constrained(chinchilla_rows)
    one_epoch = prepare_table(pd.DataFrame({
        "params": [1e8] * 6, "tokens": [1e9] * 6, "loss": [3.0] * 6,
        "unique_tokens": [2e9] * 6,
    }))
    with pytest.raises(FitError, match="no repeated"):
        fit_data_constrained(one_epoch)
