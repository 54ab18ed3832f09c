"""MDLM ancestral sampling (Sahoo et al. 2024, "Simple and Effective Masked Diffusion LMs")."""

from __future__ import annotations

from typing import Any

import torch

from src.samplers.base import Sampler
from src.samplers.categorical import sample_categorical, top_p_filter, uniform64


class MDLMAncestral(Sampler):
    """Ancestral sampler of absorbing (masked) diffusion with the SUBS denoiser.

    Starts from all [MASK] (except prompt / infill tokens) and walks the time grid
    t_k = linspace(1, t_min, steps + 1). At a step t -> s a masked position moves to
    P(z_s = v) = p_v (alpha_s - alpha_t) / (1 - alpha_t) for v != [MASK] and
    P(z_s = [MASK]) = (1 - alpha_s) / (1 - alpha_t), clean positions kept: the MDLM
    reverse posterior q(z_s | z_t, x) with x replaced by the denoiser's p. The last step uses alpha_s = 1, so everything left is unmasked.

    The transition is drawn in two exactly equivalent stages: first "unmask?" with
    probability (alpha_s - alpha_t) / (1 - alpha_t), then v ~ p only at the positions
    that unmask. This gives the same law as one Gumbel-max over the joint (V+1)-way
    transition, but needs float64 noise for the unmasked rows only, not B x L x V.

    Args:
        steps: Default number of denoising steps (network calls without caching).
        cache: Reuse the previous probabilities when no token changed in the previous
            step and the denoiser is not time-conditioned (the SUBS posterior then
            depends on z only): an exact saving, counted in `nfe`.
        top_p: Nucleus mass applied to p before forming the transition (1 = off).
        t_min: End of the time grid (the last step still jumps to alpha_s = 1).
        greedy_last: At the last step take argmax p instead of sampling.
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("mdlm", "esolm")

    def __init__(
        self,
        steps: int = 128,
        cache: bool = True,
        top_p: float = 1.0,
        t_min: float = 1e-5,
        greedy_last: bool = False,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}: the default is 1e-5")
        self.steps, self.cache, self.top_p, self.t_min = int(steps), cache, float(top_p), t_min
        self.greedy_last, self.progress = greedy_last, progress

    @staticmethod
    def unmask_prob(alpha_t: float, alpha_s: float) -> float:
        """Probability that a position masked at t is clean at s < t.

        q(z_s != m | z_t = m) = (alpha_s - alpha_t) / (1 - alpha_t) (MDLM reverse posterior); with
        the remaining mass (1 - alpha_s) / (1 - alpha_t) it stays masked.
        """
        return (alpha_s - alpha_t) / (1.0 - alpha_t)

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
        device, mask_id = torch.device(algo.device), int(algo.mask_id)
        steps = self.steps if steps is None else int(steps)
        if prompt is not None and (prompt == mask_id).any():
            raise ValueError(
                "prompt contains [MASK] ids: use infill= to generate inside a template"
            )
        if infill is not None:
            x = infill.clone()
        else:
            x = torch.full((n, length), mask_id, dtype=torch.long, device=device)
            if prompt is not None:
                x[:, : prompt.shape[1]] = prompt
        ts = torch.linspace(1.0, self.t_min, steps + 1, dtype=torch.float64, device=device)
        alphas = algo.noise.alpha(ts).double().tolist()
        # The posterior of a time-independent SUBS denoiser depends on z only, so equal z
        # means equal p: reusing it is exact (MDLM's cached sampler).
        reuse_ok = self.cache and not bool(algo.time_conditioning)
        logp: torch.Tensor | None = None  # (n, L, V) in the network's dtype
        for k in self._progress(range(steps), steps, "MDLM sampling"):
            masked = x == mask_id
            if not bool(masked.any()):
                break
            last = k == steps - 1
            if logp is None or not reuse_ok:
                t = torch.full((n,), float(ts[k]), device=device)
                logp = algo.denoiser_log_probs(x, t)
                self.nfe += 1
            # Same noise shapes whether or not the cache hit, so cached == uncached tokens.
            u = uniform64((n, length), generator, device)
            if last:
                move = masked  # alpha_s = 1: nothing may stay masked
            else:
                move = masked & (u < self.unmask_prob(alphas[k], alphas[k + 1]))
            if not bool(move.any()):
                continue
            x[move] = self._draw(logp[move], mask_id, last, generator)
            logp = None  # z changed: the cached posterior is stale
        return x

    def _draw(
        self, logp: torch.Tensor, mask_id: int, last: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(m, V) denoiser log-probs at the positions that unmask -> (m,) clean ids. Only
        these rows go to float64: the rest of the step's (n, L, V) is never touched."""
        p = logp.double().exp()
        p[:, mask_id] = 0.0  # SUBS already gives [MASK] zero mass; never emit it anyway
        if self.top_p < 1.0:
            p = top_p_filter(p, self.top_p)
        if last and self.greedy_last:
            return p.argmax(dim=-1)
        return sample_categorical(p, generator)
