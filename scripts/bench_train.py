"""Training throughput and model-FLOPs utilization (MFU) of one algo x model size.

The matmul peak is measured in the same process, on the same device and dtype, right
after the run (src/utils/matmul_peak.py, the number `python -m src.doctor` prints), so MFU is
relative to what this machine really does, not a datasheet. `--precision auto` (default)
times the precision training would pick here.

    python scripts/bench_train.py algo=mdlm model=1M --seq-len 128 --batch-size 32
    python scripts/bench_train.py algo=ar model=113M --seq-len 1024 --batch-size 16 --compile

Extra `key=value` arguments are Hydra overrides of configs/train.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from src.algos.cost import algo_passes  # noqa: E402
from src.models.dit import count_params  # noqa: E402
from src.models.flops import flops_per_token  # noqa: E402
from src.runs.identity import compose_train  # noqa: E402
from src.utils.matmul_peak import matmul_peak  # noqa: E402
from src.utils.precision import AUTOCAST_DTYPES, resolve_precision  # noqa: E402
from src.utils.runtime import setup_torch  # noqa: E402
from src.utils.step_timer import bench_algo, time_training_steps  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=4097)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="auto",
                   help="a trainer.precision value; auto = what training picks on this machine")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, overrides = p.parse_known_args()
    setup_torch()
    cfg = compose_train([*overrides, f"data.seq_len={args.seq_len}",
                         f"training.compile={args.compile}"])
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device.type).value
    algo = bench_algo(cfg, args.vocab_size, device)
    step_s = time_training_steps(algo, args.batch_size, args.seq_len, steps=args.steps,
                                 warmup=args.warmup, precision=precision)
    # The same measurement the doctor prints, in the dtype the matmuls ran in.
    peak = matmul_peak(device, AUTOCAST_DTYPES.get(precision, torch.float32))

    tokens_per_s = args.batch_size * args.seq_len / step_s
    m = cfg.model
    shape = dict(dim=m.dim, n_blocks=m.n_blocks, n_heads=m.n_heads, vocab_size=args.vocab_size,
                 seq_len=args.seq_len, cond_dim=m.cond_dim, adaln=m.adaln,
                 passes=algo_passes(cfg.algo, args.seq_len))
    fpt = {c: flops_per_token(convention=c, **shape) for c in ("full", "6N", "reference")}
    print(json.dumps({
        "algo": cfg.algo.name, "model": m.name, **count_params(algo.backbone),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "precision": precision, "compile": args.compile,
        "seq_len": args.seq_len, "batch_size": args.batch_size, "steps": args.steps,
        "step_time_s": step_s, "tokens_per_s": tokens_per_s,
        "matmul_peak_tflops": peak / 1e12,
        "mfu": {c: tokens_per_s * f / peak for c, f in fpt.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
