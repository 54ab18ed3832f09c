"""Sampler speed at equal network calls: how much of each step is the network, how much
bookkeeping (MDLM, DUO, GIDD, Eso-LM, AR).

    python scripts/bench_samplers.py                              # 1M, L 128, 128 steps, batch 8
    python scripts/bench_samplers.py --model 3.5M --batch 16 --json out.json

Models are randomly initialized (adaLN perturbed so the logits are not uniform): the work
a sampler does per step does not depend on what the network learned. Each row: seconds,
network calls (NFE), network calls per second, seconds spent inside the network, and the
rest (the sampler's own bookkeeping) as a share of the total.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from src.builders import build_algo, build_backbone, build_datamodule  # noqa: E402
from src.runs.identity import compose_train  # noqa: E402

SAMPLERS = (("mdlm", "ancestral"), ("mdlm", "ancestral_cache"), ("duo", "duo_ancestral"),
            ("gidd", "gidd_ancestral"), ("gidd", "gidd_adaptive"), ("esolm", "esolm"),
            ("ar", "ar"))


def build(algo: str, model: str, cache_dir: str) -> object:
    cfg = compose_train([f"algo={algo}", f"model={model}", f"paths.cache_dir={cache_dir}"])
    tok = build_datamodule(cfg).tokenizer
    module = build_algo(cfg, tok, build_backbone(cfg, tok.vocab_size)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


def timed_network(module: object) -> list[float]:
    """Wrap the algo's network call to add up the seconds spent in it."""
    spent = [0.0]
    inner = module.net

    def net(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        spent[0] += time.perf_counter() - t0
        return out

    module.net = net
    return spent


def bench(algo: str, sampler_name: str, args: argparse.Namespace) -> dict:
    module = build(algo, args.model, args.cache_dir)
    spent = timed_network(module)
    cfg = compose_train([f"algo={algo}", f"sampler={sampler_name}"]).sampler
    sampler = instantiate(cfg, progress=False)
    steps = None if algo == "ar" else args.steps
    best = None
    for _ in range(args.repeats):
        spent[0] = 0.0
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        sampler.sample(module, args.batch, args.length, steps, generator=g)
        total = time.perf_counter() - t0
        if best is None or total < best["seconds"]:
            best = {"seconds": total, "network_s": spent[0], "nfe": sampler.nfe}
    return {"algo": algo, "sampler": sampler_name, **best,
            "calls_per_s": best["nfe"] / best["seconds"],
            "bookkeeping_share": 1 - best["network_s"] / best["seconds"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="1M")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="best of this many")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"model {args.model}, L={args.length}, {args.steps} steps, batch {args.batch}, "
          f"{args.threads} threads, fp32")
    print(f"{'algo':>6} {'sampler':>16} {'seconds':>8} {'nfe':>5} {'calls/s':>8} "
          f"{'network s':>9} {'bookkeeping':>11}")
    rows = []
    for algo, name in SAMPLERS:
        row = bench(algo, name, args)
        rows.append(row)
        print(f"{algo:>6} {name:>16} {row['seconds']:>8.2f} {row['nfe']:>5} "
              f"{row['calls_per_s']:>8.1f} {row['network_s']:>9.2f} "
              f"{100 * row['bookkeeping_share']:>10.0f}%")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
