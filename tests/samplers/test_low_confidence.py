"""LowConfidence (MaskGIT / LLaDA / MegaDLMs remasking) against the enumerable oracle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.samplers.factory import build_sampler
from src.samplers.low_confidence import LowConfidence
from tests.oracle import EnumerableDist
from tests.samplers.fakes import FakeMDLM, conditional_tv

N = 20_000
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("block_size", [None, 1])
def test_random_order_one_token_per_step_is_exact(block_size):
    """Sequential unmasking with the exact conditionals, in any order, samples the joint."""
    dist = EnumerableDist(3, 3, seed=1)
    sampler = LowConfidence(remasking="random", temperature=1.0, block_size=block_size)
    x = sampler.sample(FakeMDLM(dist), N, 3, 3, generator=_gen(0))
    assert dist.tv_distance(x) < 0.03, dist.tv_distance(x)
    assert sampler.nfe == 3


def test_unmasking_everything_at_once_is_not_the_joint():
    """The TV check has power: one step draws the positions independently (the marginals)."""
    dist = EnumerableDist(3, 3, seed=1)
    x = LowConfidence(remasking="random", temperature=1.0).sample(FakeMDLM(dist), N, 3, 1,
                                                                  generator=_gen(0))
    assert dist.tv_distance(x) > 0.05


def test_prompted_samples_follow_the_exact_conditional():
    dist = EnumerableDist(4, 2, seed=3)
    prompt = torch.tensor([1])
    x = LowConfidence(remasking="random", temperature=1.0).sample(
        FakeMDLM(dist), N, 4, 3, prompt=prompt, generator=_gen(1))
    template = torch.tensor([1, dist.mask_id, dist.mask_id, dist.mask_id])
    assert (x[:, 0] == 1).all() and conditional_tv(dist, x, template) < 0.03


def _greedy_confident_path(dist: EnumerableDist, length: int) -> list[int]:
    """At each step the masked position whose most likely token is most likely takes it."""
    z = torch.full((1, length), dist.mask_id)
    for _ in range(length):
        post = dist.masked_posterior(z)[0]  # (L, K)
        best, tok = post.max(-1)
        best[z[0] != dist.mask_id] = -1.0
        i = int(best.argmax())
        z[0, i] = int(tok[i])
    return z[0].tolist()


def test_greedy_low_confidence_follows_the_most_confident_position_first():
    dist = EnumerableDist(4, 3, seed=5)
    algo = FakeMDLM(dist)
    x = LowConfidence(temperature=0.0).sample(algo, 3, 4, 4, generator=_gen(0))
    assert all(row == _greedy_confident_path(dist, 4) for row in x.tolist())


def test_blocks_decode_left_to_right_with_their_share_of_steps():
    dist = EnumerableDist(4, 2, seed=2)
    seen: list[torch.Tensor] = []

    class Recording(FakeMDLM):
        def denoiser_log_probs(self, z, t):
            seen.append(z.clone())
            return super().denoiser_log_probs(z, t)

    sampler = LowConfidence(block_size=2, temperature=1.0)
    x = sampler.sample(Recording(dist), 5, 4, 4, generator=_gen(0))
    assert sampler.nfe == 4 and (x != dist.mask_id).all()
    # Block 2 stays masked while block 1 decodes; block 1 is done when block 2 starts.
    assert (seen[0][:, 2:] == dist.mask_id).all() and (seen[1][:, 2:] == dist.mask_id).all()
    assert (seen[2][:, :2] != dist.mask_id).all()
    assert LowConfidence.transfer_counts(10, 4) == [3, 3, 2, 2]


def test_config_and_bad_inputs():
    sampler = build_sampler(OmegaConf.load(CONFIGS / "sampler" / "low_confidence.yaml"))
    assert isinstance(sampler, LowConfidence) and sampler.remasking == "low_confidence"
    assert sampler.temperature == 0.0 and sampler.block_size is None
    with pytest.raises(ValueError, match="remasking='top'"):
        LowConfidence(remasking="top")
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        LowConfidence(block_size=0)
    with pytest.raises(ValueError, match=r"samples algo=mdlm, not algo=gidd"):
        LowConfidence().check_algo(type("A", (), {"name": "gidd"})())
