"""Dense against mixture-of-experts feed-forwards (experiment=moe_cpu): the table, figure and data.

Usage:
    python scripts/moe_study.py runs/moe_cpu --out docs/figures/moe
    python scripts/moe_study.py docs/figures/moe/curves.csv --out docs/figures/moe

Given the run folder it collects the runs' validation curves (curves.csv) and their results
(runs.csv) into --out; given that curves.csv (with runs.csv beside it) it rebuilds moe.md and
moe.png from them alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from src.scaling.curves import ValCurve, curves_to_frame, read_curves  # noqa: E402

EXPERTS = "model.moe.num_experts"
NOTE = ("Validation NLL in nats per token (MDLM: the NELBO bound, best of a 5-validation moving "
        "average); epochs over the unique training tokens; total parameters (a MoE block holds "
        "all its experts; a token uses the router and top_k of them).")


def experts(curve: ValCurve) -> int:
    return int(curve.delta.get(EXPERTS, 0) or 0)


def moe_table(curves: list[ValCurve], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final and best validation loss, where the best was, parameters."""
    params = dict(zip(runs["run_dir"].astype(str), runs["params"])) if "params" in runs else {}
    rows = []
    for c in sorted(curves, key=lambda c: (str(c.algo), experts(c))):
        best, epochs = c.best_index, c.x("epochs")
        rows.append({"algo": c.algo, "experts": experts(c), "seed": c.seed,
                     "final_nll": c.final_nll if c.final_nll is not None else c.nll[-1],
                     "best_nll": float(c.selection_nll[best]), "best_epoch": float(epochs[best]),
                     "epochs": float(epochs[-1]),
                     "params": params.get(Path(c.run_dir).as_posix())})
    return pd.DataFrame(rows)


def moe_markdown(table: pd.DataFrame) -> str:
    lines = ["| algo | feed-forward | final val NLL | best val NLL (epoch) | epochs | parameters |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        kind = "dense" if r.experts == 0 else f"{r.experts} experts"
        bound = " (bound)" if r.algo != "ar" else ""
        params = "-" if pd.isna(r.params) else f"{int(r.params):,}"
        lines.append(f"| {r.algo.upper()} | {kind} | {r.final_nll:.3f}{bound} | "
                     f"{r.best_nll:.3f} ({r.best_epoch:.1f}) | {r.epochs:.1f} | {params} |")
    return "\n".join(lines) + "\n\n" + NOTE + "\n"


def plot(curves: list[ValCurve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for c in sorted(curves, key=lambda c: (str(c.algo), experts(c))):
        kind = "dense" if experts(c) == 0 else f"{experts(c)} experts"
        ax.plot(c.x("epochs"), c.nll, marker="o", markersize=3, label=f"{c.algo} {kind}")
    ax.set_xlabel("epochs over the unique tokens")
    ax.set_ylabel("validation NLL (diffusion: NELBO bound)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="run folder, or a curves.csv this script wrote")
    p.add_argument("--out", type=Path, default=Path("plots/moe"))
    args = p.parse_args(argv)
    try:
        curves, found = read_curves(args.source)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if found is not None:  # from run folders: keep the data the table is rebuilt from
        curves_to_frame(curves, args.source).to_csv(args.out / "curves.csv", index=False)
        runs = found.table
        runs.to_csv(args.out / "runs.csv", index=False)
        curves = read_curves(args.out / "curves.csv")[0]  # relative run names, as rebuilt
    else:
        beside = args.source.parent / "runs.csv"
        runs = pd.read_csv(beside) if beside.is_file() else pd.DataFrame()
    text = moe_markdown(moe_table(curves, runs))
    (args.out / "moe.md").write_text(text)
    plot(curves, args.out / "moe.png")
    print(text)
    print(f"wrote {args.out / 'moe.md'}, {args.out / 'moe.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
