"""Batch size x learning rate for AR and MDLM: lr* per batch size, whether AR's predicts
MDLM's, and the critical batch size. Writes batch_lr.md, the figures and the data.

Usage:
    python scripts/batch_study.py runs/batch_lr_cpu --out docs/figures/batch_lr
    python scripts/batch_study.py docs/figures/batch_lr/runs.csv --out docs/figures/batch_lr

Given a run folder it collects the runs (a diverged run counts as an lr that failed) and
their validation curves, and writes runs.csv and curves.csv into --out; given that runs.csv
(with curves.csv beside it) it rebuilds every table and figure from them alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from src.scaling.batch_report import critical_markdown, lr_markdown, plot_study  # noqa: E402
from src.scaling.batch_study import (  # noqa: E402
    BATCH,
    ar_predicts,
    critical_batches,
    lr_batch_exponent,
    optimal_lr_by_batch,
    steps_to_targets,
)
from src.scaling.collect import collect_runs  # noqa: E402
from src.scaling.curves import curves_to_frame, load_curve  # noqa: E402
from src.scaling.table import add_loss_column  # noqa: E402
from src.scaling.transfer import with_defaults  # noqa: E402

HEADER = ("Batch size x learning rate at one token budget. lr* is the vertex of a parabola in "
          "log2(lr) through the best grid point and its neighbours (`edge`: the grid's best "
          "point is its smallest or largest lr, not extrapolated). Losses are the final "
          "validation (AR: exact NLL; MDLM: NELBO, {draws} draws). The last column is MDLM's "
          "loss at the grid lr nearest AR's lr* minus MDLM's best grid loss.")
CRITICAL = ("Critical batch: S = S_min (1 + B_crit / B) fitted (least squares in log S) to the "
            "steps each batch size needed to reach a target at its fastest lr (validation "
            "curves every ~196k tokens; MDLM's smoothed over 3 validations, then linear "
            "between validations). Targets: the lowest loss every batch size reaches, plus "
            "0.02, 0.05 and 0.1 nats. A batch size some lr of which was already below a "
            "target at its first validation is left out of that target's fit (its crossing "
            "is earlier than measured). The runs use a cosine schedule over one token budget, "
            "so a run's steps to a target include its schedule's shape; leave-one-out is the "
            "range of B_crit when each batch size is dropped in turn.")


def read(source: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves) from a run folder (also written into `out`) or a committed runs.csv."""
    if source.is_file():
        curves_csv = source.parent / "curves.csv"
        if not curves_csv.is_file():
            raise FileNotFoundError(f"{curves_csv} not found: it is written next to runs.csv "
                                    "when this script reads the run folder")
        return pd.read_csv(source), pd.read_csv(curves_csv)
    found = collect_runs(source, include_failed=True)
    if found.table.empty:
        raise ValueError(f"{source}: no finished run (result.json) found")
    runs = found.table.drop(columns=["recorded_run_dir"], errors="ignore")
    finished = [d for d, loss in zip(runs["run_dir"], runs.get("val_nll", runs.get("loss")))
                if pd.notna(loss)]
    curves = curves_to_frame([load_curve(source / d) for d in finished], source)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    return runs, curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="run folder, or a runs.csv this script wrote")
    p.add_argument("--out", type=Path, default=Path("plots/batch_lr"))
    args = p.parse_args(argv)
    try:
        runs, curves = read(args.source, args.out)
        runs = with_defaults(add_loss_column(runs))
        if BATCH not in runs.columns:
            raise ValueError(f"the runs do not vary {BATCH}: run experiment=batch_lr_cpu")
        table = optimal_lr_by_batch(runs)
        reach = steps_to_targets(runs, curves)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    predicts = ar_predicts(runs, table)
    exponents = lr_batch_exponent(table)
    fits = critical_batches(reach)
    draws = runs.loc[runs["algo"] != "ar", "val_draws"].dropna()
    text = "\n".join([
        HEADER.format(draws=int(draws.iloc[0]) if len(draws) else "?"), "",
        lr_markdown(table, predicts, exponents), CRITICAL, "",
        critical_markdown(fits, reach, int(runs["seq_len"].iloc[0]))])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_lr.md").write_text(text)
    table.to_csv(args.out / "optimal_lr.csv", index=False)
    fits.to_csv(args.out / "critical_batch.csv", index=False)
    figures = plot_study(runs, table, reach, fits, args.out)
    print(text)
    for path in [*figures, args.out / "batch_lr.md"]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
