"""Validation curves of several runs on one plot (e.g. the data-constrained AR vs MDLM).

    python scripts/plot_val_curves.py RUN_DIR [RUN_DIR ...] --out plot.png [--x step|tokens|flops|epochs]

Reads `RUN_DIR/logs/metrics.csv` (column `val/nll`) and `RUN_DIR/config.yaml` (labels,
tokens per step, the data budget) through `src.scaling.curves.load_curve`. x = tokens uses
`perf/tokens` where logged, else step x global batch x seq_len; x = flops uses `perf/flops`;
x = epochs divides tokens by the unique training tokens. Diffusion runs report a bound
(NELBO), AR runs the exact NLL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Scripts are not a package: make `src` importable when run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.curves import X_AXES, load_curve  # noqa: E402

AXIS_LABELS = {"step": "optimizer step", "tokens": "training tokens",
               "flops": "training FLOPs", "epochs": "epochs over the unique tokens"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories")
    ap.add_argument("--out", type=Path, required=True, help="output image (png/pdf/svg)")
    ap.add_argument("--x", choices=X_AXES, default="step")
    ap.add_argument("--title", default="validation NLL (diffusion: NELBO bound)")
    args = ap.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        for run in args.runs:
            curve = load_curve(run)
            xs, ys, best = curve.x(args.x), curve.nll, curve.best_index
            ax.plot(xs, ys, marker="o", markersize=3, label=curve.label)
            how = "moving average of 5" if curve.stochastic else "exact"
            print(f"{curve.label}: best val/nll {curve.selection_nll[best]:.4f} ({how}) at "
                  f"{args.x} {xs[best]:.3g}, final {ys[-1]:.4f} at {xs[-1]:.3g}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ax.set_xlabel(AXIS_LABELS[args.x])
    if args.x == "flops":
        ax.set_xscale("log")
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
