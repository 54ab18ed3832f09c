"""Eso-LM (B): masked diffusion + left-to-right decoding with KV caching (Sahoo et al. 2025).

Generation: diffusion on alpha_t = alpha_0 (1 - (1 - eps) t) from t = 1 down to t = 0,
leaving about (1 - alpha_0) L tokens masked, which are then decoded left to right.
The NELBO of that model is (Eso-LM sec. 4)

    -log p(x) <= E_{z_0 ~ q(.|x, alpha_0)} sum_{i: z_0^i = m} -log p(x^i | x_clean(z_0), x_{masked < i})
                 + int_0^1 (-alpha'_t / (1 - alpha_t)) E_{z_t} sum_{i: z_t^i = m} -log p(x^i | z_t) dt,

the sequential ("recon") part plus the MDLM part of the scaled schedule, whose weight is
alpha_0 (1 - eps) / (1 - alpha_0 + alpha_0 (1 - eps) t). Both parts are exact (tight)
with the true conditionals (tests/algos/test_esolm_oracle.py). alpha_0 = 1 is pure
diffusion with causal attention over the clean-first order (the scaling runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from src.algos.base import LossOutput
from src.algos.esolm_masks import (
    branch_rows,
    clean_first_order,
    sequential_attention_mask,
    sequential_ranks,
)
from src.algos.mdlm import MDLM
from src.algos.noise import AlphaScaled, NoiseSchedule
from src.algos.inference import ordered_forward, subs_log_probs
from src.algos.randomness import StepRandomness
from src.models.flops import BackbonePass


class EsoLM(MDLM):
    """Eso-LM (B). Training splits each batch between the two branches of the NELBO.

    Args:
        alpha_0: Fraction of tokens diffusion decodes, in (0, 1]; the rest is decoded
            sequentially. 1 = pure diffusion (causal over the clean-first order).
        batch_split: Fraction of the rows of a training batch that run the diffusion
            branch; the others run the sequential branch on [z_0 ; x] (2L tokens). The
            loss is recon / N_recon + diffusion / N_diff (token means of each branch),
            an unbiased estimate of the NELBO per token. If a branch would get no row
            (tiny batches), it runs on every row. Validation runs both branches on every
            row, so val/nll is the exact Eso-LM NELBO (token-weighted).
        noise: The base schedule (log-linear by default), scaled by alpha_0 here.
        **kwargs: MDLM / Algo arguments (time_conditioning must stay false: the cached
            keys/values of decoded tokens would otherwise go stale).
    """


    def __init__(
        self,
        backbone: nn.Module,
        *,
        noise: NoiseSchedule,
        alpha_0: float = 1.0,
        batch_split: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < float(alpha_0) <= 1.0:
            raise ValueError(
                f"algo.alpha_0={alpha_0} must lie in (0, 1]: 1 = pure diffusion, smaller "
                "values leave (1 - alpha_0) L tokens to the sequential decoder"
            )
        if not 0.0 <= float(batch_split) <= 1.0:
            raise ValueError(f"algo.batch_split={batch_split} must lie in [0, 1]")
        if kwargs.get("time_conditioning"):
            raise ValueError(
                "algo.time_conditioning=true is not supported by esolm: the KV cache reuses "
                "keys/values computed at earlier times; set algo.time_conditioning=false"
            )
        super().__init__(backbone, noise=AlphaScaled(noise, alpha_0), **kwargs)
        self.alpha_0, self.batch_split = float(alpha_0), float(batch_split)

    @classmethod
    def training_passes(cls, algo_cfg: Mapping[str, Any], seq_len: int) -> list[BackbonePass]:
        """A batch_split share of the rows runs the diffusion branch on seq_len tokens; the
        rest the sequential branch on [z_0; x], 2 seq_len tokens with the head on all of
        them (as the reference's EsoLMDiT). alpha_0 = 1 (the scaling runs) leaves no token
        to the sequential decoder: every row is a diffusion row."""
        alpha_0 = float(algo_cfg.get("alpha_0", 1.0))
        if alpha_0 == 1.0:
            return [BackbonePass(seq_len)]
        split = float(algo_cfg.get("batch_split", 0.5))
        return [BackbonePass(seq_len, rows=split), BackbonePass(2 * seq_len, rows=1 - split)]

    # ---- network calls ---------------------------------------------------------------
    def _subs_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """SUBS log-probabilities: zero mass on [MASK], then log_softmax (MDLM sec. 3.2.3).
        The sequential loss reads these, never raw logits (the reference's bug)."""
        return subs_log_probs(logits, self.mask_id)

    def _ordered_log_probs(
        self, z: torch.Tensor, order: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Causal forward over z permuted by `order` (rotary = true positions), un-permuted."""
        return self._subs_log_probs(ordered_forward(self.net, z, order, self._sigma(t)))

    def _log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Deterministic clean-first order (both groups left to right): MDLM's samplers and
        `denoiser_log_probs` stay usable, with an order the model saw in training."""
        return self._ordered_log_probs(z, clean_first_order(z == self.mask_id), t)

    def esolm_log_probs(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        kv_cache: Any = None,
        commit: bool = True,
    ) -> torch.Tensor:
        """Sampler call: (B, l) ids fed after the cached ones, causal in feeding order.

        Args:
            ids: (B, l) tokens ([MASK] for the positions to predict).
            positions: (B, l) their true positions (rotary).
            attn_mask: optional (B, 1, l, cached + l) bool, True = attend (padding).
            kv_cache: from `new_kv_cache`; `commit=False` reads it without keeping `ids`.

        Returns:
            (B, l, V) float32 SUBS log-probabilities.
        """
        out = self.net(ids, None, causal=True, positions=positions, attn_mask=attn_mask,
                       kv_cache=kv_cache, commit=commit)
        return self._subs_log_probs(out)

    def new_kv_cache(self, batch_size: int, max_len: int) -> Any:
        return self.backbone.new_kv_cache(batch_size, max_len)

    @property
    def kv_capacity(self) -> int | None:
        """Most tokens one cache may hold (the backbone's max_seq_len), None = unbounded."""
        return getattr(self.backbone, "max_seq_len", None)

    # ---- loss ------------------------------------------------------------------------
    def _diffusion_nelbo(
        self, x: torch.Tensor, valid: torch.Tensor, t: torch.Tensor,
        u_mask: torch.Tensor, u_order: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token MDLM NELBO of the scaled schedule, its CE and the masked positions."""
        masked = (u_mask < (1 - self.noise.alpha(t))[:, None]) & valid
        z = torch.where(masked, self.mask_id, x)
        logp = self._ordered_log_probs(z, clean_first_order(masked, u_order), t)
        ce = torch.where(masked, -logp.gather(-1, x[..., None]).squeeze(-1), 0.0)
        return self.noise.mdlm_weight(t)[:, None] * ce, ce, masked

    def _sequential_nll(
        self, x: torch.Tensor, valid: torch.Tensor, u_mask: torch.Tensor, u_order: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) -log p(x^i | clean z_0, x_{masked < i}) at the positions masked in z_0."""
        length = x.shape[1]
        masked0 = (u_mask < 1 - self.alpha_0) & valid
        z0 = torch.where(masked0, self.mask_id, x)
        mask = sequential_attention_mask(masked0, sequential_ranks(masked0, u_order))
        positions = torch.arange(length, device=x.device).repeat(2)  # [z_0 ; x] share positions
        out = self.net(torch.cat([z0, x], dim=1), None, positions=positions, attn_mask=mask)
        logp = self._subs_log_probs(out[:, :length])
        return torch.where(masked0, -logp.gather(-1, x[..., None]).squeeze(-1), 0.0)

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x = batch["input_ids"]
        b, length = x.shape
        mask_in = batch.get("attention_mask")
        valid = torch.ones_like(x, dtype=torch.bool) if mask_in is None else mask_in.bool()
        n_tokens = valid.sum().double()
        t = self._times(rng, b)
        # Every draw happens whatever the branch split, so the noise is a pure function of rng.
        u_mask, u_order, u_mask0, u_order0 = (rng.rand(b, length) for _ in range(4))
        sequential = self.alpha_0 < 1.0
        everything = torch.ones(b, dtype=torch.bool, device=x.device)
        rows = everything
        if sequential and self.training:
            rows = branch_rows(b, self.batch_split, x.device)
        diff_rows = rows if bool(rows.any()) else everything
        seq_rows = ~rows if bool((~rows).any()) else everything

        d = diff_rows
        nelbo, ce, masked = self._diffusion_nelbo(x[d], valid[d], t[d], u_mask[d], u_order[d])
        d_tokens = valid[d].sum().clamp_min(1)
        if self.loss_type == "elbo":
            train_loss = nelbo.sum() / d_tokens
        else:  # Quokka's MaskGIT loss on the diffusion branch
            train_loss = ce.sum() / masked.sum().clamp_min(1)
        per_token = nelbo.detach().double().sum() / d_tokens.double()
        if sequential:
            s = seq_rows
            recon = self._sequential_nll(x[s], valid[s], u_mask0[s], u_order0[s])
            s_tokens = valid[s].sum().clamp_min(1)
            train_loss = train_loss + recon.sum() / s_tokens
            per_token = per_token + recon.detach().double().sum() / s_tokens.double()
        # With both branches on every row (validation) this is exactly diffusion + recon sums.
        return LossOutput(train_loss, per_token * n_tokens, n_tokens)
