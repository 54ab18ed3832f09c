"""Checks of a command's settings before anything is built, trained or written: bad input
stops with one line that names the fix instead of a traceback after minutes of training, or a
run silently "finished" with nothing done (max_steps=0) or nothing learned (lr=0)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.models.attention import flash_available
from src.utils.precision import device_type


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check_device(name: str, key: str) -> None:
    """A CUDA device asked for where there is none."""
    if str(name) in ("cuda", "gpu") and not torch.cuda.is_available():
        raise ValueError(f"{key}={name} but no CUDA device is visible here: use {key}=cpu (or "
                         f"auto), or run on a GPU node")


def check_required(cfg: DictConfig) -> None:
    """Values the configs leave for the command line (`???`), e.g. data.path, ckpt."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(f"{missing[0]} is required: pass {missing[0]}=... on the command line"
                         + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""))


def _typed_like(value: Any, default: Any) -> bool:
    """Whether a value may stand where configs/ has `default` (numbers stay numbers)."""
    if value is None or default is None or isinstance(value, type(default)):
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return not isinstance(value, bool) and _number(value) is not None
    return True


def check_value_types(cfg: DictConfig) -> None:
    """A value whose configs/ default is a number (or a flag) must be one: `algo.mix_shift=abc`
    is named here instead of failing deep inside a constructor."""
    from src.runs.identity import baseline_config
    from src.runs.semantic import flatten

    defaults = flatten(OmegaConf.to_container(baseline_config(cfg), resolve=True))
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items():
        if key in defaults and not _typed_like(value, defaults[key]):
            kind = "true or false" if isinstance(defaults[key], bool) else "a number"
            raise ValueError(f"{key}={value} must be {kind} (its default is {defaults[key]})")


def check_train_config(cfg: DictConfig) -> None:
    """Raise one ValueError naming the fix for settings a training run cannot use."""
    check_required(cfg)
    check_value_types(cfg)
    seed = _number(cfg.seed)
    _require(seed is not None and seed == int(seed) and seed >= 0,
             f"seed={cfg.seed} must be a whole number >= 0")
    t = cfg.training
    if t.flops_budget is None:
        steps = _number(t.max_steps)
        _require(steps is not None and steps >= 1 and steps == int(steps),
                 f"training.max_steps={t.max_steps} must be a whole number >= 1 (or set "
                 f"training.flops_budget)")
    else:
        budget = _number(t.flops_budget)
        _require(budget is not None and math.isfinite(budget) and budget > 0,
                 f"training.flops_budget={t.flops_budget} must be a positive number, e.g. 1e17")
    lr = _number(cfg.optim.lr)
    _require(lr is not None and math.isfinite(lr) and lr > 0,
             f"optim.lr={cfg.optim.lr} must be > 0 (lr 0 trains nothing): e.g. optim.lr=3e-4")
    wd = _number(cfg.optim.weight_decay)
    _require(wd is not None and wd >= 0, f"optim.weight_decay={cfg.optim.weight_decay} must be >= 0")
    batch = _number(cfg.data.batch_size)
    _require(batch is not None and batch >= 1 and batch == int(batch),
             f"data.batch_size={cfg.data.batch_size} must be a whole number >= 1")
    for key, low in (("ckpt_every_n_steps", 0), ("val_every_n_steps", 1), ("keep_last_k", 0),
                     ("global_batch_size", 1), ("val_draws", 1), ("final_val_draws", 1)):
        if key not in t:  # a run folder older than the key
            continue
        value = _number(t[key])
        _require(value is not None and value >= low and value == int(value),
                 f"training.{key}={t[key]} must be a whole number >= {low}")
    ema = _number(t.ema)
    _require(ema is not None and 0 <= ema < 1, f"training.ema={t.ema} must be in [0, 1) (0 = off)")
    _require(not (cfg.algo.get("time_conditioning") and cfg.model.get("adaln") is False),
             f"algo.time_conditioning=true but model.adaln=false: the plain GPT backbone has no "
             f"time input, so {cfg.algo.name} would silently train without the noise level; set "
             f"algo.time_conditioning=false or model.adaln=true")
    check_device(cfg.trainer.accelerator, "trainer.accelerator")
    if str(cfg.model.attn_backend) == "flash":
        _require(device_type(cfg.trainer.accelerator) == "cuda" and flash_available(),
                 "model.attn_backend=flash needs a CUDA device and the flash-attn package "
                 "(pip install flash-attn): use model.attn_backend=sdpa or auto")


def check_inputs_exist(cfg: DictConfig) -> None:
    """Files the run reads before it trains, checked before its folder is made (a config
    that composes may still name a teacher run that has not been trained yet)."""
    teacher = cfg.algo.get("teacher_ckpt")
    if teacher:
        path = Path(str(teacher))
        found = path.is_file() or (path / "checkpoints" / "last.ckpt").is_file()
        _require(found, f"algo.teacher_ckpt={teacher}: no checkpoint there; train the teacher "
                        f"first (python -m src.train experiment=duo_cpu) or pass "
                        f"algo.teacher_ckpt=<DUO run dir or .ckpt>")
