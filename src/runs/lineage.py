"""Start a run from another run's checkpoint (`training.init_from`) and keep the books.

Modes (`training.init_mode`):
- `weights`: a new run from step 0 whose backbone (and EMA) starts as the parent's; it has its
  own data stream, schedule, step counter and budget (scaling-dllms' phase-2 pretraining on a
  new data mix). `training.init_optimizer=true` also starts Adam's moments from the parent.
- `fork`: continue the parent's trajectory at its step N (optimizer, schedule position, data
  position, EMA, training noise) under this run's schedule and budget, which count from the
  parent's step 0: a WSD cool-down branched from a stable-phase checkpoint (Quokka, Super
  Data Learners). The first job copies the parent's checkpoint into this run's
  `checkpoints/` (with this run's lineage) and resumes from it like from its own. Equal to
  the uninterrupted run wherever the two configs agree on steps [0, N).

Every checkpoint carries `lineage`: the parent (folder, checkpoint, step, mode, config hash)
and the cumulative training tokens and FLOPs of its weights, which result.json reports as
`cumulative_tokens` / `cumulative_flops` next to the run's own `tokens` / `flops`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from src.callbacks.step_checkpoint import point_last_at
from src.resume.checkpoint_file import load_checkpoint_file, save_checkpoint_file
from src.resume.selection import LAST, step_file_name, step_files
from src.runs.semantic import ABSENT, differences, semantic_values
from src.scaling.budget import run_flops_per_token
from src.utils.cli import UserError
from src.utils.runtime import is_launch_rank_zero

log = logging.getLogger(__name__)

INIT_MODES = ("weights", "fork")
# What a fork must share with its parent: the trajectory it continues.
FORK_SHARED = ("algo.", "model.", "data.", "optim.decay_norm_bias_embed", "optim._target_",
               "training.global_batch_size", "seed")


class LineageError(UserError):
    """A parent that cannot start this run (missing, or another model / tokenizer)."""


@dataclass
class Lineage:
    """The books of a run: where its weights came from and what they cost so far.

    Attributes:
        parent: the parent's record (None for a run from scratch).
        start_step: this run's global step when it started (N for a fork, else 0).
        start_tokens / start_flops: cumulative tokens / FLOPs of the weights at that step.
        tokens_per_step / flops_per_token: this run's own rates.
    """

    tokens_per_step: int
    flops_per_token: float
    parent: dict[str, Any] | None = None
    start_step: int = 0
    start_tokens: int = 0
    start_flops: float = 0.0
    ancestors: list[dict[str, Any]] = field(default_factory=list)

    def own_tokens(self, step: int) -> int:
        return (step - self.start_step) * self.tokens_per_step

    def at_step(self, step: int) -> dict[str, Any]:
        """The record a checkpoint at `step` carries."""
        own = self.own_tokens(step)
        return {**asdict(self), "step": step, "cumulative_tokens": self.start_tokens + own,
                "cumulative_flops": self.start_flops + own * self.flops_per_token}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Lineage":
        keys = ("tokens_per_step", "flops_per_token", "parent", "start_step", "start_tokens",
                "start_flops", "ancestors")
        return cls(**{k: record[k] for k in keys if k in record})


class RecordLineage(L.Callback):
    """Writes the lineage into every checkpoint."""

    def __init__(self, lineage: Lineage) -> None:
        self.lineage = lineage

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["lineage"] = self.lineage.at_step(trainer.global_step)


# ---- the parent -------------------------------------------------------------------------------
def parent_checkpoint(init_from: str, init_step: int | None) -> Path:
    """The checkpoint file `training.init_from` (+ `training.init_step`) names."""
    path = Path(str(init_from)).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise LineageError(f"training.init_from={init_from}: no such run folder or checkpoint")
    ckpts = path / "checkpoints"
    target = ckpts / (LAST if init_step is None else step_file_name(int(init_step)))
    if not target.is_file():
        kept = [s for s, _ in step_files(ckpts)]
        raise LineageError(
            f"training.init_from={init_from}: no {target.name} (its kept steps: {kept or 'none'}); "
            f"pick one with training.init_step=<step>, and keep branch points when training "
            f"the parent with training.keep_steps=[N, ...]")
    return target


def load_parent(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """The parent checkpoint's path and contents (checked: a training checkpoint of src.train)."""
    t = cfg.training
    if str(t.init_mode) not in INIT_MODES:
        raise LineageError(f"training.init_mode={t.init_mode}: use one of {', '.join(INIT_MODES)}")
    path = parent_checkpoint(str(t.init_from), t.get("init_step"))
    ckpt = load_checkpoint_file(path)  # no code runs; checksums verified
    if "run_config" not in ckpt or "global_step" not in ckpt:
        raise LineageError(f"{path} has no run_config: it was not written by src.train")
    step = int(ckpt["global_step"])
    if t.get("init_step") is not None and step != int(t.init_step):
        raise LineageError(f"training.init_from={path} is step {step}, not training.init_step="
                           f"{t.init_step}: drop init_step or point at the run folder")
    return path, ckpt


def parent_progress(ckpt: dict[str, Any]) -> tuple[int, float, list[dict[str, Any]]]:
    """(cumulative tokens, cumulative FLOPs, ancestors) of a parent checkpoint's weights."""
    record = ckpt.get("lineage")
    if record is not None:
        ancestors = list(record.get("ancestors", []))
        if record.get("parent") is not None:
            ancestors = [record["parent"], *ancestors]
        return record["cumulative_tokens"], float(record["cumulative_flops"]), ancestors
    # Written before lineages: a run from scratch; its rates follow from its config.
    cfg = OmegaConf.create(ckpt["run_config"])
    vocab = int(ckpt["state_dict"]["backbone.embed"].shape[0])
    tokens = int(ckpt["global_step"]) * int(cfg.training.global_batch_size) * int(cfg.data.seq_len)
    return tokens, tokens * run_flops_per_token(cfg, vocab), []


def parent_record(path: Path, ckpt: dict[str, Any], mode: str) -> dict[str, Any]:
    cfg = ckpt["run_config"]
    tokens, flops, _ = parent_progress(ckpt)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    identity = cfg.get("run_identity") or {}
    return {"run_dir": str(run_dir.resolve()), "checkpoint": str(path.resolve()),
            "step": int(ckpt["global_step"]), "mode": mode, "algo": cfg["algo"]["name"],
            "config_hash": identity.get("config_hash"), "cumulative_tokens": tokens,
            "cumulative_flops": flops}


# ---- compatibility ----------------------------------------------------------------------------
def check_weights_fit(ckpt: dict[str, Any], backbone: torch.nn.Module, path: Path) -> None:
    """The parent's backbone tensors have this run's names and shapes (one line otherwise)."""
    theirs = {k[len("backbone."):]: tuple(v.shape) for k, v in ckpt["state_dict"].items()
              if k.startswith("backbone.")}
    mine = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if theirs == mine:
        return
    pc = ckpt["run_config"]
    m = pc["model"]
    wrong = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
    raise LineageError(
        f"training.init_from={path}: its model {m['name']} (dim {m['dim']}, {m['n_blocks']} "
        f"blocks, {m['n_heads']} heads, vocab {theirs.get('embed', ('?',))[0]}) does not fit "
        f"this run's backbone ({len(wrong)} tensors differ, e.g. {wrong[0]}: "
        f"{theirs.get(wrong[0])} vs {mine.get(wrong[0])}): use model={m['name']} and the "
        f"parent's tokenizer")


def check_tokenizer(ckpt: dict[str, Any], tokenizer: Any, path: Path) -> None:
    """Same token ids: the parent's tokenizer fingerprint equals this run's."""
    stored = (ckpt.get("tokenizer") or {}).get("fingerprint")
    if stored is None:  # written before checkpoints carried it: rebuild the parent's
        from src.builders import build_datamodule

        stored = build_datamodule(OmegaConf.create(ckpt["run_config"])).tokenizer.fingerprint
    if stored != tokenizer.fingerprint:
        data = ckpt["run_config"]["data"]
        raise LineageError(
            f"training.init_from={path}: its tokenizer {stored} (data={data['tag']}, "
            f"data.tokenizer.kind={data['tokenizer']['kind']}) is not this run's "
            f"{tokenizer.fingerprint}: a model only understands its own ids; train on the "
            f"parent's tokenizer (e.g. data.tokenizer.name_or_path=<its tokenizer.json>)")


def check_fork(ckpt: dict[str, Any], cfg: DictConfig, max_steps: int, path: Path) -> None:
    """A fork continues the parent's trajectory: same model, data, batch and algo."""
    diff = differences(semantic_values(ckpt["run_config"]), semantic_values(cfg))
    shared = {k: (a, b) for k, (a, b) in diff.items() if ABSENT not in (a, b)  # newer options
              and (k.startswith(FORK_SHARED) or k in FORK_SHARED)}
    if shared:
        what = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in shared.items())
        raise LineageError(
            f"training.init_mode=fork continues {path}'s trajectory, so these must match it: "
            f"{what}; use training.init_mode=weights to start a new trajectory from its weights")
    if max_steps <= int(ckpt["global_step"]):
        raise LineageError(
            f"training.init_mode=fork: the parent is at step {ckpt['global_step']} and this run "
            f"ends at step {max_steps} (a fork's steps and budget count from the parent's step "
            f"0): raise training.max_steps or training.flops_budget")


# ---- starting -----------------------------------------------------------------------------------
def seed_fork(ckpt: dict[str, Any], lineage: Lineage, cfg: DictConfig, ckpt_dir: Path,
              wait_s: float = 600.0) -> Path:
    """Copy the parent's checkpoint into this run's checkpoints as its starting point
    (launch rank 0 writes it; the other ranks of the job wait for it)."""
    step = int(ckpt["global_step"])
    target = ckpt_dir / step_file_name(step)
    if not is_launch_rank_zero():
        deadline = time.time() + wait_s
        while not target.is_file():
            if time.time() > deadline:
                raise LineageError(f"rank 0 did not write the fork's first checkpoint {target}")
            time.sleep(0.5)
        return target
    seeded = dict(ckpt)
    seeded["lineage"] = lineage.at_step(step)
    seeded["run_config"] = OmegaConf.to_container(cfg, resolve=True)
    callbacks = dict(seeded.get("callbacks", {}))
    if "Throughput" in callbacks:  # this run's own time starts at zero
        callbacks["Throughput"] = {**callbacks["Throughput"], "train_time_s": 0.0}
    seeded["callbacks"] = callbacks
    save_checkpoint_file(seeded, target)
    point_last_at(target)
    log.info("fork: this run starts from a copy of the parent's step %d: %s", step, target)
    return target


def load_weights(algo: Any, ckpt: dict[str, Any]) -> None:
    """Backbone (and EMA, when both runs keep one) from the parent."""
    weights = {k[len("backbone."):]: v for k, v in ckpt["state_dict"].items()
               if k.startswith("backbone.")}
    algo.backbone.load_state_dict(weights)
    if algo.ema is None:
        return
    shadow = (ckpt.get("algo_state") or {}).get("ema")
    if shadow is not None and len(shadow["shadow"]) == len(algo.ema.shadow):
        algo.ema.shadow = [s.clone().float() for s in shadow["shadow"]]
    else:
        algo.ema.shadow = [p.detach().clone().float() for p in algo.backbone.parameters()]


class InitOptimizer(L.Callback):
    """Adam's state (moments, step counts) from the parent at the first step of a fresh
    `weights` run; this run's own hyperparameters (lr, betas, decay) are kept."""

    def __init__(self, optimizer_state: dict[str, Any]) -> None:
        self.state: dict[str, Any] | None = optimizer_state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is None or trainer.global_step != 0:
            self.state = None
            return
        opt = trainer.optimizers[0]
        saved = self.state
        if len(saved["param_groups"]) != len(opt.param_groups) or any(
                len(a["params"]) != len(b["params"])
                for a, b in zip(saved["param_groups"], opt.param_groups)):
            raise LineageError("training.init_optimizer=true: the parent's optimizer has other "
                               "parameter groups (another parameterization or decay split); "
                               "set training.init_optimizer=false")
        groups = [{**{k: v for k, v in mine.items() if k != "params"}, "params": theirs["params"]}
                  for mine, theirs in zip(opt.param_groups, saved["param_groups"])]
        opt.load_state_dict({"state": saved["state"], "param_groups": groups})
        self.state = None


@dataclass
class Start:
    """How this run starts: its lineage, and (first job only) what to load."""

    lineage: Lineage
    callbacks: list[L.Callback]
    resume_from: Path | None = None


def prepare_start(cfg: DictConfig, algo: Any, tokenizer: Any, own_checkpoint: Path | None,
                  ckpt_dir: Path, tokens_per_step: int, fpt: float, max_steps: int) -> Start:
    """Resolve `training.init_from` for this job.

    A run that already has a checkpoint of its own reads its lineage from it (the parent may
    be gone by then); otherwise the parent is loaded, checked and applied: weights loaded
    into `algo` (mode weights) or copied in as this run's first checkpoint (mode fork).
    """
    base = Lineage(tokens_per_step, fpt)
    if own_checkpoint is not None:
        record = load_checkpoint_file(own_checkpoint, mmap=True, verify=False).get("lineage")
        lineage = Lineage.from_record(record) if record else base
        lineage.tokens_per_step, lineage.flops_per_token = tokens_per_step, fpt
        return Start(lineage, [RecordLineage(lineage)], own_checkpoint)
    if cfg.training.get("init_from") in (None, ""):
        return Start(base, [RecordLineage(base)])
    mode = str(cfg.training.init_mode)
    path, ckpt = load_parent(cfg)
    check_weights_fit(ckpt, algo.backbone, path)
    check_tokenizer(ckpt, tokenizer, path)
    tokens, flops, ancestors = parent_progress(ckpt)
    record = parent_record(path, ckpt, mode)
    start_step = int(ckpt["global_step"]) if mode == "fork" else 0
    lineage = Lineage(tokens_per_step, fpt, record, start_step, tokens, flops, ancestors)
    callbacks: list[L.Callback] = [RecordLineage(lineage)]
    log.info("training.init_from: %s (step %d, mode %s, %.4g cumulative FLOPs)",
             path, record["step"], mode, flops)
    if mode == "fork":
        check_fork(ckpt, cfg, max_steps, path)
        return Start(lineage, callbacks, seed_fork(ckpt, lineage, cfg, ckpt_dir))
    load_weights(algo, ckpt)
    if cfg.training.get("init_optimizer"):
        callbacks.append(InitOptimizer(ckpt["optimizer_states"][0]))
    return Start(lineage, callbacks)
