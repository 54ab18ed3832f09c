"""Collect every run's result.json under a folder into one CSV.

Usage:
    python scripts/collect_runs.py RUN_ROOT [--out runs.csv]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Scripts are not a package: make `src` importable when run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.collect import collect_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, collect the runs and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_root", type=Path, help="folder searched recursively for result.json")
    parser.add_argument("--out", type=Path, default=Path("runs.csv"), help="output CSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        found = collect_runs(args.run_root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    found.table.to_csv(args.out, index=False)
    print(f"wrote {len(found.table)} finished run(s) to {args.out}")
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
