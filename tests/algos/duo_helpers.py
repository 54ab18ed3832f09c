"""Exact uniform-noise posteriors of the enumerable oracle (tests/oracle.py) for DUO tests.

Under uniform noise q(z^i | x^i) = alpha 1[z^i = x^i] + (1 - alpha)/K factorizes over
positions, so p(x | z_t) ∝ p(x) prod_i q(z_t^i | x^i) is exact by enumeration.

Which per-position posterior is the exact *mean-parameterized* denoiser? Plugging x_theta
into q(z_s | z_t, x) reproduces the true reverse marginal p(z_s^i | z_t) iff
x_theta = p(x^i | z_t^{-i}), the posterior given the *other* positions (the plug-in
already multiplies by q(z_t^i | x^i)). With p(x^i | z_t) the UDLM NELBO is ~50% above H(X).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.algos.duo import DUO
from src.algos.noise import LogLinear
from tests.oracle import EnumerableDist

COMMON = {"optim": {}, "lr_scheduler": {}, "eos_id": 0}


def likelihoods(dist: EnumerableDist, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """q(z^i | x^i = seqs[s, i]) for every sequence: (B, L), (B,) -> (B, S, L) float64."""
    a = alpha.double()[:, None, None]
    agree = (z[:, None, :] == dist.seqs[None]).double()
    return a * agree + (1 - a) / dist.k


def uniform_posterior(dist: EnumerableDist, z: torch.Tensor, alpha: torch.Tensor,
                      leave_one_out: bool = True) -> torch.Tensor:
    """Per-position posterior (B, L, K): p(x^i | z_t^{-i}) (default) or p(x^i | z_t)."""
    lik = likelihoods(dist, z, alpha)  # (B, S, L)
    joint = dist.probs[None] * lik.prod(-1)  # (B, S)
    if leave_one_out:
        post = torch.einsum("bsl,slk->blk", joint[..., None] / lik, dist._onehot)
    else:
        post = torch.einsum("bs,slk->blk", joint, dist._onehot)
    return post / post.sum(-1, keepdim=True)


class OracleUniformBackbone(nn.Module):
    """Backbone stand-in: logits = log of the exact posterior at alpha = exp(-sigma)."""

    def __init__(self, dist: EnumerableDist, leave_one_out: bool = True) -> None:
        super().__init__()
        self.dist, self.leave_one_out = dist, leave_one_out
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        assert not x.is_floating_point(), "the oracle takes token ids"
        alpha = torch.exp(-sigma.double())
        post = uniform_posterior(self.dist, x.cpu(), alpha.cpu(), self.leave_one_out)
        logits = torch.cat([post.clamp_min(1e-300).log(),
                            torch.full_like(post[..., :1], float("-inf"))], dim=-1)
        return logits.to(x.device) + 0 * self.dummy


def oracle_duo(dist: EnumerableDist, leave_one_out: bool = True, **kw: object) -> DUO:
    """A real DUO algo whose backbone is the exact oracle (curriculum off)."""
    return DUO(OracleUniformBackbone(dist, leave_one_out), noise=kw.pop("noise", LogLinear()),
               name="duo", vocab_size=dist.vocab_size, mask_id=dist.mask_id,
               curriculum_end=0, **COMMON, **kw)


def reverse_chain_law(dist: EnumerableDist, steps: int, t_min: float = 1e-5) -> torch.Tensor:
    """Exact law over dist.seqs of ancestral sampling with the exact per-position reverse.

    Built from the joint alone (not from the sampler's formula): from uniform z_1, a step
    t -> s moves every position independently with p(z_s^i = j | z_t) =
    sum_x p(x | z_t) q(z_s^i = j | z_t^i, x^i), where q(z_s | z_t, x) ∝ q(z_t | z_s) q(z_s | x);
    the last step uses alpha_s = 1, i.e. p(x^i = j | z_t).
    """
    k, n = dist.k, len(dist.seqs)
    ts = torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64)
    alphas = LogLinear().alpha(ts).tolist()
    law = torch.full((n,), 1.0 / n, dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    for step in range(steps):
        a_t = alphas[step]
        a_s = 1.0 if step == steps - 1 else alphas[step + 1]
        a_ts = a_t / a_s
        z = dist.seqs  # every state once: (S, L)
        lik = likelihoods(dist, z, torch.full((n,), a_t))
        joint = dist.probs[None] * lik.prod(-1)
        post_x = joint / joint.sum(-1, keepdim=True)  # (S_z, S_x) p(x | z)
        # q(z_s = j | z_t = i, x = v) for all (i, v, j): (K, K, K)
        fwd = a_ts * eye + (1 - a_ts) / k  # q(z_t = i | z_s = j), symmetric
        marg = a_s * eye + (1 - a_s) / k  # q(z_s = j | x = v)
        q = fwd[:, None, :] * marg[None, :, :]
        q = q / q.sum(-1, keepdim=True)
        # per position: p(z_s^i = j | z) = sum_x p(x | z) q[z^i, x^i, j]  -> (S_z, L, K)
        moves = torch.stack([
            torch.einsum("zx,zxj->zj", post_x, q[z[:, i]][:, dist.seqs[:, i]])
            for i in range(dist.length)], dim=1)
        trans = torch.ones(n, n, dtype=torch.float64)
        for i in range(dist.length):
            trans = trans * moves[:, i, :][:, dist.seqs[:, i]]  # (S_z, S_next)
        law = law @ trans
    return law


def index_of(dist: EnumerableDist, samples: torch.Tensor) -> torch.Tensor:
    return (samples.long() * dist.k ** torch.arange(dist.length - 1, -1, -1)).sum(-1)


def tv(dist: EnumerableDist, samples: torch.Tensor, law: torch.Tensor) -> float:
    """Total variation between (n, L) samples and a law over dist.seqs."""
    if (samples >= dist.k).any() or (samples < 0).any():
        return 1.0
    emp = torch.bincount(index_of(dist, samples), minlength=len(dist.seqs)).double()
    return float(0.5 * (emp / len(samples) - law).abs().sum())


def expected_iid_tv(law: torch.Tensor, n: int) -> float:
    """E[TV] of n iid draws from `law` (normal approximation): the noise floor of a TV test."""
    return float(0.5 * (law * (1 - law) / n).sqrt().sum() * math.sqrt(2 / math.pi))

