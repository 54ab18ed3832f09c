"""Run every scaling-law fit on each group of a run table, turning 'cannot fit' into reasons."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from src.scaling.bootstrap import BootstrapCI, bootstrap_parametric
from src.scaling.data_constrained import (
    DataConstrainedFit,
    fit_data_constrained,
    unique_and_repeats,
)
from src.scaling.frontier import (
    IsoFlopCI,
    Multiplier,
    bootstrap_isoflop,
    compute_multiplier,
    fit_frontier,
)
from src.scaling.isoflop import IsoFlopFit, PowerLaw, fit_isoflop
from src.scaling.parametric import ParametricFit, fit_parametric, unconstrained_reason
from src.scaling.table import FitError, prepare_table, split_groups
from src.scaling.threads import single_blas_thread
from src.scaling.uncertainty import (
    CaseBootstrap,
    SensitivityRow,
    case_bootstrap,
    sensitivity,
    t_intervals,
)

log = logging.getLogger(__name__)


@dataclass
class Skipped:
    """A fit that could not be made.

    Attributes:
        reason: Why, in a few words.
    """

    reason: str


@dataclass
class ParametricResult:
    """Approach-3 fit plus its bootstrap intervals.

    Attributes:
        fit: Point estimate.
        ci: Bootstrap intervals (None when n_boot is 0).
        rows: Which rows were used: ``all``, ``single-epoch`` or ``<= E epochs``.
        max_epochs: Rows with more epochs than this were left out.
    """

    fit: ParametricFit
    ci: BootstrapCI | None
    rows: str
    max_epochs: float = 1.0

    @property
    def unconstrained(self) -> str | None:
        """Why the fit is not to be trusted (:func:`unconstrained_reason`), else None."""
        return unconstrained_reason(self.fit)


@dataclass
class GroupResult:
    """All fits of one group.

    Attributes:
        name: Group name (``all`` without a group column).
        table: The group's prepared rows (N, D, L, C, budget, ...).
        isoflop: Approach-2 fit (its ``reason`` is set when the laws are missing).
        parametric: Approach-3 fit or why it was skipped.
        data_constrained: Repetition fit or why it was skipped.
        isoflop_ci: Bootstrap intervals of the IsoFLOP laws (None without laws or n_boot 0).
        frontier: L_opt = k C^exponent through the IsoFLOP minima (None without laws).
        allow_unbracketed: Whether extrapolated minima entered the laws.
        t_ci: t-intervals of a, b and the frontier exponent across budgets
            (src/scaling/uncertainty.py; empty with fewer than 3 budgets).
        case_ci: Intervals from resampling runs (and seeds) within budgets.
        sensitivity: The laws under other analysis choices.
    """

    name: str
    table: pd.DataFrame
    isoflop: IsoFlopFit
    parametric: ParametricResult | Skipped
    data_constrained: DataConstrainedFit | Skipped
    isoflop_ci: IsoFlopCI | None = None
    frontier: PowerLaw | None = None
    allow_unbracketed: bool = False
    t_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    case_ci: CaseBootstrap | None = None
    sensitivity: list[SensitivityRow] = field(default_factory=list)


def single_epoch_mask(df: pd.DataFrame, max_epochs: float = 1.0) -> np.ndarray:
    """Rows trained on at most `max_epochs` passes over their data; all rows without
    ``unique_tokens``.

    The compute-optimal laws assume fresh data, so by default (one epoch) repeated-data
    runs are left to the data-constrained fit (Muennighoff et al. 2023). A small corpus
    may count a few epochs as fresh: Muennighoff et al. find up to ~4 epochs nearly as
    good as new data, and a tiny model cannot memorize its corpus anyway.

    Args:
        df: Prepared table.
        max_epochs: Largest epoch count that still counts as fresh data (>= 1).

    Returns:
        Boolean mask over rows.
    """
    if "unique_tokens" not in df.columns:
        return np.ones(len(df), dtype=bool)
    return unique_and_repeats(df)[1] <= max_epochs - 1.0 + 1e-9


def analyze_group(
    name: str, df: pd.DataFrame, *, n_boot: int = 200, seed: int = 0,
    allow_unbracketed: bool = False, max_epochs: float = 1.0,
    non_embedding: pd.DataFrame | None = None,
) -> GroupResult:
    """Fit IsoFLOP, parametric and (when applicable) data-constrained laws to one group.

    Args:
        name: Group name.
        df: Prepared rows of the group.
        n_boot: Bootstrap replicates (0 disables intervals).
        seed: Bootstrap seed.
        allow_unbracketed: Use IsoFLOP minima extrapolated beyond the sampled N.
        max_epochs: Rows with up to this many epochs count as fresh data for the
            IsoFLOP and parametric fits (see :func:`single_epoch_mask`).
        non_embedding: The same rows prepared with N = non-embedding parameters (a
            sensitivity row), when the table has them.

    Returns:
        The group's results; fits that cannot be made carry a :class:`Skipped` reason.
    """
    fresh_mask = single_epoch_mask(df, max_epochs)
    fresh = df.loc[fresh_mask].reset_index(drop=True)
    if fresh_mask.all():
        rows = "all"
    else:
        rows = "single-epoch" if max_epochs == 1.0 else f"<= {max_epochs:g} epochs"
    isoflop = fit_isoflop(fresh, allow_unbracketed=allow_unbracketed)
    if isoflop.reason:
        log.warning("group %s: IsoFLOP laws skipped: %s", name, isoflop.reason)
    isoflop_ci = bootstrap_isoflop(isoflop, n_boot=n_boot, seed=seed,
                                   allow_unbracketed=allow_unbracketed)
    frontier, t_ci, case_ci, rows_sensitivity = None, {}, None, []
    if isoflop.n_opt_law:
        used = isoflop.used(allow_unbracketed)
        frontier = fit_frontier(used)
        t_ci = t_intervals(used)
        case_ci = case_bootstrap(used, n_boot=n_boot, seed=seed)
        fresh_ne = None if non_embedding is None else \
            non_embedding.loc[single_epoch_mask(non_embedding, max_epochs)]
        rows_sensitivity = sensitivity(fresh, non_embedding=fresh_ne,
                                       allow_unbracketed=allow_unbracketed)
    parametric: ParametricResult | Skipped
    try:
        fit = fit_parametric(fresh["N"], fresh["D"], fresh["L"])
        ci = None
        if n_boot > 0:
            ci = bootstrap_parametric(fresh["N"], fresh["D"], fresh["L"], fit,
                                      n_boot=n_boot, seed=seed)
        parametric = ParametricResult(fit, ci, rows, max_epochs)
        if parametric.unconstrained:
            log.warning("group %s: parametric fit unconstrained: %s", name, parametric.unconstrained)
    except FitError as err:
        log.warning("group %s: parametric fit skipped: %s", name, err)
        parametric = Skipped(str(err))
    data_constrained: DataConstrainedFit | Skipped
    try:
        data_constrained = fit_data_constrained(df, n_boot=n_boot, seed=seed)
    except FitError as err:
        data_constrained = Skipped(str(err))
    return GroupResult(name, df, isoflop, parametric, data_constrained, isoflop_ci, frontier,
                       allow_unbracketed, t_ci, case_ci, rows_sensitivity)


def compute_multipliers(results: list[GroupResult], reference: str) -> list[Multiplier]:
    """Compute multiplier of every other group with a frontier against `reference` (the
    compute it needs for the loss the reference reaches at each of the reference's budgets).

    Raises:
        ValueError: When `reference` is not a group or has no frontier.
    """
    by_name = {r.name: r for r in results}
    ref = by_name.get(reference)
    if ref is None:
        raise ValueError(f"--reference {reference!r} is not a group (have: {sorted(by_name)})")
    if ref.frontier is None:
        raise ValueError(f"reference group {reference!r} has no IsoFLOP frontier "
                         f"({ref.isoflop.reason}): no multiplier against it")
    budgets = [b.budget for b in ref.isoflop.used(ref.allow_unbracketed)]
    return [compute_multiplier(reference, ref.frontier, budgets, r.name, r.frontier,
                               ref.isoflop_ci, r.isoflop_ci,
                               measured_up_to=max(b.budget for b in
                                                  r.isoflop.used(r.allow_unbracketed)))
            for r in results if r.name != reference and r.frontier is not None]


def analyze(
    df: pd.DataFrame, *, group_col: str | None = None, params_col: str = "params",
    n_boot: int = 200, seed: int = 0, allow_unbracketed: bool = False, max_epochs: float = 1.0,
) -> list[GroupResult]:
    """Prepare a raw run table and fit every group separately.

    Args:
        df: Raw table (CSV or collected runs) with params, tokens, loss.
        group_col: Column whose values define groups (e.g. ``algo``, or ``algo,optim.lr``);
            None = one group.
        params_col: Column used as N (``params`` or ``non_embedding_params``).
        n_boot: Bootstrap replicates.
        seed: Bootstrap seed.
        allow_unbracketed: Use IsoFLOP minima extrapolated beyond the sampled N.
        max_epochs: Epochs that still count as fresh data (default 1).

    Returns:
        One :class:`GroupResult` per group, sorted by name.

    Raises:
        MissingColumnsError: If a required column (or ``group_col``) is missing.
        ValueError: If ``max_epochs`` < 1.
    """
    if not max_epochs >= 1.0:
        raise ValueError(f"--max-epochs must be >= 1 (one pass is fresh data), got {max_epochs}")
    prepared = prepare_table(df, params_col=params_col)
    alternative = None  # the same rows with N = non-embedding parameters (sensitivity)
    if params_col != "non_embedding_params" and "non_embedding_params" in df.columns:
        try:
            alternative = split_groups(prepare_table(df, params_col="non_embedding_params"),
                                       group_col)
        except (FitError, ValueError):
            alternative = None
    # Optimizer and bootstrap probe extreme exponents whose overflows end as non-finite
    # objectives, which the fitters already discard; numpy's warnings would only be noise.
    with single_blas_thread(), np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return [
            analyze_group(name, rows, n_boot=n_boot, seed=seed,
                          allow_unbracketed=allow_unbracketed, max_epochs=max_epochs,
                          non_embedding=None if alternative is None else alternative.get(name))
            for name, rows in split_groups(prepared, group_col).items()
        ]
