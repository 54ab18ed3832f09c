"""Autoregressive baseline on the shared backbone in causal mode (exact NLL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.algos.base import Algo, LossOutput
from src.algos.inference import without_mask
from src.algos.randomness import StepRandomness
from src.models.flops import BackbonePass


class AR(Algo):
    """Next-token prediction: input x[:, :-1], target x[:, 1:], no time conditioning.

    `input_mask_prob` (Super Data Learners): during training replace that fraction of
    the *input* tokens by [MASK]; targets are unchanged.
    """

    stochastic_nll = False  # its validation NLL is exact: one pass, standard error 0

    def __init__(self, backbone: nn.Module, *, input_mask_prob: float = 0.0, **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if not 0.0 <= input_mask_prob < 1.0:
            raise ValueError(f"algo.input_mask_prob={input_mask_prob} must be in [0, 1)")
        self.input_mask_prob = input_mask_prob

    @classmethod
    def training_passes(cls, algo_cfg: Mapping[str, Any], seq_len: int) -> list[BackbonePass]:
        """The model reads x[:, :-1]: seq_len - 1 tokens, causal."""
        return [BackbonePass(seq_len - 1)]

    def causal_logits(self, x: torch.Tensor, kv_cache: Any = None) -> torch.Tensor:
        """(B, l) -> (B, l, V) float32 next-token logits; [MASK] is never predicted."""
        return without_mask(self.net(x, None, causal=True, kv_cache=kv_cache), self.mask_id)

    def new_kv_cache(self, batch_size: int, max_len: int) -> Any:
        return self.backbone.new_kv_cache(batch_size, max_len)

    def scored_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Targets x[:, 1:] only: the first token is given, never predicted."""
        scored = super().scored_positions(batch).clone()
        scored[:, 0] = False
        return scored

    def loss(self, batch: dict[str, torch.Tensor], rng: StepRandomness) -> LossOutput:
        x = batch["input_ids"]
        inputs, targets = x[:, :-1], x[:, 1:]
        if self.training and self.input_mask_prob > 0:
            drop = rng.rand(*inputs.shape) < self.input_mask_prob
            inputs = torch.where(drop, self.mask_id, inputs)
        logp = F.log_softmax(self.causal_logits(inputs), dim=-1)  # (B, L-1, V)
        nll = -logp.gather(-1, targets[..., None]).squeeze(-1)  # (B, L-1)
        if "attention_mask" in batch:
            weight = batch["attention_mask"][:, 1:].to(nll.dtype)
            nll = nll * weight
            n_tokens = weight.sum().double()
        else:
            n_tokens = torch.tensor(float(nll.numel()), dtype=torch.float64, device=nll.device)
        total = nll.sum()
        return LossOutput(total / n_tokens.clamp_min(1).float(), total.detach().double(), n_tokens)
