"""Noise schedules alpha_t = P(token still clean at time t), and the time sampler.

All schedules expose alpha(t), dalpha(t) = d alpha / dt and sigma(t) = -log alpha(t)
(the time-conditioning input), for t in [0, 1] (docs/algorithms.md, "Noise schedules").
"""

from __future__ import annotations

import math

import torch


class NoiseSchedule:
    """Base class: subclasses define alpha and dalpha."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log(self.alpha(t).clamp_min(1e-12))

    def mdlm_weight(self, t: torch.Tensor) -> torch.Tensor:
        """ELBO weight -alpha'_t / (1 - alpha_t) of the masked-diffusion NELBO (MDLM eq. 10)."""
        return -self.dalpha(t) / (1 - self.alpha(t)).clamp_min(1e-12)


class LogLinear(NoiseSchedule):
    """alpha_t = 1 - (1 - eps) t, so the MDLM weight is exactly 1/t (reference default)."""

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - (1 - self.eps) * t

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -(1 - self.eps))

    def mdlm_weight(self, t: torch.Tensor) -> torch.Tensor:
        return 1 / t  # exact: (1 - eps) / ((1 - eps) t)


class Linear(NoiseSchedule):
    """alpha_t = 1 - t (Quokka ablation)."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -1.0)


class Poly2(NoiseSchedule):
    """alpha_t = 1 - t^2 (Quokka ablation)."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t**2

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return -2 * t


class Cosine(NoiseSchedule):
    """alpha_t = 1 - cos(pi/2 (1 - t)) (Quokka ablation)."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - torch.cos(math.pi / 2 * (1 - t))

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return -math.pi / 2 * torch.sin(math.pi / 2 * (1 - t))


def stratified_times(
    u: torch.Tensor, index: torch.Tensor, n_global: int, eps_t: float = 1e-3
) -> torch.Tensor:
    """Antithetic times stratified over the *global* batch (all ranks and accumulation steps).

    t_i = ((u + i / n) mod 1)(1 - eps_t) + eps_t with one shared u per optimizer step and
    i the sample's index in the global batch, so any split of the global batch into
    ranks and micro-batches (divisible or not) covers [eps_t, 1) with one point per stratum.
    """
    return ((u + index.double() / n_global) % 1.0 * (1 - eps_t) + eps_t).float()


class AlphaScaled(NoiseSchedule):
    """alpha_0 * base.alpha(t): the diffusion part of Eso-LM ends at alpha_0, not 1."""

    def __init__(self, base: NoiseSchedule, alpha_0: float) -> None:
        self.base, self.alpha_0 = base, float(alpha_0)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.alpha_0 * self.base.alpha(t)

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.alpha_0 * self.base.dalpha(t)


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    cls.__name__: cls for cls in (LogLinear, Linear, Poly2, Cosine)}


def noise_from_spec(spec: dict[str, object]) -> NoiseSchedule:
    """A schedule from {"class": LogLinear | Linear | Poly2 | Cosine, **its arguments} (what
    an export's config.json stores, src/export/hf_export.py)."""
    kwargs = dict(spec)
    name = str(kwargs.pop("class"))
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}: one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
