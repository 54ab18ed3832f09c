"""Weight decay at a small and a large number of epochs, AR and MDLM: the table and data.

Usage:
    python scripts/weight_decay_study.py runs/weight_decay_cpu --out docs/figures/weight_decay
    python scripts/weight_decay_study.py docs/figures/weight_decay/curves.csv --out docs/figures/weight_decay

Given the run folder it collects the runs' validation curves and writes curves.csv into
--out; given that curves.csv it rebuilds weight_decay.md from it alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.crossover import best_table  # noqa: E402
from src.scaling.curves import curves_to_frame, read_curves  # noqa: E402
from src.scaling.weight_decay import (  # noqa: E402
    decay_markdown,
    decay_table,
    decay_value,
    only_decay_varies,
)

NOTE = ("AdamW's decoupled weight decay (each step multiplies the weights by 1 - lr x wd; "
        "norms, biases and embeddings are not decayed). Best: the lowest validation loss over "
        "training (MDLM: of a 5-validation moving average, SE beside it in the CSV); final: "
        "the end-of-run validation (MDLM: 96 draws). Read a difference against the seed-to-seed "
        "spread of the crossover's best losses at the same U (README).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="run folder, or a curves.csv this script wrote")
    p.add_argument("--out", type=Path, default=Path("plots/weight_decay"))
    args = p.parse_args(argv)
    try:
        curves, found = read_curves(args.source)
        for c in curves:
            if not only_decay_varies(c.delta):
                print(f"left out (differs in more than weight decay): {c.run_dir}",
                      file=sys.stderr)
        curves = [c for c in curves if only_decay_varies(c.delta)]
        best = best_table(curves)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = decay_table(best, [decay_value(c.delta) for c in curves])
    args.out.mkdir(parents=True, exist_ok=True)
    if found is not None:  # from run folders: keep the data the table is rebuilt from
        curves_to_frame(curves, args.source).to_csv(args.out / "curves.csv", index=False)
    seeds = table.groupby(["algo", "unique_tokens", "weight_decay"]).size()
    text = (decay_markdown(table) + "\n" + NOTE
            + f" Seeds per cell: {seeds.min()}" + ("" if seeds.min() == seeds.max()
                                                  else f"-{seeds.max()}") + ".\n")
    (args.out / "weight_decay.md").write_text(text)
    table.to_csv(args.out / "weight_decay.csv", index=False)
    print(text)
    print(f"wrote {args.out / 'weight_decay.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
