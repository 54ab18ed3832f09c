"""Samplers run on `algo.device`, with the generator on that device or on the CPU."""

from __future__ import annotations

import pytest
import torch

from src.samplers import ARSampler, MDLMAncestral
from tests.oracle import EnumerableDist
from tests.samplers.fakes import FakeAR, FakeMDLM

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gen_device", ["cpu", "same"])
def test_samples_live_on_the_algo_device(device: str, gen_device: str) -> None:
    dist = EnumerableDist(4, 3, seed=0)

    def gen() -> torch.Generator:
        return torch.Generator(device=device if gen_device == "same" else "cpu").manual_seed(0)

    mdlm, ar = FakeMDLM(dist, device=device), FakeAR(dist, device=device)
    infill = torch.tensor([1, dist.mask_id, dist.mask_id, 0])
    for sampler, algo, kwargs in [
        (MDLMAncestral(), mdlm, {"steps": 8, "infill": infill}),
        (ARSampler(), ar, {"prompt": torch.tensor([2])}),
    ]:
        a = sampler.sample(algo, 32, 4, generator=gen(), **kwargs)
        b = sampler.sample(algo, 32, 4, generator=gen(), **kwargs)
        assert a.device.type == torch.device(device).type and torch.equal(a, b)
        assert ((a >= 0) & (a < dist.k)).all()
