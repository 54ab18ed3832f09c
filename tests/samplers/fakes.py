"""Fake `algo` objects around the enumerable oracle (tests/oracle.py) for sampler tests.

They implement exactly the duck-typed interface the samplers consume (see
src/samplers/base.py), with the exact posteriors standing in for a trained network.
"""

from __future__ import annotations

import itertools
import math

import torch

from tests.oracle import EnumerableDist, OracleCausalBackbone, TokenCache


class LogLinearNoise:
    """alpha_t = 1 - (1 - eps) t (docs/algorithms.md, noise schedules)."""

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - self.eps) * t


class FakeMDLM:
    """MDLM algo whose SUBS denoiser is the exact masked posterior p(x^i | visible z)."""

    def __init__(
        self, dist: EnumerableDist, time_conditioning: bool = False, device: str = "cpu"
    ) -> None:
        self.dist = dist
        self.device = torch.device(device)
        self.vocab_size, self.mask_id, self.eos_id = dist.vocab_size, dist.mask_id, 0
        self.noise = LogLinearNoise()
        self.time_conditioning = time_conditioning
        self.calls = 0
        self.times: list[float] = []

    def denoiser_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert z.dtype == torch.long and t.shape == (z.shape[0],)
        assert z.device == t.device == self.device
        self.calls += 1
        z = z.cpu()  # the oracle's tables live on the CPU
        self.times.append(float(t[0]))
        post = self.dist.masked_posterior(z)  # (B, L, K)
        probs = torch.cat([post, torch.zeros_like(post[..., :1])], dim=-1)  # [MASK]: 0
        onehot = torch.nn.functional.one_hot(z, self.vocab_size).double()
        clean = (z != self.mask_id)[..., None]
        return torch.where(clean, onehot, probs).to(self.device)  # SUBS carry-over

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser_probs(z, t).log()


class FixedDenoiserMDLM(FakeMDLM):
    """A *bad* denoiser (no carry-over): one-hot on `early` while t > 0.5, else `late`.

    A sampler that writes the final prediction over every position (the reference's
    greedy-last bug) would overwrite the tokens decoded early.
    """

    def __init__(self, dist: EnumerableDist, early: int = 0, late: int = 1) -> None:
        super().__init__(dist, time_conditioning=True)
        self.early, self.late = early, late

    def denoiser_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        tok = torch.where(t > 0.5, self.early, self.late)[:, None].expand_as(z)
        return torch.nn.functional.one_hot(tok, self.vocab_size).double()

    def denoiser_log_probs(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser_probs(z, t).log()


class FakeAR:
    """AR algo around `OracleCausalBackbone`: next-token logits are exact log-probs.

    Records the width of every call in `widths` (to check KV-cache feeding).
    """

    def __init__(self, dist: EnumerableDist, eos_id: int = 0, device: str = "cpu") -> None:
        self.dist = dist
        self.device = torch.device(device)
        self.vocab_size, self.mask_id, self.eos_id = dist.vocab_size, dist.mask_id, eos_id
        self.backbone = OracleCausalBackbone(dist)
        self.widths: list[int] = []

    @property
    def calls(self) -> int:
        return self.backbone.calls

    def new_kv_cache(self, batch_size: int, max_len: int) -> TokenCache:
        return self.backbone.new_kv_cache(batch_size, max_len)

    def causal_logits(self, x: torch.Tensor, kv_cache: TokenCache | None = None) -> torch.Tensor:
        assert x.device == self.device
        self.widths.append(x.shape[1])
        return self.backbone(x.cpu(), kv_cache=kv_cache).to(self.device)


def exact_conditional(dist: EnumerableDist, template: torch.Tensor) -> torch.Tensor:
    """p(x | x agrees with the non-[MASK] ids of `template` (L,)) over all K^L sequences."""
    given = template != dist.mask_id
    agree = ((dist.seqs == template[None]) | ~given[None]).all(-1)
    w = dist.probs * agree.double()
    return w / w.sum()


def conditional_tv(dist: EnumerableDist, samples: torch.Tensor, template: torch.Tensor) -> float:
    """Total variation between (n, L) samples and the exact conditional given `template`."""
    if (samples >= dist.k).any() or (samples < 0).any():
        return 1.0
    idx = (samples * dist.k ** torch.arange(dist.length - 1, -1, -1)).sum(-1)
    emp = torch.bincount(idx, minlength=len(dist.probs)).double() / len(samples)
    return float(0.5 * (emp - exact_conditional(dist, template)).abs().sum())


def ancestral_law(dist: EnumerableDist, steps: int, t_min: float = 1e-5) -> torch.Tensor:
    """Exact output law of MDLM ancestral sampling with the oracle denoiser, over dist.seqs.

    Propagates the probability of every partially masked state through the steps: a
    masked position unmasks with probability (alpha_s - alpha_t) / (1 - alpha_t)
    (1 at the last step), independently, to v ~ p(x^i | z). With few steps this law
    differs from p (positions unmasked together are drawn independently).
    """
    noise, m = LogLinearNoise(), dist.mask_id
    alphas = noise.alpha(torch.linspace(1.0, t_min, steps + 1, dtype=torch.float64)).tolist()
    states = {(m,) * dist.length: 1.0}
    posts: dict[tuple[int, ...], torch.Tensor] = {}
    for k in range(steps):
        a = 1.0 if k == steps - 1 else (alphas[k + 1] - alphas[k]) / (1.0 - alphas[k])
        nxt: dict[tuple[int, ...], float] = {}
        for z, pz in states.items():
            if z not in posts:
                posts[z] = dist.masked_posterior(torch.tensor([z]))[0]
            post = posts[z]
            # Each masked position: stays masked (1 - a) or becomes v (a p_v).
            options = [
                [(z[i], 1.0)] if z[i] != m
                else [(m, 1.0 - a)] + [(v, a * float(post[i, v])) for v in range(dist.k)]
                for i in range(dist.length)
            ]
            for combo in itertools.product(*options):
                w = pz * math.prod(p for _, p in combo)
                if w > 0:
                    key = tuple(v for v, _ in combo)
                    nxt[key] = nxt.get(key, 0.0) + w
        states = nxt
    law = torch.zeros(len(dist.seqs), dtype=torch.float64)
    for z, pz in states.items():
        law[sum(v * dist.k ** (dist.length - 1 - i) for i, v in enumerate(z))] += pz
    return law


def law_tv(dist: EnumerableDist, samples: torch.Tensor, law: torch.Tensor) -> float:
    """Total variation between (n, L) samples and a law over dist.seqs."""
    if (samples >= dist.k).any() or (samples < 0).any():
        return 1.0
    idx = (samples * dist.k ** torch.arange(dist.length - 1, -1, -1)).sum(-1)
    emp = torch.bincount(idx, minlength=len(dist.probs)).double() / len(samples)
    return float(0.5 * (emp - law).abs().sum())
