"""The validation NELBO averages K noise draws per batch and reports its standard error.

Checked against an exact answer: with the oracle denoiser the expected MDLM NELBO of a
fixed sequence x is -log p(x) (continuous time: the true reverse process makes the bound
tight for every x), so the mean of many K-draw validations of a fixed batch must equal the
batch's exact NLL, and the reported SE must match the spread of those validations.
"""

from __future__ import annotations

import math

import pytest
import torch

from src.algos.ar import AR
from src.algos.base import draws_standard_error
from src.algos.mdlm import MDLM
from src.algos.noise import LogLinear
from src.algos.randomness import StepRandomness
from tests.oracle import EnumerableDist, OracleCausalBackbone, OracleMaskedBackbone

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)


def _mdlm(dist: EnumerableDist, draws: int) -> MDLM:
    algo = MDLM(OracleMaskedBackbone(dist), noise=LogLinear(), name="mdlm",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON)
    algo.val_draws = draws
    return algo


def _validate(algo: MDLM, batch: dict, position: int) -> tuple[float, float]:
    """(nats/token, SE) of one validation of one batch at training position `position`."""
    algo.optimizer_steps = position
    with torch.no_grad():
        sums, tokens = algo.validation_draw_sums(batch, global_batch=0)
    return float(sums.mean() / tokens), draws_standard_error(sums, float(tokens))


def test_each_draw_is_stratified_and_the_draws_independent():
    """Each draw's times take one stratum of [eps, 1) per sequence; draws have their own u."""
    b, k, eps = 8, 4, 1e-3
    times = [StepRandomness.for_validation("cpu", 0, (5, 0), 3, d).times(b, eps)
             for d in range(k)]
    for t in times:  # one time per stratum of width (1 - eps) / b
        cells = torch.floor((t.double() - eps) / (1 - eps) * b).long()
        assert sorted(cells.tolist()) == list(range(b))
    offsets = {round(float((t.min() - eps) / (1 - eps) * b % 1), 6) for t in times}
    assert len(offsets) == k  # not one shared shift


def test_noise_is_fresh_per_validation_and_reproducible():
    dist = EnumerableDist(3, 3, seed=1)
    batch = {"input_ids": dist.sample(64, torch.Generator().manual_seed(0))}
    algo = _mdlm(dist, draws=4)
    first, again, later = (_validate(algo, batch, p)[0] for p in (100, 100, 110))
    assert first == again  # a resumed run at the same position draws the same noise
    assert first != later  # the next validation draws new noise, not the same fixed draw


def test_k_draw_mean_is_unbiased_and_its_se_is_calibrated():
    dist = EnumerableDist(3, 3, seed=1)
    x = dist.sample(64, torch.Generator().manual_seed(0))
    exact = float(-dist.log_prob(x).sum() / x.numel())  # E[NELBO] of this batch, nats/token
    algo = _mdlm(dist, draws=8)
    runs = [_validate(algo, {"input_ids": x}, p) for p in range(200)]
    means = torch.tensor([m for m, _ in runs], dtype=torch.float64)
    ses = torch.tensor([s for _, s in runs], dtype=torch.float64)
    spread = float(means.std())
    # Unbiased: the mean of 200 validations is within 4 standard errors of the exact value.
    assert abs(float(means.mean()) - exact) < 4 * spread / math.sqrt(len(runs))
    # Calibrated: the reported SE matches the spread between validations. Compared in
    # root-mean-square (SE^2 is the unbiased one; the per-draw NELBO is heavy-tailed, so the
    # mean of 8-draw SEs sits ~25% low while their RMS does not).
    rms_se = float(ses.pow(2).mean().sqrt())
    assert 0.8 * spread < rms_se < 1.25 * spread


def test_se_shrinks_as_one_over_root_k():
    dist = EnumerableDist(3, 3, seed=1)
    batch = {"input_ids": dist.sample(64, torch.Generator().manual_seed(0))}

    def spread(k: int) -> float:
        algo = _mdlm(dist, draws=k)
        return float(torch.tensor([_validate(algo, batch, p)[0] for p in range(120)]).std())

    ratio = spread(2) / spread(8)  # 2 for independent draws
    assert 1.5 < ratio < 2.7


def test_ar_validates_once_and_exactly():
    dist = EnumerableDist(3, 3, seed=1)
    algo = AR(OracleCausalBackbone(dist), name="ar", vocab_size=dist.vocab_size,
              mask_id=dist.mask_id, **COMMON)
    algo.val_draws = 8
    assert algo.validation_draws() == 1  # an exact NLL: more draws would only cost time
    sums, _ = algo.validation_draw_sums({"input_ids": dist.seqs}, 0)
    assert sums.shape == (1,)


def test_standard_error_formula():
    sums = torch.tensor([10.0, 12.0, 14.0], dtype=torch.float64)  # per-token 1, 1.2, 1.4
    assert draws_standard_error(sums, 10.0) == pytest.approx(0.2 / math.sqrt(3))
    assert math.isnan(draws_standard_error(sums[:1], 10.0))  # one draw: unknown, not 0
