"""Speed of Eso-LM sampling with and without the exact KV cache, per model size.

Builds randomly initialised DiTs of the CPU ladder (configs/model/<size>.yaml), samples
with the cached and the uncached sampler from the same generator, checks that they
return the same tokens and prints wall time, network calls and tokens fed.

    python scripts/bench_esolm_sampler.py --sizes 0.13M 1M 3.5M --length 128 --steps 128
    python scripts/bench_esolm_sampler.py --alpha-0 0.5 --order block --json out.json

Random weights are enough: the plan (how many tokens each step decodes) does not depend
on the network, so the work done is that of a trained model.
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
from omegaconf import OmegaConf  # noqa: E402

from src.algos.esolm import EsoLM  # noqa: E402
from src.algos.noise import LogLinear  # noqa: E402
from src.models.dit import DiT  # noqa: E402
from src.samplers.esolm import EsoLMSampler  # noqa: E402


def tiny_esolm(size: str, vocab_size: int, alpha_0: float, seed: int = 0) -> EsoLM:
    """Eso-LM around a randomly initialised DiT of `size` (adaLN-Zero layers perturbed, so
    attention really shapes the logits and a caching bug would change tokens)."""
    cfg = OmegaConf.load(ROOT / "configs" / "model" / f"{size}.yaml")
    torch.manual_seed(seed)
    net = DiT(vocab_size, int(cfg.dim), int(cfg.n_blocks), int(cfg.n_heads),
              max_seq_len=int(cfg.max_seq_len))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    algo = EsoLM(net, noise=LogLinear(), alpha_0=alpha_0, name="esolm", vocab_size=vocab_size,
                 mask_id=vocab_size - 1, eos_id=0, optim={}, lr_scheduler={})
    return algo.eval()


def run(algo: EsoLM, sampler: EsoLMSampler, n: int, length: int, seed: int) -> tuple[torch.Tensor, float]:
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    out = sampler.sample(algo, n, length, generator=g)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["0.13M", "0.44M", "1M", "2M", "3.5M"])
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--alpha-0", type=float, default=1.0)
    ap.add_argument("--order", default="random")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"L={args.length} steps={args.steps} batch={args.batch} V={args.vocab} "
          f"alpha_0={args.alpha_0} order={args.order} threads={args.threads}")
    print(f"{'size':>6} {'nocache s':>10} {'cache s':>8} {'speedup':>8} {'nfe':>5} "
          f"{'fed nocache':>12} {'fed cache':>10} {'same':>5}")
    for size in args.sizes:
        algo = tiny_esolm(size, args.vocab, args.alpha_0)
        res = {}
        for cached in (False, True):
            s = EsoLMSampler(steps=args.steps, order=args.order, use_kv_cache=cached, progress=False)
            best = float("inf")
            for r in range(args.repeats):
                out, sec = run(algo, s, args.batch, args.length, seed=0)
                best = min(best, sec)
            res[cached] = (out, best, s.nfe, s.fed_tokens)
        same = bool(torch.equal(res[False][0], res[True][0]))
        row = {"size": size, "length": args.length, "steps": args.steps, "batch": args.batch,
               "alpha_0": args.alpha_0, "order": args.order, "nocache_s": res[False][1],
               "cache_s": res[True][1], "speedup": res[False][1] / res[True][1],
               "nfe": res[True][2], "fed_nocache": res[False][3], "fed_cache": res[True][3],
               "identical_tokens": same}
        rows.append(row)
        print(f"{size:>6} {row['nocache_s']:>10.3f} {row['cache_s']:>8.3f} "
              f"{row['speedup']:>7.2f}x {row['nfe']:>5} {row['fed_nocache']:>12,} "
              f"{row['fed_cache']:>10,} {str(same):>5}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
