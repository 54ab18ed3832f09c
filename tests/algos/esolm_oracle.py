"""Oracle backbone for Eso-LM: interprets permuted / masked / cached inputs exactly.

For every query it collects the non-[MASK] tokens the query may attend to (causal in
feeding order, the bool `attn_mask`, KV-cached tokens), puts them at their rotary
positions into a length-L template and returns the log of the exact posterior
p(x^pos | visible tokens) of `tests.oracle.EnumerableDist`. With it, Eso-LM's NELBO
must be tight and its samplers must reproduce the distribution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.oracle import EnumerableDist, _with_mask_column


class OracleTokenCache:
    """KVCache stand-in with the same bookkeeping: tokens fed are written at
    [length, length + n); `commit()` keeps them; `length` may be advanced by hand."""

    def __init__(self, batch_size: int, max_len: int = 4096) -> None:
        self.ids = torch.zeros(batch_size, max_len, dtype=torch.long)
        self.pos = torch.zeros(batch_size, max_len, dtype=torch.long)
        self.max_len, self.length, self._pending = max_len, 0, 0

    def update(self, ids: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + ids.shape[1]
        assert end <= self.max_len, "oracle cache overflow"
        self.ids[:, self.length:end], self.pos[:, self.length:end] = ids, pos
        self._pending = ids.shape[1]
        return self.ids[:, :end], self.pos[:, :end]

    def commit(self) -> None:
        self.length += self._pending
        self._pending = 0


class OracleEsoBackbone(nn.Module):
    """Stand-in for DiT in Eso-LM: logits = log exact posterior of each query's position."""

    max_seq_len = 4096

    def __init__(self, dist: EnumerableDist) -> None:
        super().__init__()
        self.dist = dist
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0
        self.fed_tokens = 0  # tokens fed over all calls (cost proxy)

    def new_kv_cache(self, batch_size: int, max_len: int, dtype: object = None) -> OracleTokenCache:
        return OracleTokenCache(batch_size, max_len)

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | None = None,
        *,
        causal: bool = False,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        kv_cache: OracleTokenCache | None = None,
        commit: bool = True,
    ) -> torch.Tensor:
        self.calls += 1
        b, lq = x.shape
        self.fed_tokens += b * lq
        start = kv_cache.length if kv_cache is not None else 0
        if positions is None:
            positions = torch.arange(start, start + lq)
        positions = positions.expand(b, lq)
        ids_all, pos_all = x, positions
        if kv_cache is not None:
            ids_all, pos_all = kv_cache.update(x, positions)
        lk = ids_all.shape[1]
        allowed = torch.ones(b, lq, lk, dtype=torch.bool)
        if causal:
            allowed &= torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
        if attn_mask is not None:
            allowed &= attn_mask.expand(b, 1, lq, lk)[:, 0]
        post = self._posteriors(ids_all, pos_all, allowed, positions)
        if kv_cache is not None and commit:
            kv_cache.commit()
        return _with_mask_column(post) + 0 * self.dummy

    def _posteriors(
        self, ids: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor, q_pos: torch.Tensor
    ) -> torch.Tensor:
        """(B, Lq, K) exact p(x^{q_pos} | visible keys) for every query."""
        length, m = self.dist.length, self.dist.mask_id
        b, lq, _ = allowed.shape
        visible = (allowed & (ids != m)[:, None, :]).double()  # (B, Lq, Lk)
        at = F.one_hot(pos, length).double()  # (B, Lk, L)
        count = torch.einsum("bqk,bkl->bql", visible, at)
        total = torch.einsum("bqk,bkl->bql", visible * ids[:, None, :].double(), at)
        # Keys at the same position carry the same token (z_0 / x halves): mean = that token.
        template = torch.where(count > 0, (total / count.clamp_min(1)).round().long(), m)
        post = self.dist.masked_posterior(template.reshape(b * lq, length))  # (B Lq, L, K)
        post = post.reshape(b, lq, length, -1)
        idx = q_pos[..., None, None].expand(b, lq, 1, post.shape[-1])
        return post.gather(2, idx).squeeze(2)
