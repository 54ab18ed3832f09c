"""A tiny enumerable data distribution with exact posteriors (docs/algorithms.md, "Oracle test").

Real tokens are ids 0..K-1; the [MASK] id is K, so the vocabulary has V = K + 1.
The exact per-position posteriors stand in for a trained network: every
continuous-time ELBO must then be tight (equal the entropy H(X)), and every
sampler must reproduce the distribution.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn as nn


class EnumerableDist:
    """Random joint distribution over all K^L sequences."""

    def __init__(self, length: int = 3, k: int = 3, seed: int = 0, concentration: float = 0.5):
        self.length, self.k, self.mask_id, self.vocab_size = length, k, k, k + 1
        self.seqs = torch.tensor(list(itertools.product(range(k), repeat=length)))  # (S, L)
        rng = np.random.default_rng(seed)  # Dirichlet(concentration) via normalized Gammas
        probs = torch.from_numpy(rng.gamma(concentration, size=len(self.seqs))) + 1e-3
        self.probs = probs / probs.sum()  # (S,) float64
        self._onehot = torch.nn.functional.one_hot(self.seqs, k).double()  # (S, L, K)

    def entropy(self) -> float:
        """H(X) in nats."""
        return float(-(self.probs * self.probs.log()).sum())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B,) exact log p(x)."""
        idx = (x * self.k ** torch.arange(self.length - 1, -1, -1)).sum(-1)
        return self.probs[idx].log()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.seqs[idx]

    def tv_distance(self, samples: torch.Tensor) -> float:
        """Total variation between the empirical distribution of (n, L) samples and p."""
        idx = (samples.long() * self.k ** torch.arange(self.length - 1, -1, -1)).sum(-1)
        if (samples >= self.k).any() or (samples < 0).any():
            return 1.0
        emp = torch.bincount(idx, minlength=len(self.probs)).double() / len(samples)
        return float(0.5 * (emp - self.probs).abs().sum())

    def masked_posterior(self, z: torch.Tensor) -> torch.Tensor:
        """p(x^i = v | visible tokens of z) for every position: (B, L) -> (B, L, K) float64.

        Masking is independent of x, so the posterior of absorbing diffusion does not
        depend on t, only on which tokens are visible.
        """
        visible = z != self.mask_id  # (B, L)
        agree = (z[:, None, :] == self.seqs[None]) | ~visible[:, None, :]  # (B, S, L)
        w = agree.all(-1).double() * self.probs[None]  # (B, S)
        post = torch.einsum("bs,slk->blk", w, self._onehot)
        return post / post.sum(-1, keepdim=True)

    def next_token_probs(self, x: torch.Tensor) -> torch.Tensor:
        """p(x_{i+1} = v | x_{<=i}) at every position i: (B, l) -> (B, l, K) float64.

        The last position of a full-length sequence has no successor: uniform there.
        """
        b, l = x.shape
        out = torch.full((b, l, self.k), 1.0 / self.k, dtype=torch.float64)
        for i in range(min(l, self.length - 1)):
            prefix_ok = (self.seqs[None, :, : i + 1] == x[:, None, : i + 1]).all(-1)  # (B, S)
            w = prefix_ok.double() * self.probs[None]
            nxt = torch.einsum("bs,sk->bk", w, self._onehot[:, i + 1])
            out[:, i] = nxt / nxt.sum(-1, keepdim=True)
        return out


def _with_mask_column(probs: torch.Tensor) -> torch.Tensor:
    """(B, L, K) probabilities -> (B, L, K+1) logits with -inf for [MASK]."""
    logits = probs.clamp_min(1e-300).log()
    pad = torch.full_like(logits[..., :1], float("-inf"))
    return torch.cat([logits, pad], dim=-1).float()


class OracleMaskedBackbone(nn.Module):
    """Backbone stand-in: logits = log of the exact masked posterior (ignores sigma)."""

    def __init__(self, dist: EnumerableDist) -> None:
        super().__init__()
        self.dist = dist
        self.dummy = nn.Parameter(torch.zeros(1))  # so optimizers/devices have a parameter

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        return _with_mask_column(self.dist.masked_posterior(x)) + 0 * self.dummy


class TokenCache:
    """Minimal KV-cache stand-in for the oracle: remembers the tokens fed so far."""

    def __init__(self, batch_size: int) -> None:
        self.tokens = torch.zeros(batch_size, 0, dtype=torch.long)

    @property
    def length(self) -> int:
        return self.tokens.shape[1]


class OracleCausalBackbone(nn.Module):
    """Backbone stand-in for AR: logits at i = log p(x_{i+1} | x_{<=i}); supports a cache."""

    def __init__(self, dist: EnumerableDist) -> None:
        super().__init__()
        self.dist = dist
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def new_kv_cache(self, batch_size: int, max_len: int, dtype: object = None) -> TokenCache:
        return TokenCache(batch_size)

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, *, causal: bool = True,
        kv_cache: TokenCache | None = None, **_: object,
    ) -> torch.Tensor:
        assert causal, "the AR oracle is causal"
        self.calls += 1
        full = x if kv_cache is None else torch.cat([kv_cache.tokens, x], dim=1)
        if kv_cache is not None:
            kv_cache.tokens = full
        probs = self.dist.next_token_probs(full)[:, -x.shape[1]:]
        return _with_mask_column(probs) + 0 * self.dummy
