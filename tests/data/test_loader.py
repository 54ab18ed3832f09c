"""The resumable sampler: no duplicates or gaps across workers, ranks, epochs and restarts."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from src.data.loader import EvalBatchSampler, ResumableBatchSampler, make_loader


class IndexDataset(Dataset):
    """Item i is {"idx": i}; lets tests see exactly which samples a loader delivered."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"idx": torch.tensor(i)}


def _stream(sampler, n_batches=None):
    out = []
    for k, b in enumerate(sampler):
        if n_batches is not None and k == n_batches:
            break
        out.append(b)
    return out


def test_one_epoch_through_two_worker_processes_has_each_sample_once():
    n, bs = 103, 8  # 103 = 12 * 8 + 7: the last 7 of the permutation are dropped
    sampler = ResumableBatchSampler(n, bs, seed=5)
    loader = make_loader(IndexDataset(n), sampler, num_workers=2)
    seen = torch.cat([batch["idx"] for batch in loader]).tolist()
    assert len(loader) == 12 and len(seen) == 96
    assert max(Counter(seen).values()) == 1
    perm = ResumableBatchSampler(n, bs, seed=5).permutation(0).tolist()
    assert seen == perm[:96]  # in order, and only the documented drop_last tail is missing
    assert set(range(n)) - set(seen) == set(perm[96:])


def test_two_ranks_partition_each_global_batch():
    n, bs, world = 250, 6, 2  # global batch 12 -> 20 micro-batches per epoch, 10 dropped
    ranks = [ResumableBatchSampler(n, bs, world, r, seed=1, max_batches=40) for r in range(world)]
    streams = [_stream(s) for s in ranks]
    assert all(len(s) == 40 for s in streams)
    for k in range(40):
        a, b = streams[0][k], streams[1][k]
        assert len(a) == len(b) == bs and not set(a) & set(b)
    for epoch in range(2):
        got = [i for s in streams for b in s[epoch * 20 : (epoch + 1) * 20] for i in b]
        perm = ranks[0].permutation(epoch).tolist()
        assert len(got) == len(set(got)) == 240 and set(got) == set(perm[:240])


def test_two_ranks_with_workers_cover_the_epoch():
    n, bs = 64, 4
    seen = []
    for r in range(2):
        loader = make_loader(
            IndexDataset(n), ResumableBatchSampler(n, bs, 2, r, seed=2), num_workers=2
        )
        seen.append(torch.cat([b["idx"] for b in loader]).tolist())
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(n))


@pytest.mark.parametrize("k", [0, 1, 7, 9, 10, 11, 23])
def test_resume_equals_uninterrupted_stream(k):
    n, bs, total = 43, 4, 30  # 10 micro-batches per epoch: k=9/10/11 straddle the boundary
    full = _stream(ResumableBatchSampler(n, bs, seed=3, max_batches=total))
    head = _stream(ResumableBatchSampler(n, bs, seed=3, max_batches=total), k)
    tail = _stream(ResumableBatchSampler(n, bs, seed=3, start_batch=k, max_batches=total))
    assert head + tail == full


def test_resume_through_worker_processes():
    n, bs, total, k = 50, 4, 25, 13

    def run(start):
        s = ResumableBatchSampler(n, bs, seed=4, start_batch=start, max_batches=total)
        return [b["idx"].tolist() for b in make_loader(IndexDataset(n), s, num_workers=2)]

    assert run(0)[k:] == run(k)


def test_epochs_are_fresh_permutations_and_seeded():
    s = ResumableBatchSampler(100, 10, seed=7, max_batches=30)
    e0, e1, e2 = (s.permutation(e).tolist() for e in range(3))
    assert (
        sorted(e0) == sorted(e1) == list(range(100)) and len({tuple(e0), tuple(e1), tuple(e2)}) == 3
    )
    assert ResumableBatchSampler(100, 10, seed=7).permutation(1).tolist() == e1
    assert ResumableBatchSampler(100, 10, seed=8).permutation(1).tolist() != e1
    assert [s.epoch_of(k) for k in (0, 9, 10, 29)] == [0, 0, 1, 2]
    plain = ResumableBatchSampler(20, 5, shuffle=False, max_batches=8)
    assert _stream(plain)[4:6] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_lengths_and_epoch_passes():
    # max_batches set: one pass over the whole run; len counts from 0
    # (Lightning restores its own in-epoch counter).
    s = ResumableBatchSampler(40, 4, start_batch=6, max_batches=25)
    assert len(s) == 25 and s.remaining == 19 and len(_stream(s)) == 19 and s.remaining == 0
    # max_batches None: each iteration is (the rest of) one data epoch, the next continues.
    e = ResumableBatchSampler(40, 4, seed=1, start_batch=6)
    first, second = _stream(e), _stream(e)
    assert (len(first), len(second), len(e)) == (4, 10, 10)
    assert first + second == _stream(ResumableBatchSampler(40, 4, seed=1, max_batches=20))[6:]


def test_validation_batches_are_the_same_for_any_world_size():
    n, bs = 23, 4
    single = list(EvalBatchSampler(n, bs))
    assert [i for b in single for i in b] == list(range(n))  # ordered, unpadded, no repeats
    for world in (1, 2, 3, 5, 8):  # 8 ranks > 6 batches: two ranks hold only padding
        by_global, lengths = {}, set()
        for r in range(world):
            sampler = EvalBatchSampler(n, bs, world, r)
            batches = list(sampler)
            lengths.add(len(batches))
            assert len(batches) == len(sampler) >= 1
            by_global.update({sampler.global_index(k): b for k, b in enumerate(batches)
                              if not sampler.is_padding(sampler.global_index(k))})
        assert lengths == {-(-len(single) // world)}  # equal counts: no rank waits on another
        assert [by_global[g] for g in sorted(by_global)] == single


def test_validation_cap_is_global_over_ranks():
    ranks = [EvalBatchSampler(23, 4, 2, r, max_batches=3) for r in range(2)]
    capped = [b for s in ranks for k, b in enumerate(s) if not s.is_padding(s.global_index(k))]
    assert sorted(capped) == list(EvalBatchSampler(23, 4, max_batches=3))
    assert len(ranks[0]) == len(ranks[1]) == 2 and ranks[1].is_padding(ranks[1].global_index(1))
    assert len(list(EvalBatchSampler(23, 4, max_batches=100))) == 6
    with pytest.raises(ValueError, match=">= 1"):
        EvalBatchSampler(23, 4, max_batches=0)


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="lower training.global_batch_size"):
        ResumableBatchSampler(10, 8, world_size=2)
    with pytest.raises(ValueError):
        ResumableBatchSampler(10, 2, world_size=2, rank=2)
    with pytest.raises(ValueError):
        ResumableBatchSampler(10, 2, start_batch=-1)


def test_every_split_of_the_global_batch_trains_on_the_same_samples():
    """G = 8 as 1 x 1 x 8, 2 ranks x 1 x 4, 1 rank x 2 accumulation x 4, 2 x 2 x 2: the same
    samples at every optimizer step, over several epochs of N = 21 (N mod G = 5 dropped)."""
    n, steps = 21, 9

    def per_step(world: int, accum: int, batch: int) -> list[set[int]]:
        samplers = [ResumableBatchSampler(n, batch, world, r, seed=3, accumulation=accum,
                                          max_batches=steps * accum) for r in range(world)]
        micro = [list(s) for s in samplers]
        return [{i for r in range(world) for m in range(accum) for i in micro[r][k * accum + m]}
                for k in range(steps)]

    reference = per_step(1, 1, 8)
    assert all(len(s) == 8 for s in reference)
    for world, accum, batch in ((2, 1, 4), (1, 2, 4), (2, 2, 2), (1, 8, 1)):
        assert per_step(world, accum, batch) == reference, (world, accum, batch)
