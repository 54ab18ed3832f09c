"""GIDD samplers: the ancestral one reproduces the data with the exact denoiser; the
adaptive one decodes everything and revises tokens; both check the algo."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from src.algos.gidd import GIDD
from src.algos.mdlm import MDLM
from src.algos.noise import LogLinear
from src.samplers.ancestral import MDLMAncestral
from src.samplers.gidd import GIDDAdaptive, GIDDAncestral
from tests.algos.gidd_oracle import OracleGiddBackbone
from tests.oracle import EnumerableDist, OracleMaskedBackbone

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)


def oracle_gidd(dist: EnumerableDist, shift: float) -> GIDD:
    algo = GIDD(torch.nn.Identity(), noise=LogLinear(), mix_shift=shift, name="gidd",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON)
    algo.backbone = algo._net = OracleGiddBackbone(dist, algo.hybrid)
    return algo.eval()


@pytest.mark.parametrize("shift", [-math.inf, 0.0, math.inf])
def test_ancestral_reproduces_the_distribution(shift):
    dist = EnumerableDist(3, 3, seed=1)
    x = GIDDAncestral(steps=64).sample(oracle_gidd(dist, shift), 8000, 3,
                                       generator=torch.Generator().manual_seed(0))
    assert not (x == dist.mask_id).any()
    assert dist.tv_distance(x) < 0.04


def test_reverse_step_is_bayes_rule_of_the_forward_process():
    """With x_hat = e_x, p(z_s | z_t) = q(z_t | z_s) q(z_s | x) / q(z_t | x) from explicit
    transition matrices q_{t|s} = M_t M_s^{-1} of the marginals M_t = alpha_t I + beta_t pi_t 1^T."""
    dist = EnumerableDist(2, 3)
    hyb = oracle_gidd(dist, 0.5).hybrid
    v, t, s = dist.vocab_size, 0.7, 0.4

    def marg(tv: float) -> torch.Tensor:  # column j = q_t(. | x = j), j real; [MASK] absorbs
        tt = torch.tensor([tv], dtype=torch.float64)
        al, a = float(hyb.alpha(tt)), float(hyb.mix(tt)[0])
        pi = torch.full((v,), a / dist.k, dtype=torch.float64)
        pi[dist.mask_id] = 1 - a
        return al * torch.eye(v, dtype=torch.float64) + (1 - al) * pi[:, None]

    trans = marg(t) @ torch.linalg.inv(marg(s))  # q_{t|s}(i | j) = trans[i, j]
    for x, z in itertools.product(range(dist.k), range(v)):
        xhat = torch.nn.functional.one_hot(torch.tensor([[x]]), v).double()
        got = hyb.reverse_probs(xhat, torch.tensor([[z]]), t, s)[0, 0]
        want = trans[z] * marg(s)[:, x]
        assert torch.allclose(got / got.sum(), want / want.sum(), atol=1e-9)


def test_adaptive_decodes_everything_revises_and_is_deterministic():
    dist = EnumerableDist(4, 3, seed=2)
    algo = oracle_gidd(dist, 0.0)
    sampler = GIDDAdaptive(steps=6)
    prompt = torch.tensor([1])
    a = sampler.sample(algo, 400, 4, prompt=prompt, generator=torch.Generator().manual_seed(0))
    revised = sampler.revisions
    b = sampler.sample(algo, 400, 4, prompt=prompt, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and (a[:, 0] == 1).all()
    assert not (a == dist.mask_id).any() and revised > 0


def test_adaptive_with_pure_masking_is_exact():
    """shift = -inf: visible tokens are never noise (pi = 0), so nothing is revised, and one
    position per step drawn from its exact conditional samples the data exactly."""
    dist = EnumerableDist(3, 3, seed=1)
    sampler = GIDDAdaptive(steps=3)
    x = sampler.sample(oracle_gidd(dist, -math.inf), 8000, 3, generator=torch.Generator().manual_seed(0))
    assert sampler.revisions == 0 and dist.tv_distance(x) < 0.035


def test_samplers_and_algos_check_each_other():
    dist = EnumerableDist(3, 3)
    mdlm = MDLM(OracleMaskedBackbone(dist), noise=LogLinear(), name="mdlm",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON)
    for sampler in (GIDDAncestral(steps=2), GIDDAdaptive(steps=2)):
        with pytest.raises(ValueError, match=r"algo=gidd.*use sampler=ancestral_cache"):
            sampler.sample(mdlm, 2, 3)
    with pytest.raises(ValueError, match="use sampler=gidd_ancestral"):
        MDLMAncestral(steps=2).sample(oracle_gidd(dist, 0.0), 2, 3)
