"""Confidence-ordered unmasking for masked diffusion LMs (MaskGIT, Chang et al. 2022; LLaDA,
Nie et al. 2025; the `remasking="low_confidence"` generate of MegaDLMs / Super Data Learners).

The generated region (after the prompt, or a template's [MASK]s) is split into blocks of
`block_size` decoded left to right (semi-autoregressive); each block gets ceil(steps / blocks)
steps, and each step fixes a set number of its masked positions (the block's masked count
spread evenly over the steps, the first steps taking the remainder, as LLaDA's
`get_num_transfer_tokens`). At a step the denoiser proposes x0 at every masked position
(argmax at temperature 0, else a draw from p^(1/T) with nucleus top_p); the positions whose
proposal has the highest probability under p (`low_confidence`: the least confident stay
masked) or random positions (`random`) keep it. With `random`, temperature 1 and one token
per step this is exact sequential sampling from the denoiser's conditionals.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from src.samplers.base import Sampler
from src.samplers.categorical import apply_temperature, sample_categorical, top_p_filter, uniform64

REMASKING = ("low_confidence", "random")


class LowConfidence(Sampler):
    """Block-wise confidence-ordered unmasking (see the module docstring).

    Args:
        steps: Default number of network calls over the whole generated region.
        block_size: Positions per block (MegaDLMs' inference_block_size); None = one block.
        temperature: 0 = argmax proposals; otherwise draw from p^(1/T).
        top_p: Nucleus mass of the proposal distribution (1 = off).
        remasking: `low_confidence` or `random` order.
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("mdlm",)

    def __init__(self, steps: int = 128, block_size: int | None = None,
                 temperature: float = 0.0, top_p: float = 1.0,
                 remasking: str = "low_confidence", progress: bool | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1 or null, got {block_size}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}: 0 = argmax")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        if remasking not in REMASKING:
            raise ValueError(f"remasking={remasking!r}: one of {', '.join(REMASKING)}")
        self.steps, self.block_size = int(steps), block_size
        self.temperature, self.top_p, self.remasking = float(temperature), float(top_p), remasking
        self.progress = progress

    @staticmethod
    def transfer_counts(masked: int, steps: int) -> list[int]:
        """How many of `masked` positions each of `steps` steps fixes (remainder first)."""
        base, extra = divmod(masked, steps)
        return [base + (1 if i < extra else 0) for i in range(steps)]

    def _generate(self, algo: Any, n: int, length: int, steps: int | None, *,
                  prompt: torch.Tensor | None, infill: torch.Tensor | None,
                  generator: torch.Generator | None) -> torch.Tensor:
        device, mask_id = torch.device(algo.device), int(algo.mask_id)
        steps = self.steps if steps is None else int(steps)
        if prompt is not None and (prompt == mask_id).any():
            raise ValueError("prompt contains [MASK] ids: use infill= to generate inside a "
                             "template")
        if infill is not None:
            x, start = infill.clone(), 0
        else:
            x = torch.full((n, length), mask_id, dtype=torch.long, device=device)
            start = 0 if prompt is None else prompt.shape[1]
            if prompt is not None:
                x[:, :start] = prompt
        size = self.block_size or (length - start)
        blocks = [(b, min(b + size, length)) for b in range(start, length, size)]
        per_block = max(1, math.ceil(steps / len(blocks)))
        bar = self._progress(range(len(blocks) * per_block), len(blocks) * per_block,
                             "low-confidence sampling")
        for lo, hi in blocks:
            in_block = torch.zeros(length, dtype=torch.bool, device=device)
            in_block[lo:hi] = True
            counts = [self.transfer_counts(int(c), per_block)
                      for c in (x[:, lo:hi] == mask_id).sum(dim=1).tolist()]
            for step in range(per_block):
                next(bar, None)
                masked = x == mask_id
                if not bool((masked & in_block).any()):
                    break
                t = masked.double().mean(dim=1).float()  # the fraction still masked
                logp = algo.denoiser_log_probs(x, t)
                self.nfe += 1
                x = self._fix(x, logp, masked & in_block, [c[step] for c in counts], generator)
        return x

    def _fix(self, x: torch.Tensor, logp: torch.Tensor, candidates: torch.Tensor,
             counts: list[int], generator: torch.Generator | None) -> torch.Tensor:
        """Propose at the candidate positions and keep the `counts[row]` most confident."""
        p = logp[candidates].double().exp()  # (m, V) rows of the candidates only
        filtered = top_p_filter(p, self.top_p) if self.top_p < 1.0 else p
        if self.temperature == 0.0:
            proposal = filtered.argmax(dim=-1)
        else:
            proposal = sample_categorical(apply_temperature(filtered.log(), self.temperature),
                                          generator, log_space=True)
        confidence = torch.full(x.shape, -math.inf, dtype=torch.float64, device=x.device)
        if self.remasking == "low_confidence":
            confidence[candidates] = p.gather(-1, proposal[:, None]).squeeze(-1)
        else:
            confidence[candidates] = uniform64((int(candidates.sum()),), generator, x.device)
        proposed = x.clone()
        proposed[candidates] = proposal
        out = x.clone()
        for row, k in enumerate(counts):
            if k > 0:
                keep = confidence[row].topk(k).indices
                out[row, keep] = proposed[row, keep]
        return out
