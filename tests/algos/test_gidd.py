"""GIDD: the hybrid-noise ELBO is tight with the exact (leave-one-out) denoiser, equals
MDLM at shift = -inf, and is clipped only in training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.algos.gidd import GIDD
from src.algos.mdlm import MDLM
from src.algos.noise import Cosine, LogLinear
from src.algos.randomness import StepRandomness, make_generator
from src.models.dit import DiT
from tests.algos.gidd_oracle import OracleGiddBackbone
from tests.oracle import EnumerableDist

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)
SHIFTS = [-math.inf, 0.0, math.inf]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def oracle_gidd(dist: EnumerableDist, noise=None, **kw) -> GIDD:
    algo = GIDD(torch.nn.Identity(), noise=noise or LogLinear(), name="gidd",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON, **kw)
    algo.backbone = algo._net = OracleGiddBackbone(dist, algo.hybrid)
    return algo


def exact_integrand(dist: EnumerableDist, algo: GIDD, ts: torch.Tensor) -> torch.Tensor:
    """E_{x, z_t}[sum_i w (KL + IS)] at each t, by enumerating every (x, z_t) pair."""
    zs = torch.tensor(list(itertools.product(range(dist.vocab_size), repeat=dist.length)))
    x = dist.seqs.repeat_interleave(len(zs), 0)
    z = zs.repeat(len(dist.seqs), 1)
    px = dist.probs.repeat_interleave(len(zs))
    hyb, out = algo.hybrid, []
    for tv in ts.tolist():
        t = torch.full((len(x),), tv)
        alpha = hyb.alpha(t).double()[:, None]
        a = hyb.mix(t)[0][:, None]
        q = torch.where(z == dist.mask_id, (1 - alpha) * (1 - a),
                        alpha * (z == x) + (1 - alpha) * a / dist.k).prod(-1)  # q_t(z | x)
        with torch.no_grad():
            w, div = hyb.elbo_terms(x, z, algo._log_probs(z, t), t)
        out.append(float((px * q * (w.double() * div.double()).sum(-1)).sum()))
    return torch.tensor(out, dtype=torch.float64)


def exact_elbo(dist: EnumerableDist, algo: GIDD, n: int = 24) -> float:
    """int_0^1 of the integrand: Gauss-Legendre in log t on (0, 1/2] and in log(1 - t) on
    [1/2, 1) (the integrand has ~log(1/t) and sharp features near both ends)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    lo, hi = math.log(1e-8), math.log(0.5)
    s = torch.tensor((nodes + 1) / 2 * (hi - lo) + lo)
    ws = torch.tensor(weights * (hi - lo) / 2)
    u = s.exp()
    return float((exact_integrand(dist, algo, torch.cat([u, 1 - u])) * torch.cat([u, u])
                  * torch.cat([ws, ws])).sum())


@pytest.mark.parametrize("shift,scale", [(-math.inf, 1.0), (0.0, 1.0), (math.inf, 1.0),
                                         (-2.0, 0.5), (0.0, -1.0)])
def test_gidd_elbo_is_tight_exactly(shift, scale):
    """Exact expectation (no Monte Carlo): the continuous-time ELBO with the derived weight
    b_t(z) / q_t(z | x) equals H(X) up to the prior term I(X; Z_1) (alpha_1 = 1e-3)."""
    dist = EnumerableDist(3, 3, seed=1)
    elbo = exact_elbo(dist, oracle_gidd(dist, mix_shift=shift, mix_scale=scale))
    assert elbo <= dist.entropy() + 1e-4  # a bound
    assert elbo == pytest.approx(dist.entropy(), rel=3e-3)


@pytest.mark.parametrize("shift", SHIFTS)
def test_gidd_monte_carlo_loss_matches_entropy(shift):
    """The training/validation loss itself (stratified t, sampled z_t), 200k sequences."""
    dist = EnumerableDist(3, 3, seed=1)
    algo = oracle_gidd(dist, mix_shift=shift).eval()
    g = torch.Generator().manual_seed(0)
    total = tokens = 0.0
    for i in range(100):
        x = dist.sample(2000, g)
        rng = StepRandomness(make_generator("cpu", 0, i), torch.rand(1, generator=g).item(), 0, 2000)
        with torch.no_grad():
            out = algo.loss({"input_ids": x}, rng)
        total, tokens = total + float(out.nll_sum), tokens + float(out.n_tokens)
    assert total / tokens * dist.length == pytest.approx(dist.entropy(), rel=0.02)


def tiny_dit(vocab: int = 10, seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    net = DiT(vocab, 32, 2, 2, cond_dim=16, max_seq_len=64)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("noise", [LogLinear(), Cosine()], ids=["loglinear", "cosine"])
def test_shift_minus_inf_is_mdlm_numerically(noise):
    """Same network, same t, same draws: GIDD at shift = -inf reports MDLM's loss."""
    net = tiny_dit()
    kw = dict(noise=noise, name="x", vocab_size=10, mask_id=9, time_conditioning=True, **COMMON)
    gidd = GIDD(net, mix_shift=-math.inf, weight_clip=None, **kw)
    mdlm = MDLM(net, **kw)
    x = torch.randint(0, 9, (8, 24), generator=torch.Generator().manual_seed(1))
    outs = [a.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 5), 0.4, 0, 8))
            for a in (gidd, mdlm)]
    assert float(outs[0].nll_sum) == pytest.approx(float(outs[1].nll_sum), rel=1e-4)
    assert float(outs[0].loss.detach()) == pytest.approx(float(outs[1].loss.detach()), rel=1e-4)


def _loss_and_gradient(algo, net, x):
    net.zero_grad()
    out = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 5), 0.4, 0, 8))
    out.loss.backward()
    grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return out, grad


def test_masked_gidd_trains_like_mdlm_unless_its_weights_are_clipped():
    """Why `algo=gidd algo.mix_shift=-inf` trains better than `algo=mdlm` on the micro-ladder
    (README, GIDD): both report the same NELBO, and without weight clipping both follow the
    same gradient; GIDD's default weight_clip=2 replaces the ELBO weight 1/t by min(1/t, 2),
    which down-weights every masked token with t < 1/2 (a lower-variance objective, not the
    ELBO). The gradient then points elsewhere."""
    net = tiny_dit()
    kw = dict(noise=LogLinear(), name="x", vocab_size=10, mask_id=9, time_conditioning=True,
              **COMMON)
    x = torch.randint(0, 9, (8, 24), generator=torch.Generator().manual_seed(1))
    mdlm, g_mdlm = _loss_and_gradient(MDLM(net, **kw), net, x)
    exact, g_exact = _loss_and_gradient(GIDD(net, mix_shift=-math.inf, weight_clip=None, **kw),
                                        net, x)
    clipped, g_clip = _loss_and_gradient(GIDD(net, mix_shift=-math.inf, **kw), net, x)
    for out in (exact, clipped):  # the same reported NELBO (validation)
        assert float(out.nll_sum) == pytest.approx(float(mdlm.nll_sum), rel=1e-5)
    # Unclipped: the same training loss and gradient (visible tokens add nothing, as SUBS).
    assert float(exact.loss.detach()) == pytest.approx(float(mdlm.loss.detach()), rel=1e-5)
    assert float((g_exact - g_mdlm).norm() / g_mdlm.norm()) < 1e-5
    # Clipped (the default): another objective, another direction.
    assert float(clipped.loss.detach()) < 0.5 * float(mdlm.loss.detach())
    assert float((g_clip - g_mdlm).norm() / g_mdlm.norm()) > 0.3


def test_weight_clip_changes_training_loss_only():
    net = tiny_dit()
    kw = dict(noise=LogLinear(), name="gidd", vocab_size=10, mask_id=9, **COMMON)
    clipped, exact = GIDD(net, weight_clip=0.5, **kw), GIDD(net, weight_clip=None, **kw)
    x = torch.randint(0, 9, (8, 24), generator=torch.Generator().manual_seed(2))
    a, b = (m.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 1), 0.1, 0, 8))
            for m in (clipped, exact))
    assert float(a.nll_sum) == pytest.approx(float(b.nll_sum))  # reported ELBO: unclipped
    assert float(a.loss.detach()) < float(b.loss.detach())
    a.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_forward_process_marginals():
    """z_t: [MASK] w.p. beta (1 - a), each real token w.p. beta a / K, x w.p. alpha + beta a / K."""
    dist = EnumerableDist(3, 4)
    hyb = oracle_gidd(dist, mix_shift=0.5).hybrid
    n, t = 200000, torch.full((200000,), 0.6)
    x = torch.zeros(n, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    z = hyb.sample(x, t, torch.rand(n, 1, generator=g), torch.randint(0, hyb.k, (n, 1), generator=g))
    alpha, a = float(hyb.alpha(t[:1])), float(hyb.mix(t[:1])[0])
    freq = torch.bincount(z.flatten(), minlength=5).double() / n
    expect = [alpha + (1 - alpha) * a / 4] + [(1 - alpha) * a / 4] * 3 + [(1 - alpha) * (1 - a)]
    assert torch.allclose(freq, torch.tensor(expect, dtype=torch.float64), atol=4e-3)


def test_infinite_shift_in_yaml_and_bad_scale():
    cfg = OmegaConf.create("mix_shift: -.inf\nother: .inf")
    assert cfg.mix_shift == -math.inf and cfg.other == math.inf
    with pytest.raises(ValueError, match="algo.mix_scale"):
        oracle_gidd(EnumerableDist(3, 3), mix_scale=2.0)
    with pytest.raises(ValueError, match="sampler=gidd_ancestral"):
        oracle_gidd(EnumerableDist(3, 3)).denoiser_log_probs(torch.zeros(1, 3, dtype=torch.long),
                                                          torch.ones(1))


def test_exact_check_has_power(monkeypatch):
    """Dropping the beta_t pi'_t part of the weight (a time-varying mixture) is caught."""
    from src.algos.hybrid_noise import HybridNoise

    mix = HybridNoise.mix
    monkeypatch.setattr(HybridNoise, "mix", lambda self, t: (mix(self, t)[0], 0 * mix(self, t)[1]))
    dist = EnumerableDist(3, 3, seed=1)
    assert exact_elbo(dist, oracle_gidd(dist, mix_shift=0.0)) > 1.1 * dist.entropy()
