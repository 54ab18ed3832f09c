"""Oracle denoiser of GIDD's hybrid noise for `tests.oracle.EnumerableDist`.

The ELBO of `src.algos.hybrid_noise` is tight when x_hat(z)^i = p(x^i | z^{-i}, t): the
posterior of the clean token given every *other* noisy token (the token's own value is
left out: the reverse rates then equal the true ones). Computed by enumeration from
the per-position likelihoods q_t(z^j | x^j) = alpha 1[z = x] + beta pi(z).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from src.algos.hybrid_noise import HybridNoise
from tests.oracle import EnumerableDist, _with_mask_column


class OracleGiddBackbone(nn.Module):
    """Backbone stand-in: logits = log p(x^i | z^{-i}) at the time sigma encodes."""

    def __init__(self, dist: EnumerableDist, hybrid: HybridNoise) -> None:
        super().__init__()
        self.dist, self.hybrid = dist, hybrid
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        assert sigma is not None, "the GIDD oracle needs time conditioning (sigma = -log alpha)"
        alpha = torch.exp(-sigma.double())  # (B,)
        # Invert alpha -> t is not needed: a depends on t only through lambda = logit(alpha).
        lam = (torch.log(alpha) - torch.log1p(-alpha)).clamp(-self.hybrid.clip, self.hybrid.clip)
        a = torch.sigmoid(self.hybrid.scale * lam + self.hybrid.shift)
        d, m, k = self.dist, self.dist.mask_id, self.dist.k
        beta = 1 - alpha
        pi_z = torch.where(z == m, (1 - a)[:, None], (a / k)[:, None])  # (B, L)
        same = z[:, None, :] == d.seqs[None]  # (B, S, L)
        lik = alpha[:, None, None] * same + (beta[:, None] * pi_z)[:, None, :]
        log_lik = lik.clamp_min(1e-300).log()  # (B, S, L)
        total = d.probs.log()[None] + log_lik.sum(-1)  # (B, S)
        loo = total[..., None] - log_lik  # (B, S, L): leave position i out
        w = torch.softmax(loo, dim=1)  # over sequences
        post = torch.einsum("bsl,slk->blk", w, d._onehot)
        return _with_mask_column(post) + 0 * self.dummy
