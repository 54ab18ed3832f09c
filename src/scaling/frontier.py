"""Uncertainty of the IsoFLOP laws, the compute-optimal loss frontier, and compute multipliers.

Bootstrap (residual, per budget): each usable IsoFLOP parabola's residuals, inflated by
sqrt(n / (n - 3)) for the three fitted coefficients, are resampled onto its fitted values;
every replicate refits the parabolas and the power laws N_opt = k C^a, D_opt = k C^b and the
frontier L_opt = k C^-gamma. Resampling residuals keeps every replicate on the sampled model
sizes (resampling whole runs would often leave a budget with fewer than three distinct N).
A replicate whose parabola has no minimum is dropped and counted.

The frontier is a local power law with no irreducible term: a handful of budgets cannot pin
E + K C^-gamma. With a floor in the true loss the fitted exponents drift with the budget
range, so the multiplier is reported at each of the reference's budgets, not as one number.

Compute multiplier of group X against a reference R at loss L: C_X(L) / C_R(L), with
C(L) = (L / k)^(1 / exponent) inverted from each frontier. SMDM (Nie et al. 2024) reports
about 16x for masked diffusion against AR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from src.scaling.bootstrap import percentile_intervals
from src.scaling.isoflop import BudgetFit, IsoFlopFit, PowerLaw, fit_power_law, fit_profile
from src.scaling.table import FitError

CI_NAMES: tuple[str, ...] = ("a", "b", "k_N", "k_D", "frontier_exponent", "frontier_coefficient")


@dataclass
class IsoFlopCI:
    """Bootstrap percentile intervals of one group's IsoFLOP laws.

    Attributes:
        level: Coverage, e.g. 0.95.
        n_boot: Replicates drawn.
        n_ok: Replicates whose every parabola had a minimum.
        intervals: Name (CI_NAMES) -> (low, high).
        frontiers: Each successful replicate's frontier law (for multiplier intervals).
    """

    level: float
    n_boot: int
    n_ok: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    frontiers: list[PowerLaw] = field(default_factory=list)


def fit_frontier(budgets: list[BudgetFit]) -> PowerLaw:
    """L_opt = k C^exponent through the IsoFLOP minima (exponent < 0 when loss falls).

    Raises:
        FitError: With fewer than two budgets.
    """
    return fit_power_law(np.array([b.budget for b in budgets]),
                         np.array([b.loss_opt for b in budgets]))


def _laws(budgets: list[BudgetFit]) -> dict[str, float]:
    c = np.array([b.budget for b in budgets])
    n_law = fit_power_law(c, np.array([b.n_opt for b in budgets]))
    d_law = fit_power_law(c, np.array([b.d_opt for b in budgets]))
    front = fit_frontier(budgets)
    return {"a": n_law.exponent, "b": d_law.exponent, "k_N": n_law.coefficient,
            "k_D": d_law.coefficient, "frontier_exponent": front.exponent,
            "frontier_coefficient": front.coefficient}


def bootstrap_isoflop(
    fit: IsoFlopFit, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
    allow_unbracketed: bool = False,
) -> IsoFlopCI | None:
    """Residual bootstrap of the IsoFLOP power laws (module docstring).

    Args:
        fit: A point fit whose laws exist.
        n_boot: Replicates.
        seed: RNG seed.
        level: Interval coverage.
        allow_unbracketed: Use the same budgets as a fit that allowed extrapolated minima.

    Returns:
        Intervals, or None when the point fit has no laws or n_boot is 0.
    """
    used = fit.used(allow_unbracketed)
    if n_boot <= 0 or fit.n_opt_law is None or len(used) < 2:
        return None
    rng = np.random.default_rng(seed)
    fitted, residuals = [], []
    for b in used:
        x = np.log(b.params)
        yhat = np.polyval(b.coeffs, x)
        n = b.params.size
        inflate = np.sqrt(n / (n - 3)) if n > 3 else 1.0
        fitted.append(yhat)
        residuals.append((b.losses - yhat) * inflate)
    samples: dict[str, list[float]] = {k: [] for k in CI_NAMES}
    frontiers = []
    for _ in range(n_boot):
        reps = [fit_profile(b.budget, b.params, yhat + rng.choice(r, size=r.size))
                for b, yhat, r in zip(used, fitted, residuals)]
        if any(rep.n_opt is None for rep in reps):
            continue
        try:
            values = _laws(reps)
        except FitError:
            continue
        for k, v in values.items():
            samples[k].append(v)
        frontiers.append(PowerLaw(values["frontier_coefficient"], values["frontier_exponent"],
                                  len(reps), float("nan")))
    return IsoFlopCI(level, n_boot, len(frontiers), percentile_intervals(samples, level),
                     frontiers)


def compute_for_loss(law: PowerLaw, loss: np.ndarray | float) -> np.ndarray:
    """C at which a frontier L = k C^exponent reaches `loss`."""
    return (np.asarray(loss, float) / law.coefficient) ** (1.0 / law.exponent)


@dataclass
class Multiplier:
    """Compute a group needs relative to a reference group, at the reference's budgets.

    Attributes:
        reference: The reference group (e.g. ``ar``).
        group: The compared group.
        budgets: The reference's IsoFLOP budgets C.
        losses: The reference frontier's loss at each budget.
        values: C_group(L) / C_reference(L) at each.
        ci: (low, high) per budget from paired bootstrap replicates, when both have them.
        extrapolation: Per budget, the compute the group needs over the largest budget it
            was measured at (> 1: its frontier is extrapolated that many times past its
            data, and the multiplier with it); None when unknown.
    """

    reference: str
    group: str
    budgets: np.ndarray
    losses: np.ndarray
    values: np.ndarray
    ci: list[tuple[float, float]] | None = None
    extrapolation: np.ndarray | None = None


def compute_multiplier(
    reference: str, ref_law: PowerLaw, ref_budgets: np.ndarray, group: str, law: PowerLaw,
    ref_ci: IsoFlopCI | None = None, ci: IsoFlopCI | None = None, level: float = 0.95,
    measured_up_to: float | None = None,
) -> Multiplier:
    """C_group(L) / C_reference(L) at the losses the reference frontier reaches at its budgets.

    Args:
        reference: Name of the reference group.
        ref_law: Reference frontier.
        ref_budgets: Budgets at which to compare.
        group: Name of the compared group.
        law: Its frontier.
        ref_ci: Reference bootstrap (its frontier replicates).
        ci: The group's bootstrap.
        level: Interval coverage.
        measured_up_to: The group's largest measured budget (for ``extrapolation``).

    Returns:
        The :class:`Multiplier`; intervals pair replicate i of each bootstrap.
    """
    budgets = np.asarray(ref_budgets, float)
    losses = ref_law(budgets)
    values = compute_for_loss(law, losses) / budgets
    intervals = None
    if ref_ci is not None and ci is not None and ref_ci.frontiers and ci.frontiers:
        pairs = zip(ref_ci.frontiers, ci.frontiers)
        draws = np.array([compute_for_loss(g, r(budgets)) / budgets for r, g in pairs])
        tail = 100 * (1 - level) / 2
        lo, hi = np.percentile(draws, tail, axis=0), np.percentile(draws, 100 - tail, axis=0)
        intervals = [(float(a), float(b)) for a, b in zip(lo, hi)]
    extrapolation = None if measured_up_to is None else values * budgets / measured_up_to
    return Multiplier(reference, group, budgets, losses, values, intervals, extrapolation)
