"""Time the real training step of a config outside Lightning: the algo's own loss, backward,
clipping and its own optimizer, under the run's autocast. Used by the doctor (predicted
quickstart time) and scripts/bench_train.py (tokens/s, MFU)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
from omegaconf import DictConfig

from src.algos.base import Algo
from src.algos.randomness import StepRandomness, make_generator
from src.builders import build_algo, build_backbone
from src.utils.precision import AUTOCAST_DTYPES



def bench_algo(cfg: DictConfig, vocab_size: int, device: torch.device | str) -> Algo:
    """The algo of `cfg` on random weights, with a stand-in tokenizer of `vocab_size` ids."""
    tok = SimpleNamespace(vocab_size=vocab_size, mask_id=vocab_size - 1, eos_id=0)
    return build_algo(cfg, tok, build_backbone(cfg, vocab_size)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_steps(algo: Algo, batch_size: int, seq_len: int, *, steps: int, warmup: int,
                        precision: str, clip: float = 1.0) -> float:
    """Seconds per optimizer step (mean of `steps` after `warmup`) on random ids."""
    device = algo.device
    opt = algo.make_optimizer()
    dtype = AUTOCAST_DTYPES.get(precision)
    algo.train()

    def step(i: int) -> None:
        g = make_generator(device, "bench", i)
        x = torch.randint(0, algo.vocab_size - 1, (batch_size, seq_len), device=device,
                          generator=g)
        rng = StepRandomness(g, 0.5, 0, batch_size)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = algo.loss({"input_ids": x}, rng).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(algo.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    _sync(device)
    return (time.perf_counter() - t0) / max(steps, 1)
