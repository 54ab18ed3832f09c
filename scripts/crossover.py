"""Data-constrained crossover: where does the challenger's best loss drop below the baseline's?

Usage:
    python scripts/crossover.py RUN_ROOT|curves.csv [--out docs/figures/crossover]
        [--baseline ar] [--challenger mdlm] [--json]

Collects the finished runs under RUN_ROOT (diverged runs are reported and left out), reads each
one's validation curve, and writes into --out: curves_epochs.png and curves_flops.png (one
panel per data budget U), best.png (best loss against repetitions), crossover.md (the tables),
crossover.json, runs.csv (the collected results) and curves.csv (every validation point).
Given that curves.csv instead of RUN_ROOT it rebuilds the figures and tables from it alone
(how the committed docs/figures/crossover is checked against the README). Series are the
algo plus any other swept key (``ar dropout=0.1``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Scripts are not a package: make `src` importable when run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.scaling.crossover import (  # noqa: E402
    Crossover,
    best_table,
    find_crossover,
    summarize,
    to_dict,
)
from src.scaling.curves import (  # noqa: E402
    EXACT_ALGOS,
    curves_to_frame,
    read_curves,
)

NOTE = ("Diffusion losses are Monte-Carlo estimates of NELBOs (upper bounds on the NLL in "
        "expectation; a single estimate can sit below); AR losses are exact NLLs on the same "
        "held-out tokens. A diffusion run's best is the minimum of a 5-validation moving "
        "average (fresh noise at each validation); its final value, with no selection, and "
        "that value's standard error are in the last columns.")


def markdown(summary, crossover: Crossover | None) -> str:
    """The per-U table (best loss mean [min, max] over seeds, epoch of the best) and the
    crossover sentence."""
    series = sorted(set(summary["series"]))
    finals = [s for s in series if s.split()[0] not in EXACT_ALGOS]
    lines = ["| U | repetitions | " + " | ".join(f"{s} best (epoch)" for s in series)
             + "".join(f" | {s} final ± SE" for s in finals) + " |",
             "|---|---|" + "---|" * (len(series) + len(finals))]
    for u, rows in summary.groupby("unique_tokens"):
        cells = []
        for s in series:
            r = rows[rows["series"] == s]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            spread = (f" [{r.best_loss_min:.3f}, {r.best_loss_max:.3f}]"
                      if r.n_seeds > 1 else "")
            cells.append(f"{r.best_loss:.3f}{spread} ({r.best_epoch:.0f})")
        for s in finals:
            r = rows[rows["series"] == s]
            if r.empty:
                cells.append("-")
                continue
            se = r.iloc[0].final_se
            cells.append(f"{r.iloc[0].final_loss:.3f}"
                         + ("" if math.isnan(se) else f" ± {se:.3f}"))
        lines.append(f"| {int(u):,} | {rows['repetitions'].mean():.0f} | " + " | ".join(cells) + " |")
    lines += ["", NOTE, ""]
    if crossover:
        lines += [gap_table(crossover), "", crossover_sentence(crossover)]
    return "\n".join(lines).rstrip() + "\n"


def gap_table(c: Crossover) -> str:
    """Per U: the mean gap (challenger minus baseline best), its 95% interval, seed wins."""
    lines = [f"| U | repetitions | {c.challenger} − {c.baseline} | 95% interval | seeds won |",
             "|---|---|---|---|---|"]
    for r in c.gaps.itertuples():
        lines.append(f"| {int(r.unique_tokens):,} | {r.repetitions:.0f} | {r.gap:+.3f} | "
                     f"[{r.gap_lo:+.3f}, {r.gap_hi:+.3f}] | {r.wins}/{r.n_pairs} |")
    return "\n".join(lines) + f"\n\nIntervals: {c.interval_method}."


def interval_sentence(c: Crossover) -> str:
    lower, upper = c.interval
    low = (f"above {lower:.0f} repetitions ({c.baseline} significantly better there)"
           if lower is not None else "at or below the least repeated budget sampled")
    high = (f"at or below {upper:.0f} repetitions ({c.challenger} significantly better from "
            "there on)" if upper is not None else "possibly beyond the most repeated budget "
            f"sampled ({c.challenger} is never significantly better for good)")
    return f" With 95% confidence the crossover lies {low} and {high}."


def crossover_sentence(c: Crossover) -> str:
    """One paragraph: where the challenger wins for good, per seed, and the fits' crossing."""
    if c.repetitions is None:
        text = (f"No crossover: {c.challenger}'s mean best loss is not below {c.baseline}'s at "
                "the most repeated budget.")
    elif c.below_range:
        text = (f"{c.challenger} is below {c.baseline} at every sampled budget, down to "
                f"{c.repetitions:.0f} repetitions: the crossover lies below the sampled range.")
    else:
        text = (f"Crossover: from {c.repetitions:.0f} repetitions on, {c.challenger}'s mean best "
                f"loss is below {c.baseline}'s (zero of the gap, log-linear between budgets: "
                f"{c.interpolated:.0f} repetitions).")
    seeds = ", ".join(f"seed {k}: {'none' if v is None else f'{v:.0f}'}"
                      for k, v in c.per_seed.items())
    if seeds:
        text += f" Per seed: {seeds}."
    text += interval_sentence(c)
    ext = c.extrapolated
    if ext is not None and ext.repetitions is not None:
        text += (f" The fits best(U) = E + B U^-beta cross at U = {ext.unique_tokens:,.0f} "
                 f"({ext.repetitions:.1f} repetitions of this budget).")
    elif ext is not None:
        text += f" Fits of best loss against U: {ext.reason}."
    return text


def build(curves, baseline: str, challenger: str):
    """(best table, per-U summary, crossover, crossover.md text) from validation curves."""
    table = best_table(curves)
    crossover = find_crossover(table, baseline, challenger)
    summary = summarize(table)
    return table, summary, crossover, markdown(summary, crossover)


def main(argv: list[str] | None = None) -> int:
    """Collect, compare, write the figures and the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="folder of the runs (e.g. runs/crossover_cpu), or "
                   "a curves.csv written by this script (rebuilds everything from it)")
    p.add_argument("--out", type=Path, default=Path("plots/crossover"), help="output folder")
    p.add_argument("--baseline", default="ar", help="series to beat (default ar)")
    p.add_argument("--challenger", default="mdlm", help="series that repeats data better")
    p.add_argument("--json", action="store_true", help="print the JSON report instead")
    args = p.parse_args(argv)
    try:
        curves, found = read_curves(args.source)
        table, summary, crossover, text = build(curves, args.baseline, args.challenger)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from src.scaling.crossover_plot import plot_best, plot_curves  # matplotlib only here

    args.out.mkdir(parents=True, exist_ok=True)
    written = [plot_curves(curves, args.out / "curves_epochs.png", "epochs"),
               plot_best(summary, crossover, args.out / "best.png")]
    if all(c.flops is not None for c in curves):
        written.append(plot_curves(curves, args.out / "curves_flops.png", "flops"))
    (args.out / "crossover.md").write_text(text)
    names = ["crossover.md", "crossover.json"]
    if found is not None:  # from run folders: keep the data every number is rebuilt from
        # Where each run was trained is a path on someone's machine: not data.
        found.table.drop(columns=["recorded_run_dir"], errors="ignore").to_csv(
            args.out / "runs.csv", index=False)
        curves_to_frame(curves, args.source).to_csv(args.out / "curves.csv", index=False)
        names += ["runs.csv", "curves.csv"]
    report = to_dict(crossover, summary)
    report["runs"] = table.to_dict(orient="records")
    (args.out / "crossover.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print(text)
        for path in [*written, *(args.out / name for name in names)]:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
