"""Optimal learning rate per width (or depth) of an lr sweep, for each algo and
parameterization: does it transfer? Writes a table (markdown on stdout, CSV, JSON) and a plot.

Usage:
    python scripts/lr_transfer.py runs/lr_transfer_cpu --out plots/lr_transfer_cpu
    python scripts/lr_transfer.py runs.csv --axis model.n_blocks --out plots/depth
    python scripts/lr_transfer.py docs/figures/lr_transfer_width/runs.csv \
        --out docs/figures/lr_transfer_width --summary-out docs/figures/lr_transfer_width/lr_transfer.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from src.scaling.collect import collect_runs  # noqa: E402
from src.scaling.table import add_loss_column  # noqa: E402
from src.scaling.transfer import (  # noqa: E402
    AXES,
    drift,
    markdown,
    summary_markdown,
    transfer_table,
    with_defaults,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="run folder (collected) or a collect_runs.py CSV")
    p.add_argument("--axis", choices=AXES, default=None, help="default: the one that varies")
    p.add_argument("--out", type=Path, default=Path("plots/lr_transfer"))
    p.add_argument("--summary-out", type=Path, default=None,
                   help="also write the README's table (lr* per shape, drift) as markdown")
    args = p.parse_args(argv)
    if args.source.is_dir():
        runs = collect_runs(args.source, include_failed=True).table  # diverged: loss NaN
    elif args.source.is_file():
        runs = pd.read_csv(args.source)
    else:
        print(f"error: no such run folder or CSV: {args.source}", file=sys.stderr)
        return 2
    runs = with_defaults(add_loss_column(runs))
    try:
        table = transfer_table(runs, args.axis)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    moves = drift(table)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "optimal_lr.csv", index=False)
    (args.out / "optimal_lr.json").write_text(json.dumps(
        {"optimal_lr": table.to_dict("records"), "drift": moves.to_dict("records")}, indent=2))
    from src.scaling.transfer_plot import plot_transfer  # matplotlib only when plotting

    figure = plot_transfer(runs, table, args.out / "loss_vs_lr.png")
    if args.summary_out is not None:
        args.summary_out.write_text(summary_markdown(table, moves))
    print(markdown(table))
    print()
    print(markdown(moves, digits=3))
    print(f"\nwrote {args.out / 'optimal_lr.csv'}, {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
