"""The tabulated Gaussian duality alpha(gamma) against Monte-Carlo argmax frequencies."""

from __future__ import annotations

import math

import pytest
import torch

from src.algos import duality
from src.algos.duality import DualityTable, duality_table


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def mc_correct_rate(k: int, gamma: float, n: int, seed: int) -> float:
    """Frequency of argmax(a e_x + s eps) == x over n draws (x = 0 by symmetry)."""
    g = torch.Generator().manual_seed(seed)
    a, s = math.sqrt(1 / (1 + math.exp(gamma))), math.sqrt(1 / (1 + math.exp(-gamma)))
    hits, chunk = 0, max(1, 2_000_000 // k)
    for lo in range(0, n, chunk):
        w = s * torch.randn(min(chunk, n - lo), k, generator=g)
        w[:, 0] += a
        hits += int((w.argmax(-1) == 0).sum())
    return hits / n


@pytest.mark.parametrize(("k", "n"), [(5, 100_000), (50, 100_000), (4096, 20_000)])
def test_table_matches_monte_carlo(k, n):
    table = duality_table(k)
    for i, gamma in enumerate((-4.0, -2.5, -1.0, 1.0, 3.0)):
        p = float(table.integral_at(torch.tensor(gamma)))
        freq = mc_correct_rate(k, gamma, n, seed=i)
        se = math.sqrt(p * (1 - p) / n) + 1e-12
        assert abs(freq - p) < 3 * se + 1e-9, (k, gamma, freq, p)
        assert float(table.alpha(torch.tensor(gamma))) == pytest.approx((k * p - 1) / (k - 1))


@pytest.mark.parametrize("k", [2, 257, 50257])
def test_limits_inverse_and_derivative(k):
    table = duality_table(k)
    ends = table.alpha(torch.tensor([duality.GAMMA_LO, duality.GAMMA_HI]))
    assert ends[0] > 1 - 1e-9 and ends[1] < 1e-4  # clean at low gamma, uniform at high
    if k == 2:  # closed form: P(a/s + Z1 > Z2) = Phi(r / sqrt 2), r = exp(-gamma / 2)
        g = torch.tensor([-3.0, 0.0, 2.0], dtype=torch.float64)
        exact = 2 * torch.special.ndtr(torch.exp(-g / 2) / math.sqrt(2)) - 1
        assert torch.allclose(table.alpha(g), exact, atol=1e-6)
        r = torch.exp(-g / 2)  # d/dgamma: 2 phi(r / sqrt 2) / sqrt 2 * (-r / 2)
        slope = -torch.exp(-r**2 / 4) / math.sqrt(2 * math.pi) * math.sqrt(2) * r / 2
        assert torch.allclose(table.dalpha_dgamma(g), slope, atol=1e-6)
    alpha = torch.tensor([0.999, 0.9, 0.5, 0.05, 1e-3], dtype=torch.float64)
    assert torch.allclose(table.alpha(table.gamma(alpha)), alpha, rtol=1e-5, atol=1e-8)
    g = torch.linspace(-4.0, 8.0, 50, dtype=torch.float64)
    h = 0.02  # several grid cells: the table's alpha is piecewise linear
    numeric = (table.alpha(g + h) - table.alpha(g - h)) / (2 * h)
    assert torch.allclose(table.dalpha_dgamma(g), numeric, rtol=1e-3, atol=1e-4)
    assert (table.dalpha_dgamma(g) < 0).all()


def test_disk_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setattr(duality, "_MEMO", {})
    first = duality_table(7, tmp_path)
    assert (tmp_path / "duality" / "K7_v1.npz").is_file()
    monkeypatch.setattr(duality, "_MEMO", {})
    monkeypatch.setattr(DualityTable, "compute", classmethod(lambda *a, **k: pytest.fail("recomputed")))
    again = duality_table(7, tmp_path)
    g = torch.linspace(-5.0, 15.0, 101)
    assert torch.equal(first.alpha(g), again.alpha(g))
    assert torch.allclose(first.dalpha_dgamma(g), again.dalpha_dgamma(g), rtol=1e-12)
