"""GPU smoke check: train, sample and evaluate small runs on CUDA: every attention backend,
`trainer.precision=auto`, torch.compile, 2-GPU DDP and FSDP2 (`trainer=fsdp`).

    python scripts/gpu_smoke.py                    # ar and mdlm x (flash if installed, sdpa, math)
    python scripts/gpu_smoke.py --algos mdlm esolm --steps 50

Each row runs the real entry points in a subprocess: `src.train` (which samples at the end
under the training precision), `src.sample` and `src.evaluate`; it gives each one's exit
status and seconds, the run's val NLL and the precision `auto` resolved to (bf16-mixed on
sm80+, 32-true on V100 / T4). Rows: each algo x backend on one GPU; each algo with
`training.compile=true` (SDPA); each algo under `trainer=fsdp` (bf16 through FSDP2 on CUDA,
which the CPU tests cannot reach); with 2+ GPUs, each algo under DDP and FSDP on 2 GPUs. Exits 1 if any
failed; prints "skipped" and exits 0 where CUDA is not available.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> tuple[bool, float, str]:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode == 0, time.time() - t0, tail


def check(algo: str, backend: str, steps: int, compile_: bool, root: Path,
          devices: int = 1, trainer: str = "gpu") -> dict:
    """Train + sample + evaluate one (algo, backend, compile, devices, trainer); returns a
    result row."""
    common = [f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache"]
    train = ["src.train", f"algo={algo}", "model=1M", f"trainer={trainer}",
             f"trainer.devices={devices}",
             f"training.global_batch_size={32 * devices}", f"training.max_steps={steps}",
             f"model.attn_backend={backend}", f"training.compile={str(compile_).lower()}",
             "eval.num_samples=2", "eval.sample_steps=16", "training.val_max_batches=4",
             "trainer.enable_progress_bar=false", *common]
    row = {"algo": algo, "backend": backend, "compile": compile_, "devices": devices,
           "trainer": trainer}
    ok, row["train_s"], tail = _run(train)
    if not ok:
        return {**row, "ok": False, "failed": "train", "error": tail}
    run_dir = subprocess.run([sys.executable, "-m", "src.run_dir", *train[1:]], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
    result = json.loads((Path(run_dir) / "result.json").read_text())
    row.update(val_nll=result["val_nll"], precision=result["precision"],
               tokens_per_s=result["tokens_per_s"])
    for name, args in (("sample", ["src.sample", f"ckpt={run_dir}", "num_samples=2", "steps=16",
                                   f"out={root}/samples.json", *common]),
                       ("evaluate", ["src.evaluate", f"ckpt={run_dir}", "max_batches=4",
                                     "device=cuda", *common])):
        ok, row[f"{name}_s"], tail = _run(args)
        if not ok:
            return {**row, "ok": False, "failed": name, "error": tail}
    return {**row, "ok": True}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["ar", "mdlm"])
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    backends = (["flash"] if importlib.util.find_spec("flash_attn") else []) + ["sdpa", "math"]
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, backends {backends}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(algo, backend, False, 1, "gpu") for algo in args.algos for backend in backends]
        plan += [(algo, "sdpa", True, 1, "gpu") for algo in args.algos]
        plan += [(algo, "sdpa", False, 1, "fsdp") for algo in args.algos]
        if torch.cuda.device_count() >= 2:
            plan += [(algo, "sdpa", False, 2, t) for algo in args.algos for t in ("gpu", "fsdp")]
        for algo, backend, compile_, devices, trainer in plan:
            rows.append(check(algo, backend, args.steps, compile_, Path(tmp), devices, trainer))
            print(json.dumps(rows[-1]), flush=True)
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
