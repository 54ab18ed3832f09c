"""Check an export against its run: logits and generation in a fresh process without `src`.

    python scripts/check_export.py --run <run dir> --export <folder written by src.export>

The run's backbone scores fixed token ids here; a second Python process (`python -I`, the
repo not on its path) loads the folder with transformers (trust_remote_code), scores the
same ids and generates text with the run's sampler. Prints the max |logit difference|,
whether that process imported anything from `src`, and the generated text.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRESH = r'''
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer
job = json.load(open(sys.argv[1]))
head = AutoModelForCausalLM if job["causal"] else AutoModelForMaskedLM
model = head.from_pretrained(job["folder"], trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(job["folder"], trust_remote_code=True)
ids = torch.tensor(job["ids"])
with torch.no_grad():
    logits = model(ids).logits
text = tok.batch_decode(model.sample(num_samples=2, max_length=job["length"],
                                       steps=job["steps"], seed=0))
src = sorted(m for m in sys.modules if m == "src" or m.startswith("src."))
json.dump({"logits": logits.tolist(), "text": text, "src_modules": src}, open(sys.argv[2], "w"))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run dir or .ckpt that was exported")
    parser.add_argument("--export", required=True, help="folder written by python -m src.export")
    parser.add_argument("--length", type=int, default=64, help="generated sequence length")
    parser.add_argument("--steps", type=int, default=32, help="denoising steps (diffusion)")
    args = parser.parse_args()

    from src.algos.inference import network_logits
    from src.checkpoints import load_run
    from src.utils.cli import one_line_errors

    run = one_line_errors(load_run)(args.run)
    causal = run.algo.name == "ar"
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, run.algo.vocab_size - 1, (2, min(64, int(run.cfg.data.seq_len))),
                        generator=g)
    if not causal:  # a noisy input: some positions masked
        ids[:, ::3] = run.algo.mask_id
    with torch.no_grad():  # the run's own network call (Eso-LM: its clean-first order)
        ours = network_logits(run.algo.name, run.algo.backbone, ids, None, run.algo.mask_id)
    with tempfile.TemporaryDirectory() as tmp:
        job = {"folder": str(Path(args.export).resolve()), "ids": ids.tolist(), "causal": causal,
               "length": args.length, "steps": args.steps}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        (Path(tmp) / "fresh.py").write_text(FRESH)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_VERBOSITY", "error")
        proc = subprocess.run([sys.executable, "-I", "fresh.py", "job.json", "out.json"],
                              cwd=tmp, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"error: the fresh process failed:\n{proc.stderr[-3000:]}")
        out = json.loads((Path(tmp) / "out.json").read_text())
    diff = float((torch.tensor(out["logits"]) - ours).abs().max())
    print(json.dumps({"algo": run.algo.name, "max_abs_logit_diff": diff,
                      "max_abs_logit": float(ours.abs().max()),
                      "fresh_process_imported_src": out["src_modules"],
                      "generated": out["text"]}, indent=2))
    if diff > 1e-5 or out["src_modules"]:
        sys.exit("error: the export does not reproduce the run")


if __name__ == "__main__":
    main()
