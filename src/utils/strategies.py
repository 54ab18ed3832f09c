"""Lightning strategies that need Python objects a YAML file cannot hold (configs/trainer/).

Sharded training is Lightning's ModelParallelStrategy with PyTorch's FSDP2 (`fully_shard`),
not its FSDPStrategy (FSDP1): Lightning refuses FSDPStrategy without CUDA ("The strategy
`fsdp` requires a GPU accelerator"), while FSDP2 over a gloo device mesh runs on CPU (torch
2.13), so the same sharded path is tested here and used on GPUs. Every transformer block is
one FSDP unit; the embedding, head and time embedding stay in the root unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

#: The backbone's blocks: one FSDP unit each (all-gathered just before they run).
BLOCK_CLASS = "src.models.layers.DiTBlock"


def is_sharded(strategy: Any) -> bool:
    """Whether a `trainer.strategy` config value selects FSDP."""
    if isinstance(strategy, str):
        return strategy.startswith("fsdp")
    target = strategy.get("_target_", "") if hasattr(strategy, "get") else ""
    return target.rsplit(".", 1)[-1] in ("fsdp", "FSDPStrategy", "ShardedDataParallel")


def is_sharded_strategy(strategy: Any) -> bool:
    """Whether a built Lightning strategy shards the model (its forward needs every rank)."""
    return isinstance(strategy, (FSDPStrategy, ModelParallelStrategy))


def check_strategy_options(strategy: Any, ema: float) -> None:
    """Options that cannot work together, rejected before any data or model is built."""
    if is_sharded(strategy) and ema > 0:
        raise ValueError("training.ema > 0 does not work with trainer=fsdp (each rank would keep "
                         "the EMA of its own shard only): set training.ema=0 or use trainer=gpu")


class ShardedDataParallel(ModelParallelStrategy):
    """FSDP2 over all processes (a 1-D data-parallel mesh; no tensor parallelism).

    Args:
        reshard_after_forward: free each block's gathered parameters after its forward and
            gather them again for the backward (ZeRO-3, FSDP1's FULL_SHARD); False keeps them
            until the backward (ZeRO-2, SHARD_GRAD_OP): more memory, less communication.
        activation_checkpointing: recompute each block's activations in the backward pass.
        distributed_checkpoint: True writes one file per rank (torch.distributed.checkpoint);
            False (default) gathers the full state on rank 0 into one file, the format that
            src.evaluate / src.sample / export read and that resumes on any process count.
    """

    def __init__(self, reshard_after_forward: bool = True, activation_checkpointing: bool = False,
                 distributed_checkpoint: bool = False, **kwargs: Any) -> None:
        super().__init__(save_distributed_checkpoint=distributed_checkpoint, **kwargs)
        self.reshard_after_forward = reshard_after_forward
        self.activation_checkpointing = activation_checkpointing

    def setup_environment(self) -> None:
        # ModelParallelStrategy's "auto" sizes put the devices of a node on tensor parallelism;
        # here every process holds one shard of one data-parallel group.
        self._data_parallel_size = len(self.parallel_devices or [None]) * self.num_nodes
        self._tensor_parallel_size = 1
        super().setup_environment()

    # ---- one-file checkpoints in torch's own optimizer layout ------------------------------
    # Lightning's ModelParallelStrategy numbers a gathered optimizer state by the module's
    # parameter order; torch (and so DDP and one process) numbers it by the order of the
    # optimizer's parameter groups. The two differ whenever parameter groups reorder the
    # parameters (ours split decayed from non-decayed ones), and then a checkpoint moved
    # between FSDP and DDP would pair Adam moments with the wrong weights. Here the file uses
    # torch's layout, so FSDP, DDP and one process read each other's checkpoints.

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        if self._save_distributed_checkpoint:
            return super().optimizer_state(optimizer)
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer
        by_name = get_optimizer_state_dict(self.model, optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        return positional_optimizer_state(by_name) if self.global_rank == 0 else {}

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        path = Path(self.broadcast(checkpoint_path)).resolve()  # last.ckpt may be a link
        if path.is_dir():  # a distributed (per-rank) checkpoint: resharded to this world
            from src.resume.distributed_checkpoint import check_metadata

            check_metadata(path)  # torch unpickles .metadata as it finds it: check first
            return super().load_checkpoint(path, weights_only=True)
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        # Every rank reads the one file (our CheckpointIO: tensors only, checksums verified)
        # and keeps its own shard of each tensor.
        checkpoint = self.checkpoint_io.load_checkpoint(path)
        strict = self.lightning_module.strict_loading
        options = StateDictOptions(full_state_dict=True, strict=False)  # aliases: checked below
        names = first_names(self.model)
        saved = checkpoint.pop("state_dict")
        keys = set_model_state_dict(self.model, {k: v for k, v in saved.items() if k in names},
                                    options=options)
        missing = sorted(set(keys.missing_keys) & names)
        if strict and missing:
            raise KeyError(f"{path} lacks {len(missing)} weight(s) of this model, first: "
                           f"{missing[0]}")
        for optimizer, state in zip(self.optimizers, checkpoint.get("optimizer_states", [])):
            set_optimizer_state_dict(self.model, optimizer, options=options,
                                     optim_state_dict=named_optimizer_state(state, optimizer,
                                                                            self.model))
        return checkpoint

    def shard(self, root: nn.Module, owner: nn.Module) -> None:
        """Make each block of `root` an FSDP unit, then `root` itself.

        Args:
            root: the module holding every trained parameter (the backbone).
            owner: the LightningModule; a trainable parameter outside `root` would escape
                FSDP's gradient reduction, so it is an error naming the parameter.
        """
        from hydra.utils import get_class
        from torch.distributed.fsdp import fully_shard

        inside = {id(p) for p in root.parameters()}
        outside = [n for n, p in owner.named_parameters() if p.requires_grad and id(p) not in inside]
        if outside:
            raise ValueError(f"trainer=fsdp shards the backbone only, but {outside[:3]} are "
                             "trained outside it: use trainer=gpu (DDP) for this algo")
        mesh = self.device_mesh["data_parallel"]
        block = get_class(BLOCK_CLASS)
        for name, module in list(root.named_modules()):
            if isinstance(module, block):
                if self.activation_checkpointing:
                    _checkpoint_activations(module)
                fully_shard(module, mesh=mesh, reshard_after_forward=self.reshard_after_forward)
        fully_shard(root, mesh=mesh, reshard_after_forward=self.reshard_after_forward)


def first_names(model: nn.Module) -> set[str]:
    """Each parameter's and buffer's first name. A shared module has a second one (the algo
    registers its backbone as `backbone` and `_net`): torch.distributed.checkpoint shards a
    tensor under its first name only, and would copy a plain tensor onto a shard under the
    second, so a full state dict is loaded by first names."""
    return {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}


def positional_optimizer_state(by_name: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter names (torch.distributed.checkpoint's layout)
    in torch's `Optimizer.state_dict()` layout: parameters numbered 0, 1, ... in the order
    of the parameter groups."""
    index: dict[str, int] = {}
    groups = []
    for group in by_name["param_groups"]:
        ids = [index.setdefault(name, len(index)) for name in group["params"]]
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
    return {"state": {index[name]: value for name, value in by_name["state"].items()},
            "param_groups": groups}


def named_optimizer_state(positional: dict[str, Any], optimizer: torch.optim.Optimizer,
                          model: nn.Module) -> dict[str, Any]:
    """The inverse of :func:`positional_optimizer_state` for `optimizer` over `model`'s
    parameters (the numbering is the order of this optimizer's parameter groups)."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    groups, start = [], 0
    for saved, live in zip(positional["param_groups"], optimizer.param_groups):
        groups.append({**{k: v for k, v in saved.items() if k != "params"},
                       "params": order[start:start + len(live["params"])]})
        start += len(live["params"])
    return {"state": {order[int(i)]: v for i, v in positional["state"].items()},
            "param_groups": groups}


def _checkpoint_activations(block: nn.Module) -> None:
    """Recompute `block`'s forward in the backward pass (its inputs are kept, not its
    intermediate activations), by wrapping its forward in place (the module and its
    parameter names stay as they are, so checkpoints do not change)."""
    from torch.utils.checkpoint import checkpoint

    forward = block.forward

    def recomputed(*args: Any, **kwargs: Any) -> Any:
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = recomputed


def fsdp(reshard_after_forward: bool = True, activation_checkpointing: bool = False,
         distributed_checkpoint: bool = False, **kwargs: Any) -> ShardedDataParallel:
    """`trainer=fsdp` / `trainer.strategy=fsdp`: FSDP2 with one unit per block (see
    ShardedDataParallel for the arguments)."""
    return ShardedDataParallel(reshard_after_forward=reshard_after_forward,
                               activation_checkpointing=activation_checkpointing,
                               distributed_checkpoint=distributed_checkpoint, **kwargs)
