"""DUO on a real (tiny) DiT: curriculum schedule, soft inputs, one step of each phase."""

from __future__ import annotations

import pytest
import torch

from src.algos.duo import DUO, curriculum_log10_tau
from src.algos.noise import LogLinear
from src.algos.randomness import StepRandomness, make_generator
from src.models.dit import DiT

V, MASK = 21, 7  # [MASK] in the middle of the vocabulary on purpose


def tiny_duo(**kw) -> DUO:
    torch.manual_seed(0)
    net = DiT(vocab_size=V, dim=32, n_blocks=1, n_heads=2, max_seq_len=64)
    with torch.no_grad():  # adaLN-Zero starts at zero output: perturb so outputs depend on inputs
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DUO(net, noise=LogLinear(), name="duo", vocab_size=V, mask_id=MASK, eos_id=0,
               optim={}, lr_scheduler={}, **kw)


def batch(b=4, length=12) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, V - 1, (b, length), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids + (ids >= MASK).long()}  # real tokens only


def rng(i=0) -> StepRandomness:
    return StepRandomness(make_generator("cpu", 0, i), 0.37, 0, 4)


def test_tau_schedule_endpoints_and_purity():
    args = {"start": 100, "end": 300, "log10_start": -1.0, "log10_end": -3.0}
    assert curriculum_log10_tau(0, **args) == -1.0
    assert curriculum_log10_tau(100, **args) == -1.0
    assert curriculum_log10_tau(200, **args) == pytest.approx(-2.0)
    assert curriculum_log10_tau(299, **args) == pytest.approx(-2.99)
    assert curriculum_log10_tau(300, **args) is None  # plain DUO from `end` on
    assert curriculum_log10_tau(0, 0, 0, -1.0, -2.0) is None  # end = 0: no curriculum
    algo = tiny_duo(curriculum_start=2, curriculum_end=6)
    assert [algo.log10_tau(s) for s in (0, 2, 4, 6)] == [-1.0, -1.0, -1.5, None]


def test_soft_inputs_at_zero_temperature_equal_one_hot_ids():
    algo = tiny_duo()
    x = algo.real.to_real(batch()["input_ids"])
    gamma = torch.full((x.shape[0],), -2.0)
    w = algo.gaussian_latent(x, gamma, torch.randn(*x.shape, algo.real.k))
    ids = algo.real.to_ids(w.argmax(-1))
    soft = algo.real.add_mask(torch.softmax(w / 1e-6, dim=-1), 0.0)
    assert soft[..., MASK].abs().max() == 0
    sigma = torch.full((x.shape[0],), 0.3)
    with torch.no_grad():
        assert torch.allclose(algo.net(soft, sigma), algo.net(ids, sigma), atol=1e-5)
        warm = algo.real.add_mask(torch.softmax(w / 0.5, dim=-1), 0.0)
        assert not torch.allclose(algo.net(warm, sigma), algo.net(ids, sigma), atol=1e-3)


@pytest.mark.parametrize("mode", ["linear", "match"])
def test_curriculum_alpha(mode):
    algo = tiny_duo(curriculum_gamma=mode)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    alpha, dalpha, gamma = algo.curriculum_alpha(t)
    assert (dalpha < 0).all() and (alpha[:-1] > alpha[1:]).all()
    assert torch.allclose(algo.duality.alpha(gamma), alpha, atol=1e-6)
    if mode == "linear":  # endpoints = the configured alpha range, gamma linear in t
        assert alpha[0] == pytest.approx(0.9417, abs=1e-5) and alpha[2] == pytest.approx(0.0487, abs=1e-5)
        assert float(gamma[1]) == pytest.approx(float(gamma[0] + gamma[2]) / 2)
    else:
        assert torch.allclose(alpha, LogLinear().alpha(t))


@pytest.mark.parametrize("phase", ["curriculum", "plain"])
def test_one_training_step_per_phase(phase):
    algo = tiny_duo(curriculum_end=5 if phase == "curriculum" else 0).train()
    assert (algo.log10_tau(0) is not None) == (phase == "curriculum")
    calls = []
    algo.backbone.register_forward_pre_hook(lambda m, a: calls.append(a[0].is_floating_point()))
    out = algo.loss(batch(), rng())
    out.loss.backward()
    assert calls == [phase == "curriculum"]  # soft one-hots only in the curriculum
    assert torch.isfinite(out.loss) and out.loss > 0 and float(out.n_tokens) == 48
    grads = [p.grad for p in algo.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert algo.backbone.embed.grad.abs().sum() > 0


def test_validation_uses_plain_loss_and_denoiser_never_masks():
    algo = tiny_duo(curriculum_end=5).eval()
    calls = []
    algo.backbone.register_forward_pre_hook(lambda m, a: calls.append(a[0].is_floating_point()))
    with torch.no_grad():
        out = algo.loss(batch(), rng())
        probs = algo.denoiser_probs(batch()["input_ids"], torch.full((4,), 0.5))
    assert calls == [False, False] and torch.isfinite(out.nll_sum)
    assert probs.dtype == torch.float64 and probs[..., MASK].abs().max() == 0
    assert torch.allclose(probs.sum(-1), torch.ones(4, 12, dtype=torch.float64))
