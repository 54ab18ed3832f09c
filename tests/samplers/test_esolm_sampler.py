"""Eso-LM sampler: reproduces the data with exact conditionals; KV cache == no cache."""

from __future__ import annotations

import pytest
import torch

from src.algos.esolm import EsoLM
from src.algos.mdlm import MDLM
from src.algos.noise import LogLinear
from src.models.dit import DiT
from src.samplers.esolm import EsoLMSampler
from src.samplers.orders import decode_plan
from tests.algos.esolm_oracle import OracleEsoBackbone
from tests.oracle import EnumerableDist, OracleMaskedBackbone
from tests.samplers.fakes import conditional_tv

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)


def oracle_esolm(dist: EnumerableDist, alpha_0: float) -> EsoLM:
    return EsoLM(OracleEsoBackbone(dist), noise=LogLinear(), alpha_0=alpha_0, name="esolm",
                 vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON).eval()


def dit_esolm(alpha_0: float, vocab: int = 16, max_seq_len: int = 64, seed: int = 0) -> EsoLM:
    """A real tiny DiT with every layer perturbed (so caching errors would show)."""
    torch.manual_seed(seed)
    net = DiT(vocab, 32, 2, 2, cond_dim=16, max_seq_len=max_seq_len)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return EsoLM(net, noise=LogLinear(), alpha_0=alpha_0, name="esolm", vocab_size=vocab,
                 mask_id=vocab - 1, **COMMON).eval()


def draw(algo, n, length, seed=0, **kw) -> tuple[torch.Tensor, EsoLMSampler]:
    prompt = kw.pop("prompt", None)
    sampler = EsoLMSampler(progress=False, **kw)
    out = sampler.sample(algo, n, length, prompt=prompt, generator=torch.Generator().manual_seed(seed))
    return out, sampler


@pytest.mark.parametrize("alpha_0,order", [(1.0, "random"), (0.5, "random"), (0.5, "block"),
                                           (0.7, "block_ar")])
def test_oracle_sampler_reproduces_the_distribution(alpha_0, order):
    dist = EnumerableDist(3, 3, seed=1)
    x, s = draw(oracle_esolm(dist, alpha_0), 10000, 3, steps=48, order=order, block_size=2)
    assert not (x == dist.mask_id).any()
    assert dist.tv_distance(x) < 0.035


def test_prompt_conditioning_reproduces_the_conditional():
    dist = EnumerableDist(4, 3, seed=2)
    prompt = torch.tensor([2])
    x, _ = draw(oracle_esolm(dist, 0.5), 8000, 4, steps=32, prompt=prompt)
    assert (x[:, 0] == 2).all()
    template = torch.tensor([2, dist.mask_id, dist.mask_id, dist.mask_id])
    assert conditional_tv(dist, x, template) < 0.04


@pytest.mark.parametrize("order", ["random", "block", "block_ar"])
def test_cached_equals_uncached_with_the_oracle(order):
    dist = EnumerableDist(4, 3, seed=3)
    algo = oracle_esolm(dist, 0.5)
    a, sa = draw(algo, 500, 4, steps=16, order=order, block_size=2, use_kv_cache=True)
    b, sb = draw(algo, 500, 4, steps=16, order=order, block_size=2, use_kv_cache=False)
    assert torch.equal(a, b) and sa.nfe == sb.nfe


@pytest.mark.parametrize("alpha_0,order,prompt", [(1.0, "random", None), (0.5, "random", [3, 4]),
                                                  (0.3, "block", None), (0.6, "block_ar", [5])])
def test_cached_equals_uncached_on_a_real_dit(alpha_0, order, prompt):
    algo = dit_esolm(alpha_0)
    p = None if prompt is None else torch.tensor(prompt)
    kw = dict(steps=12, order=order, block_size=8, prompt=p)
    a, sa = draw(algo, 4, 32, use_kv_cache=True, **kw)
    b, sb = draw(algo, 4, 32, use_kv_cache=False, **kw)
    assert torch.equal(a, b)
    assert not (a == algo.mask_id).any()
    assert sa.fed_tokens < sb.fed_tokens / 3  # the cache feeds each decoded token once


def test_cache_rebuild_near_capacity_keeps_tokens_identical():
    """max_seq_len barely above L forces cache rebuilds (and the uncached fallback)."""
    algo = dit_esolm(0.5, max_seq_len=34)
    a, _ = draw(algo, 6, 32, steps=20, use_kv_cache=True)
    b, _ = draw(algo, 6, 32, steps=20, use_kv_cache=False)
    assert torch.equal(a, b)


def test_plan_counts_and_sequential_tail():
    masked = torch.ones(200, 10, dtype=torch.bool)
    masked[:, 0] = False  # a prompt token
    alpha = EsoLM(OracleEsoBackbone(EnumerableDist(3, 3)), noise=LogLinear(), alpha_0=0.5,
                  name="e", vocab_size=4, mask_id=3, **COMMON).noise.alpha
    plan = decode_plan(masked, alpha, 8, generator=torch.Generator().manual_seed(0))
    assert (plan.counts.sum(1) == 9).all()  # every masked position exactly once
    decoded = plan.counts[:, : plan.n_diffusion_steps].sum(1).double()
    assert 0.4 < float(decoded.mean()) / 9 < 0.6  # ~alpha_0 of the tokens by diffusion
    assert (plan.counts[:, plan.n_diffusion_steps:] <= 1).all()  # then one per step
    rows = torch.arange(200)
    for r in rows[:5].tolist():  # the sequential tail is left to right
        d = int(decoded[r])
        tail = plan.order[r, d:9]
        assert torch.equal(tail, tail.sort().values) and 0 not in plan.order[r, :9].tolist()


def test_esolm_sampler_rejects_other_algos_naming_a_compatible_sampler():
    dist = EnumerableDist(3, 3)
    mdlm = MDLM(OracleMaskedBackbone(dist), noise=LogLinear(), name="mdlm",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON)
    with pytest.raises(ValueError, match=r"algo=esolm.*use sampler=ancestral_cache"):
        EsoLMSampler(steps=4).sample(mdlm, 2, 3)
    with pytest.raises(ValueError, match="sampler.order"):
        EsoLMSampler(order="zigzag")
