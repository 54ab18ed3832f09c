"""Eso-LM (B) sampling: diffusion then left-to-right decoding, with exact KV caching.

Attention is causal over the order in which tokens were decoded (clean first), so the
keys/values of a decoded token never change once it is decoded (Sahoo et al. 2025,
sec. 5). The cached sampler feeds every decoded token once, and at each step feeds
the positions it decodes as [MASK] queries right after the cache without keeping them
(`commit=False`). The uncached sampler re-runs the whole permuted sequence
[decoded (in decoding order); queries; other masked] every step. Both follow the same
plan (src/samplers/orders.py) and the same float64 Gumbel noise, so they return the
same tokens (up to float round-off in the logits, which never flipped a token in tests).
"""

from __future__ import annotations

from typing import Any

import torch

from src.samplers.base import Sampler
from src.samplers.defaults import default_sampler
from src.samplers.categorical import sample_categorical, top_p_filter
from src.samplers.orders import ORDERS, decode_plan


def check_esolm_algo(algo: Any, sampler: str) -> None:
    """One clear error when the algo cannot run an Eso-LM sampler."""
    if not hasattr(algo, "esolm_log_probs"):
        name = getattr(algo, "name", type(algo).__name__)
        fix = default_sampler(str(name)) or "the algo's own sampler"
        raise ValueError(
            f"sampler={sampler} needs an Eso-LM algo (algo=esolm), got algo={name}: "
            f"use sampler={fix}"
        )


class EsoLMSampler(Sampler):
    """Diffusion phase (per-step Binomial unmask counts, `order`), then sequential phase.

    Args:
        steps: Diffusion steps on t = linspace(1, 0, steps + 1); the tokens still masked
            at t = 0 (about (1 - alpha_0) L) take one extra step each, left to right.
        order: ``random`` | ``block`` | ``block_ar`` (see src/samplers/orders.py).
        block_size: Block length of the block orders.
        use_kv_cache: Exact KV caching of decoded tokens (same tokens as without).
        top_p: Nucleus mass applied to each query's distribution (1 = off).
        progress: Show a tqdm bar (None = only on a terminal).
    """

    supports_infill = True
    algos = ("esolm",)

    def __init__(
        self,
        steps: int = 128,
        order: str = "random",
        block_size: int = 32,
        use_kv_cache: bool = True,
        top_p: float = 1.0,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}: pass steps=1 or more")
        if order not in ORDERS:
            raise ValueError(f"unknown sampler.order={order!r}: use one of {ORDERS}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}: use 1.0 to disable it")
        self.steps, self.order, self.block_size = int(steps), order, int(block_size)
        self.use_kv_cache, self.top_p, self.progress = use_kv_cache, float(top_p), progress
        self.fed_tokens = 0  # tokens through the network in the last call (cost proxy)

    def check_algo(self, algo: Any) -> None:
        """Raise one clear ValueError (naming a compatible sampler) for a non-Eso-LM algo."""
        super().check_algo(algo)
        check_esolm_algo(algo, "esolm")

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
        self.check_algo(algo)
        device, mask_id = torch.device(algo.device), int(algo.mask_id)
        if infill is not None:
            x = infill.clone()
        else:
            x = torch.full((n, length), mask_id, dtype=torch.long, device=device)
            if prompt is not None:
                if (prompt == mask_id).any():
                    raise ValueError("prompt contains [MASK] ids: use infill= for templates")
                x[:, : prompt.shape[1]] = prompt
        masked = x == mask_id
        steps = self.steps if steps is None else int(steps)
        plan = decode_plan(masked, algo.noise.alpha, steps, order=self.order,
                           block_size=self.block_size, generator=generator)
        state = _State(x, masked)
        runner = _CachedRunner(algo, state) if self.use_kv_cache else _FullRunner(algo, state)
        self.fed_tokens = 0
        for k in self._progress(range(plan.n_steps), plan.n_steps, "Eso-LM sampling"):
            q_pos, q_valid = plan.queries(k)
            if q_pos.shape[1] == 0:
                continue  # nothing decoded at this step: no network call
            logp = runner.query(q_pos, q_valid)  # (n, W, V)
            self.nfe += 1
            tokens = self._draw(logp, mask_id, generator)
            state.decode(q_pos, q_valid, tokens)
            runner.decoded(q_pos, q_valid, tokens)
        self.fed_tokens = runner.fed_tokens
        return state.x

    def _draw(
        self, logp: torch.Tensor, mask_id: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """(n, W, V) log-probs -> (n, W) ids; noise shape depends on the plan only."""
        if self.top_p < 1.0:
            p = logp.double().exp()
            p[..., mask_id] = 0.0
            return sample_categorical(top_p_filter(p, self.top_p), generator)
        return sample_categorical(logp, generator, log_space=True)


class _State:
    """Tokens so far and the decoding rank of every decoded position."""

    def __init__(self, x: torch.Tensor, masked: torch.Tensor) -> None:
        self.x = x
        n, length = x.shape
        # Prompt / template tokens count as decoded first, left to right.
        self.rank = torch.where(masked, 2 * length, masked.logical_not().long().cumsum(1) - 1)
        self.n_decoded = (~masked).sum(1)

    def decode(self, pos: torch.Tensor, valid: torch.Tensor, tokens: torch.Tensor) -> None:
        rows = torch.arange(pos.shape[0], device=pos.device)[:, None].expand_as(pos)
        slot = torch.arange(pos.shape[1], device=pos.device)
        r, p = rows[valid], pos[valid]
        self.x[r, p] = tokens[valid]
        self.rank[r, p] = (self.n_decoded[:, None] + slot)[valid]
        self.n_decoded = self.n_decoded + valid.sum(1)

    def decoded_in_order(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded (ids, positions, valid), each (n, D_max), in decoding order."""
        width = int(self.n_decoded.max())
        order = self.rank.argsort(dim=1)[:, :width]
        valid = torch.arange(width, device=order.device)[None, :] < self.n_decoded[:, None]
        return self.x.gather(1, order), order, valid


class _FullRunner:
    """No cache: the whole permuted sequence [decoded; queries; other masked] each step."""

    def __init__(self, algo: Any, state: _State) -> None:
        self.algo, self.state, self.fed_tokens = algo, state, 0

    def query(self, q_pos: torch.Tensor, q_valid: torch.Tensor) -> torch.Tensor:
        st = self.state
        n, length = st.x.shape
        key = torch.where(st.x == self.algo.mask_id, 3 * length + torch.arange(
            length, device=st.x.device), st.rank)
        slot = torch.arange(q_pos.shape[1], device=q_pos.device).expand_as(q_pos)
        rows = torch.arange(n, device=q_pos.device)[:, None].expand_as(q_pos)
        key[rows[q_valid], q_pos[q_valid]] = (2 * length + slot)[q_valid]
        perm = key.argsort(dim=1)
        logp = self.algo.esolm_log_probs(st.x.gather(1, perm), perm)
        self.fed_tokens += n * length
        idx = (st.n_decoded[:, None] + slot).clamp_max(length - 1)
        return logp.gather(1, idx[..., None].expand(-1, -1, logp.shape[-1]))

    def decoded(self, q_pos: torch.Tensor, q_valid: torch.Tensor, tokens: torch.Tensor) -> None:
        return None


class _CachedRunner:
    """KV cache in decoding order. Rows decode different numbers of tokens per step, so
    blocks are padded; padded slots are masked out as keys (each only sees itself)."""

    def __init__(self, algo: Any, state: _State) -> None:
        self.algo, self.state, self.fed_tokens = algo, state, 0
        n, length = state.x.shape
        cap = algo.kv_capacity
        self.capacity = 2 * length if cap is None else min(int(cap), 2 * length)
        self.cache = algo.new_kv_cache(n, self.capacity)
        self.slot_valid = torch.zeros(n, 0, dtype=torch.bool, device=state.x.device)
        self.pending = state.decoded_in_order()  # prompt / template tokens, not fed yet

    def query(self, q_pos: torch.Tensor, q_valid: torch.Tensor) -> torch.Tensor:
        w2 = q_pos.shape[1]
        if self.cache.length + self.pending[0].shape[1] + w2 > self.capacity:
            self._rebuild()
            if self.cache.length + w2 > self.capacity:  # cannot fit even compacted
                return _FullRunner(self.algo, self.state).query(q_pos, q_valid)
        p_ids, p_pos, p_valid = self.pending
        w1, n = p_ids.shape[1], q_pos.shape[0]
        ids = torch.cat([p_ids, torch.full_like(q_pos, self.algo.mask_id)], dim=1)
        mask = self._mask(torch.cat([p_valid, q_valid], dim=1))
        logp = self.algo.esolm_log_probs(ids, torch.cat([p_pos, q_pos], dim=1), attn_mask=mask,
                                         kv_cache=self.cache, commit=False)
        self.fed_tokens += n * (w1 + w2)
        _keep_first(self.cache, w1)  # the decoded tokens stay, the [MASK] queries do not
        self.slot_valid = torch.cat([self.slot_valid, p_valid], dim=1)
        return logp[:, w1:]

    def decoded(self, q_pos: torch.Tensor, q_valid: torch.Tensor, tokens: torch.Tensor) -> None:
        self.pending = (tokens, q_pos, q_valid)

    def _mask(self, block_valid: torch.Tensor) -> torch.Tensor:
        """(n, 1, W, C + W): valid keys, plus every slot's own key (padded rows stay finite)."""
        c, w = self.slot_valid.shape[1], block_valid.shape[1]
        keys = torch.cat([self.slot_valid, block_valid], dim=1)  # (n, C + W)
        own = torch.arange(c + w, device=keys.device)[None, :] == (
            c + torch.arange(w, device=keys.device))[:, None]  # (W, C + W)
        return (keys[:, None, :] | own[None])[:, None]

    def _rebuild(self) -> None:
        """Re-feed every decoded token compactly, in decoding order, into a fresh cache.
        Exact: each token again attends to exactly the tokens decoded before it."""
        ids, pos, valid = self.state.decoded_in_order()
        self.cache = self.algo.new_kv_cache(ids.shape[0], self.capacity)
        self.slot_valid = valid[:, :0]
        if ids.shape[1]:
            self.algo.esolm_log_probs(ids, pos, attn_mask=self._mask(valid), kv_cache=self.cache)
            self.fed_tokens += ids.numel()
        self.slot_valid = valid
        self.pending = (ids[:, :0], pos[:, :0], valid[:, :0])


def _keep_first(cache: Any, n: int) -> None:
    """After a `commit=False` forward, keep the first `n` tokens it fed.

    KVCache.update wrote the whole block at [length, length + W); advancing `length` by
    n keeps exactly its first n entries and the next forward overwrites the rest.
    """
    cache.length += n

