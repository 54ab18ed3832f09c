"""Eso-LM (B): the NELBO is tight with exact conditionals; orders, masks, errors."""

from __future__ import annotations

import math

import pytest
import torch

from src.algos.esolm import EsoLM
from src.algos.esolm_masks import (
    branch_rows,
    clean_first_order,
    invert_permutation,
    sequential_attention_mask,
    sequential_ranks,
)
from src.algos.mdlm import MDLM
from src.algos.noise import LogLinear
from src.algos.randomness import StepRandomness, make_generator
from src.models.dit import DiT
from tests.algos.esolm_oracle import OracleEsoBackbone
from tests.oracle import EnumerableDist, OracleMaskedBackbone

COMMON = dict(optim={}, lr_scheduler={}, eos_id=0)


def make_esolm(backbone, vocab_size: int, mask_id: int, **kw) -> EsoLM:
    return EsoLM(backbone, noise=LogLinear(), name="esolm", vocab_size=vocab_size,
                 mask_id=mask_id, **COMMON, **kw)


def random_dit(vocab_size: int = 12, dim: int = 32, seed: int = 0) -> DiT:
    """A tiny DiT whose zero-initialised layers are perturbed (attention matters)."""
    torch.manual_seed(seed)
    net = DiT(vocab_size, dim, 2, 2, cond_dim=16, max_seq_len=64, attn_backend="math")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def mc_nelbo(algo, dist: EnumerableDist, n_batches: int = 40, batch: int = 1000) -> float:
    """Monte-Carlo NELBO in nats per sequence (same protocol as test_oracle_elbo.py)."""
    g = torch.Generator().manual_seed(0)
    total = tokens = 0.0
    for i in range(n_batches):
        x = dist.sample(batch, g)
        rng = StepRandomness(make_generator("cpu", 0, i), torch.rand(1, generator=g).item(), 0, batch)
        with torch.no_grad():
            out = algo.loss({"input_ids": x}, rng)
        total, tokens = total + float(out.nll_sum), tokens + float(out.n_tokens)
    return total / tokens * dist.length


@pytest.mark.parametrize("alpha_0", [1.0, 0.5])
@pytest.mark.parametrize("shape", [(3, 3), (4, 3)])
def test_esolm_nelbo_is_tight_with_oracle(alpha_0, shape):
    """Validation NELBO (diffusion + sequential parts on every row) -> H(X)."""
    dist = EnumerableDist(*shape, seed=1)
    algo = make_esolm(OracleEsoBackbone(dist), dist.vocab_size, dist.mask_id, alpha_0=alpha_0).eval()
    assert mc_nelbo(algo, dist) == pytest.approx(dist.entropy(), rel=0.02)


def test_esolm_training_split_estimates_the_same_nelbo():
    """Training rows split between branches: recon/N_recon + diff/N_diff is unbiased."""
    dist = EnumerableDist(3, 3, seed=1)
    algo = make_esolm(OracleEsoBackbone(dist), dist.vocab_size, dist.mask_id, alpha_0=0.4,
                      batch_split=0.5).train()
    assert mc_nelbo(algo, dist) == pytest.approx(dist.entropy(), rel=0.02)


def test_alpha0_one_is_mdlm_on_the_clean_first_causal_order():
    """Same draws, exact conditionals: Eso-LM at alpha_0 = 1 reports MDLM's bound exactly
    (checks the permutation, the un-permutation and the weight)."""
    dist = EnumerableDist(3, 3, seed=4)
    eso = make_esolm(OracleEsoBackbone(dist), dist.vocab_size, dist.mask_id, alpha_0=1.0)
    mdlm = MDLM(OracleMaskedBackbone(dist), noise=LogLinear(), name="mdlm",
                vocab_size=dist.vocab_size, mask_id=dist.mask_id, **COMMON)
    x = dist.sample(500, torch.Generator().manual_seed(1))
    outs = [a.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 3), 0.2, 0, 500))
            for a in (eso, mdlm)]
    assert float(outs[0].nll_sum) == pytest.approx(float(outs[1].nll_sum), rel=1e-5)


def test_diffusion_weight_is_the_scaled_schedule():
    algo = make_esolm(OracleEsoBackbone(EnumerableDist(3, 3)), 4, 3, alpha_0=0.6)
    t = torch.tensor([0.01, 0.5, 1.0])
    eps = 1e-3
    expected = 0.6 * (1 - eps) / (1 - 0.6 + 0.6 * (1 - eps) * t)
    assert torch.allclose(algo.noise.mdlm_weight(t), expected, rtol=1e-5)
    assert float(algo.noise.alpha(torch.tensor(0.0))) == pytest.approx(0.6)


def test_sequential_loss_reads_log_probabilities_not_raw_logits():
    """Constant logits c: the SUBS log-softmax gives log K per masked token whatever c is
    (the reference read raw logits and would report -c)."""

    class Constant(torch.nn.Module):
        def forward(self, x, sigma=None, **_):
            return torch.full((*x.shape, 8), 5.0)

    algo = make_esolm(Constant(), 8, 7, alpha_0=0.3)
    x = torch.randint(0, 7, (16, 10), generator=torch.Generator().manual_seed(0))
    valid = torch.ones_like(x, dtype=torch.bool)
    u = torch.rand(16, 10, generator=torch.Generator().manual_seed(1))
    nll = algo._sequential_nll(x, valid, u, u)
    masked = u < 0.7
    assert torch.allclose(nll[masked], torch.full_like(nll[masked], math.log(7)))
    assert (nll[~masked] == 0).all()


def test_permuted_causal_forward_equals_rank_mask_in_place():
    """Permute + causal + true rotary positions + un-permute == the same attention written
    as a rank mask over the unpermuted sequence (rotary follows the tokens)."""
    net = random_dit()
    algo = make_esolm(net, 12, 11, alpha_0=1.0)
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 12, (3, 9), generator=g)
    order = clean_first_order(z == 11, torch.rand(3, 9, generator=g))
    logp = algo._ordered_log_probs(z, order, torch.full((3,), 0.5))
    rank = invert_permutation(order)
    mask = (rank[:, None, :] <= rank[:, :, None])[:, None]  # key fed before or = query
    direct = algo._subs_log_probs(net(z, None, attn_mask=mask))
    assert torch.allclose(logp, direct, atol=1e-5)


def test_orders_and_masks():
    masked = torch.tensor([[True, False, True, False, True]])
    order = clean_first_order(masked, torch.rand(1, 5, generator=torch.Generator().manual_seed(0)))
    assert set(order[0, :2].tolist()) == {1, 3} and set(order[0, 2:].tolist()) == {0, 2, 4}
    rank = sequential_ranks(masked, torch.tensor([[0.9, 0.7, 0.1, 0.2, 0.3]]))
    assert rank[0].tolist() == [2, 1, 3, 0, 4]  # clean 3 then 1 (random), masked 0, 2, 4
    m = sequential_attention_mask(masked, rank)[0, 0]  # (10, 10): [z_0 ; x]
    L = 5
    # masked z_0^2 sees itself and x at ranks < 3: clean x^1, x^3 and masked x^0.
    assert torch.nonzero(m[2]).flatten().tolist() == [2, L + 0, L + 1, L + 3]
    assert torch.nonzero(m[1]).flatten().tolist() == [1]  # clean z_0 token: itself only
    assert torch.nonzero(m[L + 0]).flatten().tolist() == [L + 0, L + 1, L + 3]  # x causal by rank
    assert branch_rows(8, 0.5, torch.device("cpu")).tolist() == [False, True] * 4


def test_train_step_on_a_real_dit_has_gradients_in_both_branches():
    net = random_dit()
    algo = make_esolm(net, 12, 11, alpha_0=0.5, batch_split=0.5).train()
    x = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(0))
    out = algo.loss({"input_ids": x}, StepRandomness(make_generator("cpu", 0), 0.3, 0, 4))
    out.loss.backward()
    assert torch.isfinite(out.loss) and float(out.n_tokens) == 64
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    passes = type(algo).training_passes({"alpha_0": 0.5, "batch_split": 0.5}, 16)
    assert [(p.tokens, p.rows) for p in passes] == [(16, 0.5), (32, 0.5)]  # its stated cost


@pytest.mark.parametrize("alpha_0", [0.0, -0.2, 1.5])
def test_alpha0_outside_unit_interval_is_one_clear_error(alpha_0):
    with pytest.raises(ValueError, match=r"algo\.alpha_0=.*\(0, 1\]"):
        make_esolm(OracleEsoBackbone(EnumerableDist(3, 3)), 4, 3, alpha_0=alpha_0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny oracle ops: intra-op threads only spin against each other on shared cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
