"""The one LightningModule base every algorithm extends: it owns the backbone, the
optimizer and schedule, EMA, the counter-based randomness and the metrics; a subclass
implements only `loss`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
import torch
import torch.nn as nn

from src.algos.randomness import StepRandomness, derive_seed, make_generator
from src.models.flops import BackbonePass
from src.optim.ema import EMA
from src.optim.param_groups import build_optimizer, param_groups
from src.optim.schedules import lr_lambda
from src.resume.split import convert_batch_progress, saved_accumulation
from src.utils.strategies import ShardedDataParallel


@dataclass
class LossOutput:
    """What `Algo.loss` returns.

    Attributes:
        loss: scalar to back-propagate (the training objective, e.g. low-variance form).
        nll_sum: float64 sum of the per-token NLL / NELBO over the batch (true bound).
        n_tokens: float64 number of tokens `nll_sum` covers.
    """

    loss: torch.Tensor
    nll_sum: torch.Tensor
    n_tokens: torch.Tensor


# Devices where torch's fused AdamW kernels exist (torch >= 2.4 has a CPU one).
FUSED_DEVICES = ("cuda", "cpu")


class Algo(L.LightningModule):
    """Base class of AR, MDLM, ... Subclasses implement `loss(batch, rng)`."""

    #: The validation loss is a Monte-Carlo estimate (a diffusion NELBO); AR's NLL is exact.
    stochastic_nll = True


    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        vocab_size: int,
        mask_id: int,
        eos_id: int,
        optim: dict[str, Any],
        lr_scheduler: dict[str, Any],
        ema: float = 0.0,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.name, self.vocab_size, self.mask_id, self.eos_id = name, vocab_size, mask_id, eos_id
        self.optim_cfg, self.sched_cfg = dict(optim), dict(lr_scheduler)
        self.seed = seed
        self.ema = EMA(backbone, ema) if ema > 0 else None
        self.micro_step = 0  # training micro-batches consumed; drives all training noise
        #: optimizer steps taken; keys the validation noise (the same for any number of
        #: processes x accumulation steps, unlike micro_step)
        self.optimizer_steps = 0
        self.eval_pass = 0  # which Monte-Carlo pass of the validation noise (evaluate repeats=N)
        # torch.compile on the inner module only (compiling the LightningModule breaks self.log).
        self._net = torch.compile(backbone) if compile else backbone
        self._val_nll = self._val_tokens = self._val_bytes = None
        # (NLL sum, tokens, UTF-8 bytes) of the last validation, all ranks; the NLL sum is
        # the mean over its noise draws, `val_nll_se` the standard error of its nll
        self.val_totals = (0.0, 0.0, 0.0)
        self.val_nll_se = 0.0
        self.val_draw_sums: list[float] = []
        #: noise draws per validation batch (training.val_draws / evaluate draws=); set by
        #: train / evaluate. Only diffusion algos use more than one.
        self.val_draws = 1
        self.val_step: int | None = None  # optimizer step of the last validation, this process
        #: (V,) UTF-8 bytes per token id (src/data/token_bytes.py); set by train / evaluate
        #: to report bits per byte. Not saved: it belongs to the tokenizer.
        self.token_bytes: torch.Tensor | None = None

    @classmethod
    def training_passes(cls, algo_cfg: Mapping[str, Any], seq_len: int) -> list[BackbonePass]:
        """The backbone forwards one training sequence costs (src/models/flops.py): by
        default one pass over its seq_len tokens, with gradients. Subclasses that run
        something else say so here, from their config alone (budgets are computed before
        any model exists)."""
        return [BackbonePass(seq_len)]

    def net(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The (possibly compiled) backbone's forward."""
        return self._net(*args, **kwargs)

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        raise NotImplementedError

    # ---- randomness ----------------------------------------------------------------
    def _train_position(self, batch_size: int) -> tuple[int, int, int]:
        """(optimizer step, offset of this micro-batch in the global batch, global batch size)."""
        accum = self.trainer.accumulate_grad_batches
        world, rank = self.trainer.world_size, self.global_rank
        step, micro = divmod(self.micro_step, accum)
        return step, (micro * world + rank) * batch_size, accum * world * batch_size

    def _train_randomness(self, batch_size: int) -> StepRandomness:
        step, offset, n_global = self._train_position(batch_size)
        # One u per optimizer step, identical on every rank: t is stratified over the global batch.
        u = derive_seed(self.seed, "u", step) / 2.0**63
        # Keyed by the position in the global batch, not by (micro-batch, rank): any split of the
        # global batch over processes x accumulation (same micro-batch size) draws the same noise.
        g = make_generator(self.device, self.seed, "train", step, offset)
        return StepRandomness(g, u, offset, n_global)

    # ---- training ------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch_size = batch["input_ids"].shape[0]
        step, offset, _ = self._train_position(batch_size)
        # Dropout draws from the global RNG: seed it from the position so resume is exact.
        torch.manual_seed(derive_seed(self.seed, "dropout", step, offset))
        moe_losses = getattr(self.backbone, "moe_losses", None)
        if moe_losses is not None:
            moe_losses()  # drop stats of any grad-enabled forward made outside this step
        out = self.loss(batch, self._train_randomness(batch_size))
        moe = moe_losses() if moe_losses is not None else None
        if moe is not None:  # mixture of experts: load balance + router z-loss (moe.py)
            out.loss = out.loss + moe["loss"]
            for key in ("aux", "z", "dropped"):
                self.log(f"train/moe_{key}", moe[key])
        self.log("train/loss", out.loss.detach(), prog_bar=True)
        self.log("train/nll", (out.nll_sum / out.n_tokens).float())
        # Counted here, not in on_train_batch_end: Lightning runs the callbacks' batch-end hooks
        # (checkpointing) before the module's, and a checkpoint must include this micro-batch.
        self.micro_step += 1
        return out.loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.optimizer_steps += 1
        # Here rather than in on_train_batch_end, for the same reason: a checkpoint written at
        # this step's end must hold the EMA that includes this step.
        if self.ema is not None:
            self.ema.update(self.backbone)

    # ---- validation: token-weighted float64 sums over all batches and ranks ----------
    def validation_draws(self) -> int:
        return max(1, int(self.val_draws)) if self.stochastic_nll else 1

    def on_validation_epoch_start(self) -> None:
        self._val_nll = torch.zeros(self.validation_draws(), dtype=torch.float64,
                                    device=self.device)
        self._val_tokens = torch.zeros((), dtype=torch.float64, device=self.device)
        self._val_bytes = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.ema is not None:
            self.ema.swap_in(self.backbone)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # Keyed by the global batch number (not rank + local index): any number of ranks
        # draws the same noise. Keyed by the training position and evaluate.py's pass: every
        # validation draws fresh noise (a fixed draw reused at every step biases the whole
        # curve and any best-of selection the same way), and a resumed run the same noise.
        sampler = getattr(self.trainer.datamodule, "val_sampler", None) if self._trainer else None
        global_batch = sampler.global_index(batch_idx) if sampler is not None else batch_idx
        sums, n_tokens = self.validation_draw_sums(batch, global_batch)
        if sampler is not None and sampler.is_padding(global_batch):
            return  # run (collectives stay in step across ranks), never counted
        self._val_nll += sums
        self._val_tokens += n_tokens
        if self.token_bytes is not None:
            ids = batch["input_ids"][self.scored_positions(batch)]
            self._val_bytes += self.token_bytes.to(ids.device)[ids].sum().double()

    def scored_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L) bool: the tokens whose NLL `loss` sums (all real tokens; AR skips the
        first, which it is given). Their bytes are the denominator of bits per byte."""
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()

    def validation_draw_sums(self, batch: dict[str, torch.Tensor],
                             global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """((K,) float64 NLL sums of the K noise draws of one batch, its scored tokens).
        Keyed by the seed, the optimizer step, evaluate.py's pass and the global batch."""
        draws = self.validation_draws()
        sums = []
        for draw in range(draws):
            rng = StepRandomness.for_validation(self.device, self.seed,
                                                (self.optimizer_steps, self.eval_pass),
                                                global_batch, draw)
            out = self.loss(batch, rng)
            sums.append(out.nll_sum.double())
        return torch.stack(sums), out.n_tokens.double()

    def nll_standard_error(self, per_draw: torch.Tensor, n_tokens: float) -> float:
        """Standard error of the validation NLL from its per-draw sums: 0 for an exact NLL
        (AR), else :func:`draws_standard_error`."""
        return draws_standard_error(per_draw, n_tokens) if self.stochastic_nll else 0.0

    def on_validation_epoch_end(self) -> None:
        if self.ema is not None:
            self.ema.swap_out(self.backbone)
        per_draw = self.trainer.strategy.reduce(self._val_nll, reduce_op="sum")  # (K,)
        tokens = self.trainer.strategy.reduce(self._val_tokens, reduce_op="sum")
        n_bytes = self.trainer.strategy.reduce(self._val_bytes, reduce_op="sum")
        self.val_totals = (float(per_draw.mean()), float(tokens), float(n_bytes))
        self.val_draw_sums = per_draw.tolist()  # evaluate.py pools them over its passes
        self.val_nll_se = self.nll_standard_error(per_draw, float(tokens))
        self.val_step = self.global_step  # train.py reuses a validation of the final step
        metrics = nll_metrics(*self.val_totals)
        for key, value in metrics.items():
            self.log(f"val/{key}", value, prog_bar=key == "ppl", sync_dist=False)
        if not math.isnan(self.val_nll_se):
            self.log("val/nll_se", self.val_nll_se, sync_dist=False)

    # ---- optimizer -----------------------------------------------------------------
    def make_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of `optim` over the backbone's parameter groups. Fused (one kernel for
        all parameters) on CUDA and CPU alike: on CPU the fused AdamW step was measured
        several times faster than the per-parameter loop (README, "Precision and speed")."""
        cfg = self.optim_cfg
        groups = param_groups(self.backbone, cfg["weight_decay"],
                              cfg.get("decay_norm_bias_embed", False), lr=cfg["lr"], eps=cfg["eps"])
        # fp16 with a loss scaler: Lightning unscales before clipping, which a fused step
        # would do again; keep the per-parameter step there.
        scaled = getattr(self._trainer and self.trainer.precision_plugin, "scaler", None)
        return build_optimizer(cfg.get("optimizer", "torch.optim.AdamW"), groups, lr=cfg["lr"],
                               betas=tuple(cfg["betas"]), eps=cfg["eps"],
                               fused=self.device.type in FUSED_DEVICES and scaled is None)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's bf16 plugin refuses to clip for a fused optimizer, because a fused step
        unscales fp16 loss-scaled gradients itself. bf16 autocast has no loss scaler: the
        gradients are already true gradients, so clipping them first is exact."""
        plugin = self.trainer.precision_plugin
        if type(plugin) is MixedPrecision and plugin.scaler is None and gradient_clip_val:
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val,
                                     GradClipAlgorithmType(gradient_clip_algorithm or "norm"))
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.make_optimizer()
        sched_kwargs = {k: v for k, v in self.sched_cfg.items() if k != "name"}
        fn = lr_lambda(self.sched_cfg["name"], max_steps=self.trainer.max_steps, **sched_kwargs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        # This config's hyperparameters (lr before the schedule, decay, betas...) per group.
        self._configured_groups = [{k: v for k, v in g.items() if k not in ("params", "lr")}
                                   for g in opt.param_groups]
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        """This run's config wins over a restored optimizer's hyperparameters: a fork
        (training.init_mode=fork) or a deliberate config change may set another peak lr,
        decay or schedule than the checkpoint's. On a plain resume the values are equal."""
        groups = getattr(self, "_configured_groups", None)
        if not groups or not self.trainer.optimizers:
            return
        opt = self.trainer.optimizers[0]
        for group, configured in zip(opt.param_groups, groups):
            group.update(configured)
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            sched.base_lrs = [g["initial_lr"] for g in opt.param_groups]
            for g, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
                g["lr"] = base * fn(sched.last_epoch)  # LambdaLR's own expression
            sched._last_lr = [g["lr"] for g in opt.param_groups]

    def configure_model(self) -> None:
        """Under trainer=fsdp, shard the backbone across the processes (once: Lightning may
        call this hook again for a later validate / test)."""
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, ShardedDataParallel) and not getattr(self, "_sharded", False):
            strategy.shard(self.backbone, owner=self)
            self._sharded = True

    # ---- checkpoint extras -----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["algo_state"] = {
            "micro_step": self.micro_step,
            "optimizer_steps": self.optimizer_steps,
            # src/resume/split.py; 1 outside a Trainer (a checkpoint written by a tool)
            "accumulation": self.trainer.accumulate_grad_batches if self._trainer else 1,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("algo_state", {})
        self.optimizer_steps = state.get("optimizer_steps", checkpoint.get("global_step", 0))
        self.micro_step = state.get("micro_step", 0)
        if self._trainer is not None:  # resuming: counters in this run's accumulation
            now = self.trainer.accumulate_grad_batches
            convert_batch_progress(checkpoint.get("loops") or {}, saved_accumulation(state), now)
            # checkpoints are written at step boundaries: steps x this run's accumulation
            self.micro_step = self.optimizer_steps * now
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])


def draws_standard_error(per_draw: torch.Tensor, n_tokens: float) -> float:
    """Standard error (nats/token) of the mean of K independent draws' NLL sums:
    sd_k / sqrt(K) with the sample sd (ddof 1). One draw: NaN (unknown) for a Monte-Carlo
    estimate; an exact NLL has one draw and error 0 (its caller says so)."""
    k = per_draw.numel()
    if k < 2:
        return float("nan")
    per_token = per_draw.double() / max(n_tokens, 1.0)
    return float(per_token.std(unbiased=True) / math.sqrt(k))


def nll_metrics(nll_sum: float, n_tokens: float, n_bytes: float = 0.0) -> dict[str, float]:
    """nll (nats/token), bits_per_token = nll / ln 2, ppl = exp(nll) from token-weighted
    sums, and bpb = nll_sum / (ln 2 * UTF-8 bytes) when the bytes were counted (the only
    one of these comparable across tokenizers)."""
    nll = nll_sum / max(n_tokens, 1.0)
    out = {"nll": nll, "bits_per_token": nll / math.log(2), "ppl": math.exp(min(nll, 700.0))}
    if n_bytes > 0:
        out["bpb"] = nll_sum / (math.log(2) * n_bytes)
    return out
