"""GIDD: generalized interpolating discrete diffusion with hybrid mask/uniform noise
(von Ruette et al. 2025; the hybrid noise of "Scaling Behavior of Discrete Diffusion LMs").

The model predicts x_hat = softmax over the K real tokens (no SUBS carry-over: a visible
token may be uniform noise, so the model must be allowed to revise it). The loss is the
continuous-time ELBO of `HybridNoise.elbo_terms`; training clips its weights at
`weight_clip` (the reference clips GIDD's loss weights, default max 2), validation
reports the unclipped ELBO.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from src.algos.base import LossOutput
from src.algos.hybrid_noise import HybridNoise
from src.algos.mdlm import MDLM
from src.algos.noise import NoiseSchedule
from src.algos.randomness import StepRandomness


class GIDD(MDLM):
    """Hybrid-noise diffusion; see module docstring.

    Args:
        noise: the alpha_t schedule (log-linear by default).
        mix_scale: slope of the mixing logit a = sigmoid(mix_scale * lambda + mix_shift), |.| <= 1.
        mix_shift: -inf = masked (MDLM), 0 = balanced, +inf = uniform noise. YAML takes
            ``-.inf`` / ``.inf`` (or large numbers such as -1e9), Hydra's command line
            ``algo.mix_shift=-inf``.
        log_snr_clip: lambda = logit(alpha_t) is clipped to [-clip, clip].
        weight_clip: max ELBO weight in the training loss (null = the exact ELBO).
        time_conditioning: feed sigma_t = -log alpha_t (GIDD needs it by default: with
            uniform noise the model cannot read the noise level off the [MASK] count).
        **kwargs: MDLM / Algo arguments (eps_t, t_curriculum, ...).
    """


    def __init__(
        self,
        backbone: nn.Module,
        *,
        noise: NoiseSchedule,
        mix_scale: float = 1.0,
        mix_shift: float = 0.0,
        log_snr_clip: float = 9.0,
        weight_clip: float | None = 2.0,
        time_conditioning: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, noise=noise, time_conditioning=time_conditioning, **kwargs)
        if self.loss_type != "elbo":
            raise ValueError("algo=gidd trains on its ELBO (with algo.weight_clip); "
                             "remove algo.loss_type or set it to elbo")
        if weight_clip is not None and float(weight_clip) <= 0:
            raise ValueError(f"algo.weight_clip={weight_clip} must be > 0 (null = no clipping)")
        self.hybrid = HybridNoise(noise, self.vocab_size, self.mask_id, float(mix_scale),
                                  float(mix_shift), float(log_snr_clip))
        self.weight_clip = None if weight_clip is None else float(weight_clip)

    def clean_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float32 log x_hat(z_t) (-inf on [MASK]): what the samplers read."""
        return self._log_probs(z, t)

    def clean_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float64 x_hat(z_t): the model's distribution of the clean token,
        zero on [MASK], at every position (visible tokens included: they may be noise)."""
        return self._log_probs(z, t).double().exp()

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            "algo=gidd has no masked-diffusion (SUBS) denoiser: use sampler=gidd_ancestral "
            "or sampler=gidd_adaptive"
        )

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x = batch["input_ids"]
        b, length = x.shape
        mask_in = batch.get("attention_mask")
        valid = torch.ones_like(x, dtype=torch.bool) if mask_in is None else mask_in.bool()
        t = self._times(rng, b)
        u = rng.rand(b, length)  # first draw = MDLM's masking draw (same z_t at shift=-inf)
        noise_idx = torch.randint(0, self.hybrid.k, (b, length), generator=rng.generator,
                                  device=rng.generator.device).to(x.device)
        z = torch.where(valid, self.hybrid.sample(x, t, u, noise_idx), x)  # padding stays clean
        w, div = self.hybrid.elbo_terms(x, z, self._log_probs(z, t), t)
        zero = torch.zeros_like(div)
        elbo = torch.where(valid, w * div, zero)
        n_tokens = valid.sum().double()
        w_train = w if self.weight_clip is None else w.clamp(max=self.weight_clip)
        train_loss = torch.where(valid, w_train * div, zero).sum() / n_tokens.float()
        return LossOutput(train_loss, elbo.detach().double().sum(), n_tokens)
