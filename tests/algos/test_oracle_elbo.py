"""Oracle tests: with the exact posterior as denoiser the losses equal the true NLL."""

from __future__ import annotations

import pytest
import torch

from src.algos.ar import AR
from src.algos.mdlm import MDLM
from src.algos.noise import Cosine, Linear, LogLinear, Poly2
from src.algos.randomness import StepRandomness, make_generator
from tests.oracle import EnumerableDist, OracleCausalBackbone, OracleMaskedBackbone

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)


def _mdlm(dist: EnumerableDist, noise=None, **kw) -> MDLM:
    return MDLM(OracleMaskedBackbone(dist), noise=noise or LogLinear(), name="mdlm",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON, **kw)


def _mc_nelbo_per_sequence(algo, dist, n_batches=40, batch=1000, seed=0) -> float:
    g = torch.Generator().manual_seed(seed)
    total, tokens = 0.0, 0.0
    for i in range(n_batches):
        x = dist.sample(batch, g)
        rng = StepRandomness(make_generator("cpu", seed, i), u=torch.rand(1, generator=g).item(),
                             offset=0, n_global=batch)
        with torch.no_grad():
            out = algo.loss({"input_ids": x}, rng)
        total += float(out.nll_sum)
        tokens += float(out.n_tokens)
    return total / tokens * dist.length  # nats per sequence


@pytest.mark.parametrize("noise", [LogLinear(), Linear(), Poly2(), Cosine()], ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("shape", [(3, 3), (4, 2)])
def test_mdlm_nelbo_is_tight_with_oracle(noise, shape):
    dist = EnumerableDist(*shape, seed=1)
    nelbo = _mc_nelbo_per_sequence(_mdlm(dist, noise), dist)
    assert nelbo == pytest.approx(dist.entropy(), rel=0.02)


def test_mdlm_nelbo_detects_wrong_weight():
    """The test has power: a loss without the 1/t weight is far from H(X)."""
    dist = EnumerableDist(3, 3, seed=1)
    algo = _mdlm(dist, loss_type="low_var")
    g = torch.Generator().manual_seed(0)
    x = dist.sample(4000, g)
    rng = StepRandomness(make_generator("cpu", 0), 0.3, 0, 4000)
    out = algo.loss({"input_ids": x}, rng)
    # low_var's training loss is the unweighted CE per masked token: not the NELBO per token.
    assert abs(float(out.loss.detach()) * dist.length / dist.entropy() - 1) > 0.05
    # ...while the reported bound stays the true NELBO.
    assert float(out.nll_sum / out.n_tokens) * dist.length == pytest.approx(dist.entropy(), rel=0.05)


def test_mdlm_worse_denoiser_gives_larger_bound():
    dist = EnumerableDist(3, 3, seed=2)
    uniform = EnumerableDist(3, 3, seed=2)
    uniform.probs = torch.full_like(uniform.probs, 1 / len(uniform.probs))
    algo = _mdlm(uniform)  # denoiser of the wrong distribution, data from `dist`
    algo_ok = _mdlm(dist)
    bad = _mc_nelbo_per_sequence(algo, dist, n_batches=10)
    good = _mc_nelbo_per_sequence(algo_ok, dist, n_batches=10)
    assert bad > good + 0.1


def test_ar_nll_equals_exact_chain_rule():
    dist = EnumerableDist(4, 3, seed=3)
    algo = AR(OracleCausalBackbone(dist), name="ar", vocab_size=dist.vocab_size,
              mask_id=dist.mask_id, **COMMON)
    x = dist.seqs  # every sequence once
    out = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 0), 0.0, 0, len(x)))
    # AR scores x_1.. given x_0: -log p(x) + log p(x_0), summed over all sequences.
    first = torch.stack([dist.probs[dist.seqs[:, 0] == v].sum() for v in range(dist.k)])
    exact = -(dist.log_prob(x) - first[x[:, 0]].log()).sum()
    assert float(out.nll_sum) == pytest.approx(float(exact), rel=1e-5)
    assert float(out.n_tokens) == x.numel() - len(x)


def test_stratified_times_cover_strata_across_ranks_and_microbatches():
    """Splitting a global batch of 12 into uneven micro-batches gives one t per stratum."""
    g = make_generator("cpu", 0)
    parts = [StepRandomness(g, 0.37, off, 12).times(n) for off, n in ((0, 5), (5, 5), (10, 2))]
    t = torch.cat(parts)
    strata = ((t - 1e-3) / (1 - 1e-3) * 12).floor().long()
    assert sorted(strata.tolist()) == list(range(12))
