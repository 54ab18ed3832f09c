"""DUO / UDLM ancestral sampling of uniform-state diffusion (Sahoo et al. 2025; Schiff et al. 2024)."""

from __future__ import annotations

from typing import Any

import torch

from src.algos.uniform_noise import RealVocab, posterior_mixture_weights, reverse_posterior
from src.samplers.base import Sampler
from src.samplers.categorical import sample_categorical, top_p_filter, uniform64

STAY, FROM_X, UNIFORM = 0, 1, 2  # the parts of the reverse posterior (posterior_mixture_weights)


def sample_reverse_posterior(log_x: torch.Tensor, z: torch.Tensor, alpha_t: float,
                             alpha_s: float, generator: torch.Generator | None) -> torch.Tensor:
    """One exact draw per position from `reverse_posterior` (real indices in and out).

    `log_x`: (..., K) log x_theta in any float dtype. Draws the mixture part first
    (float64, from x_theta at the current token only), then only the positions that take
    j ~ x_theta run a float64 Gumbel-max over their row; the rest stay or draw uniformly.
    Same law as sampling the dense (..., K) posterior, without building it: with many steps
    almost every position stays.
    """
    x_i = log_x.gather(-1, z[..., None]).squeeze(-1).double().exp()
    part = sample_categorical(posterior_mixture_weights(x_i, log_x.shape[-1], alpha_t, alpha_s),
                              generator)
    out = z.clone()
    from_x = part == FROM_X
    if from_x.any():
        out[from_x] = sample_categorical(log_x[from_x], generator, log_space=True)
    uniform = part == UNIFORM
    if uniform.any():
        k = log_x.shape[-1]
        u = uniform64((int(uniform.sum()),), generator, z.device)
        out[uniform] = (u * k).long().clamp_max(k - 1)
    return out


class DUOAncestral(Sampler):
    """Ancestral sampler of uniform-state diffusion with a mean-parameterized denoiser.

    Starts from uniform noise over the K real tokens (never [MASK]) and walks the grid
    t_k = linspace(1, t_min, steps + 1). A step t -> s draws every position from the exact
    reverse posterior q(z_s | z_t, x = x_theta) (`reverse_posterior`, docs/algorithms.md), after
    nucleus filtering of x_theta, drawn as its three-part mixture (`sample_reverse_posterior`).
    The last step uses alpha_s = 1: the posterior is then the model's clean prediction
    p(x | z_t) ∝ x_theta(x) q(z_t | x), sampled (default) or its argmax (`greedy_last`).
    Categoricals are float64 Gumbel-max. Every step calls the network (DUO is
    time-conditioned, so nothing can be cached).

    `algo` must expose `device`, `vocab_size`, `mask_id`, `noise.alpha(t)` and
    `denoiser_log_probs(z, t) -> (B, L, K)` log x_theta over the K real tokens (network
    dtype); only x_theta at the current tokens and the rows drawn from go to float64.

    Args:
        steps: default number of denoising steps (= network calls).
        top_p: nucleus mass applied to x_theta before forming the posterior (1 = off).
        t_min: end of the time grid (the last step still jumps to alpha_s = 1).
        greedy_last: take the argmax of p(x | z_t) at the last step instead of sampling.
        progress: show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("duo", "duo_distill")

    def __init__(self, steps: int = 128, top_p: float = 1.0, t_min: float = 1e-5,
                 greedy_last: bool = False, progress: bool | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}: the default is 1e-5")
        self.steps, self.top_p, self.t_min = int(steps), float(top_p), float(t_min)
        self.greedy_last, self.progress = greedy_last, progress

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
        real = RealVocab(int(algo.vocab_size), int(algo.mask_id))
        steps = self.steps if steps is None else int(steps)
        fixed = torch.zeros(n, length, dtype=torch.bool, device=device)
        template = torch.zeros(n, length, dtype=torch.long, device=device)
        if prompt is not None:
            if (prompt == real.mask_id).any():
                raise ValueError("prompt contains [MASK] ids: use infill= to mark the gaps")
            fixed[:, : prompt.shape[1]] = True
            template[:, : prompt.shape[1]] = prompt
        if infill is not None:
            fixed, template = infill != real.mask_id, infill
        # z_1 ~ Uniform over the K real tokens (the prior of uniform-state diffusion).
        u = uniform64((n, length), generator, device)
        z = real.to_ids((u * real.k).long().clamp_max(real.k - 1))
        z = torch.where(fixed, template, z)
        ts = torch.linspace(1.0, self.t_min, steps + 1, dtype=torch.float64, device=device)
        alphas = algo.noise.alpha(ts).double().tolist()
        for k in self._progress(range(steps), steps, "DUO sampling"):
            last = k == steps - 1
            t = torch.full((n,), float(ts[k]), device=device)
            log_x = algo.denoiser_log_probs(z, t)  # (n, L, K)
            self.nfe += 1
            alpha_s = 1.0 if last else alphas[k + 1]
            greedy = last and self.greedy_last
            if self.top_p < 1.0 or greedy:  # these need the whole normalized x_theta
                x_theta = log_x.double().exp()
                x_theta = x_theta / x_theta.sum(-1, keepdim=True)
                if self.top_p < 1.0:
                    x_theta = top_p_filter(x_theta, self.top_p)
                log_x = x_theta.log()
            if greedy:
                new = reverse_posterior(log_x.exp(), real.to_real(z), alphas[k], alpha_s).argmax(-1)
            else:
                new = sample_reverse_posterior(log_x, real.to_real(z), alphas[k], alpha_s,
                                               generator)
            z = torch.where(fixed, template, real.to_ids(new))
        return z
