"""Uniform-state discrete diffusion over the K = V - 1 real categories (UDLM / DUO).

Everything here works in "real space": index k in 0..K-1 is the k-th vocabulary id that is
not [MASK] (EOS is a real data token and stays). Uniform noise never produces [MASK]
(docs/algorithms.md flags the reference for including it).
"""

from __future__ import annotations

import math

import torch


class RealVocab:
    """Maps between vocabulary ids (0..V-1, one of them [MASK]) and real indices 0..K-1."""

    def __init__(self, vocab_size: int, mask_id: int) -> None:
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id {mask_id} outside the vocabulary of {vocab_size} ids")
        self.vocab_size, self.mask_id, self.k = vocab_size, mask_id, vocab_size - 1

    def to_real(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids (never [MASK]) -> real indices."""
        return ids - (ids > self.mask_id).long()

    def to_ids(self, real: torch.Tensor) -> torch.Tensor:
        """Real indices -> vocabulary ids (skips the [MASK] id)."""
        return real + (real >= self.mask_id).long()

    def drop_mask(self, v: torch.Tensor) -> torch.Tensor:
        """(..., V) -> (..., K): remove the [MASK] column."""
        m = self.mask_id
        return torch.cat([v[..., :m], v[..., m + 1:]], dim=-1)

    def add_mask(self, k: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(..., K) -> (..., V): insert a [MASK] column holding `fill`."""
        m = self.mask_id
        col = torch.full_like(k[..., :1], fill)
        return torch.cat([k[..., :m], col, k[..., m:]], dim=-1)


def corrupt(x: torch.Tensor, alpha: torch.Tensor, u_keep: torch.Tensor, u_new: torch.Tensor,
            k: int) -> torch.Tensor:
    """Draw z_t ~ q(. | x) = alpha e_x + (1 - alpha) / K per position (real indices).

    Args:
        x: (B, L) real indices.
        alpha: (B,) signal level.
        u_keep, u_new: (B, L) uniforms: keep x if u_keep < alpha, else floor(u_new K).
        k: number of real categories.
    """
    fresh = (u_new * k).long().clamp_max(k - 1)  # a uniform draw may land on x itself
    return torch.where(u_keep < alpha.to(u_keep.dtype)[:, None], x, fresh)


def udlm_nelbo(log_x: torch.Tensor, x: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor,
               dalpha: torch.Tensor) -> torch.Tensor:
    """Per-token integrand of the continuous-time UDLM NELBO (Schiff et al. 2024), as in DUO.

    With xbar_theta = K alpha x_theta + (1 - alpha), i = z_t and
    xbar_t(i) = (1 - alpha) + K alpha 1[x = i] (docs/algorithms.md, DUO):
    loss = (alpha' / (K alpha)) (term1 - term2). It is >= 0 and, averaged over t ~ U(0, 1)
    and z_t ~ q(. | x), bounds -log p(x) up to the prior term; the bound is tight when
    x_theta is the leave-one-out posterior p(x^i | z_t^{-i}) (tests/algos/test_duo_oracle.py).

    Args:
        log_x: (B, L, K) log x_theta (log-softmax over the real categories).
        x, z: (B, L) clean and noisy real indices.
        alpha, dalpha: (B,) alpha_t and d alpha / dt (< 0).

    Returns:
        (B, L) float64 loss per token.
    """
    k = log_x.shape[-1]
    a, da = alpha.double()[:, None], dalpha.double()[:, None]  # (B, 1)
    log_ka, log_1ma = torch.log(k * a), torch.log1p(-a)
    # sum_j log xbar_theta[j] = K log(1 - alpha) + sum_j log1p(beta x_j), beta = K alpha / (1 - alpha):
    # the large part is exact in float64 and log1p keeps every (B, L, K) term accurate in
    # float32 at both ends (alpha -> 0, where the weight 1/(K alpha) amplifies rounding, and 1).
    beta = (k * a / (1 - a)).to(log_x.dtype)[..., None]
    sum_log = k * log_1ma + torch.log1p(log_x.exp() * beta).sum(-1).double()  # (B, L)
    # The gathered terms are multiplied by K alpha / (1 - alpha): redo them in float64.
    lx_i = torch.logaddexp(log_x.gather(-1, z[..., None])[..., 0].double() + log_ka, log_1ma)
    lx_x = torch.logaddexp(log_x.gather(-1, x[..., None])[..., 0].double() + log_ka, log_1ma)
    same = x == z
    xbar_t_i = (1 - a) + k * a * same
    term1 = k * (1 / xbar_t_i - torch.exp(-lx_i))
    log_c = log_1ma - torch.log(k * a + 1 - a)  # c = (1 - alpha) / (K alpha + 1 - alpha)
    c = log_c.exp()
    term2 = (
        -torch.where(same, c, torch.ones_like(c)) * (sum_log - k * lx_i)
        - torch.where(same, torch.zeros_like(lx_x), k * a / (1 - a) * (lx_x - lx_i))
        + torch.where(same, (k - 1) * c * log_c, -log_c / c)
    )
    return da / (k * a) * (term1 - term2)


def prior_kl(alpha_1: float, k: int) -> float:
    """KL(q(z_1 | x) || Uniform(K)) per token: the NELBO's prior term at t = 1."""
    p_x = alpha_1 + (1 - alpha_1) / k
    p_other = (1 - alpha_1) / k
    out = p_x * math.log(p_x * k)
    if p_other > 0:
        out += (k - 1) * p_other * math.log(p_other * k)
    return out


def reverse_posterior(x_theta: torch.Tensor, z: torch.Tensor, alpha_t: float,
                      alpha_s: float) -> torch.Tensor:
    """q(z_s | z_t = i, x = x_theta), normalized (UDLM / DUO ancestral step; docs/algorithms.md).

    q(z_s = j) ∝ K a_t x_j 1[j=i] + (a_ts - a_t) 1[j=i] + (a_s - a_t) x_j + (1 - a_ts)(1 - a_s)/K,
    a_ts = a_t / a_s; it is q(z_t | z_s) q(z_s | x) with x_theta plugged in for x. With
    alpha_s = 1 it is the model's clean prediction p(x | z_t) ∝ x_theta(j) q(z_t = i | j).

    Args:
        x_theta: (..., K) float64 probabilities over the real categories.
        z: (...) current real indices.
        alpha_t, alpha_s: signal levels, alpha_s > alpha_t.

    Returns:
        (..., K) float64 probabilities.
    """
    k = x_theta.shape[-1]
    a_ts = alpha_t / alpha_s
    onehot = torch.zeros_like(x_theta).scatter_(-1, z[..., None], 1.0)
    q = ((k * alpha_t * x_theta + (a_ts - alpha_t)) * onehot + (alpha_s - alpha_t) * x_theta
         + (1 - a_ts) * (1 - alpha_s) / k)
    return q / q.sum(-1, keepdim=True)


def log_reverse_posterior(log_x: torch.Tensor, z: torch.Tensor, alpha_t: torch.Tensor,
                          alpha_s: torch.Tensor) -> torch.Tensor:
    """log `reverse_posterior`, differentiable in `log_x`, with per-row signal levels.

    A student's KL against it sees the K-fold amplification of x_i in the stay term: an
    x_theta that keeps 1e-3 of its mass on a noise token keeps that token with weight
    ~K a_t 1e-3, which a KL between x_thetas barely sees but a KL between posteriors does.
    Every term is >= (1 - a_ts)(1 - a_s)/K > 0 for alpha_s < 1, so the log is safe.

    Args:
        log_x: (B, ..., K) log x_theta over the real categories (normalized).
        z: (B, ...) current real indices.
        alpha_t, alpha_s: signal levels broadcastable to z (e.g. (B, 1)), alpha_s > alpha_t.

    Returns:
        (B, ..., K) normalized log-probabilities.
    """
    k = log_x.shape[-1]
    a_t, a_s = alpha_t.double()[..., None], alpha_s.double()[..., None]
    a_ts = a_t / a_s
    # Coefficients in float64, applied in the working dtype.
    move, floor = (a_s - a_t).to(log_x.dtype), ((1 - a_ts) * (1 - a_s) / k).to(log_x.dtype)
    stay_amp, stay_const = (k * a_t).to(log_x.dtype), (a_ts - a_t).to(log_x.dtype)
    x = log_x.exp()
    idx = z[..., None]
    x_i = x.gather(-1, idx)
    # q_j = (a_s - a_t) x_j + (1 - a_ts)(1 - a_s)/K, and j = i adds K a_t x_i + (a_ts - a_t).
    num = (move * x + floor).scatter_add(-1, idx, stay_amp * x_i + stay_const)
    # sum_j x_j = 1, so the normalizer is known in closed form.
    log_z = torch.log(move + k * floor + stay_amp * x_i + stay_const)
    return torch.log(num) - log_z


def posterior_mixture_weights(x_i: torch.Tensor, k: int, alpha_t: float,
                              alpha_s: float) -> torch.Tensor:
    """(..., 3) unnormalized weights of the three parts of `reverse_posterior`.

    Summing each term of q(z_s = j) over j splits the posterior into a mixture: stay at i
    (weight K a_t x_i + a_ts - a_t), draw j ~ x_theta (weight a_s - a_t), draw j uniformly
    (weight (1 - a_ts)(1 - a_s)). Sampling the part first, then j, is exact and needs
    x_theta only at the current token i (`x_i`, float64) and, for the positions that draw
    from it, their rows: no (..., K) posterior tensor.
    """
    a_ts = alpha_t / alpha_s
    stay = k * alpha_t * x_i.double() + (a_ts - alpha_t)
    return torch.stack([stay, torch.full_like(stay, alpha_s - alpha_t),
                        torch.full_like(stay, (1 - a_ts) * (1 - alpha_s))], dim=-1)
