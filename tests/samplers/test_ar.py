"""ARSampler against the enumerable oracle: exact distribution, KV cache, greedy limits."""

from __future__ import annotations

import pytest
import torch

from src.samplers import ARSampler
from tests.oracle import EnumerableDist
from tests.samplers.fakes import FakeAR, conditional_tv

N = 20_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("length", "k"), [(3, 3), (4, 2)])
def test_reproduces_the_joint_given_a_first_token_from_the_marginal(length: int, k: int) -> None:
    dist = EnumerableDist(length, k, seed=1)
    x0 = dist.sample(N, _gen(5))[:, :1]  # x_0 ~ p(x_0): then x ~ p(x) exactly
    sampler = ARSampler()
    x = sampler.sample(FakeAR(dist), N, length, prompt=x0, generator=_gen(0))
    tv = dist.tv_distance(x)
    assert tv < 0.03, f"TV {tv:.4f}"
    assert torch.equal(x[:, :1], x0) and sampler.nfe == length - 1  # prefill + (length - 2)
    # The test has power: a tempered sampler is visibly off.
    hot = ARSampler(temperature=2.0).sample(FakeAR(dist), N, length, prompt=x0, generator=_gen(0))
    assert dist.tv_distance(hot) > 0.06


def test_starts_from_eos_and_reproduces_the_conditional() -> None:
    dist = EnumerableDist(3, 3, seed=2)
    algo = FakeAR(dist, eos_id=1)  # the oracle's token 1 plays EOS / start-of-document
    x = ARSampler().sample(algo, N, 3, generator=_gen(0))
    assert (x[:, 0] == 1).all()
    template = torch.tensor([1, dist.mask_id, dist.mask_id])
    tv = conditional_tv(dist, x, template)
    assert tv < 0.03, f"TV vs p(x_1, x_2 | x_0 = EOS): {tv:.4f}"


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.7, "top_p": 0.8}])
def test_kv_cache_and_full_prefix_give_identical_tokens(kwargs: dict[str, float]) -> None:
    dist = EnumerableDist(4, 3, seed=3)
    prompt = torch.tensor([2, 0])
    cached_algo, full_algo = FakeAR(dist), FakeAR(dist)
    cached = ARSampler(use_kv_cache=True, **kwargs)
    full = ARSampler(use_kv_cache=False, **kwargs)
    a = cached.sample(cached_algo, 500, 4, prompt=prompt, generator=_gen(11))
    b = full.sample(full_algo, 500, 4, prompt=prompt, generator=_gen(11))
    assert torch.equal(a, b)
    assert cached.nfe == full.nfe == 2 == cached_algo.calls == full_algo.calls
    assert cached_algo.widths == [2, 1]  # prefill on the prompt, then one new token per call
    assert full_algo.widths == [2, 3]  # the whole prefix every time


def _argmax_path(dist: EnumerableDist, x0: torch.Tensor, length: int) -> torch.Tensor:
    x = x0
    while x.shape[1] < length:
        x = torch.cat([x, dist.next_token_probs(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": 1e-6}, {"top_p": 1e-9}])
def test_greedy_limits_follow_the_argmax_path(kwargs: dict[str, float]) -> None:
    dist = EnumerableDist(4, 3, seed=4)
    x0 = torch.arange(3).repeat(20)[:, None]  # every start token, several rows each
    x = ARSampler(**kwargs).sample(FakeAR(dist), 60, 4, prompt=x0, generator=_gen(0))
    assert torch.equal(x, _argmax_path(dist, x0, 4))


def test_prompt_rows_preserved_and_determinism() -> None:
    dist = EnumerableDist(4, 3, seed=5)
    prompt = dist.sample(64, _gen(1))[:, :2]
    sampler = ARSampler()
    a = sampler.sample(FakeAR(dist), 64, 4, prompt=prompt, generator=_gen(3))
    b = sampler.sample(FakeAR(dist), 64, 4, prompt=prompt, generator=_gen(3))
    c = sampler.sample(FakeAR(dist), 64, 4, prompt=prompt, generator=_gen(4))
    assert torch.equal(a[:, :2], prompt) and a.shape == (64, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < dist.k)).all()  # never [MASK]


def test_bad_inputs_name_the_fix() -> None:
    dist = EnumerableDist(3, 3, seed=0)
    algo, sampler = FakeAR(dist), ARSampler()
    with pytest.raises(ValueError, match="prompt of 40 tokens does not fit in length 32: raise"):
        sampler.sample(algo, 2, 32, prompt=torch.zeros(40, dtype=torch.long))
    with pytest.raises(ValueError, match="does not fit in length 3"):
        sampler.sample(algo, 2, 3, prompt=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot infill: use an MDLM sampler"):
        sampler.sample(algo, 2, 3, infill=torch.tensor([0, 3, 3]))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sampler.sample(algo, 2, 3, steps=0)
    with pytest.raises(ValueError, match=r"expected \(P,\) or \(2, P\)"):
        sampler.sample(algo, 2, 3, prompt=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="use length >= 2"):
        sampler.sample(algo, 2, 1)
    with pytest.raises(ValueError, match="use 1.0 to disable"):
        ARSampler(top_p=1.5)
    with pytest.raises(ValueError, match="use 0 for greedy"):
        ARSampler(temperature=-0.1)
