"""IsoFLOP profiles: Chinchilla approach 2 (Hoffmann et al. 2022, sec. 3.2).

For each compute budget C, fit loss against ln N with a parabola; its vertex is
N_opt(C), and D_opt(C) = C / (6 N_opt) (the C = 6 N D convention). Then fit
N_opt = k_N C^a and D_opt = k_D C^b by least squares in log space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from src.scaling.table import FitError

log = logging.getLogger(__name__)

MIN_DISTINCT_PARAMS = 3  # a parabola needs three distinct abscissae


@dataclass
class PowerLaw:
    """y = coefficient * C^exponent, fitted in log space.

    Attributes:
        coefficient: k.
        exponent: The power of C.
        n_points: Number of budgets used.
        r2: Coefficient of determination in log space.
    """

    coefficient: float
    exponent: float
    n_points: int
    r2: float

    def __call__(self, compute: np.ndarray | float) -> np.ndarray | float:
        """Evaluate the law at compute C (FLOPs)."""
        return self.coefficient * np.asarray(compute, dtype=float) ** self.exponent

    def formula(self, name: str) -> str:
        """Readable formula, e.g. ``N_opt = 0.1 C^0.5``."""
        return f"{name} = {self.coefficient:.3g} C^{self.exponent:.3f}"


@dataclass
class BudgetFit:
    """One IsoFLOP profile and its parabola.

    Attributes:
        budget: Compute budget C (FLOPs), the geometric mean of the bucket.
        params: N of every run in the bucket.
        losses: Loss of every run in the bucket.
        status: ``ok``; ``unbracketed`` (vertex outside the sampled N range,
            not used for the laws by default); or ``skipped``.
        reason: Why the budget was skipped or flagged.
        coeffs: Parabola (c2, c1, c0) in x = ln N: loss = c2 x^2 + c1 x + c0.
        n_opt: Vertex N_opt(C).
        d_opt: C / (6 N_opt).
        loss_opt: Parabola value at the vertex.
    """

    budget: float
    params: np.ndarray
    losses: np.ndarray
    status: str
    reason: str | None = None
    coeffs: tuple[float, float, float] | None = None
    n_opt: float | None = None
    d_opt: float | None = None
    loss_opt: float | None = None

    @property
    def n_distinct_params(self) -> int:
        """Number of distinct model sizes in the profile."""
        return int(np.unique(self.params).size)


def measured_bracket(params: np.ndarray, losses: np.ndarray) -> tuple[float, int, int] | None:
    """(N of the lowest measured loss, distinct sizes below it, distinct sizes above it): whether
    a profile brackets its minimum by measurement, not by the parabola (None when empty)."""
    if params.size == 0:
        return None
    best = float(params[int(np.argmin(losses))])
    sizes = np.unique(params)
    return best, int((sizes < best).sum()), int((sizes > best).sum())


@dataclass
class IsoFlopFit:
    """All IsoFLOP profiles of one group and the fitted power laws.

    Attributes:
        budgets: One entry per budget bucket, sorted by budget.
        n_opt_law: N_opt = k_N C^a, or None when it could not be fitted.
        d_opt_law: D_opt = k_D C^b, or None.
        reason: Why the laws are missing, if they are.
    """

    budgets: list[BudgetFit] = field(default_factory=list)
    n_opt_law: PowerLaw | None = None
    d_opt_law: PowerLaw | None = None
    reason: str | None = None

    def used(self, allow_unbracketed: bool = False) -> list[BudgetFit]:
        """Budgets whose minimum enters the power-law fits."""
        ok = {"ok", "unbracketed"} if allow_unbracketed else {"ok"}
        return [b for b in self.budgets if b.status in ok]


def budget_buckets(budget: np.ndarray, decimals: int = 2) -> np.ndarray:
    """Bucket budgets by rounding log10 C so runs of one nominal budget group together.

    Args:
        budget: Compute budgets (FLOPs), positive.
        decimals: Decimals of log10 C kept (2 -> budgets within ~1% merge).

    Returns:
        The bucket key (rounded log10 C) of every budget.
    """
    return np.round(np.log10(np.asarray(budget, dtype=float)), decimals)


def fit_profile(budget: float, params: np.ndarray, losses: np.ndarray) -> BudgetFit:
    """Fit one IsoFLOP parabola and locate its minimum.

    Args:
        budget: Compute budget C (FLOPs).
        params: N per run.
        losses: Loss per run.

    Returns:
        The profile; ``status`` says whether its minimum is usable.
    """
    params, losses = np.asarray(params, float), np.asarray(losses, float)
    fit = BudgetFit(budget, params, losses, status="skipped")
    if fit.n_distinct_params < MIN_DISTINCT_PARAMS:
        fit.reason = f"{fit.n_distinct_params} distinct N (need >= {MIN_DISTINCT_PARAMS})"
        return fit
    x = np.log(params)
    c2, c1, c0 = np.polyfit(x, losses, 2)
    fit.coeffs = (float(c2), float(c1), float(c0))
    if c2 <= 0:
        # A concave or flat fit has no minimum: the vertex would be a maximum.
        fit.reason = f"parabola has no minimum (curvature {c2:.3g} <= 0)"
        return fit
    x_opt = -c1 / (2 * c2)
    # A nearly flat profile puts its vertex absurdly far away: clipped so that N_opt stays a
    # positive finite number (the status below marks it unbracketed either way).
    fit.n_opt = float(np.exp(np.clip(x_opt, -700.0, 700.0)))
    fit.d_opt = budget / (6.0 * fit.n_opt)  # C = 6 N D (Chinchilla sec. 3.2)
    fit.loss_opt = float(c0 - c1**2 / (4 * c2))
    if x.min() <= x_opt <= x.max():
        fit.status = "ok"
    else:
        fit.status = "unbracketed"
        fit.reason = "minimum lies outside the sampled N range (extrapolated)"
    return fit


def fit_power_law(compute: np.ndarray, values: np.ndarray) -> PowerLaw:
    """Least-squares fit of log y = log k + a log C.

    Args:
        compute: Budgets C.
        values: y at each budget (e.g. N_opt).

    Returns:
        The fitted :class:`PowerLaw`.

    Raises:
        FitError: With fewer than two distinct budgets.
    """
    lc, ly = np.log(np.asarray(compute, float)), np.log(np.asarray(values, float))
    if np.unique(lc).size < 2:
        raise FitError("need >= 2 budgets with a usable minimum for a power law")
    slope, intercept = np.polyfit(lc, ly, 1)
    resid = ly - (intercept + slope * lc)
    total = np.sum((ly - ly.mean()) ** 2)
    r2 = float(1 - np.sum(resid**2) / total) if total > 0 else 1.0
    return PowerLaw(float(np.exp(intercept)), float(slope), int(lc.size), r2)


def fit_isoflop(df: pd.DataFrame, allow_unbracketed: bool = False) -> IsoFlopFit:
    """Chinchilla approach 2 on a prepared table (columns ``N``, ``L``, ``budget``).

    Args:
        df: Table from :func:`src.scaling.table.prepare_table`.
        allow_unbracketed: Also use minima extrapolated beyond the sampled N range.

    Returns:
        Per-budget minima and, when >= 2 budgets are usable, the N_opt and D_opt laws.
    """
    keys = budget_buckets(df["budget"].to_numpy())
    result = IsoFlopFit()
    for key in np.unique(keys):
        rows = df.loc[keys == key]
        budget = float(np.exp(np.mean(np.log(rows["budget"].to_numpy()))))
        prof = fit_profile(budget, rows["N"].to_numpy(), rows["L"].to_numpy())
        if prof.status != "ok":
            log.warning("IsoFLOP budget %.3g: %s", budget, prof.reason)
        result.budgets.append(prof)
    used = result.used(allow_unbracketed)
    if len(used) < 2:
        result.reason = f"{len(used)} budget(s) with a usable minimum (need >= 2)"
        return result
    c = np.array([b.budget for b in used])
    result.n_opt_law = fit_power_law(c, np.array([b.n_opt for b in used]))
    result.d_opt_law = fit_power_law(c, np.array([b.d_opt for b in used]))
    return result
