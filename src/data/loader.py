"""Deterministic, resumable batch samplers and the DataLoaders built on them.

Training stream. The sample-index stream is the concatenation over epochs
``e = 0, 1, 2, ...`` of ``perm_e = torch.randperm(N, generator=seeded(seed, e))``
(``arange(N)`` without shuffle). Each epoch is cut into ``N // G`` optimizer steps of
``G = world_size * accumulation * batch_size`` (the global batch) consecutive indices;
micro-batch ``m`` of a step goes to rank ``r`` as slice ``[(m*W + r)*B, (m*W + r + 1)*B)``
of the step's indices. The last ``N mod G`` indices of each epoch are dropped (drop_last), so
every micro-batch is full and all ranks step together; the dropped indices differ from
epoch to epoch because the permutations do. The stream depends on the global batch only:
any split of it over processes and accumulation (same ``G``) trains on the same samples at
every step, so a run may resume on another number of GPUs. Micro-batch ``k`` (counted per
rank, same count on every rank) is step ``k // A``, micro-batch ``k % A`` of that step: any
micro-batch can be computed directly, so resuming at ``start_batch=k`` continues the
uninterrupted stream exactly.

The sampler runs in the main process; DataLoader workers only fetch the
index lists they are handed, so samples are never duplicated across workers.

Validation stream. Global batch ``g`` (``batch_size`` consecutive samples in order)
goes to rank ``g % W``; no sample is repeated in the metric (unlike ``DistributedSampler``),
so token-weighted metrics are exact. Every rank runs the same number of batches: ranks
short of one get a padding batch, which the model runs (FSDP gathers parameters in every
forward, so unequal counts would hang) but whose loss is not counted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

logger = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    """Independent 63-bit generator seed per (seed, epoch) pair."""
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches of sample indices, starting at ``start_batch``.

    Args:
        num_samples: Dataset size ``N``.
        batch_size: Per-rank micro-batch size ``B``.
        world_size: Number of data-parallel ranks ``W``.
        rank: This rank.
        seed: Shuffle seed (the permutation of epoch ``e`` depends on ``(seed, e)`` only).
        shuffle: Permute each epoch (else every epoch is ``0..N-1`` in order).
        start_batch: Micro-batches already consumed by this run (resume point).
        max_batches: Total micro-batches of the run (absolute index, not relative to
            ``start_batch``); None = the stream is cut at epoch ends instead.
        accumulation: Micro-batches per optimizer step on each rank (``A``).

    Length. Lightning restores its in-epoch batch counter on resume and expects
    ``len(loader)`` to count from the start of its epoch, so ``__len__`` is
    ``stop - pass_start``, where one pass is the whole run (``0..max_batches``)
    when ``max_batches`` is set, else the data epoch holding the current position.
    :attr:`remaining` is what this iterator will still yield. Iterating again
    continues where the previous complete pass ended (next epoch).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        start_batch: int = 0,
        max_batches: int | None = None,
        accumulation: int = 1,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or accumulation < 1:
            raise ValueError(f"bad batch_size={batch_size}, world_size={world_size}, rank={rank}, "
                             f"accumulation={accumulation}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        global_batch = world_size * accumulation * batch_size
        if num_samples < global_batch:
            raise ValueError(
                f"{num_samples} training samples are fewer than one global batch ({global_batch}"
                f" = {world_size} processes x {accumulation} accumulation x batch_size "
                f"{batch_size}); lower training.global_batch_size or data.seq_len, or use more data"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank = world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.max_batches, self.accumulation = max_batches, accumulation
        self.batches_per_epoch = (num_samples // global_batch) * accumulation
        self.position = start_batch
        self._perm_epoch: int | None = None
        self._perm: torch.Tensor | None = None
        if num_samples % global_batch:
            logger.info(
                "drop_last: %d of %d samples unused per epoch",
                num_samples % global_batch,
                num_samples,
            )

    def epoch_of(self, batch_index: int) -> int:
        """Epoch that micro-batch ``batch_index`` belongs to."""
        return batch_index // self.batches_per_epoch

    def permutation(self, epoch: int) -> torch.Tensor:
        """Sample order of ``epoch`` (cached for the current epoch)."""
        if self._perm_epoch != epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
                self._perm = torch.randperm(self.num_samples, generator=gen)
            else:
                self._perm = torch.arange(self.num_samples)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def batch(self, batch_index: int) -> list[int]:
        """This rank's indices for micro-batch ``batch_index``."""
        epoch, pos = divmod(batch_index, self.batches_per_epoch)
        # pos = step * A + micro: the step's G indices start at step * G (see the module doc).
        start = (pos * self.world_size + self.rank) * self.batch_size
        return self.permutation(epoch)[start : start + self.batch_size].tolist()

    def _pass_bounds(self) -> tuple[int, int]:
        if self.max_batches is not None:
            return 0, max(self.max_batches, self.position)
        epoch_start = self.epoch_of(self.position) * self.batches_per_epoch
        return epoch_start, epoch_start + self.batches_per_epoch

    @property
    def remaining(self) -> int:
        """Micro-batches the next iteration will yield."""
        return self._pass_bounds()[1] - self.position

    def __len__(self) -> int:
        start, stop = self._pass_bounds()
        return stop - start

    def __iter__(self) -> Iterator[list[int]]:
        stop = self._pass_bounds()[1]
        for k in range(self.position, stop):
            yield self.batch(k)
        # Only a fully consumed pass moves the position (DataLoader prefetch can't skip data).
        self.position = stop


class EvalBatchSampler(Sampler[list[int]]):
    """Evaluation batches of ``range(num_samples)`` in order, dealt round-robin to ranks.

    Global batch ``g`` is ``[g * batch_size, (g + 1) * batch_size)`` (the last one shorter, no
    repeats) and goes to rank ``g % world_size``: the batches, and so the metric and its noise
    (keyed by ``g``, see ``global_index``), are the same for any world size. Each rank yields
    ``ceil(batches / world_size)`` batches; the slots past the last global batch repeat batch
    0 and are flagged by ``is_padding`` so that their loss is not counted. Without them a rank
    could get no batch at all (Lightning refuses that) or one fewer than the others (a hang
    under FSDP, whose forward is a collective).

    Args:
        max_batches: evaluate only the first this many global batches (None = all).
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0,
                 max_batches: int | None = None) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size={batch_size}, world_size={world_size}, rank={rank}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"the validation batch cap must be >= 1 (null = all), got {max_batches}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank = world_size, rank
        n = -(-num_samples // batch_size)
        self.num_global_batches = n if max_batches is None else min(n, max_batches)

    def global_index(self, local_index: int) -> int:
        """Global batch number of this rank's ``local_index``-th batch."""
        return local_index * self.world_size + self.rank

    def is_padding(self, global_index: int) -> bool:
        """True for the filler slots that only keep the ranks' batch counts equal."""
        return global_index >= self.num_global_batches

    def __len__(self) -> int:
        return -(-self.num_global_batches // self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(len(self)):
            g = self.global_index(k)
            g = 0 if self.is_padding(g) else g
            yield list(range(g * self.batch_size, min((g + 1) * self.batch_size, self.num_samples)))


class ResumableDataLoader(DataLoader):
    """DataLoader that tells Lightning it is resumable.

    The resume point is the datamodule's ``consumed_batches`` (restored before
    the loader is built), so loading a state here is a no-op; having the
    methods stops Lightning warning that mid-epoch resumption is unreliable.
    """

    def state_dict(self) -> dict[str, int | None]:
        return {"position": getattr(self.batch_sampler, "position", None)}

    def load_state_dict(self, state_dict: dict[str, int | None]) -> None:
        return None


def make_loader(
    dataset: Dataset, batch_sampler: Sampler[list[int]], num_workers: int = 0
) -> DataLoader:
    """DataLoader over ``batch_sampler`` (non-persistent workers; pinned memory on CUDA)."""
    return ResumableDataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
