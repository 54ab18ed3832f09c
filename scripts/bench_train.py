"""Training throughput and model-FLOPs utilization (MFU) of one algo x model size.

The matmul peak is measured in the same process, on the same device and dtype, right
before the run, so MFU is relative to what this machine really does, not a datasheet.

    python scripts/bench_train.py algo=mdlm model=1M --seq-len 128 --batch-size 32
    python scripts/bench_train.py algo=ar model=113M --seq-len 1024 --batch-size 16 --compile

Extra `key=value` arguments are Hydra overrides of configs/train.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from src.algos.randomness import StepRandomness, make_generator  # noqa: E402
from src.builders import build_algo, build_backbone  # noqa: E402
from src.models.dit import count_params  # noqa: E402
from src.algos.cost import algo_passes  # noqa: E402
from src.models.flops import flops_per_token  # noqa: E402
from src.utils.resolvers import register_resolvers  # noqa: E402
from src.utils.runtime import setup_torch  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best FLOP/s of square matmuls over a few sizes (2 n^3 FLOPs each)."""
    sizes = (1024, 2048, 4096, 8192) if device.type == "cuda" else (512, 1024, 2048)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / len(sizes):
            a @ b
            reps += 1
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=4097)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, overrides = p.parse_known_args()
    setup_torch()
    register_resolvers()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"data.seq_len={args.seq_len}",
                                          f"training.compile={args.compile}"])
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    tok = SimpleNamespace(vocab_size=args.vocab_size, mask_id=args.vocab_size - 1, eos_id=0)
    algo = build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size)).to(device)
    opt = torch.optim.AdamW(algo.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step(i: int) -> None:
        x = torch.randint(0, tok.vocab_size - 1, (args.batch_size, args.seq_len), device=device)
        rng = StepRandomness(make_generator(device, i), 0.5, 0, args.batch_size)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = algo.loss({"input_ids": x}, rng).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(algo.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(args.warmup):
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    sync(device)
    elapsed = time.perf_counter() - t0
    peak = matmul_peak(device, dtype)

    tokens_per_s = args.steps * args.batch_size * args.seq_len / elapsed
    m = cfg.model
    shape = dict(dim=m.dim, n_blocks=m.n_blocks, n_heads=m.n_heads, vocab_size=tok.vocab_size,
                 seq_len=args.seq_len, cond_dim=m.cond_dim, adaln=m.adaln,
                 passes=algo_passes(cfg.algo, args.seq_len))
    fpt = {c: flops_per_token(convention=c, **shape) for c in ("full", "6N", "reference")}
    print(json.dumps({
        "algo": cfg.algo.name, "model": m.name, **count_params(algo.backbone),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "dtype": args.dtype, "compile": args.compile,
        "seq_len": args.seq_len, "batch_size": args.batch_size, "steps": args.steps,
        "step_time_s": elapsed / args.steps, "tokens_per_s": tokens_per_s,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": {c: tokens_per_s * f / peak for c, f in fpt.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
