"""Turn a composed config into objects: datamodule, tokenizer, backbone, algo, trainer.

Shared by the train / evaluate / sample entry points, so a checkpoint's stored config
rebuilds exactly the model that wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ProgressBar
import torch.nn as nn
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.algos.base import Algo
from src.resume.atomic_io import AtomicCheckpointIO
from src.runs.plan import RunPlan
from src.utils.strategies import fsdp

def _instantiate(cfg: DictConfig, label: str, **kwargs: Any) -> Any:
    """Instantiate a config group whose `label` key (model.name, data.tag) only names it."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop(label, None)
    return instantiate(plain, **kwargs)


def build_datamodule(cfg: DictConfig) -> Any:
    """The LightningDataModule of `cfg.data` (tokenizer built eagerly: the model needs V)."""
    dm = _instantiate(cfg.data, "tag")
    dm.build_tokenizer()
    return dm


def build_backbone(cfg: DictConfig, vocab_size: int) -> nn.Module:
    seq_len, max_len = int(cfg.data.seq_len), int(cfg.model.max_seq_len)
    if seq_len > max_len:
        raise ValueError(
            f"data.seq_len={seq_len} is longer than model {cfg.model.name}'s max_seq_len={max_len}: "
            f"lower data.seq_len or raise model.max_seq_len"
        )
    return _instantiate(cfg.model, "name", vocab_size=vocab_size)


def build_algo(cfg: DictConfig, tokenizer: Any, backbone: nn.Module, **extra: Any) -> Algo:
    """The algo of `cfg.algo` around `backbone`; `extra` are constructor arguments a config
    cannot hold (e.g. the loaded `teacher_run` of a distillation)."""
    algo_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    try:
        return _build_algo(algo_cfg, cfg, tokenizer, backbone, **extra)
    except InstantiationException as e:
        # Hydra wraps constructor errors in several lines; surface our one-line ValueError.
        if isinstance(e.__cause__, (ValueError, FileNotFoundError)):
            raise e.__cause__ from None
        raise


def _build_algo(algo_cfg: dict, cfg: DictConfig, tokenizer: Any, backbone: nn.Module,
                **extra: Any) -> Algo:
    return instantiate(
        algo_cfg,
        backbone=backbone,
        **extra,
        vocab_size=tokenizer.vocab_size,
        mask_id=tokenizer.mask_id,
        eos_id=tokenizer.eos_id,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        lr_scheduler=OmegaConf.to_container(cfg.lr_scheduler, resolve=True),
        ema=float(cfg.training.ema),
        seed=int(cfg.seed),
        compile=bool(cfg.training.compile),
    )


def build_loggers(cfg: DictConfig) -> list[Any]:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # trainer.enable_progress_bar=false wins
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_plugins() -> list[Any]:
    """Atomic checkpoint writes; under Slurm, Lightning's auto-requeue turned off (our
    Preemption callback owns the stop signals and the requeue decision)."""
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def build_trainer(
    cfg: DictConfig, run_dir: Path, extra_callbacks: list[L.Callback], plan: RunPlan
) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`, running `plan` (steps, accumulation, cadence)."""
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key, value in trainer_kwargs.items():  # e.g. strategy: {_target_: ...strategies.fsdp}
        if isinstance(value, dict) and "_target_" in value:
            trainer_kwargs[key] = instantiate(value)
    if trainer_kwargs.get("strategy") == "fsdp":  # Lightning's own "fsdp" is FSDP1: CUDA only
        trainer_kwargs["strategy"] = fsdp()
    trainer = L.Trainer(
        **trainer_kwargs,
        plugins=build_plugins(),
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg) or False,
        callbacks=build_callbacks(cfg) + extra_callbacks,
        max_steps=plan.max_steps,
        accumulate_grad_batches=plan.accumulation,
        val_check_interval=plan.val_check_interval,
        check_val_every_n_epoch=None,
        use_distributed_sampler=False,  # our samplers shard by rank themselves (exact, no padding)
    )
    if trainer.world_size != plan.world_size:
        raise ValueError(f"Lightning starts {trainer.world_size} processes where the run plan "
                         f"counted {plan.world_size} (trainer.devices={cfg.trainer.devices}, "
                         f"num_nodes={cfg.trainer.num_nodes}): set trainer.devices explicitly")
    return trainer
