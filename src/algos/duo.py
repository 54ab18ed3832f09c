"""DUO: uniform-state diffusion with the Gaussian-duality curriculum (Sahoo et al., ICML 2025)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from src.algos.base import Algo, LossOutput
from src.algos.duality import DualityTable, duality_table
from src.algos.inference import log_alpha_sigma, real_log_probs
from src.algos.noise import NoiseSchedule
from src.algos.randomness import StepRandomness
from src.algos.uniform_noise import RealVocab, corrupt, prior_kl, udlm_nelbo

GAMMA_SCHEDULES = ("linear", "match")


def curriculum_log10_tau(step: int, start: int, end: int, log10_start: float,
                         log10_end: float) -> float | None:
    """log10 of the softmax temperature at optimizer step `step`; None once the curriculum is over.

    Constant `log10_start` before `start`, linear in the step up to `log10_end` at `end`
    (DUO sec. 4.1). A pure function of the step, so a resumed run anneals identically.
    """
    if step >= end:
        return None
    if step < start:
        return log10_start
    return log10_start + (step - start) / (end - start) * (log10_end - log10_start)


class DUO(Algo):
    """Uniform-state diffusion over the K = V - 1 real tokens, mean parameterization.

    x_theta = softmax of the logits over the real tokens ([MASK] excluded), conditioned on
    sigma_t = -log alpha_t; loss = the UDLM continuous-time NELBO (`udlm_nelbo`).

    Curriculum (DUO sec. 4.1): while `global_step < curriculum_end` the backbone sees the
    tempered softmax(w / tau) of the Gaussian latent w = a e_x + s eps (soft one-hots times
    the embedding matrix) and the loss is the NELBO at z = argmax(w), which is exactly a
    uniform-state latent with alpha = alpha(gamma) by the duality. `curriculum_gamma`:
    - "linear" (the paper's choice): gamma_t linear in t between gamma(curriculum_alpha_max)
      and gamma(curriculum_alpha_min), i.e. the alpha range of the reference's
      [-3.5, -1.75] at K = 30522, carried over to this K; the weight uses the exact
      d alpha / d gamma of the table.
    - "match": gamma_t = gamma(alpha_t) of the noise schedule (same alpha_t as later).

    Args:
        noise: alpha_t schedule (shared with MDLM).
        time_conditioning: feed sigma_t to the backbone (DUO: yes).
        eps_t: t ~ stratified U[eps_t, 1).
        curriculum_start, curriculum_end: optimizer steps (>= 1) or fractions (< 1) of
            trainer.max_steps; the curriculum runs for steps < end (0 = off).
        tau_log10_start, tau_log10_end: log10 tau at start and end (reference: -1, -2).
        cache_dir: where to cache the duality table on disk (None = memory only).
    """


    def __init__(
        self,
        backbone: nn.Module,
        *,
        noise: NoiseSchedule,
        time_conditioning: bool = True,
        eps_t: float = 1e-3,
        curriculum_start: float = 0,
        curriculum_end: float = 0,
        tau_log10_start: float = -1.0,
        tau_log10_end: float = -2.0,
        curriculum_gamma: str = "linear",
        curriculum_alpha_max: float = 0.9417,
        curriculum_alpha_min: float = 0.0487,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        if curriculum_gamma not in GAMMA_SCHEDULES:
            raise ValueError(f"unknown algo.curriculum_gamma={curriculum_gamma!r}: "
                             f"use one of {GAMMA_SCHEDULES}")
        if not 0 < curriculum_alpha_min < curriculum_alpha_max < 1:
            raise ValueError("need 0 < algo.curriculum_alpha_min < algo.curriculum_alpha_max < 1")
        self.noise, self.time_conditioning, self.eps_t = noise, time_conditioning, eps_t
        self.real = RealVocab(self.vocab_size, self.mask_id)
        self.curriculum = (curriculum_start, curriculum_end, tau_log10_start, tau_log10_end)
        self.curriculum_gamma = curriculum_gamma
        self.alpha_range = (curriculum_alpha_max, curriculum_alpha_min)
        self.cache_dir = cache_dir
        self._table: DualityTable | None = None

    # ---- pieces shared with the sampler and the distillation -----------------------------
    @property
    def duality(self) -> DualityTable:
        """alpha(gamma) table for this K (built on first use, about a second)."""
        if self._table is None:
            self._table = duality_table(self.real.k, self.cache_dir)
        return self._table

    def sigma_of(self, alpha: torch.Tensor) -> torch.Tensor:
        """Time-conditioning input sigma = -log alpha (0 when not time-conditioned); float32."""
        return log_alpha_sigma(alpha, self.time_conditioning)

    def log_x_theta(self, inputs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """(B, L, K) log x_theta: log-softmax over the real tokens ([MASK] logit dropped).

        `inputs` are (B, L) ids or (B, L, V) soft one-hots (curriculum).
        """
        return real_log_probs(self.net(inputs, self.sigma_of(alpha)), self.real)

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, K) float32 log x_theta over the real tokens at noisy ids z and times t (B,)."""
        return self.log_x_theta(z, self.noise.alpha(t.double()))

    def denoiser_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float64 x_theta at noisy ids z and times t (B,), zero mass on [MASK]."""
        alpha = self.noise.alpha(t.double())
        probs = self.log_x_theta(z, alpha).double().exp()
        return self.real.add_mask(probs / probs.sum(-1, keepdim=True), 0.0)

    def gaussian_latent(self, x: torch.Tensor, gamma: torch.Tensor,
                        eps: torch.Tensor) -> torch.Tensor:
        """w = a e_x + s eps (B, L, K) with a^2 = sigmoid(-gamma), s^2 = sigmoid(gamma)."""
        a, s = self.duality.scales(gamma)
        w = s.to(eps.dtype)[:, None, None] * eps
        return w.scatter_add(-1, x[..., None], a.to(eps.dtype)[:, None, None].expand_as(x[..., None]))

    # ---- curriculum ----------------------------------------------------------------------
    def _to_steps(self, value: float) -> int:
        if 0 < value < 1:  # a fraction of the run
            max_steps = self.trainer.max_steps if self._trainer is not None else -1
            if max_steps is None or max_steps < 1:
                raise ValueError("fractional algo.curriculum_start/end need trainer.max_steps")
            return round(value * max_steps)
        return int(value)

    def log10_tau(self, step: int) -> float | None:
        """The curriculum's log10 tau at `step` (None = plain DUO)."""
        start, end, lo, hi = self.curriculum
        end = self._to_steps(end)
        if step >= end:
            return None
        return curriculum_log10_tau(step, self._to_steps(start), end, lo, hi)

    def curriculum_alpha(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(alpha_t, alpha'_t, gamma_t) of the curriculum, all float64 (B,)."""
        table, t = self.duality, t.double()
        if self.curriculum_gamma == "match":
            alpha, dalpha = self.noise.alpha(t), self.noise.dalpha(t)
            return alpha, dalpha, table.gamma(alpha)
        lo, hi = (table.gamma(torch.tensor(a, dtype=torch.float64)) for a in self.alpha_range)
        gamma = lo + t * (hi - lo)
        return table.alpha(gamma), table.dalpha_dgamma(gamma) * (hi - lo), gamma

    # ---- loss ----------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x_ids = batch["input_ids"]
        x = self.real.to_real(x_ids)
        b, length = x.shape
        t = rng.times(b, self.eps_t)  # (B,)
        log10_tau = self.log10_tau(self.global_step) if self.training else None
        if log10_tau is None:
            alpha, dalpha = self.noise.alpha(t.double()), self.noise.dalpha(t.double())
            z = corrupt(x, alpha, rng.rand(b, length), rng.rand(b, length), self.real.k)
            inputs = self.real.to_ids(z)
        else:
            alpha, dalpha, gamma = self.curriculum_alpha(t)
            eps = torch.randn(b, length, self.real.k, generator=rng.generator,
                              device=rng.generator.device).to(x.device)
            w = self.gaussian_latent(x, gamma, eps)  # (B, L, K)
            z = w.argmax(-1)
            # Tempered softmax = soft one-hots; [MASK] gets zero weight (DUO sec. 4.1).
            inputs = self.real.add_mask(torch.softmax(w * 10.0 ** -log10_tau, dim=-1), 0.0)
            if self._trainer is not None:
                self.log("train/log10_tau", log10_tau)
        nelbo = udlm_nelbo(self.log_x_theta(inputs, alpha), x, z, alpha, dalpha)  # (B, L)
        return self._output(nelbo, batch)

    def _output(self, per_token: torch.Tensor, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Mean over valid tokens for training; float64 sums (+ the prior term) for metrics."""
        valid = batch.get("attention_mask")
        if valid is not None:
            per_token = per_token * valid
            n_tokens = valid.sum().double()
        else:
            n_tokens = torch.tensor(float(per_token.numel()), dtype=torch.float64,
                                    device=per_token.device)
        alpha_1 = float(self.noise.alpha(torch.tensor(1.0, dtype=torch.float64)))
        nll_sum = per_token.detach().sum() + prior_kl(alpha_1, self.real.k) * n_tokens
        return LossOutput((per_token.sum() / n_tokens).float(), nll_sum, n_tokens)
