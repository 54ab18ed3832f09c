"""Synthetic run tables drawn from a known loss law, for tests and demos."""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.scaling.parametric import ParametricFit
from src.scaling.published import CHINCHILLA


def isoflop_table(
    law: ParametricFit = CHINCHILLA,
    budgets: np.ndarray | None = None,
    n_per_budget: int = 9,
    span_decades: float = 1.0,
    noise: float = 0.005,
    seed: int = 0,
    group: str | None = None,
) -> pd.DataFrame:
    """IsoFLOP sweep around the law's compute-optimal N with multiplicative noise.

    Args:
        law: True loss law.
        budgets: Compute budgets C (FLOPs); default 1e18..1e21, 7 budgets.
        n_per_budget: Model sizes per budget, log-spaced.
        span_decades: Sizes span N_opt(C) * 10^[-span, +span].
        noise: Std of the multiplicative log-normal loss noise (0.005 = 0.5%).
        seed: RNG seed.
        group: Value of a ``group`` column, if given.

    Returns:
        Table with columns params, tokens, flops, loss (and group).
    """
    rng = np.random.default_rng(seed)
    budgets = np.logspace(18, 21, 7) if budgets is None else np.asarray(budgets, float)
    rows = []
    for c in budgets:
        sizes = law.n_opt(c) * np.logspace(-span_decades, span_decades, n_per_budget)
        for n in sizes:
            d = c / (6.0 * n)  # C = 6 N D
            loss = law.predict(n, d) * np.exp(noise * rng.standard_normal())
            rows.append({"params": n, "tokens": d, "flops": c, "loss": float(loss)})
    df = pd.DataFrame(rows)
    if group is not None:
        df["group"] = group
    return df


def repeated_data_table(
    law: ParametricFit = CHINCHILLA,
    r_star: float = 15.4,
    params: np.ndarray | None = None,
    unique_tokens: np.ndarray | None = None,
    epochs: np.ndarray | None = None,
    noise: float = 0.005,
    seed: int = 0,
) -> pd.DataFrame:
    """Multi-epoch runs whose loss follows ``law`` at the effective data D'.

    D' = U (1 + R* (1 - exp(-R/R*))), R = epochs - 1 (Muennighoff et al. 2023, sec. 3).

    Args:
        law: True base law L(N, D').
        r_star: True R_D*.
        params: Model sizes.
        unique_tokens: Unique-token pool sizes U.
        epochs: Epoch counts (>= 1).
        noise: Multiplicative log-normal noise std.
        seed: RNG seed.

    Returns:
        Table with params, tokens, unique_tokens, epochs, loss.
    """
    rng = np.random.default_rng(seed)
    params = np.logspace(7.5, 9.5, 5) if params is None else params
    unique_tokens = np.logspace(8.5, 10, 4) if unique_tokens is None else unique_tokens
    epochs = np.array([1, 2, 4, 8, 16, 32, 64]) if epochs is None else epochs
    rows = []
    for n in params:
        for u in unique_tokens:
            for ep in epochs:
                r = ep - 1.0
                d_eff = u * (1.0 + r_star * (1.0 - np.exp(-r / r_star)))
                loss = law.predict(n, d_eff) * np.exp(noise * rng.standard_normal())
                rows.append({"params": n, "tokens": u * ep, "unique_tokens": u,
                             "epochs": float(ep), "loss": float(loss)})
    return pd.DataFrame(rows)
