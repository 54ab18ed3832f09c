"""MDLMAncestral against the exact masked posterior of the enumerable oracle."""

from __future__ import annotations

import pytest
import torch

from src.samplers import MDLMAncestral
from tests.oracle import EnumerableDist
from tests.samplers.fakes import (
    FakeMDLM,
    FixedDenoiserMDLM,
    ancestral_law,
    conditional_tv,
    law_tv,
)

N = 20_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class SwappedAlphas(MDLMAncestral):
    """A deliberately wrong transition (alpha_t and alpha_s swapped)."""

    @staticmethod
    def unmask_prob(alpha_t: float, alpha_s: float) -> float:
        return (alpha_t - alpha_s) / (1.0 - alpha_s)


@pytest.mark.parametrize(("length", "k"), [(3, 3), (4, 2)])
@pytest.mark.parametrize("cache", [False, True])
def test_many_steps_reproduce_the_distribution(length: int, k: int, cache: bool) -> None:
    dist = EnumerableDist(length, k, seed=1)
    x = MDLMAncestral(cache=cache).sample(FakeMDLM(dist), N, length, 64, generator=_gen(0))
    tv = dist.tv_distance(x)
    assert tv < 0.03, f"TV {tv:.4f}"
    # Sharper: the sampler's own exact law (64 steps: within ~0.01 of p).
    assert law_tv(dist, x, ancestral_law(dist, 64)) < 0.025


def test_cached_sampler_reproduces_the_distribution_while_skipping_calls() -> None:
    # Small batches so that "no token changed in the last step" actually happens.
    dist, sampler = EnumerableDist(3, 3, seed=1), MDLMAncestral(cache=True)
    algo, gen, xs, nfe = FakeMDLM(dist), _gen(0), [], 0
    for _ in range(625):
        xs.append(sampler.sample(algo, 16, 3, 32, generator=gen))
        nfe += sampler.nfe
    tv = law_tv(dist, torch.cat(xs), ancestral_law(dist, 32))  # 32 steps: law ~0.017 from p
    assert tv < 0.03, f"TV {tv:.4f}"
    assert nfe < 0.9 * 625 * 32, f"{nfe} NFEs: the cache never hit"


def test_wrong_transition_fails_the_tv_check() -> None:
    dist = EnumerableDist(3, 3, seed=1)
    x = SwappedAlphas(cache=False).sample(FakeMDLM(dist), N, 3, 64, generator=_gen(0))
    assert (x != dist.mask_id).all()  # the last step still unmasks everything...
    assert dist.tv_distance(x) > 0.1  # ...but the joint is wrong: the TV test has power


@pytest.mark.parametrize(("length", "k"), [(3, 3), (4, 2)])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_few_steps_follow_their_exact_law(length: int, k: int, steps: int) -> None:
    # Few steps are not exact (positions unmasked together are drawn independently),
    # but the sampler must match the exact law of the ancestral chain.
    dist = EnumerableDist(length, k, seed=1)
    x = MDLMAncestral().sample(FakeMDLM(dist), N, length, steps, generator=_gen(steps))
    assert ((x >= 0) & (x < dist.k)).all()  # no mask remains
    law = ancestral_law(dist, steps)
    assert 0.5 * float((law - dist.probs).abs().sum()) > 0.08  # far from p ...
    tv = law_tv(dist, x, law)
    assert tv < 0.025, f"TV vs the {steps}-step law {tv:.4f}"  # ... but exactly this law


def test_one_step_is_exact_for_one_token() -> None:
    single = EnumerableDist(1, 5, seed=3)
    x = MDLMAncestral().sample(FakeMDLM(single), N, 1, 1, generator=_gen(0))
    assert single.tv_distance(x) < 0.02


def test_time_grid_and_nfe_count() -> None:
    dist = EnumerableDist(3, 3, seed=0)
    algo, sampler = FakeMDLM(dist, time_conditioning=True), MDLMAncestral(cache=False)
    sampler.sample(algo, 4096, 3, 4, generator=_gen(0))
    expected = torch.linspace(1.0, 1e-5, 5, dtype=torch.float64)[:4].tolist()
    assert algo.times == pytest.approx(expected, rel=1e-6) and sampler.nfe == algo.calls == 4


def test_cache_saves_calls_and_gives_identical_tokens() -> None:
    dist = EnumerableDist(4, 3, seed=4)
    for seed in range(5):
        plain_algo, cached_algo = FakeMDLM(dist), FakeMDLM(dist)
        plain, cached = MDLMAncestral(cache=False), MDLMAncestral(cache=True)
        a = plain.sample(plain_algo, 8, 4, 64, generator=_gen(seed))
        b = cached.sample(cached_algo, 8, 4, 64, generator=_gen(seed))
        assert torch.equal(a, b)
        assert cached.nfe == cached_algo.calls < plain.nfe == plain_algo.calls <= 64
    # A time-conditioned denoiser must be called at every step.
    timed, sampler = FakeMDLM(dist, time_conditioning=True), MDLMAncestral(cache=True)
    plain = MDLMAncestral(cache=False)
    plain.sample(FakeMDLM(dist), 8, 4, 64, generator=_gen(0))
    sampler.sample(timed, 8, 4, 64, generator=_gen(0))
    assert sampler.nfe == plain.nfe > 40  # (it stops early once nothing is masked)


@pytest.mark.parametrize("greedy_last", [False, True])
def test_last_step_never_overwrites_decoded_tokens(greedy_last: bool) -> None:
    # The denoiser says "0" while t > 0.5 and "1" afterwards, also at clean positions
    # (no carry-over): writing the last prediction everywhere would turn every 0 into 1.
    dist = EnumerableDist(4, 3, seed=0)
    algo = FixedDenoiserMDLM(dist, early=0, late=1)
    template = torch.tensor([2, dist.mask_id, dist.mask_id, dist.mask_id])
    sampler = MDLMAncestral(cache=False, greedy_last=greedy_last)
    x = sampler.sample(algo, 256, 4, 4, infill=template, generator=_gen(0))
    assert (x[:, 0] == 2).all()  # given token kept although the denoiser argmax is 0/1
    body = x[:, 1:]
    assert (body == 0).any() and (body == 1).any() and ((body == 0) | (body == 1)).all()


def test_infill_reproduces_the_exact_conditional() -> None:
    dist = EnumerableDist(4, 3, seed=5)
    m = dist.mask_id
    template = torch.tensor([m, 2, m, m])
    x = MDLMAncestral().sample(FakeMDLM(dist), N, 4, 64, infill=template, generator=_gen(0))
    assert (x[:, 1] == 2).all()
    tv = conditional_tv(dist, x, template)
    assert tv < 0.03, f"TV vs p(x | x_1 = 2): {tv:.4f}"


def test_per_row_infill_and_prompt_are_preserved() -> None:
    dist = EnumerableDist(4, 3, seed=6)
    m = dist.mask_id
    truth = dist.sample(500, _gen(1))
    hide = torch.rand(500, 4, generator=_gen(2)) < 0.5
    template = torch.where(hide, m, truth)
    x = MDLMAncestral().sample(FakeMDLM(dist), 500, 4, 8, infill=template, generator=_gen(3))
    assert torch.equal(x[~hide], truth[~hide]) and (x != m).all()
    # Prefix conditioning: x ~ p(x | x_0 = 1).
    prompt = torch.tensor([1])
    y = MDLMAncestral().sample(FakeMDLM(dist), N, 4, 64, prompt=prompt, generator=_gen(4))
    assert (y[:, 0] == 1).all()
    assert conditional_tv(dist, y, torch.tensor([1, m, m, m])) < 0.03


def test_tiny_top_p_takes_the_argmax() -> None:
    dist = EnumerableDist(1, 5, seed=7)
    x = MDLMAncestral(top_p=1e-9).sample(FakeMDLM(dist), 100, 1, 4, generator=_gen(0))
    assert (x == dist.probs.argmax()).all()


def test_determinism() -> None:
    dist = EnumerableDist(4, 3, seed=8)
    sampler = MDLMAncestral()
    a = sampler.sample(FakeMDLM(dist), 256, 4, 16, generator=_gen(1))
    b = sampler.sample(FakeMDLM(dist), 256, 4, 16, generator=_gen(1))
    c = sampler.sample(FakeMDLM(dist), 256, 4, 16, generator=_gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_name_the_fix() -> None:
    dist = EnumerableDist(3, 3, seed=0)
    algo, sampler, m = FakeMDLM(dist), MDLMAncestral(), dist.mask_id
    with pytest.raises(ValueError, match="prompt of 3 tokens does not fit in length 3: raise"):
        sampler.sample(algo, 2, 3, prompt=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sampler.sample(algo, 2, 3, steps=0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        MDLMAncestral(steps=0)
    with pytest.raises(ValueError, match="template must span the whole sample"):
        sampler.sample(algo, 2, 3, infill=torch.tensor([0, m]))
    with pytest.raises(ValueError, match="not both"):
        sampler.sample(algo, 2, 3, prompt=torch.tensor([0]), infill=torch.tensor([0, m, m]))
    with pytest.raises(ValueError, match="use infill="):
        sampler.sample(algo, 2, 3, prompt=torch.tensor([m]))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        sampler.sample(algo, 2, 3, infill=torch.tensor([0, 9, m]))
