"""DUO ancestral sampler with the exact denoiser reproduces the oracle distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.samplers import build_sampler
from src.samplers.duo import DUOAncestral
from tests.algos.duo_helpers import expected_iid_tv, oracle_duo, reverse_chain_law, tv
from tests.oracle import EnumerableDist

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def dist() -> EnumerableDist:
    return EnumerableDist(3, 3, seed=1)


def test_exact_chain_converges_to_data(dist):
    """The per-position reverse chain (built from the joint only) approaches p as steps grow."""
    tvs = [0.5 * float((reverse_chain_law(dist, s) - dist.probs).abs().sum()) for s in (8, 32, 256)]
    assert tvs[0] > tvs[1] > tvs[2] and tvs[2] < 0.005


def test_samples_match_exact_chain_and_data(dist):
    steps, n = 128, 10_000
    samples = DUOAncestral(steps=steps).sample(
        oracle_duo(dist), n, dist.length, generator=torch.Generator().manual_seed(0))
    law = reverse_chain_law(dist, steps)
    floor = expected_iid_tv(law, n)
    assert tv(dist, samples, law) < floor + 0.01  # implementation == the exact chain
    assert tv(dist, samples, dist.probs) < 0.03  # ... which reproduces the data


def test_few_steps_match_their_exact_law(dist):
    """Not just the many-step limit: with 4 steps the samples follow the 4-step chain law."""
    samples = DUOAncestral(steps=4).sample(
        oracle_duo(dist), 10_000, dist.length, generator=torch.Generator().manual_seed(1))
    law = reverse_chain_law(dist, 4)
    assert tv(dist, samples, law) < expected_iid_tv(law, 10_000) + 0.01


def test_never_mask_prompt_kept_and_seeded(dist):
    algo = oracle_duo(dist)
    sampler = DUOAncestral(steps=6, top_p=0.9)
    prompt = torch.tensor([2])
    a = sampler.sample(algo, 500, 3, prompt=prompt, generator=torch.Generator().manual_seed(3))
    b = sampler.sample(algo, 500, 3, prompt=prompt, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and sampler.nfe == 6
    assert (a != dist.mask_id).all() and (a[:, 0] == 2).all()
    template = torch.tensor([dist.mask_id, 1, dist.mask_id])
    c = sampler.sample(algo, 200, 3, infill=template, generator=torch.Generator().manual_seed(4))
    assert (c[:, 1] == 1).all() and (c != dist.mask_id).all()
    with pytest.raises(ValueError, match="MASK"):
        sampler.sample(algo, 2, 3, prompt=torch.tensor([dist.mask_id]))


def test_greedy_last_and_single_step(dist):
    algo = oracle_duo(dist)
    out = DUOAncestral(steps=1, greedy_last=True).sample(algo, 50, 3)
    assert out.shape == (50, 3) and (out < dist.k).all()


def test_config_instantiates():
    sampler = build_sampler(OmegaConf.load(CONFIGS / "sampler" / "duo_ancestral.yaml"), steps=8)
    assert type(sampler) is DUOAncestral and sampler.steps == 8 and sampler.top_p == 1.0
    with pytest.raises(ValueError, match="top_p"):
        DUOAncestral(top_p=0.0)


@pytest.mark.parametrize("alpha_t,alpha_s", [(0.05, 0.2), (0.5, 0.55), (0.3, 1.0)])
def test_mixture_draw_has_the_dense_posterior_law(alpha_t, alpha_s):
    """Drawing the part (stay / from x_theta / uniform) first is the same law as the dense
    (..., K) reverse posterior, for every current token i (a wrong weight shifts the TV)."""
    from src.algos.uniform_noise import reverse_posterior
    from src.samplers.duo import sample_reverse_posterior

    k, n = 5, 40_000
    x_theta = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    for i in range(k):
        z = torch.full((n,), i)
        draws = sample_reverse_posterior(x_theta.expand(n, k).log(), z, alpha_t, alpha_s,
                                         torch.Generator().manual_seed(i))
        freq = torch.bincount(draws, minlength=k).double() / n
        law = reverse_posterior(x_theta[None], z[:1], alpha_t, alpha_s)[0]
        assert 0.5 * float((freq - law).abs().sum()) < 0.01, (i, freq, law)
