"""AdamW parameter groups and the EMA used for evaluation."""

from __future__ import annotations

import torch

from src.models.dit import DiT
from src.optim.ema import EMA
from src.optim.param_groups import param_groups


def test_no_decay_for_norms_biases_and_embeddings():
    model = DiT(50, 32, 2, 4, cond_dim=16)
    decay, no_decay = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert "embed" in skipped and "blocks.0.norm1.weight" in skipped and "blocks.0.mlp.0.bias" in skipped
    assert "blocks.0.qkv.weight" in decayed and "final.linear.weight" in decayed
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decayed) + len(skipped) == len(list(model.parameters()))


def test_decay_everything_when_asked():
    model = DiT(50, 32, 1, 4, cond_dim=16)
    groups = param_groups(model, 0.1, decay_norm_bias_embed=True)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))


def test_ema_update_swap_and_restore():
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    ema.update(lin)  # 0.9 * 1 + 0.1 * 2
    ema.swap_in(lin)
    assert torch.allclose(lin.weight, torch.full((2, 2), 1.1))
    ema.swap_out(lin)
    assert torch.allclose(lin.weight, torch.full((2, 2), 2.0))
    restored = EMA(lin, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and torch.allclose(restored.shadow[0], ema.shadow[0])
