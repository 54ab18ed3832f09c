"""Mixture of experts: routing against dense / hand-computed references, the auxiliary
losses on a hand-made routing, capacity drops, gradients, FLOPs and parameters, resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from src.models.dit import DiT, count_params
from src.models.flops import flops_per_token, model_forward_flops, param_counts
from src.models.layers import DiTBlock, rotary_tables
from src.models.moe import MoEFeedForward, load_balancing_loss, router_z_loss

D = 16


def _block_out(block: DiTBlock, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    rope = rotary_tables(torch.arange(x.shape[1]), block.head_dim)
    return block(x, c, rope, causal=False, backend="math", mask=None, kv_cache=None, layer=0)


def test_one_expert_top1_is_the_dense_block_exactly():
    torch.manual_seed(0)
    dense = DiTBlock(D, 2, 8, 0.0)
    moe = DiTBlock(D, 2, 8, 0.0, moe=MoEFeedForward(D, 1, 1, capacity_factor=1.0))
    state = {k: v for k, v in dense.state_dict().items() if not k.startswith("mlp.")}
    moe.load_state_dict(state, strict=False)
    with torch.no_grad():
        moe.mlp.experts_in[0].copy_(dense.mlp[0].weight)
        moe.mlp.experts_in_bias[0].copy_(dense.mlp[0].bias)
        moe.mlp.experts_out[0].copy_(dense.mlp[2].weight)
        moe.mlp.experts_out_bias[0].copy_(dense.mlp[2].bias)
        for p in (dense.adaln.weight, moe.adaln.weight):  # non-zero gates: the MLP matters
            p.fill_(0.05)
    x, c = torch.randn(3, 5, D), torch.randn(3, 8)
    assert torch.equal(_block_out(dense, x, c), _block_out(moe, x, c))


def test_all_experts_no_capacity_is_the_gate_weighted_sum():
    torch.manual_seed(1)
    layer = MoEFeedForward(D, 4, 4, capacity_factor=None)
    h = torch.randn(2, 7, D)
    probs = torch.softmax(h.reshape(-1, D) @ layer.router.weight.t(), dim=-1)
    expected = sum(probs[:, e, None] * layer.expert(e, h.reshape(-1, D)) for e in range(4))
    assert torch.allclose(layer(h).reshape(-1, D), expected, atol=1e-6)


def test_top1_picks_the_argmax_expert_with_its_probability():
    torch.manual_seed(2)
    layer = MoEFeedForward(D, 3, 1, capacity_factor=None)
    h = torch.randn(10, D)
    probs = torch.softmax(h @ layer.router.weight.t(), dim=-1)
    best = probs.argmax(-1)
    expected = torch.stack([probs[i, best[i]] * layer.expert(int(best[i]), h[i:i + 1])[0]
                            for i in range(10)])
    assert torch.allclose(layer(h), expected, atol=1e-6)


def test_aux_losses_on_a_hand_made_routing():
    # 4 tokens, 2 experts, top-1: tokens 0-2 pick expert 0, token 3 expert 1.
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    chosen = torch.tensor([[0], [0], [0], [1]])
    # f = (3/4, 1/4), P = (0.65, 0.35): 2 * (0.75 * 0.65 + 0.25 * 0.35) = 1.15
    assert load_balancing_loss(probs, chosen).item() == pytest.approx(1.15)
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp = (log 2, log 4): mean of squares
    assert router_z_loss(logits).item() == pytest.approx((math.log(2) ** 2 + math.log(4) ** 2) / 2)


def test_capacity_drops_late_tokens_and_counts_them():
    layer = MoEFeedForward(D, 2, 1, capacity_factor=0.5)  # C = ceil(0.5 * 8 / 2) = 2
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 10.0  # every token with h[0] > 0 prefers expert 0
    h = torch.zeros(8, D)
    h[:, 0] = 1.0  # all 8 tokens choose expert 0; only the first 2 fit
    layer.train()
    out = layer(h)
    assert torch.count_nonzero(out.abs().sum(-1)) == 2
    assert out[:2].abs().sum() > 0 and out[2:].abs().sum() == 0
    assert layer.stats[-1].dropped.item() == pytest.approx(6 / 8)


def test_router_and_every_expert_get_gradients():
    torch.manual_seed(3)
    layer = MoEFeedForward(D, 4, 2, capacity_factor=1.0)
    layer.train()
    layer(torch.randn(6, D)).square().sum().backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in layer.parameters())  # DDP: none unused


def test_model_collects_weighted_losses_only_in_training():
    torch.manual_seed(4)
    moe = {"num_experts": 4, "top_k": 2, "aux_loss_weight": 0.5, "z_loss_weight": 0.25}
    model = DiT(50, D, 2, 2, moe=moe, attn_backend="math")
    model.train()
    model(torch.randint(0, 50, (2, 6)))
    losses = model.moe_losses()
    assert losses["loss"].item() == pytest.approx(0.5 * losses["aux"] + 0.25 * losses["z"])
    assert model.moe_losses() is None  # collected once
    model.eval()
    with torch.no_grad():
        model(torch.randint(0, 50, (2, 6)))
    assert model.moe_losses() is None  # evaluation forwards are not training losses


@pytest.mark.parametrize("moe", [{"num_experts": 4, "top_k": 1},
                                 {"num_experts": 4, "top_k": 2, "every": 2},
                                 {"num_experts": 8, "top_k": 8}])
def test_params_and_full_flops_match_the_model(moe):
    moe = {**moe, "capacity_factor": None}
    model = DiT(64, 32, 4, 2, moe=moe, attn_backend="math")
    counts = param_counts(dim=32, n_blocks=4, vocab_size=64, moe=moe)
    assert count_params(model) == {k: counts[k] for k in ("params", "non_embedding_params")}
    x = torch.randint(0, 64, (1, 12))
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(1))
    assert counter.get_total_flops() == model_forward_flops(dim=32, n_blocks=4, vocab_size=64,
                                                           seq_len=12, moe=moe)


def test_conventions_count_active_parameters():
    shape = dict(dim=32, n_blocks=4, n_heads=2, vocab_size=64, seq_len=12)
    dense = {c: flops_per_token(convention=c, **shape) for c in ("6N", "palm", "gidd", "full")}
    one = {c: flops_per_token(convention=c, moe={"num_experts": 1, "top_k": 1}, **shape)
           for c in dense}
    eight_top1 = {c: flops_per_token(convention=c, moe={"num_experts": 8, "top_k": 1}, **shape)
                  for c in dense}
    # One expert = dense + a d x 1 router; eight experts top-1 = dense + a d x 8 router.
    for c in ("6N", "palm"):
        assert one[c] - dense[c] == pytest.approx(6 * 4 * 32)
        assert eight_top1[c] - dense[c] == pytest.approx(6 * 4 * 32 * 8)
    counts = param_counts(dim=32, n_blocks=4, vocab_size=64, moe={"num_experts": 8, "top_k": 1})
    ffn = 8 * 32 * 32 + 5 * 32  # one expert's weights and biases
    assert counts["params"] - counts["active_params"] == 4 * 7 * ffn  # 7 idle experts / block


def test_moe_run_resumes_bitwise(tmp_path):
    from tests.resume.test_exact_resume import _callback
    from tests.resume.helpers import assert_same_training_state, load_last, run_dir_of
    from tests.conftest import train_tiny

    moe = ["model.moe.num_experts=4", "model.moe.top_k=2", "model.moe.capacity_factor=1.0",
           "training.ckpt_every_n_steps=2", "training.max_steps=4", "eval.num_samples=0"]
    ref = train_tiny(tmp_path / "ref", *moe)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_tiny(tmp_path / "crash", *moe, *_callback("crash", "CrashAt", step=3))
    resumed = train_tiny(tmp_path / "crash", *moe)
    assert resumed["val_nll"] == ref["val_nll"] and resumed["steps"] == 4
    assert_same_training_state(load_last(run_dir_of(tmp_path / "ref", 4)),
                               load_last(run_dir_of(tmp_path / "crash", 4)))
