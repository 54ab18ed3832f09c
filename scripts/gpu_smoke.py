"""GPU smoke check: train, sample and evaluate a small run on CUDA with every attention backend.

    python scripts/gpu_smoke.py                    # ar and mdlm x (flash if installed, sdpa, math)
    python scripts/gpu_smoke.py --algos mdlm esolm --steps 50 --compile

Each combination runs the real entry points in a subprocess (bf16-mixed, one GPU):
`src.train` (which samples at the end under the training precision), `src.sample` and
`src.evaluate`; the table gives each one's exit status and seconds, and the run's val NLL.
Exits 1 if any failed; prints "skipped" and exits 0 where CUDA is not available.
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


def check(algo: str, backend: str, steps: int, compile_: bool, root: Path) -> dict:
    """Train + sample + evaluate one (algo, backend); returns a result row."""
    common = [f"paths.log_dir={root}/runs", f"paths.cache_dir={root}/cache"]
    train = ["src.train", f"algo={algo}", "model=1M", "trainer=gpu", "trainer.devices=1",
             "trainer.precision=bf16-mixed", f"training.max_steps={steps}",
             f"model.attn_backend={backend}", f"training.compile={str(compile_).lower()}",
             "eval.num_samples=2", "eval.sample_steps=16", "training.val_max_batches=4",
             "trainer.enable_progress_bar=false", *common]
    row = {"algo": algo, "backend": backend}
    ok, row["train_s"], tail = _run(train)
    if not ok:
        return {**row, "ok": False, "failed": "train", "error": tail}
    run_dir = subprocess.run([sys.executable, "-m", "src.run_dir", *train[1:]], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
    row["val_nll"] = json.loads((Path(run_dir) / "result.json").read_text())["val_nll"]
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
    p.add_argument("--compile", action="store_true", help="also torch.compile the backbone")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    backends = (["flash"] if importlib.util.find_spec("flash_attn") else []) + ["sdpa", "math"]
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, backends {backends}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            for backend in backends:
                rows.append(check(algo, backend, args.steps, args.compile, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
