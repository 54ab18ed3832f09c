"""Collect every run's result.json under a folder into one CSV.

Usage:
    python scripts/collect_runs.py RUN_ROOT [--out runs.csv] [--add earlier_runs.csv ...]

`--add` appends the rows of a CSV this script wrote before (e.g. committed runs whose folders
are gone), each row tagged with where it came from (column `collected_from`). A run that
appears twice (same algo, model, data, budget, steps, seed and config hash) is an error: one
sweep point must never count twice.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Scripts are not a package: make `src` importable when run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.collect import collect_runs  # noqa: E402

#: What makes two rows the same run (the run folder's identity, wherever it was collected).
RUN_KEY: tuple[str, ...] = ("algo", "model", "data", "flops_budget", "steps", "seed",
                            "config_hash")


def with_added(table, sources: list[Path], root: Path):
    """`table` (collected under `root`) plus the rows of each CSV in `sources`.

    Raises:
        ValueError: a run in two places (named), or a CSV without the key columns.
    """
    import pandas as pd

    frames = [table.assign(collected_from=str(root))]
    for path in sources:
        frames.append(pd.read_csv(path).assign(collected_from=str(path)))
    merged = pd.concat(frames, ignore_index=True)
    if not {"algo", "seed"} <= set(merged.columns):
        raise ValueError("cannot tell runs apart without algo and seed columns: --add takes "
                         "CSVs written by this script")
    present = [k for k in RUN_KEY if k in merged.columns]  # older results lack some keys
    key = merged[present].apply(lambda row: "|".join(map(str, row)), axis=1)
    twice = merged[key.duplicated(keep=False)]
    if not twice.empty:
        where = "; ".join(f"{r.run_dir} ({r.collected_from})" for r in twice.itertuples())
        raise ValueError(f"the same run appears twice: {where}; drop one source")
    return merged


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, collect the runs and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_root", type=Path, help="folder searched recursively for result.json")
    parser.add_argument("--out", type=Path, default=Path("runs.csv"), help="output CSV")
    parser.add_argument("--add", type=Path, action="append", default=[], metavar="CSV",
                        help="also include the rows of a CSV this script wrote (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        found = collect_runs(args.run_root)
        table = with_added(found.table, args.add, args.run_root) if args.add else found.table
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"wrote {len(table)} finished run(s) to {args.out}"
          + (f" ({len(table) - len(found.table)} from {len(args.add)} added CSV(s))"
             if args.add else ""))
    print(f"{len(found.unfinished)} unfinished run(s) without result.json ignored")
    for run_dir in found.unfinished:
        print(f"  unfinished: {run_dir}")
    if found.unreadable:
        print(f"{len(found.unreadable)} unreadable result.json file(s) ignored")
    if found.failed:
        print(f"{len(found.failed)} failed (diverged) run(s) skipped: not results")
        for run_dir, reason in sorted(found.failed.items()):
            print(f"  failed: {run_dir}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
