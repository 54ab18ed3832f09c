"""Submit a large sweep through the real Slurm launcher without a cluster, and time it.

    python scripts/sweep_dry_run.py                       # the default 1,000-point IsoFLOP grid
    python scripts/sweep_dry_run.py --out /tmp/dry -- experiment=isoflop_ladder algo=ar,mdlm

It runs `python -m src.train -m hydra/launcher=slurm <sweep>` exactly as a user would, with a
stand-in `sbatch` first on PATH: Hydra expands the sweep, the submitit launcher writes one
pickled job per point and one job-array script, and calls `sbatch` once. The stand-in keeps
that script and ends the launcher (which would otherwise wait for the jobs). Nothing trains.
It prints: points, sbatch calls, the array line, seconds from start to submission, and the
bytes written per point. No cluster, account or partition is needed or named.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: 5 algos x 10 ladder sizes x 5 budgets x 4 seeds = 1,000 points.
DEFAULT_SWEEP = (
    "experiment=isoflop_ladder", "algo=ar,mdlm,duo,esolm,gidd",
    "model=6M,19M,34M,48M,66M,85M,113M,142M,170M,206M",
    "training.flops_budget=1e18,2e18,4e18,8e18,1.6e19", "seed=0,1,2,3")

FAKE_SBATCH = """#!/usr/bin/env bash
# Stand-in for sbatch (scripts/sweep_dry_run.py): keep the script, report a job, end the launcher.
date +%s.%N >> "{log}/sbatch_times"
cp "${{@: -1}}" "{log}/submission_$(date +%s%N).sh"
echo "Submitted batch job 4242"
( sleep 0.5; kill -TERM $PPID ) >/dev/null 2>&1 &
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="keep everything here (default: temp)")
    p.add_argument("sweep", nargs="*", help="sweep overrides (default: 1,000-point IsoFLOP grid)")
    args = p.parse_args(argv)
    sweep = args.sweep or list(DEFAULT_SWEEP)
    out = args.out or Path(tempfile.mkdtemp(prefix="sweep_dry_run_"))
    bin_dir, log = out / "bin", out / "sbatch"
    for d in (bin_dir, log):
        d.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "sbatch"
    fake.write_text(FAKE_SBATCH.format(log=log))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "DLM_RUN_ROOT": str(out / "runs")}
    command = [sys.executable, "-m", "src.train", "-m", "hydra/launcher=slurm", *sweep,
               f"hydra.sweep.dir={out}/multirun", f"hydra.launcher.submitit_folder={out}/submitit"]
    t0 = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    times = [float(t) for t in (log / "sbatch_times").read_text().split()] \
        if (log / "sbatch_times").exists() else []
    scripts = sorted(log.glob("submission_*.sh"))
    if not scripts:
        print(f"error: the launcher never called sbatch (exit {proc.returncode}):\n"
              f"{proc.stderr[-2000:]}", file=sys.stderr)
        return 1
    text = scripts[0].read_text()
    array = re.search(r"#SBATCH --array=(\S+)", text)
    pickles = list((out / "submitit").rglob("*_submitted.pkl"))
    written = sum(f.stat().st_size for f in (out / "submitit").rglob("*") if f.is_file())
    print(f"points submitted:          {len(pickles)}")
    print(f"sbatch calls:              {len(times)}")
    print(f"job array:                 --array={array.group(1) if array else '(none)'}")
    print(f"start to submission:       {times[0] - t0:.1f} s (Hydra expansion + {len(pickles)} "
          "pickles + the array script)")
    print(f"bytes written per point:   {written / max(len(pickles), 1):,.0f} "
          f"({written / 1e6:.1f} MB in all, under {out / 'submitit'})")
    print(f"submission script:         {scripts[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
