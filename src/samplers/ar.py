"""Autoregressive sampling: temperature, nucleus top-p, float64 Gumbel-max, KV cache."""

from __future__ import annotations

from typing import Any

import torch

from src.samplers.base import Sampler
from src.samplers.categorical import apply_temperature, sample_categorical, top_p_filter


class ARSampler(Sampler):
    """Left-to-right sampling from `algo.causal_logits`.

    Without a prompt every sample starts from `algo.eos_id`: the data packs documents
    separated by EOS, so EOS is the start-of-document token. The start token / prompt
    is part of the returned sequence; the sampler fills the remaining positions.

    Args:
        temperature: Softmax temperature T >= 0 (0 = greedy argmax).
        top_p: Nucleus mass in (0, 1] (1 disables it).
        use_kv_cache: Prefill the prefix once, then feed one new token per call
            (`algo.new_kv_cache`); otherwise re-run the whole prefix at every step.
            Both paths draw the same noise, so they give identical tokens.
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = False

    algos = ("ar",)

    def __init__(
        self,
        temperature: float = 1.0,
        top_p: float = 1.0,
        use_kv_cache: bool = True,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}: use 0 for greedy")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.use_kv_cache, self.progress = use_kv_cache, progress

    def _next_token(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(n, V) next-token logits -> (n,) ids (temperature, then top-p, then Gumbel-max)."""
        logp = apply_temperature(logits, self.temperature)
        if self.top_p < 1.0:
            # Nucleus on the tempered distribution, as in common LM sampling code.
            return sample_categorical(top_p_filter(logp.exp(), self.top_p), generator)
        return sample_categorical(logp, generator, log_space=True)

    def _generate(
        self,
        algo: Any,
        n: int,
        length: int,
        steps: int | None,
        *,
        prompt: torch.Tensor | None,
        infill: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        device = torch.device(algo.device)
        if prompt is None:
            if length < 2:
                raise ValueError(
                    f"length {length} leaves no room after the start (EOS) token: use length >= 2"
                )
            prompt = torch.full((n, 1), int(algo.eos_id), dtype=torch.long, device=device)
        p_len = prompt.shape[1]
        x = torch.empty((n, length), dtype=torch.long, device=device)
        x[:, :p_len] = prompt
        cache = algo.new_kv_cache(n, length) if self.use_kv_cache else None
        if cache is not None:
            # Prefill: one call on the whole prefix; later calls feed only the new token.
            logits = algo.causal_logits(x[:, :p_len], kv_cache=cache)[:, -1]
            self.nfe += 1
        for pos in self._progress(range(p_len, length), length - p_len, "AR sampling"):
            if cache is None:
                logits = algo.causal_logits(x[:, :pos])[:, -1]
                self.nfe += 1
            x[:, pos] = self._next_token(logits, generator)
            if cache is not None and pos + 1 < length:
                logits = algo.causal_logits(x[:, pos : pos + 1], kv_cache=cache)[:, -1]
                self.nfe += 1
        return x
