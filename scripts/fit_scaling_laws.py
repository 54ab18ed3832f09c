"""Fit IsoFLOP, parametric and data-constrained scaling laws to a run table; plot them.

Usage:
    python scripts/fit_scaling_laws.py CSV_OR_RUN_ROOT [--out plots/] [--json]
        [--group algo[,optim.lr,...]] [--params-col params] [--n-boot 200] [--seed 0] [--no-plots]
        [--max-epochs 1] [--allow-unbracketed] [--reference ar]

Per group: IsoFLOP laws N_opt ~ C^a, D_opt ~ C^b with bootstrap CIs and the loss frontier
L_opt ~ C^gamma; the parametric and data-constrained laws; and, against the reference group,
the compute multiplier each other group needs to reach the reference's frontier loss.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

# Thousands of 5-parameter L-BFGS runs: BLAS threads only add wake-up latency
# (see src/scaling/threads.py). Must be set before numpy/scipy load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Scripts are not a package: make `src` importable when run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.analyze import analyze, compute_multipliers  # noqa: E402
from src.scaling.collect import collect_runs  # noqa: E402
from src.scaling.report import summary_text, to_dict, to_jsonable  # noqa: E402
from src.scaling.table import (  # noqa: E402
    MissingColumnsError,
    default_group_col,
    group_columns,
    load_table,
    require_columns,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="runs CSV, or a run folder to collect first")
    p.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNGs")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--group", "--group-col", dest="group_col", default=None,
                   help="fit each value of this column (or each combination of several, "
                        "comma-separated: algo,optim.lr) separately (default: group, else algo)")
    p.add_argument("--params-col", default="params",
                   help="column used as N (e.g. non_embedding_params)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates (0: no CIs)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--allow-unbracketed", action="store_true",
                   help="use IsoFLOP minima extrapolated beyond the sampled model sizes")
    p.add_argument("--max-epochs", type=float, default=1.0,
                   help="runs with up to this many epochs count as fresh data for the IsoFLOP "
                        "and parametric fits (default 1; more repetition goes to the "
                        "data-constrained fit only)")
    p.add_argument("--reference", default=None,
                   help="group whose IsoFLOP loss frontier the others' compute multipliers are "
                        "measured against (default: ar when it is a group)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--summary-out", type=Path, default=None,
                   help="also write the text summary here (a file the README quotes)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON report here")
    return p.parse_args(argv)


def load(source: Path, params_col: str):
    """Read a CSV, or collect the result.json files under a folder."""
    if source.is_dir():
        found = collect_runs(source)
        print(f"collected {len(found.table)} finished run(s) from {source}; "
              f"{len(found.unfinished)} unfinished and {len(found.failed)} failed (diverged) "
              f"ignored", file=sys.stderr)
        if found.table.empty:
            raise MissingColumnsError(f"{source}: no result.json found")
        require_columns(found.table, [params_col, "tokens", "loss"], source=str(source))
        return found.table
    if not source.is_file():
        raise FileNotFoundError(f"no such CSV or run folder: {source}")
    return load_table(source, params_col=params_col)


def main(argv: list[str] | None = None) -> int:
    """Run the fits, print the report and write the plots."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        table = load(args.source, args.params_col)
        group_col = args.group_col or default_group_col(table)
        require_columns(table, group_columns(group_col), source=str(args.source))
        results = analyze(table, group_col=group_col, params_col=args.params_col,
                          n_boot=args.n_boot, seed=args.seed,
                          allow_unbracketed=args.allow_unbracketed,
                          max_epochs=args.max_epochs)
        multipliers = []
        names = {r.name for r in results}
        reference = args.reference or ("ar" if "ar" in names and len(names) > 1 else None)
        if reference is not None:
            try:
                multipliers = compute_multipliers(results, reference)
            except ValueError as err:
                if args.reference:  # asked for explicitly: an error; implied: a note
                    raise
                print(f"note: no compute multipliers: {err}", file=sys.stderr)
    except (MissingColumnsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plots = []
    if not args.no_plots:
        from src.scaling.plot import plot_all  # matplotlib only when plotting

        plots = [str(p) for p in plot_all(results, args.out)]
    report = to_dict(results, multipliers, source=str(args.source), group_col=group_col,
                     params_col=args.params_col, n_boot=args.n_boot, seed=args.seed)
    report["plots"] = plots
    if args.summary_out is not None:
        args.summary_out.write_text(summary_text(report) + "\n")
    if args.json_out is not None:
        report_copy = {k: v for k, v in report.items() if k != "plots"}  # paths differ per host
        args.json_out.write_text(json.dumps(to_jsonable(report_copy), indent=2,
                                            allow_nan=False) + "\n")
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2, allow_nan=False))
    else:
        print(summary_text(report))
        for p in plots:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
