"""DUO's UDLM NELBO against the exact oracle: tight at H(X), non-negative, and sensitive."""

from __future__ import annotations

import pytest
import torch

from src.algos.noise import LogLinear
from src.algos.randomness import StepRandomness, make_generator
from src.algos.uniform_noise import RealVocab, corrupt, prior_kl, udlm_nelbo
from tests.algos.duo_helpers import oracle_duo
from tests.oracle import EnumerableDist


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only fight on the shared cores
    yield
    torch.set_num_threads(old)


def mc_nelbo(algo, dist, n_batches=60, batch=4000, seed=0) -> tuple[float, float]:
    """Monte-Carlo NELBO per sequence through `algo.loss` and its standard error."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for i in range(n_batches):
        x = dist.sample(batch, g)
        rng = StepRandomness(make_generator("cpu", seed, i), torch.rand(1, generator=g).item(),
                             0, batch)
        with torch.no_grad():
            out = algo.loss({"input_ids": x}, rng)
        values.append(float(out.nll_sum / out.n_tokens) * dist.length)
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std() / len(v) ** 0.5)


@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (3, 5)])
def test_nelbo_is_tight_with_exact_denoiser(shape):
    dist = EnumerableDist(*shape, seed=1)
    nelbo, se = mc_nelbo(oracle_duo(dist), dist)
    assert se / dist.entropy() < 0.01
    assert nelbo == pytest.approx(dist.entropy(), rel=0.02)


def test_full_posterior_is_not_the_mean_parameterization_optimum():
    """p(x^i | z_t) (own token included) as x_theta double-counts z_t^i: bound ~50% loose."""
    dist = EnumerableDist(3, 3, seed=1)
    nelbo, _ = mc_nelbo(oracle_duo(dist, leave_one_out=False), dist, n_batches=10)
    assert nelbo > 1.3 * dist.entropy()


class _WrongWeight(LogLinear):
    def dalpha(self, t):
        return 2 * super().dalpha(t)


class _WrongSign(LogLinear):
    def dalpha(self, t):
        return -super().dalpha(t)


@pytest.mark.parametrize("noise", [_WrongWeight(), _WrongSign()], ids=["weight", "sign"])
def test_wrong_weight_or_sign_is_detected(noise):
    dist = EnumerableDist(3, 3, seed=1)
    nelbo, _ = mc_nelbo(oracle_duo(dist, noise=noise), dist, n_batches=5)
    assert abs(nelbo / dist.entropy() - 1) > 0.5


@pytest.mark.parametrize("k", [3, 50, 4096])
def test_loss_is_nonnegative_per_token_for_any_denoiser(k):
    g = torch.Generator().manual_seed(k)
    b, length = 64, 16
    t = torch.cat([torch.tensor([1e-3, 1e-2, 0.5, 0.99, 1.0]), torch.rand(b - 5, generator=g)])
    noise = LogLinear()
    alpha, dalpha = noise.alpha(t.double()), noise.dalpha(t.double())
    x = torch.randint(0, k, (b, length), generator=g)
    z = corrupt(x, alpha, torch.rand(b, length, generator=g), torch.rand(b, length, generator=g), k)
    for scale in (0.0, 1.0, 10.0):  # uniform, random, peaked denoisers
        logits = scale * torch.randn(b, length, k, generator=g)
        loss = udlm_nelbo(torch.log_softmax(logits, -1), x, z, alpha, dalpha)
        assert torch.isfinite(loss).all() and loss.min() > -1e-6
    # A perfect denoiser that puts all mass on x: the loss vanishes where z = x.
    perfect = torch.log_softmax(50 * torch.nn.functional.one_hot(x, k).double(), -1)
    loss = udlm_nelbo(perfect, x, z, alpha, dalpha)
    assert loss[z == x].abs().max() < 1e-6 and loss.min() > -1e-6


def test_corruption_marginal_is_uniform_over_real_tokens():
    k, n = 4, 200_000
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, n, dtype=torch.long)
    z = corrupt(x, torch.tensor([0.3]), torch.rand(1, n, generator=g), torch.rand(1, n, generator=g), k)
    freq = torch.bincount(z[0], minlength=k).double() / n
    expected = torch.tensor([0.3 + 0.7 / k] + [0.7 / k] * (k - 1), dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=4e-3)


def test_real_vocab_skips_mask_anywhere():
    real = RealVocab(vocab_size=6, mask_id=2)
    ids = torch.tensor([0, 1, 3, 4, 5])
    assert real.to_real(ids).tolist() == [0, 1, 2, 3, 4]
    assert real.to_ids(real.to_real(ids)).tolist() == ids.tolist()
    v = torch.arange(6.0)
    assert real.drop_mask(v).tolist() == [0, 1, 3, 4, 5]
    assert real.add_mask(real.drop_mask(v), -1.0).tolist() == [0, 1, -1, 3, 4, 5]


def test_prior_kl():
    assert prior_kl(0.0, 7) == pytest.approx(0.0, abs=1e-15)
    for alpha, k in ((1e-3, 4096), (0.2, 5)):
        q = torch.full((k,), (1 - alpha) / k, dtype=torch.float64)
        q[0] += alpha
        assert prior_kl(alpha, k) == pytest.approx(float((q * (q * k).log()).sum()), rel=1e-9)
