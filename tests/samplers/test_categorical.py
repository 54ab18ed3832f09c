"""float64 Gumbel-max sampling, nucleus filtering and temperature."""

from __future__ import annotations

import math

import pytest
import torch

from src.samplers.categorical import (
    apply_temperature,
    gumbel_from_uniform,
    gumbel_noise,
    sample_categorical,
    top_p_filter,
)


def test_frequencies_match_probs_including_a_1e_4_tail() -> None:
    probs = torch.tensor([0.5, 0.3, 0.1999, 1e-4, 0.0], dtype=torch.float64)
    n = 10**6
    g = torch.Generator().manual_seed(0)
    x = sample_categorical(probs.expand(n, -1), g)
    counts = torch.bincount(x, minlength=5).double()
    assert counts[4] == 0, "a zero-probability token was sampled"
    expected = n * probs[:4]
    chi2 = float(((counts[:4] - expected) ** 2 / expected).sum())
    assert chi2 < 30.0, f"chi-square {chi2:.1f} on 3 dof (p ~ 1e-6 threshold)"
    # Tail token: expected 100 +- 10; a truncated noise would starve it.
    assert 60 <= counts[3] <= 140, f"tail token drawn {int(counts[3])} times, expected ~100"


def test_log_space_input_gives_the_same_draws() -> None:
    probs = torch.softmax(torch.randn(64, 7, generator=torch.Generator().manual_seed(1)), -1)
    a = sample_categorical(probs, torch.Generator().manual_seed(3))
    b = sample_categorical(probs.log(), torch.Generator().manual_seed(3), log_space=True)
    c = sample_categorical(probs.log() + 5.0, torch.Generator().manual_seed(3), log_space=True)
    assert torch.equal(a, b) and torch.equal(a, c)  # unnormalized logits are fine too
    assert a.shape == (64,) and a.dtype == torch.long


def test_same_generator_seed_same_draws() -> None:
    probs = torch.full((1000, 10), 0.1)
    a = sample_categorical(probs, torch.Generator().manual_seed(7))
    b = sample_categorical(probs, torch.Generator().manual_seed(7))
    c = sample_categorical(probs, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gumbel_noise_is_float64_and_finite_at_the_edges() -> None:
    assert gumbel_noise((4, 3), torch.Generator().manual_seed(0)).dtype == torch.float64
    u = torch.tensor([0.0, 1e-300, 0.5, 1.0 - 2.0**-53, 1.0], dtype=torch.float64)
    g = gumbel_from_uniform(u)
    assert torch.isfinite(g).all() and (g.diff() >= 0).all()
    # float64 reaches far beyond float32's cap (-log(-log(1 - 2^-24)) ~ 16.6): that
    # range is what keeps low-probability tokens reachable.
    assert float(g[3]) > 36.0
    assert math.isclose(float(g[2]), -math.log(math.log(2.0)), rel_tol=1e-12)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.1, 0.5, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    out = top_p_filter(probs, 0.6)
    assert torch.allclose(out[0], torch.tensor([0.0, 0.5, 0.2, 0.0], dtype=torch.float64) / 0.7)
    assert int((out[1] > 0).sum()) == 3 and torch.allclose(out[1].sum(), torch.tensor(1.0).double())
    exact = top_p_filter(probs[:1], 0.5)  # the top token alone already has mass 0.5
    assert torch.equal(exact, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    tiny = top_p_filter(probs[:1], 1e-9)
    assert torch.equal(tiny, exact)  # always at least the top token
    assert torch.allclose(top_p_filter(probs * 3, 1.0), probs)  # renormalizes, no filtering
    with pytest.raises(ValueError, match="use 1.0 to disable"):
        top_p_filter(probs, 0.0)


def test_temperature() -> None:
    logits = torch.tensor([[1.0, 3.0, float("-inf"), 2.0]])
    assert torch.allclose(apply_temperature(logits, 1.0), torch.log_softmax(logits.double(), -1))
    half = apply_temperature(logits, 0.5).exp()
    assert torch.allclose(half, torch.softmax(logits.double() * 2, -1))
    for t in (0.0, 1e-6):
        p = apply_temperature(logits, t).exp()
        assert torch.allclose(p, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="use 0 for greedy"):
        apply_temperature(logits, -1.0)
