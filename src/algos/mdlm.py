"""MDLM: masked (absorbing-state) diffusion with the SUBS parameterization (Sahoo et al. 2024)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.algos.base import Algo, LossOutput
from src.algos.inference import subs_log_probs
from src.algos.noise import NoiseSchedule
from src.algos.randomness import StepRandomness
from src.algos.t_curriculum import TimeCurriculum

LOSS_TYPES = ("elbo", "low_var")


class MDLM(Algo):
    """Continuous-time NELBO  E_t[(-alpha'_t / (1 - alpha_t)) sum_{i: z_t^i = m} -log p(x^i | z_t)].

    `loss_type=low_var` (Quokka's "MaskGIT loss") trains on the unweighted mean CE over
    masked tokens; validation always reports the true NELBO. `t_curriculum`
    ({steps, start_lo, start_hi}, see `TimeCurriculum`) moves the training times
    through a clean-to-noisy window; validation keeps the full range.
    """


    def __init__(
        self,
        backbone: nn.Module,
        *,
        noise: NoiseSchedule,
        loss_type: str = "elbo",
        time_conditioning: bool = False,
        eps_t: float = 1e-3,
        t_curriculum: TimeCurriculum | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown algo.loss_type={loss_type!r}: use one of {LOSS_TYPES}")
        self.noise, self.loss_type = noise, loss_type
        self.time_conditioning, self.eps_t = time_conditioning, eps_t
        if isinstance(t_curriculum, Mapping):
            t_curriculum = TimeCurriculum(**t_curriculum)
        self.t_curriculum = t_curriculum
        self._subs_bias: torch.Tensor | None = None

    def _times(self, rng: StepRandomness, batch_size: int) -> torch.Tensor:
        """(B,) stratified times; in training the curriculum (if any) moves them into its
        window, a pure function of the optimizer step (exact on resume)."""
        t = rng.times(batch_size, self.eps_t)
        if self.training and self.t_curriculum is not None:
            t = self.t_curriculum.apply(t, self.global_step)
        return t

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise.sigma(t) if self.time_conditioning else torch.zeros_like(t)

    def _log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_theta(x | z_t) with zero mass on [MASK] (SUBS, MDLM sec. 3.2.3); (B, L, V)."""
        return subs_log_probs(self.net(z, self._sigma(t)), self.mask_id)

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float32 log p_theta(x | z_t) for the masked positions (SUBS: clean
        positions carry over, so samplers read only the rows of masked ones)."""
        return self._log_probs(z, t)

    def denoiser_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float64 SUBS probabilities: unmasked positions carry over as one-hots."""
        probs = self._log_probs(z, t).double().exp()
        clean = z != self.mask_id
        carry = F.one_hot(z, self.vocab_size).to(probs.dtype)
        return torch.where(clean[..., None], carry, probs)

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x = batch["input_ids"]
        b, length = x.shape
        t = self._times(rng, b)  # (B,)
        move = 1 - self.noise.alpha(t)  # P(masked at t)
        masked = rng.rand(b, length) < move[:, None]
        valid = batch.get("attention_mask")
        if valid is not None:
            masked &= valid.bool()
        z = torch.where(masked, self.mask_id, x)
        # Clean positions copy themselves under SUBS: their loss is exactly 0, so the readout
        # and the softmax run on the masked positions only (about half of them on average).
        bias = self.subs_bias(x.device)
        logits = self.net(z, self._sigma(t), select=masked, logit_bias=bias)
        if logits.dim() == 3:  # a network without `select` (the tests' exact oracles)
            logits = logits[masked] + bias
        ce = F.cross_entropy(logits.float(), x[masked], reduction="none")  # (N,) -log p(x | z_t)
        weight = self.noise.mdlm_weight(t)[:, None].expand(b, length)[masked]  # (N,)
        nelbo = weight * ce
        n_tokens = valid.sum().double() if valid is not None else torch.tensor(
            float(x.numel()), dtype=torch.float64, device=x.device)
        if self.loss_type == "elbo":
            train_loss = nelbo.sum() / n_tokens.float()
        else:
            train_loss = ce.sum() / masked.sum().clamp_min(1)
        return LossOutput(train_loss, nelbo.detach().double().sum(), n_tokens)

    def subs_bias(self, device: torch.device) -> torch.Tensor:
        """(V,) float32: 0, and -inf at [MASK] (SUBS gives [MASK] zero mass, MDLM eq. 8)."""
        if self._subs_bias is None or self._subs_bias.device != device:
            bias = torch.zeros(self.vocab_size, device=device)
            bias[self.mask_id] = float("-inf")
            self._subs_bias = bias
        return self._subs_bias
