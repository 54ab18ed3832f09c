"""GIDD hybrid noise (von Ruette et al. 2025, "Generalized Interpolating Discrete Diffusion";
"Scaling Behavior of Discrete Diffusion Language Models").

Marginal q_t(. | x) = alpha_t e_x + beta_t pi_t, beta = 1 - alpha, with the mixing
distribution pi_t = a_t u + (1 - a_t) e_m: u uniform over the K = V - 1 real tokens
(never [MASK]), a_t = sigmoid(scale * lambda_t + shift), lambda_t = logit(alpha_t)
clipped to [-clip, clip]. shift = -inf is masked diffusion, +inf uniform diffusion.

Continuous-time ELBO (GIDD thm. 3.3, re-derived here). Q_t = (alpha'/alpha) I + b_t 1^T
with b_t = -(alpha'/alpha) pi_t + beta pi'_t generates these marginals (b_t >= 0 for
|scale| <= 1); the ELBO of a CTMC (Campbell et al. 2022; SEDD) with the reverse rates
b_i q_t(j|x_hat)/q_t(i|x_hat) sums, at z_t = i, to
    w_t(i, x) [KL(q_t(.|x) || q_t(.|x_hat)) + r - log r - 1],
    w_t(i, x) = b_t(i) / q_t(i | x),   r = q_t(i|x) / q_t(i|x_hat).
At shift = -inf this is exactly MDLM's (-alpha'/(1 - alpha)) CE at masked positions.
The ELBO is tight when x_hat(z)^i = p(x^i | z^{-i}) (the posterior *without* the
token's own noisy value): then the model's reverse rates equal the true ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from src.algos.noise import NoiseSchedule


class HybridNoise:
    """Hybrid mask/uniform forward process on top of an alpha_t schedule.

    Args:
        schedule: alpha_t (log-linear by default).
        vocab_size: V, including [MASK].
        mask_id: id of [MASK]; the other V - 1 ids are the real categories.
        scale: slope of the mixing logit in lambda; |scale| <= 1 keeps the rates >= 0.
        shift: offset of the mixing logit (-inf masked ... 0 balanced ... +inf uniform).
        log_snr_clip: lambda is clipped to [-clip, clip].
    """

    def __init__(self, schedule: NoiseSchedule, vocab_size: int, mask_id: int,
                 scale: float = 1.0, shift: float = 0.0, log_snr_clip: float = 9.0) -> None:
        if abs(float(scale)) > 1.0:
            raise ValueError(f"algo.mix_scale={scale} must lie in [-1, 1] (the forward rates "
                             "of the hybrid process turn negative beyond)")
        self.schedule, self.vocab_size, self.mask_id = schedule, int(vocab_size), int(mask_id)
        self.k = self.vocab_size - 1
        self.scale, self.shift, self.clip = float(scale), float(shift), float(log_snr_clip)

    # ---- schedule pieces, all (B,) or broadcastable ------------------------------------
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.alpha(t)

    def mix(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, da_t/dt): uniform share of pi_t and its time derivative."""
        alpha = self.alpha(t).double()
        raw = torch.log(alpha) - torch.log1p(-alpha)  # logit(alpha)
        lam = raw.clamp(-self.clip, self.clip)
        a = torch.sigmoid(self.scale * lam + self.shift)  # shift = +-inf gives exactly 1 / 0
        # d lambda/dt = alpha' / (alpha (1 - alpha)), zero where the clip is active.
        dlam = self.schedule.dalpha(t).double() / (alpha * (1 - alpha))
        dlam = torch.where(raw.abs() < self.clip, dlam, torch.zeros_like(dlam))
        return a, a * (1 - a) * self.scale * dlam

    def pi_at(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """pi_t(z) for (B, L) ids: (1 - a) at [MASK], a / K at a real token."""
        a = a.reshape(-1, *([1] * (z.dim() - 1)))
        return torch.where(z == self.mask_id, 1 - a, a / self.k)

    # ---- forward process --------------------------------------------------------------
    def sample(self, x: torch.Tensor, t: torch.Tensor, u: torch.Tensor,
               noise_idx: torch.Tensor) -> torch.Tensor:
        """z_t ~ q_t(. | x) from uniforms u (B, L) and uniform indices in [0, K): [MASK] if
        u < beta (1 - a), the real token `noise_idx` if beta (1 - a) <= u < beta, else x.
        The mask test is MDLM's (same u, same beta), so shift = -inf gives MDLM's z_t."""
        move = (1 - self.alpha(t))[:, None]  # beta, computed as MDLM does
        a = self.mix(t)[0].to(move.dtype)[:, None]
        noise = noise_idx + (noise_idx >= self.mask_id).long()  # skip the [MASK] id
        z = torch.where(u < move, noise, x)
        return torch.where(u < move * (1 - a), self.mask_id, z)

    def elbo_terms(self, x: torch.Tensor, z: torch.Tensor, log_xhat: torch.Tensor,
                   t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token ELBO weight w_t(z, x) and divergence KL + IS, both (B, L) float32.

        Args:
            x, z: (B, L) clean and noised ids.
            log_xhat: (B, L, V) model log-probabilities, -inf at [MASK].
            t: (B,) times.
        """
        alpha = self.alpha(t).double()
        beta = 1 - alpha
        a, da = self.mix(t)
        dalpha = self.schedule.dalpha(t).double()
        col = (lambda v: v[:, None].float())  # noqa: E731  (B,) -> (B, 1)
        al, pu = col(alpha), col(beta * a / self.k)  # pu = beta pi(real token)
        # Clamped log: pu = 0 (pure masking) must give finite terms (they are zeroed below).
        log_al, log_pu = torch.log(al), torch.log(pu.clamp_min(1e-30))
        lx = log_xhat.float()
        # log q_t(v | x_hat) at real v: logaddexp(log alpha + log x_hat_v, log beta pi_v).
        log_px = torch.logaddexp(log_al + lx.gather(-1, x[..., None]).squeeze(-1), log_pu)
        q_xx = al + pu
        kl = q_xx * (torch.log(q_xx) - log_px)
        # Real v != x: q_v log(q_v / p_v) = -beta pi_v softplus(log alpha + log x_hat_v - log beta pi_v)
        # (well conditioned for any K; [MASK] has log x_hat = -inf, so it adds 0).
        sp = F.softplus(log_al[..., None] + lx - log_pu[..., None])
        sp_other = sp.sum(-1) - sp.gather(-1, x[..., None]).squeeze(-1)
        kl = kl - torch.where(pu > 0, pu * sp_other, torch.zeros_like(kl))
        # IS term at z: r = q(z|x) / q(z|x_hat); at [MASK] both are beta (1 - a), r = 1.
        is_mask = z == self.mask_id
        zr = torch.where(is_mask, x, z)
        q_z = torch.where(zr == x, al, torch.zeros_like(al)) + pu
        log_pz = torch.logaddexp(log_al + lx.gather(-1, zr[..., None]).squeeze(-1), log_pu)
        log_r = torch.log(q_z.clamp_min(1e-30)) - log_pz
        # Weight b_t(z) / q_t(z | x), b = -(alpha'/alpha) pi + beta pi' (derivation above).
        rate = (-dalpha / alpha)[:, None]
        b_mask = rate * (1 - a)[:, None] - (beta * da)[:, None]
        b_real = (rate * a[:, None] + (beta * da)[:, None]) / self.k
        q_mask = (beta * (1 - a))[:, None]
        w = torch.where(is_mask, b_mask / q_mask.clamp_min(1e-300),
                        b_real / q_z.double().clamp_min(1e-300))
        active = torch.where(is_mask, (b_mask != 0) & (q_mask > 0), (b_real != 0) & (q_z > 0))
        w = torch.where(active, w, torch.zeros_like(w))
        # Zero log r where it is unused: where() would still back-propagate inf * 0 = nan.
        log_r = torch.where(active & ~is_mask, log_r, torch.zeros_like(log_r))
        div = torch.where(active, kl + torch.expm1(log_r) - log_r, torch.zeros_like(kl))
        return w.float(), div

    def reverse_probs(self, xhat: torch.Tensor, z: torch.Tensor, t: float, s: float) -> torch.Tensor:
        """(n, L, V) float64 p(z_s | z_t = z) = q_{t|s}(z | j) q_s(j | x_hat) / q_t(z | x_hat).

        q_{t|s}(i | j) = (alpha_t / alpha_s) 1[i = j] + c_i with
        c = beta_t pi_t - (alpha_t / alpha_s) beta_s pi_s (GIDD eq. 4); s = 0 gives
        alpha_s = 1 and q_0(. | x_hat) = x_hat.
        """
        dev = xhat.device
        tt = torch.tensor([t, s], dtype=torch.float64, device=dev)
        al = self.alpha(tt).double()
        a, _ = self.mix(tt)
        a_t, a_s = float(al[0]), float(al[1])
        ratio = a_t / a_s
        pi_t, pi_s = self.pi_at(z, a[:1]), self.pi_at(z, a[1:])  # pi_t(z), pi_s(z): (n, L)
        c = ((1 - a_t) * pi_t - ratio * (1 - a_s) * pi_s).clamp_min(0)
        q_s = a_s * xhat.double()
        q_s = q_s + (1 - a_s) * (float(a[1]) / self.k)
        q_s[..., self.mask_id] = (1 - a_s) * (1 - float(a[1]))
        probs = c[..., None] * q_s
        keep = ratio * q_s.gather(-1, z[..., None])
        return probs.scatter_add(-1, z[..., None], keep)

    def reverse_mixture(self, xhat_z: torch.Tensor, z: torch.Tensor, t: float,
                        s: float) -> torch.Tensor:
        """(n, L, 4) unnormalized weights of the parts of `reverse_probs`.

        p(z_s = j) ∝ c q_s(j | x_hat) + 1[j = z] (alpha_t / alpha_s) q_s(z | x_hat), and
        q_s(. | x_hat) = alpha_s x_hat + beta_s a_s u + beta_s (1 - a_s) e_m, so a step is:
        stay at z (weight ratio q_s(z)), or draw j ~ x_hat (c alpha_s), j ~ u (c beta_s a_s),
        or [MASK] (c beta_s (1 - a_s)). Needs x_hat only at z (`xhat_z`, float64) and the rows
        of the positions that draw from it: the same law without the (n, L, V) posterior.
        """
        tt = torch.tensor([t, s], dtype=torch.float64, device=z.device)
        al = self.alpha(tt).double()
        a, _ = self.mix(tt)
        a_t, a_s, mix_s = float(al[0]), float(al[1]), float(a[1])
        ratio = a_t / a_s
        pi_t, pi_s = self.pi_at(z, a[:1]), self.pi_at(z, a[1:])
        c = ((1 - a_t) * pi_t - ratio * (1 - a_s) * pi_s).clamp_min(0)
        q_z = torch.where(z == self.mask_id, torch.full_like(c, (1 - a_s) * (1 - mix_s)),
                          a_s * xhat_z.double() + (1 - a_s) * mix_s / self.k)
        return torch.stack([ratio * q_z, c * a_s, c * ((1 - a_s) * mix_s),
                            c * ((1 - a_s) * (1 - mix_s))], dim=-1)
