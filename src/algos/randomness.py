"""Counter-based randomness: every random draw of a step is a pure function of
(seed, step, micro-batch, rank), so a resumed run replays exactly the same noise
without saving any RNG state, and the number of workers or restarts cannot change it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from src.algos.noise import stratified_times


def derive_seed(*keys: object) -> int:
    """A 63-bit seed that depends on every key (stable across processes and Python runs)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(device: torch.device | str, *keys: object) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g


@dataclass
class StepRandomness:
    """The randomness one micro-batch may use.

    Attributes:
        generator: source of every other random draw of this micro-batch.
        u: the uniform shared by the whole global batch of this optimizer step.
        offset: index of this micro-batch's first sample inside the global batch.
        n_global: number of samples in the global batch (ranks x accumulation x micro).
    """

    generator: torch.Generator
    u: float
    offset: int
    n_global: int

    def times(self, batch_size: int, eps_t: float = 1e-3) -> torch.Tensor:
        """(B,) stratified antithetic diffusion times on the generator's device."""
        device = self.generator.device
        index = torch.arange(self.offset, self.offset + batch_size, device=device)
        n_global = self.n_global or batch_size  # 0 = stratify within this batch (validation)
        u = torch.tensor(self.u, dtype=torch.float64, device=device)
        return stratified_times(u, index, n_global, eps_t)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.generator.device)

    @classmethod
    def for_validation(cls, device: torch.device | str, seed: int, validation: object,
                       batch: int, draw: int) -> "StepRandomness":
        """Draw `draw` of the diffusion noise for one validation batch.

        Keyed by `validation` (the training position and the evaluation pass): fresh noise
        at every validation, the same on a resumed run. Each draw has its own u (times
        stratified within the batch) and masks, independent of the other draws: the spread
        between draws then estimates the standard error of their mean without bias. (Draws
        sharing one u, with interleaved strata, were tried: their spread understated the
        error by ~30%, tests/algos/test_validation_draws.py.)
        """
        u = derive_seed(seed, "val-u", validation, batch, draw) / 2.0**63
        g = make_generator(device, "val", seed, validation, batch, draw)
        return cls(generator=g, u=u, offset=0, n_global=0)
