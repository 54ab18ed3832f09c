"""Lightning strategies that need Python objects a YAML file cannot hold (configs/trainer/)."""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from lightning.pytorch.strategies import FSDPStrategy


def is_sharded(strategy: Any) -> bool:
    """Whether a `trainer.strategy` config value selects FSDP."""
    if isinstance(strategy, str):
        return strategy.startswith("fsdp")
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else ""
    return target.rsplit(".", 1)[-1] in ("fsdp", "FSDPStrategy")


def check_strategy_options(strategy: Any, ema: float) -> None:
    """Options that cannot work together, rejected before any data or model is built."""
    if is_sharded(strategy) and ema > 0:
        raise ValueError("training.ema > 0 does not work with trainer=fsdp (each rank would keep "
                         "the EMA of its own shard only): set training.ema=0 or use trainer=gpu")


def fsdp(wrap: tuple[str, ...] | list[str] = ("src.models.layers.DiTBlock",),
         sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False,
         state_dict_type: str = "full", **kwargs: Any) -> FSDPStrategy:
    """FSDP that shards every transformer block (one FSDP unit each).

    Args:
        wrap: classes (dotted paths) that become FSDP units; the rest (embedding, head,
            time embedding) stays in the root unit.
        sharding_strategy: FULL_SHARD (ZeRO-3), SHARD_GRAD_OP (ZeRO-2), HYBRID_SHARD, ...
        activation_checkpointing: recompute each block's activations in the backward pass.
        state_dict_type: "full" writes one consolidated checkpoint (what src.evaluate /
            src.sample and a resume on any number of GPUs read); "sharded" one file per rank.
    """
    classes = {get_class(path) for path in wrap}
    return FSDPStrategy(
        auto_wrap_policy=classes,
        activation_checkpointing_policy=classes if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        **kwargs,
    )
