"""The FSDP trainer config builds the FSDP2 strategy; incompatible options fail early.

(Training with it runs in tests/resume/test_fsdp.py: 2 CPU processes, slow.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers
from src.utils.strategies import (
    ShardedDataParallel,
    check_strategy_options,
    is_sharded,
    named_optimizer_state,
    positional_optimizer_state,
)

register_resolvers()


def _trainer_cfg(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides)).trainer


def test_fsdp_config_builds_fsdp2_with_one_file_checkpoints():
    cfg = _trainer_cfg("trainer=fsdp", "trainer.strategy.activation_checkpointing=true")
    strategy = instantiate(cfg.strategy)
    assert isinstance(strategy, ShardedDataParallel)
    assert strategy.activation_checkpointing and strategy.reshard_after_forward
    assert not strategy._save_distributed_checkpoint
    assert is_sharded(cfg.strategy) and not is_sharded(_trainer_cfg("trainer=gpu").strategy)
    assert is_sharded("fsdp")


def test_optimizer_state_layouts_round_trip_in_parameter_group_order():
    """The one-file checkpoint numbers Adam's state in the order of the parameter groups (as
    torch and DDP do), not in the module's parameter order (Lightning's FSDP numbering)."""
    model = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    decay = [model[0].weight, model[2].weight]  # groups reorder the parameters
    rest = [model[0].bias, model[1].weight, model[1].bias, model[2].bias]
    opt = torch.optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}])
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {"state": {names[id(p)]: s for p, s in opt.state.items()},
               "param_groups": [{**{k: v for k, v in g.items() if k != "params"},
                                 "params": [names[id(p)] for p in g["params"]]}
                                for g in opt.param_groups]}
    positional = positional_optimizer_state(by_name)
    torch_layout = opt.state_dict()
    assert positional["param_groups"] == torch_layout["param_groups"]
    for i, state in torch_layout["state"].items():
        assert torch.equal(positional["state"][i]["exp_avg"], state["exp_avg"])
    back = named_optimizer_state(positional, opt, model)
    assert back["param_groups"] == by_name["param_groups"]
    assert all(torch.equal(back["state"][n]["exp_avg_sq"], by_name["state"][n]["exp_avg_sq"])
               for n in by_name["state"])


def test_fsdp_with_ema_is_one_clear_error():
    with pytest.raises(ValueError, match="training.ema > 0 does not work with trainer=fsdp"):
        check_strategy_options(_trainer_cfg("trainer=fsdp").strategy, ema=0.999)
    check_strategy_options(_trainer_cfg("trainer=gpu").strategy, ema=0.999)  # DDP: fine
