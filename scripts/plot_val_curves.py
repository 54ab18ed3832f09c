"""Validation curves of several runs on one plot (e.g. the data-constrained AR vs MDLM).

    python scripts/plot_val_curves.py RUN_DIR [RUN_DIR ...] --out plot.png [--x step|tokens|epochs]

Reads `RUN_DIR/logs/metrics.csv` (column `val/nll`) and `RUN_DIR/config.yaml` (labels,
tokens per step, the data budget). x = tokens uses `perf/tokens` where logged, else
step x global batch x seq_len; x = epochs divides tokens by the unique training tokens
(`result.json["unique_tokens"]`, else ceil(data.unique_tokens / seq_len) x seq_len).
Diffusion runs report a bound (NELBO), AR runs the exact NLL.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def load_curve(run_dir: Path, x_axis: str) -> tuple[list[float], list[float], str]:
    """(x, val/nll, label) of one run; raises FileNotFoundError / ValueError with the fix."""
    metrics = run_dir / "logs" / "metrics.csv"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics} not found: pass run directories of src.train "
                                "(with logger=csv, the default)")
    rows = list(csv.DictReader(metrics.open()))
    cfg = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else None
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    seq_len = int(cfg.data.seq_len) if cfg is not None else None
    per_step = int(cfg.training.global_batch_size) * seq_len if cfg is not None else None
    tokens_at = {int(r["step"]): _float(r.get("perf/tokens")) for r in rows
                 if _float(r.get("perf/tokens")) is not None}
    unique = result.get("unique_tokens")
    if unique is None and cfg is not None and cfg.data.get("unique_tokens") is not None:
        unique = math.ceil(int(cfg.data.unique_tokens) / seq_len) * seq_len
    xs, ys, seen = [], [], set()
    for r in rows:
        nll, step = _float(r.get("val/nll")), int(r["step"])
        if nll is None or step in seen:
            continue
        seen.add(step)
        tokens = tokens_at.get(step) or (None if per_step is None else (step + 1) * per_step)
        if x_axis == "step":
            x = step
        elif tokens is None or (x_axis == "epochs" and not unique):
            raise ValueError(f"{run_dir}: cannot compute {x_axis} (no config.yaml, or no data "
                             "budget for epochs): use --x step")
        else:
            x = tokens / unique if x_axis == "epochs" else tokens
        xs.append(float(x))
        ys.append(nll)
    if not ys:
        raise ValueError(f"{metrics} has no val/nll rows: validate during training "
                         "(training.val_every_n_steps)")
    label = run_dir.name
    if cfg is not None:
        label = f"{cfg.algo.name} {cfg.model.name}"
        if cfg.data.get("unique_tokens") is not None:
            label += f" U={int(cfg.data.unique_tokens):,}"
        # What else sets this run apart (a sweep axis): its config delta, short keys.
        delta = (cfg.get("run_identity") or {}).get("config_delta") or {}
        label += "".join(f" {'.'.join(str(k).split('.')[-2:])}={v}" for k, v in delta.items()
                         if not str(k).startswith(("data.unique_tokens", "algo.")))
    return xs, ys, label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories")
    ap.add_argument("--out", type=Path, required=True, help="output image (png/pdf/svg)")
    ap.add_argument("--x", choices=("step", "tokens", "epochs"), default="step")
    ap.add_argument("--title", default="validation NLL (diffusion: NELBO bound)")
    args = ap.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        for run in args.runs:
            xs, ys, label = load_curve(run, args.x)
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
            best = min(range(len(ys)), key=ys.__getitem__)
            print(f"{label}: best val/nll {ys[best]:.4f} at {args.x} {xs[best]:.3g}, "
                  f"final {ys[-1]:.4f} at {xs[-1]:.3g}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ax.set_xlabel({"step": "optimizer step", "tokens": "training tokens",
                   "epochs": "epochs over the unique tokens"}[args.x])
    ax.set_ylabel("val/nll (nats/token)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
