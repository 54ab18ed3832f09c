"""Our MDLM training step against the scaling-dllms reference DiT's, side by side in one process.

    python scripts/bench_reference.py                          # 1M (quickstart) and 6M, fp32 + bf16
    python scripts/bench_reference.py --shapes 19M:256:16 --precisions 32-true --rounds 5

Both train the same architecture (dim, blocks, heads, vocab, sequence length, batch) on the
same random ids: ours through the lab's own step (the MDLM algo's loss, its optimizer, grad
clipping: src/utils/step_timer.py), the reference through scripts/reference_dit.py (its
TorchScript fusions, einops, compiled flex attention, plain AdamW) with its MDLM loss.
Measurements alternate (ours, reference, ours, ...) and the median of the rounds is kept;
MFU divides model FLOPs (the `full` convention) by the matmul peak measured in this run, on
this device and dtype. bf16 rows run on any CPU; where the CPU has no bf16 units they say so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import warnings  # noqa: E402

import torch  # noqa: E402

from reference_dit import ReferenceDiT, reference_mdlm_loss  # noqa: E402
from src.algos.cost import algo_passes  # noqa: E402
from src.models.flops import flops_per_token  # noqa: E402
from src.runs.identity import compose_train  # noqa: E402
from src.utils.matmul_peak import matmul_peak  # noqa: E402
from src.utils.precision import AUTOCAST_DTYPES, hardware  # noqa: E402
from src.utils.runtime import setup_torch  # noqa: E402
from src.utils.step_timer import bench_algo, time_training_steps  # noqa: E402

VOCAB = 4096  # the quickstart's BPE


def time_reference(model: ReferenceDiT, batch: int, seq_len: int, *, steps: int, warmup: int,
                   precision: str) -> float:
    """Seconds per optimizer step of the reference: its loss, backward, clip, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    dtype = AUTOCAST_DTYPES.get(precision)
    g = torch.Generator().manual_seed(0)
    model.train()

    def step() -> None:
        x = torch.randint(0, VOCAB - 1, (batch, seq_len), generator=g)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = reference_mdlm_loss(model, x, VOCAB - 1, g)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def reference_attention() -> str:
    """flex (the reference's) when torch.compile can build it here, else SDPA (reported)."""
    try:
        model = ReferenceDiT(64, 32, 1, 2, attention="flex")
        model(torch.randint(0, 63, (2, 16)), torch.zeros(2)).sum().backward()
        return "flex"
    except Exception as err:  # noqa: BLE001 - any compile failure falls back, and is reported
        print(f"flex attention did not compile here ({type(err).__name__}: "
              f"{str(err).splitlines()[0][:120]}); the reference uses SDPA", file=sys.stderr)
        return "sdpa"


def compare(model_name: str, seq_len: int, batch: int, precision: str, rounds: int, steps: int,
            attention: str, peak: float) -> dict:
    cfg = compose_train([f"model={model_name}", f"data.seq_len={seq_len}",
                         f"data.batch_size={batch}", f"trainer.precision={precision}"])
    m = cfg.model
    ours = bench_algo(cfg, VOCAB, "cpu")
    ref = ReferenceDiT(VOCAB, int(m.dim), int(m.n_blocks), int(m.n_heads), int(m.cond_dim),
                       attention=attention)
    ours_s, ref_s = [], []
    for r in range(rounds):
        warm = 3 if r == 0 else 1
        ours_s.append(time_training_steps(ours, batch, seq_len, steps=steps, warmup=warm,
                                          precision=precision))
        ref_s.append(time_reference(ref, batch, seq_len, steps=steps, warmup=warm,
                                    precision=precision))
    tokens = batch * seq_len
    fpt = flops_per_token(convention="full", dim=m.dim, n_blocks=m.n_blocks, n_heads=m.n_heads,
                          vocab_size=VOCAB, seq_len=seq_len, cond_dim=m.cond_dim, adaln=m.adaln,
                          passes=algo_passes(cfg.algo, seq_len))
    ours_tps, ref_tps = tokens / statistics.median(ours_s), tokens / statistics.median(ref_s)
    return {"model": model_name, "seq_len": seq_len, "batch": batch, "precision": precision,
            "ours_tokens_per_s": ours_tps, "reference_tokens_per_s": ref_tps,
            "ratio": ours_tps / ref_tps, "ours_mfu": ours_tps * fpt / peak,
            "reference_mfu": ref_tps * fpt / peak, "matmul_peak_gflops": peak / 1e9,
            "reference_attention": attention}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["1M:128:32", "6M:256:16"],
                   help="model:seq_len:batch")
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", help="also write the rows as JSON here")
    args = p.parse_args()
    setup_torch()
    # The reference wraps its blocks in autocast("cuda"), a no-op that warns on a CPU.
    warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
    cpu = hardware().cpu
    print(f"CPU {cpu.model}: {torch.get_num_threads()} threads, bf16 units "
          f"{'yes' if cpu.native_bf16 else 'no'}, torch {torch.__version__}")
    attention = reference_attention()
    rows = []
    for precision in args.precisions:
        dtype = AUTOCAST_DTYPES.get(precision, torch.float32)
        peak = matmul_peak("cpu", dtype)
        for shape in args.shapes:
            name, seq_len, batch = shape.split(":")
            row = compare(name, int(seq_len), int(batch), precision, args.rounds, args.steps,
                          attention, peak)
            rows.append(row)
            print(f"{name:>5} L={seq_len:<4} B={batch:<3} {precision:<10} ours "
                  f"{row['ours_tokens_per_s']:>9,.0f} tok/s (MFU {row['ours_mfu']:.1%})  "
                  f"reference {row['reference_tokens_per_s']:>9,.0f} tok/s "
                  f"(MFU {row['reference_mfu']:.1%})  ratio {row['ratio']:.2f}x  "
                  f"[peak {peak / 1e9:,.0f} GFLOP/s]", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
