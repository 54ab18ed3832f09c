"""GIDD samplers (von Ruette et al. 2025): ancestral (exact reverse posterior of the hybrid
process with x replaced by the model's x_hat) and adaptive (self-correcting)."""

from __future__ import annotations

import math
from typing import Any

import torch

from src.samplers.base import Sampler
from src.samplers.defaults import default_sampler
from src.samplers.categorical import apply_temperature, sample_categorical, top_p_filter, uniform64


STAY, FROM_X, UNIFORM, MASK = 0, 1, 2, 3  # the parts of HybridNoise.reverse_mixture


def check_gidd_algo(algo: Any, sampler: str) -> None:
    """One clear error when the algo has no hybrid-noise denoiser."""
    if not (hasattr(algo, "hybrid") and hasattr(algo, "clean_log_probs")):
        name = getattr(algo, "name", type(algo).__name__)
        fix = default_sampler(str(name)) or "the algo's own sampler"
        raise ValueError(
            f"sampler={sampler} needs a GIDD algo (algo=gidd), got algo={name}: use sampler={fix}"
        )


def _start(algo: Any, n: int, length: int, prompt: torch.Tensor | None,
           infill: torch.Tensor | None, generator: torch.Generator | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, fixed): a draw from the prior pi_1 (mask or uniform real token) at free positions."""
    hyb, device = algo.hybrid, torch.device(algo.device)
    a1 = float(hyb.mix(torch.ones(1, dtype=torch.float64, device=device))[0])
    u = uniform64((n, length), generator, device)
    idx = (uniform64((n, length), generator, device) * hyb.k).long().clamp_max(hyb.k - 1)
    z = torch.where(u < 1 - a1, hyb.mask_id, idx + (idx >= hyb.mask_id).long())
    fixed = torch.zeros(n, length, dtype=torch.bool, device=device)
    if infill is not None:
        fixed = infill != hyb.mask_id
        z = torch.where(fixed, infill, z)
    elif prompt is not None:
        fixed[:, : prompt.shape[1]] = True
        z[:, : prompt.shape[1]] = prompt
    return z, fixed


def sample_hybrid_reverse(algo: Any, log_xhat: torch.Tensor, z: torch.Tensor, t: float, s: float,
                          generator: torch.Generator | None) -> torch.Tensor:
    """One exact draw per position from p(z_s | z_t = z) (`HybridNoise.reverse_probs`): the
    part first (float64), then a float64 Gumbel-max over x_hat only where the part says so."""
    hyb = algo.hybrid
    xhat_z = log_xhat.gather(-1, z[..., None]).squeeze(-1).double().exp()
    part = sample_categorical(hyb.reverse_mixture(xhat_z, z, t, s), generator)
    out = z.clone()
    from_x = part == FROM_X
    if bool(from_x.any()):
        out[from_x] = sample_categorical(log_xhat[from_x], generator, log_space=True)
    uniform = part == UNIFORM
    if bool(uniform.any()):
        idx = (uniform64((int(uniform.sum()),), generator, z.device) * hyb.k).long()
        idx = idx.clamp_max(hyb.k - 1)
        out[uniform] = idx + (idx >= hyb.mask_id).long()  # skip the [MASK] id
    out[part == MASK] = hyb.mask_id
    return out


class GIDDAncestral(Sampler):
    """t_k = linspace(1, 0, steps + 1); z_s ~ p(z_s | z_t) = q_{t|s}(z_t | z_s) q_s(z_s | x_hat) /
    q_t(z_t | x_hat) per position (GIDD eq. 4, `HybridNoise.reverse_probs`), float64
    Gumbel-max. The last step goes to alpha = 1, where q_0(. | x_hat) = x_hat.

    Args:
        steps: Number of denoising steps (network calls).
        top_p: Nucleus applied to x_hat before forming the posterior (1 = off).
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("gidd",)

    def __init__(self, steps: int = 128, top_p: float = 1.0, progress: bool | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        self.steps, self.top_p, self.progress = int(steps), float(top_p), progress

    def check_algo(self, algo: Any) -> None:
        """Raise one clear ValueError (naming a compatible sampler) for a non-GIDD algo."""
        super().check_algo(algo)
        check_gidd_algo(algo, "gidd_ancestral")

    def _generate(self, algo: Any, n: int, length: int, steps: int | None, *,
                  prompt: torch.Tensor | None, infill: torch.Tensor | None,
                  generator: torch.Generator | None) -> torch.Tensor:
        self.check_algo(algo)
        steps = self.steps if steps is None else int(steps)
        z, fixed = _start(algo, n, length, prompt, infill, generator)
        ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
        for k in self._progress(range(steps), steps, "GIDD sampling"):
            log_xhat = algo.clean_log_probs(z, torch.full((n,), ts[k], device=z.device))
            self.nfe += 1
            if self.top_p < 1.0:  # the nucleus needs whole rows
                log_xhat = top_p_filter(log_xhat.double().exp(), self.top_p).log()
            new = sample_hybrid_reverse(algo, log_xhat, z, ts[k], ts[k + 1], generator)
            z = torch.where(fixed, z, new)
        return z


class GIDDAdaptive(Sampler):
    """Self-correcting sampler: each step changes the k positions with the largest
    score (max_v x_hat(v) - x_hat(z_i)) * pi_t(z_i) (how sure the model is that z_i is
    wrong, times how likely z_i is noise), k = ceil(free positions / steps). Masked
    positions score x_hat_max * (1 - a_t); a visible token may be revised later. New
    tokens are drawn from x_hat (temperature 0 = argmax). [MASK]s left after the last
    step are filled from one more call at t = 0.

    Args:
        steps: Number of steps (network calls, plus at most one).
        temperature: Temperature of the replacement draw (0 = greedy).
        top_p: Nucleus on x_hat for the replacement draw (1 = off).
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("gidd",)

    def __init__(self, steps: int = 128, temperature: float = 1.0, top_p: float = 1.0,
                 progress: bool | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if temperature < 0 or not 0.0 < top_p <= 1.0:
            raise ValueError(f"need temperature >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
        self.steps, self.temperature, self.top_p = int(steps), float(temperature), float(top_p)
        self.progress = progress
        self.revisions = 0  # visible real tokens replaced in the last call

    def check_algo(self, algo: Any) -> None:
        """Raise one clear ValueError (naming a compatible sampler) for a non-GIDD algo."""
        super().check_algo(algo)
        check_gidd_algo(algo, "gidd_adaptive")

    def _generate(self, algo: Any, n: int, length: int, steps: int | None, *,
                  prompt: torch.Tensor | None, infill: torch.Tensor | None,
                  generator: torch.Generator | None) -> torch.Tensor:
        self.check_algo(algo)
        hyb = algo.hybrid
        steps = self.steps if steps is None else int(steps)
        z, fixed = _start(algo, n, length, prompt, infill, generator)
        per_step = max(1, math.ceil(int((~fixed).sum(1).max()) / steps))
        ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
        self.revisions = 0
        for k in self._progress(range(steps), steps, "GIDD adaptive sampling"):
            t = torch.full((n,), ts[k], device=z.device, dtype=torch.float64)
            log_xhat = algo.clean_log_probs(z, t.float())
            self.nfe += 1
            a = hyb.mix(t)[0]
            # float64 of the (n, L) maxima and current-token values only.
            best = log_xhat.max(-1).values.double().exp()
            at_z = log_xhat.gather(-1, z[..., None]).squeeze(-1).double().exp()
            score = (best - at_z) * hyb.pi_at(z, a)
            score = score.masked_fill(fixed | (score <= 0), -math.inf)
            top = score.topk(min(per_step, length), dim=-1)
            change = torch.isfinite(top.values)
            rows = log_xhat.gather(1, top.indices[..., None].expand(-1, -1, log_xhat.shape[-1]))
            new = self._draw(rows, generator)
            old = z.gather(1, top.indices)
            self.revisions += int((change & (old != hyb.mask_id) & (new != old)).sum())
            z = z.scatter(1, top.indices, torch.where(change, new, old))
        left = z == hyb.mask_id
        if bool(left.any()):
            log_xhat = algo.clean_log_probs(z, torch.zeros(n, device=z.device))
            self.nfe += 1
            z = z.clone()
            z[left] = self._draw(log_xhat[left], generator)
        return z

    def _draw(self, log_p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(..., V) log x_hat rows -> ids (float64 from here on)."""
        log_p = log_p.double()
        if self.top_p < 1.0:
            log_p = top_p_filter(log_p.exp(), self.top_p).log()
        return sample_categorical(apply_temperature(log_p, self.temperature), generator,
                                  log_space=True)
