"""Discrete Consistency Distillation (DCD) of a trained DUO model (Sahoo et al. 2025, sec. 5).

The student starts from the teacher's weights. Latents at t and s = t - dt share one
Gaussian eps, so z_t = argmax(a_t e_x + s_t eps) and z_s = argmax(a_s e_x + s_s eps) lie on
one deterministic trajectory of the underlying Gaussian diffusion (the duality). The
student at (z_t, t) matches the frozen teacher at (z_s, s) with a KL; every
`refresh_every` steps the teacher becomes the current student (or its EMA) and dt doubles,
so the student learns to jump ever larger intervals: good samples in 4-16 steps.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from src.algos.base import LossOutput
from src.algos.duo import DUO
from src.algos.randomness import StepRandomness
from src.models.flops import BackbonePass
from src.algos.uniform_noise import log_reverse_posterior

DIVERGENCES = ("kl_bwd", "kl_fwd")
MATCHES = ("x_theta", "posterior", "clean")
TEACHER_ALGOS = ("duo", "duo_distill")


def distill_dt(step: int, refresh_every: int, base_steps: int, dt_max: float) -> float:
    """dt = 2^(teacher refreshes so far) / base_steps, capped at dt_max (reference `_compute_dt`)."""
    return min(2.0 ** (step // refresh_every) / base_steps, dt_max)


class DUODistill(DUO):
    """DUO student distilled from `teacher_ckpt`; validation reports the student's DUO NELBO.

    While training, `train/loss` and `train/nll` are the distillation KL per token.

    Args:
        teacher_ckpt: DUO run directory or .ckpt (src.train loads it with
            `src.checkpoints.load_run`, EMA weights when it has them).
        teacher_run: that loaded run, passed in; its weights are copied when training starts.
        refresh_every: optimizer steps between teacher refreshes (dt doubles at each).
        base_steps: the first dt is 1 / base_steps.
        dt_max: cap on dt.
        t_max: the student trains on t in [dt, t_max]. Above t_max it keeps the teacher's
            weights' behaviour: a weak teacher's predictions from z_s vary so much near pure
            noise that their KL-optimal (geometric) mean is flatter than the teacher's own
            x_theta, and the first sampler steps then draw near-uniform tokens that stay.
        teacher_from_ema: refresh the teacher from the student's EMA instead of its weights.
        divergence: "kl_bwd" = KL(student || teacher) (reference), "kl_fwd" = KL(teacher || student).
        match: what the KL compares. "x_theta" (reference): the two denoisers' x_theta.
            "posterior": the reverse posteriors q(z_s | z_t, x_theta) of one sampler step
            t -> s that each x_theta implies (`log_reverse_posterior`); this also fits the
            little mass x_theta keeps on the current token, which the sampler multiplies
            by K (docs/algorithms.md, DUO reverse posterior), so few-step samples keep fewer
            noise tokens.
            "clean": the clean-token predictions p(x | z) ∝ x_theta(x) q(z | x) of the
            student at (z_t, t) and the teacher at (z_s, s), each calibrated with its own
            alpha. In the mean parameterization x_theta's mass on the input token only
            means something together with K alpha, so the teacher's x_theta at s copied
            verbatim to t under-weights keeping the current tokens.
        **kwargs: DUO's arguments.
    """

    @classmethod
    def training_passes(cls, algo_cfg: Mapping[str, Any], seq_len: int) -> list[BackbonePass]:
        """The student's pass with gradients, plus one frozen teacher forward."""
        return [BackbonePass(seq_len), BackbonePass(seq_len, backward=False)]

    def __init__(self, backbone: nn.Module, *, teacher_ckpt: str | None = None,
                 teacher_run: Any = None,
                 refresh_every: int = 10000, base_steps: int = 512, dt_max: float = 0.5,
                 teacher_from_ema: bool = False, divergence: str = "kl_bwd",
                 match: str = "x_theta", t_max: float = 1.0, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if divergence not in DIVERGENCES:
            raise ValueError(f"unknown algo.divergence={divergence!r}: use one of {DIVERGENCES}")
        if match not in MATCHES:
            raise ValueError(f"unknown algo.match={match!r}: use one of {MATCHES}")
        self.match = match
        if refresh_every < 1 or base_steps < 1 or not 0 < dt_max < t_max <= 1:
            raise ValueError("need algo.refresh_every >= 1, algo.base_steps >= 1 and "
                             f"0 < algo.dt_max < algo.t_max <= 1 (got dt_max={dt_max}, t_max={t_max})")
        self.teacher_ckpt, self.divergence = teacher_ckpt, divergence
        # The loaded teacher run (src.checkpoints.load_run of teacher_ckpt), passed in by the
        # entry point through the builder: the algo never loads checkpoints itself.
        self._teacher_run = teacher_run
        self.refresh_every, self.base_steps, self.dt_max = refresh_every, base_steps, dt_max
        self.t_max = t_max
        self.teacher_from_ema = teacher_from_ema
        # A registered (frozen) module: it is saved in checkpoints, so a resumed run
        # continues with exactly the teacher it had; optimizer and EMA only see `backbone`.
        self.teacher = copy.deepcopy(backbone).requires_grad_(False).eval()
        self.teacher_round = 0

    # ---- teacher ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            dm = getattr(self.trainer, "datamodule", None)
            self.load_teacher(getattr(dm, "tokenizer", None))

    def load_teacher(self, tokenizer: Any = None) -> None:
        """Check the teacher run against this run and copy its weights into student + teacher.

        Raises:
            ValueError: no teacher given, not a DUO run, or another tokenizer / model size.
        """
        if not self.teacher_ckpt:
            raise ValueError("algo=duo_distill needs a trained DUO teacher: pass "
                             "algo.teacher_ckpt=<DUO run dir or .ckpt> (e.g. a run of experiment=duo_cpu)")
        run = self._teacher_run
        if run is None:
            raise ValueError(f"the teacher run algo.teacher_ckpt={self.teacher_ckpt} was not "
                             f"loaded: build the algo with teacher_run=load_run(teacher_ckpt)")
        if run.algo.name not in TEACHER_ALGOS:
            raise ValueError(f"algo.teacher_ckpt={self.teacher_ckpt} is a {run.algo.name} run: "
                             "distill a DUO run (algo=duo)")
        problems = _mismatches(run, tokenizer, self.backbone, self.vocab_size)
        if problems:
            raise ValueError(f"algo.teacher_ckpt={self.teacher_ckpt} does not match this run: "
                             + "; ".join(problems))
        state = run.algo.backbone.state_dict()
        self.backbone.load_state_dict(state)
        self.teacher.load_state_dict(state)
        if self.ema is not None:  # restart the EMA from the teacher's weights
            self.ema = type(self.ema)(self.backbone, self.ema.decay)
        self.teacher_round = 0

    @torch.no_grad()
    def maybe_refresh_teacher(self, step: int) -> bool:
        """Copy the student (or its EMA) into the teacher when `step` starts a new round."""
        round_ = step // self.refresh_every
        if round_ == self.teacher_round:
            return False
        if self.teacher_from_ema and self.ema is not None:
            for src, dst in zip(self.ema.shadow, self.teacher.parameters()):
                dst.copy_(src.to(dst.device, dst.dtype))
        else:
            self.teacher.load_state_dict(self.backbone.state_dict())
        self.teacher_round = round_
        return True

    def train(self, mode: bool = True) -> DUODistill:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout
        return self

    # ---- loss ------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        if not self.training:
            return super().loss(batch, rng)  # validation: the student's DUO NELBO
        step = self.global_step
        self.maybe_refresh_teacher(step)
        dt = distill_dt(step, self.refresh_every, self.base_steps, self.dt_max)
        x = self.real.to_real(batch["input_ids"])
        b, length = x.shape
        # s uniform on (0, t_max - dt), t = s + dt. (The reference clips t + dt at 1, which
        # puts a fraction dt of the rows at pure noise, e.g. a quarter at dt = 1/4.)
        s = rng.times(b, self.eps_t).double() * (self.t_max - dt)
        t = s + dt
        alpha_t, alpha_s = self.noise.alpha(t), self.noise.alpha(s)
        eps = torch.randn(b, length, self.real.k, generator=rng.generator,
                          device=rng.generator.device).to(x.device)
        table = self.duality
        # One eps for both times: the deterministic coupling of the duality.
        z_t = self.gaussian_latent(x, table.gamma(alpha_t), eps).argmax(-1)
        z_s = self.gaussian_latent(x, table.gamma(alpha_s), eps).argmax(-1)
        log_student = self.log_x_theta(self.real.to_ids(z_t), alpha_t)  # (B, L, K)
        with torch.no_grad():
            logits = self.real.drop_mask(self.teacher(self.real.to_ids(z_s), self.sigma_of(alpha_s)))
            log_teacher = F.log_softmax(logits.float(), dim=-1)
        if self.match == "posterior":  # one sampler step t -> s from z_t under each x_theta
            a_t, a_s = alpha_t[:, None], alpha_s[:, None]
            log_student = log_reverse_posterior(log_student, z_t, a_t, a_s)
            log_teacher = log_reverse_posterior(log_teacher, z_t, a_t, a_s)
        elif self.match == "clean":  # p(x | z) = the posterior of a jump to alpha = 1
            one = torch.ones_like(alpha_t)[:, None]
            log_student = log_reverse_posterior(log_student, z_t, alpha_t[:, None], one)
            log_teacher = log_reverse_posterior(log_teacher, z_s, alpha_s[:, None], one)
        if self.divergence == "kl_bwd":
            kl = (log_student.exp() * (log_student - log_teacher)).sum(-1)
        else:
            kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
        if self._trainer is not None:
            self.log("train/dt", dt)
        valid = batch.get("attention_mask")
        kl = kl * valid if valid is not None else kl
        n_tokens = torch.tensor(float(kl.numel()), dtype=torch.float64, device=kl.device)
        if valid is not None:
            n_tokens = valid.sum().double()
        return LossOutput(kl.sum() / n_tokens.float(), kl.detach().double().sum(), n_tokens)

    # ---- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["algo_state"]["teacher_round"] = self.teacher_round

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.teacher_round = checkpoint.get("algo_state", {}).get("teacher_round", 0)


def _mismatches(run: Any, tokenizer: Any, backbone: nn.Module, vocab_size: int) -> list[str]:
    """Human-readable differences between the teacher run and the student's setup."""
    out = []
    t_tok, t_data = run.datamodule.tokenizer, run.cfg.data
    same_tok = (t_tok.fingerprint == tokenizer.fingerprint if tokenizer is not None
                else t_tok.vocab_size == vocab_size)
    if not same_tok:
        mine = f"{tokenizer.name}, vocab {tokenizer.vocab_size}" if tokenizer is not None else \
            f"vocab {vocab_size}"
        out.append(f"tokenizer: teacher {t_tok.name}, vocab {t_tok.vocab_size} (data={t_data.tag}, "
                   f"data.tokenizer.kind={t_data.tokenizer.kind}) vs this run {mine}: "
                   f"distill on the teacher's tokenizer, e.g. data={t_data.tag}")
    t_net = run.algo.backbone
    shape = ("dim", "n_blocks", "n_heads")
    teacher_shape = tuple(getattr(t_net, a, None) for a in shape)
    student_shape = tuple(getattr(backbone, a, None) for a in shape)
    if teacher_shape != student_shape:
        desc = ", ".join(f"{a} {v}" for a, v in zip(shape, teacher_shape))
        mine = ", ".join(f"{a} {v}" for a, v in zip(shape, student_shape))
        out.append(f"model size: teacher model={run.cfg.model.name} ({desc}) vs this run ({mine}): "
                   f"pass model={run.cfg.model.name}")
    return out
