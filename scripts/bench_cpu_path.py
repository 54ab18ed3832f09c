"""Each CPU fast-path candidate, measured on and off in one run (the quickstart's MDLM step).

    python scripts/bench_cpu_path.py                 # all candidates, the precision auto picks
    python scripts/bench_cpu_path.py --only adamw readout --precision 32-true

- adamw: torch.optim.AdamW as a per-parameter loop, foreach, and fused (the lab's choice):
  ms per optimizer step, and the largest weight difference from the loop after 10 steps.
- readout: MDLM's logits and softmax at every position (the reference's way) against only the
  masked ones (the lab's): ms per training step, and the loss difference on the same batch.
- denormals: a model whose attention is sharp (as after training: probabilities below
  1.2e-38) stepped with and without flush-to-zero, each in a fresh process (the CPU mode is
  per thread and torch's workers copy it when they start).
- compile: training.compile=false/true: the first two steps (cold compile) and the steady step.
- threads: 1 thread against one per physical core.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from src.algos.inference import subs_log_probs  # noqa: E402
from src.algos.randomness import StepRandomness, make_generator  # noqa: E402
from src.runs.identity import compose_train  # noqa: E402
from src.utils.precision import AUTOCAST_DTYPES, resolve_precision  # noqa: E402
from src.utils.runtime import default_threads, setup_torch  # noqa: E402
from src.utils.step_timer import bench_algo, time_training_steps  # noqa: E402

CANDIDATES = ("adamw", "readout", "denormals", "compile", "threads")
VOCAB, SEQ = 4096, 128


def _batch(cfg) -> int:
    return int(cfg.data.batch_size)


def bench_adamw(precision: str) -> dict:
    cfg = compose_train([])
    params = list(bench_algo(cfg, VOCAB, "cpu").parameters())
    g = torch.Generator().manual_seed(0)
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(10)]
    out, finals = {}, {}
    for name, kwargs in (("loop", {"foreach": False}), ("foreach", {"foreach": True}),
                         ("fused", {"fused": True})):
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt = torch.optim.AdamW(copies, lr=1e-3, **kwargs)
        for step in grads:  # the same 10 gradients for every variant
            for p, grad in zip(copies, step):
                p.grad = grad.clone()
            opt.step()
        finals[name] = copies
        t0 = time.perf_counter()
        for _ in range(30):
            opt.step()
        out[f"{name}_ms"] = (time.perf_counter() - t0) / 30 * 1e3
    out["fused_max_abs_diff_vs_loop"] = max(
        (a - b).abs().max().item() for a, b in zip(finals["fused"], finals["loop"]))
    return out


def _full_readout_loss(algo, x, rng):
    """MDLM's loss with logits at every position (what the lab did before, and the reference)."""
    b, length = x.shape
    t = algo._times(rng, b)
    masked = rng.rand(b, length) < (1 - algo.noise.alpha(t))[:, None]
    z = torch.where(masked, algo.mask_id, x)
    logp = subs_log_probs(algo.net(z, algo._sigma(t)), algo.mask_id)
    ce = -logp.gather(-1, x[..., None]).squeeze(-1) * masked
    return (algo.noise.mdlm_weight(t)[:, None] * ce).sum() / x.numel()


def bench_readout(precision: str) -> dict:
    cfg = compose_train([])
    algo = bench_algo(cfg, VOCAB, "cpu").train()
    dtype = AUTOCAST_DTYPES.get(precision)
    x = torch.randint(0, VOCAB - 1, (_batch(cfg), SEQ), generator=torch.Generator().manual_seed(0))

    def run(loss_fn, steps: int = 20) -> float:
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            for i in range(steps):
                g = make_generator("cpu", "bench", i)
                rng = StepRandomness(g, (0.37 * i) % 1, 0, x.shape[0])
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = loss_fn(rng)
                loss.backward()
                algo.zero_grad(set_to_none=True)
            best = min(best, (time.perf_counter() - t0) / steps)
        return best * 1e3

    full = run(lambda rng: _full_readout_loss(algo, x, rng))
    masked = run(lambda rng: algo.loss({"input_ids": x}, rng).loss)
    rng_a = StepRandomness(make_generator("cpu", "check"), 0.5, 0, x.shape[0])
    rng_b = StepRandomness(make_generator("cpu", "check"), 0.5, 0, x.shape[0])
    with torch.no_grad():
        diff = abs(_full_readout_loss(algo, x, rng_a).item()
                   - algo.loss({"input_ids": x}, rng_b).loss.item())
    return {"full_readout_ms": full, "masked_readout_ms": masked, "speedup": full / masked,
            "loss_abs_diff": diff}


def denormal_probe(flush: bool) -> float:
    """ms per fwd+bwd step of the quickstart model with attention made sharp."""
    torch.set_flush_denormal(flush)  # before any op: torch's worker threads copy the mode
    torch.set_num_threads(default_threads())
    cfg = compose_train([])
    algo = bench_algo(cfg, VOCAB, "cpu").train()
    with torch.no_grad():
        for block in algo.backbone.blocks:
            block.qkv.weight.mul_(12.0)  # scores of hundreds: softmax tails below 1e-38
    x = torch.randint(0, VOCAB - 1, (_batch(cfg), SEQ), generator=torch.Generator().manual_seed(0))
    rng = StepRandomness(make_generator("cpu", "d"), 0.5, 0, x.shape[0])
    for _ in range(2):
        algo.loss({"input_ids": x}, rng).loss.backward()
    t0 = time.perf_counter()
    for _ in range(10):
        algo.loss({"input_ids": x}, rng).loss.backward()
    return (time.perf_counter() - t0) / 10 * 1e3


def bench_denormals(precision: str) -> dict:
    out = {}
    for flush in (False, True):
        proc = subprocess.run([sys.executable, __file__, "--denormal-probe", str(int(flush))],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        out[f"flush_{str(flush).lower()}_ms"] = float(proc.stdout.strip().splitlines()[-1])
    out["speedup"] = out["flush_false_ms"] / out["flush_true_ms"]
    return out


def bench_compile(precision: str) -> dict:
    out = {}
    for compiled in (False, True):
        cfg = compose_train([f"training.compile={compiled}"])
        algo = bench_algo(cfg, VOCAB, "cpu")
        t0 = time.perf_counter()
        time_training_steps(algo, _batch(cfg), SEQ, steps=0, warmup=2, precision=precision)
        cold = time.perf_counter() - t0
        step = min(time_training_steps(algo, _batch(cfg), SEQ, steps=20, warmup=1,
                                       precision=precision) for _ in range(2))
        out[f"compile_{str(compiled).lower()}"] = {"first_two_steps_s": cold, "step_ms": step * 1e3}
    saved = out["compile_false"]["step_ms"] - out["compile_true"]["step_ms"]
    extra = out["compile_true"]["first_two_steps_s"] - out["compile_false"]["first_two_steps_s"]
    out["break_even_steps"] = extra * 1e3 / saved if saved > 0 else None
    return out


def bench_threads(precision: str) -> dict:
    cfg = compose_train([])
    out = {}
    for n in sorted({1, default_threads()}):
        torch.set_num_threads(n)
        algo = bench_algo(cfg, VOCAB, "cpu")
        out[f"threads_{n}_ms"] = time_training_steps(algo, _batch(cfg), SEQ, steps=20, warmup=3,
                                                     precision=precision) * 1e3
    torch.set_num_threads(default_threads())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", choices=CANDIDATES, default=list(CANDIDATES))
    p.add_argument("--precision", default="auto")
    p.add_argument("--denormal-probe", type=int, choices=(0, 1), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.denormal_probe is not None:
        print(f"{denormal_probe(bool(args.denormal_probe)):.3f}")
        return
    setup_torch()
    precision = resolve_precision(args.precision, "cpu").value
    print(f"precision {precision}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    bench = {"adamw": bench_adamw, "readout": bench_readout, "denormals": bench_denormals,
             "compile": bench_compile, "threads": bench_threads}
    for name in args.only:
        print(json.dumps({name: bench[name](precision)}), flush=True)


if __name__ == "__main__":
    main()
