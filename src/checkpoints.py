"""Rebuild a trained algo from a checkpoint alone (its stored run config + weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.algos.base import Algo
from src.builders import build_algo, build_backbone, build_datamodule
from src.resume.checkpoint_file import load_checkpoint_file
from src.utils.atomic import atomic_write_text


class LoadedRun:
    """A trained run rebuilt from a checkpoint. A plain class, not a dataclass: it is passed
    through Hydra's instantiate (a distillation's `teacher_run`), which would turn a dataclass
    into a config and try to instantiate the run's own `_target_`s."""

    def __init__(self, cfg: DictConfig, algo: Algo, datamodule: Any, checkpoint_path: Path) -> None:
        self.cfg, self.algo, self.datamodule = cfg, algo, datamodule
        self.checkpoint_path = checkpoint_path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (then its checkpoints/last.ckpt)."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.ckpt"
    if not p.exists():  # a file, or a distributed checkpoint's folder
        raise FileNotFoundError(
            f"no checkpoint at {p}: pass ckpt=<run_dir> or ckpt=<run_dir>/checkpoints/<file>.ckpt"
        )
    return p


def use_stored_tokenizer(cfg: DictConfig, stored: dict[str, Any] | None) -> None:
    """Point `cfg.data.tokenizer` at the BPE the checkpoint carries (written once to the cache
    under its own name, which keeps its fingerprint): no corpus needed, any data evaluates."""
    if not stored or "json" not in stored:
        return
    path = Path(str(cfg.data.cache_dir)) / "tokenizers" / f"{stored['fingerprint']}.json"
    if not path.is_file():
        atomic_write_text(path, stored["json"])
    cfg.data.tokenizer = {"kind": "bpe", "name_or_path": str(path),
                          "vocab_size": int(stored["vocab_size"])}


def load_run(
    path: str | Path, *, data: DictConfig | None = None, device: str | torch.device = "cpu",
    use_ema: bool = True,
) -> LoadedRun:
    """Load the algo (EMA weights swapped in when it has them) and a datamodule.

    Args:
        path: checkpoint file or run directory.
        data: optional data config to evaluate on instead of the training data; the
            checkpoint's tokenizer is kept (a model only understands its own ids).
    """
    ckpt_path = resolve_checkpoint(path)
    ckpt = load_checkpoint_file(ckpt_path)  # no code runs; checksums verified
    if "run_config" not in ckpt:
        raise ValueError(f"{ckpt_path} has no run_config: it was not written by src.train")
    cfg = OmegaConf.create(ckpt["run_config"])
    use_stored_tokenizer(cfg, ckpt.get("tokenizer"))
    if data is not None:
        new = OmegaConf.merge(data, {"tokenizer": cfg.data.tokenizer, "cache_dir": cfg.data.cache_dir})
        cfg.data = new
    dm = build_datamodule(cfg)
    tok = dm.tokenizer
    algo = build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size))
    algo.load_state_dict(ckpt["state_dict"])
    algo.on_load_checkpoint(ckpt)
    if use_ema and algo.ema is not None:
        algo.ema.swap_in(algo.backbone)
    return LoadedRun(cfg, algo.to(device).eval(), dm, ckpt_path)
