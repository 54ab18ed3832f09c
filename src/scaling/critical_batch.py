"""Critical batch size from the steps and tokens a run needs to reach a target loss.

McCandlish et al. 2018 (eq. 2.11) and Kaplan et al. 2020 (eq. 5.4): with the learning rate
tuned at each batch size B, the optimizer steps S and training examples E = B S needed to
reach a loss obey

    S = S_min (1 + B_crit / B),        E = E_min (1 + B / B_crit),        E_min = S_min B_crit.

Below B_crit doubling the batch nearly halves the steps (data-efficient); above it, it
barely saves any (step-efficient). B_crit grows as the target loss falls.

Steps to a target come from a validation curve: for a Monte-Carlo curve (a diffusion NELBO)
the points are first smoothed (a centered moving average of `window` validations), then
the running minimum is taken, and the first step at or below the target is interpolated
linearly between the validations that bracket it. A curve that never reaches the target
gives None: it is reported, never extrapolated.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from src.scaling.curves import centered_mean

#: Validations averaged before a Monte-Carlo curve is compared with a target. Narrower than
#: the best-selection window (curves.SMOOTH_WINDOW): a moving average of a falling convex
#: curve sits above it, which would delay every crossing.
TARGET_WINDOW = 3


def target_curve(nll: np.ndarray, stochastic: bool, window: int = TARGET_WINDOW) -> np.ndarray:
    """A validation curve as it is compared with targets: smoothed over `window`
    validations when each point is a Monte-Carlo estimate, as it is otherwise."""
    nll = np.asarray(nll, float)
    return centered_mean(nll, window) if stochastic else nll


def steps_to_target(steps: np.ndarray, nll: np.ndarray, target: float,
                    stochastic: bool, window: int = TARGET_WINDOW) -> float | None:
    """The (fractional) optimizer step at which a validation curve first reaches `target`.

    Args:
        steps: Optimizer step of each validation, increasing.
        nll: Validation loss at each step.
        target: The loss to reach.
        stochastic: Whether each point is a Monte-Carlo estimate (smoothed first).
        window: Validations in that smoothing.

    Returns:
        The step, interpolated between the two validations around the crossing; None when
        the curve never reaches the target, or is already below it at its first validation
        (the crossing lies somewhere before: not measured, so not a data point).
    """
    steps = np.asarray(steps, float)
    envelope = np.minimum.accumulate(target_curve(nll, stochastic, window))
    hit = np.flatnonzero(envelope <= target)
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return None
    s0, s1, y0, y1 = steps[i - 1], steps[i], envelope[i - 1], envelope[i]
    return float(s0 + (s1 - s0) * (y0 - target) / (y0 - y1))


@dataclass(frozen=True)
class CriticalBatch:
    """The fit S = S_min (1 + B_crit / B) at one target loss.

    Attributes:
        target: The loss reached.
        s_min: Fewest optimizer steps (the infinite-batch limit).
        b_crit: The critical batch, in the unit of the batch sizes given (sequences).
        e_min: Fewest examples, S_min x B_crit (the small-batch limit), same unit.
        loo: (min, max) of B_crit over leave-one-batch-out refits (None with < 4 batches).
        n_batches: Batch sizes in the fit.
        rms_log_residual: Root-mean-square of log(S / fit) over the batches.
    """

    target: float
    s_min: float
    b_crit: float
    e_min: float
    loo: tuple[float, float] | None
    n_batches: int
    rms_log_residual: float


def _steps_law(batch: np.ndarray, log_s_min: float, log_b_crit: float) -> np.ndarray:
    return log_s_min + np.log1p(np.exp(log_b_crit) / batch)


def _fit_once(batch: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """(S_min, B_crit) minimizing the squared error of log S (every batch weighs the same
    in relative terms), started from the linear fit of S against 1 / B."""
    slope, intercept = np.polyfit(1.0 / batch, steps, 1)
    s0 = intercept if intercept > 0 else float(np.min(steps)) / 2
    b0 = slope / s0 if slope > 0 else float(np.median(batch))
    with warnings.catch_warnings():  # a 3-point leave-one-out refit has no covariance: unused
        warnings.simplefilter("ignore", OptimizeWarning)
        (log_s, log_b), _ = curve_fit(_steps_law, batch, np.log(steps),
                                      p0=(math.log(s0), math.log(b0)), maxfev=20000)
    return float(math.exp(log_s)), float(math.exp(log_b))


def fit_critical_batch(batch: np.ndarray, steps: np.ndarray, target: float) -> CriticalBatch:
    """Fit S = S_min (1 + B_crit / B) to the steps each batch size needed.

    Args:
        batch: Batch sizes (sequences per optimizer step), at least 3 distinct.
        steps: Steps each needed to reach `target` (at its best learning rate).
        target: The target loss (recorded).

    Raises:
        ValueError: With fewer than 3 batch sizes (two points fit any hyperbola).
    """
    batch, steps = np.asarray(batch, float), np.asarray(steps, float)
    if len(np.unique(batch)) < 3:
        raise ValueError(f"a critical-batch fit needs >= 3 batch sizes that reach the target "
                         f"{target:.4g} (got {len(np.unique(batch))}): choose a higher target "
                         "or train longer")
    s_min, b_crit = _fit_once(batch, steps)
    residual = np.log(steps) - _steps_law(batch, math.log(s_min), math.log(b_crit))
    loo = None
    if len(batch) >= 4:
        refits = [_fit_once(np.delete(batch, i), np.delete(steps, i))[1]
                  for i in range(len(batch))]
        loo = (min(refits), max(refits))
    return CriticalBatch(target=target, s_min=s_min, b_crit=b_crit, e_min=s_min * b_crit,
                         loo=loo, n_batches=len(batch),
                         rms_log_residual=float(np.sqrt(np.mean(residual ** 2))))
