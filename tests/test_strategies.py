"""The FSDP trainer config builds a block-wise FSDP strategy; incompatible options fail early.

(FSDP itself needs GPUs: Lightning refuses it on CPU, so its training path is not run here.)"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy

from src.models.layers import DiTBlock
from src.utils.cli import CONFIG_DIR
from src.utils.resolvers import register_resolvers
from src.utils.strategies import check_strategy_options, is_sharded

register_resolvers()


def _trainer_cfg(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides)).trainer


def test_fsdp_config_wraps_every_block_and_saves_full_checkpoints():
    cfg = _trainer_cfg("trainer=fsdp", "trainer.strategy.activation_checkpointing=true")
    strategy = instantiate(cfg.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy._state_dict_type == "full"
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {DiTBlock}
    assert is_sharded(cfg.strategy) and not is_sharded(_trainer_cfg("trainer=gpu").strategy)


def test_fsdp_with_ema_is_one_clear_error():
    with pytest.raises(ValueError, match="training.ema > 0 does not work with trainer=fsdp"):
        check_strategy_options(_trainer_cfg("trainer=fsdp").strategy, ema=0.999)
    check_strategy_options(_trainer_cfg("trainer=gpu").strategy, ema=0.999)  # DDP: fine
