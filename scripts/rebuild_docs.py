"""Rebuild the committed figures and tables from their committed data, and the README's
generated blocks from those tables.

Usage:
    python scripts/rebuild_docs.py            # rewrite docs/figures/* and the README blocks
    python scripts/rebuild_docs.py --check    # exit 1, naming the block, if anything differs

A README block between ``<!-- generated: PATH -->`` and ``<!-- end generated -->`` holds
PATH's text verbatim (a .txt file inside a code fence): numbers in it are never typed by hand. Each entry of RECIPES names the
committed data a figure folder is rebuilt from and the command that does it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- generated: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)",
                   re.S)

LADDER = "docs/figures/cpu_micro_ladder"
BRACKET = "docs/figures/mdlm_bracket"
BATCH = "docs/figures/batch_lr"
DECAY = "docs/figures/weight_decay"
GIDD = "docs/figures/gidd_noise_ladder"
WIDTH = "docs/figures/lr_transfer_width"
DEPTH = "docs/figures/lr_transfer_depth"
MOE = "docs/figures/moe"
#: figure folder -> the command (from the repo root) that rebuilds it from committed data
#: (the command's first file argument is that data).
RECIPES: dict[str, list[str]] = {
    "docs/figures/crossover": [sys.executable, "scripts/crossover.py",
                               "docs/figures/crossover/curves.csv",
                               "--out", "docs/figures/crossover"],
    LADDER: [sys.executable, "scripts/fit_scaling_laws.py", f"{LADDER}/runs.csv",
             "--out", LADDER, "--max-epochs", "8", "--summary-out", f"{LADDER}/fit.txt",
             "--json-out", f"{LADDER}/fit.json"],
    BRACKET: [sys.executable, "scripts/fit_scaling_laws.py", f"{BRACKET}/runs.csv",
              "--out", BRACKET, "--max-epochs", "8", "--summary-out", f"{BRACKET}/fit.txt",
              "--json-out", f"{BRACKET}/fit.json"],
    GIDD: [sys.executable, "scripts/fit_scaling_laws.py", f"{GIDD}/runs.csv", "--group",
           "algo.mix_shift", "--out", GIDD, "--max-epochs", "8", "--summary-out",
           f"{GIDD}/fit.txt", "--json-out", f"{GIDD}/fit.json"],
    BATCH: [sys.executable, "scripts/batch_study.py", f"{BATCH}/runs.csv", "--out", BATCH],
    DECAY: [sys.executable, "scripts/weight_decay_study.py", f"{DECAY}/curves.csv",
            "--out", DECAY],
    WIDTH: [sys.executable, "scripts/lr_transfer.py", f"{WIDTH}/runs.csv", "--axis", "model.dim",
            "--out", WIDTH, "--summary-out", f"{WIDTH}/lr_transfer.md"],
    DEPTH: [sys.executable, "scripts/lr_transfer.py", f"{DEPTH}/runs.csv", "--axis",
            "model.n_blocks", "--out", DEPTH, "--summary-out", f"{DEPTH}/lr_transfer.md"],
    MOE: [sys.executable, "scripts/moe_study.py", f"{MOE}/curves.csv", "--out", MOE],
}


def retargeted(command: list[str], folder: str, out: Path) -> list[str]:
    """`command` with its outputs (every argument under `folder` after the data file)
    written under `out` instead: how a test rebuilds a recipe without touching the repo."""
    return command[:3] + [str(out / Path(a).relative_to(folder)) if a.startswith(folder + "/")
                          else str(out) if a == folder else a for a in command[3:]]


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(path, body) of every generated block in the README text."""
    return [(m["path"], m["body"]) for m in BLOCK.finditer(text)]


def quoted(path: str) -> str:
    """What a block holds for `path`: a markdown file as it is, a .txt file in a code fence."""
    text = (ROOT / path).read_text()
    return f"```text\n{text}```\n" if path.endswith(".txt") else text


def filled(text: str) -> str:
    """The README text with every generated block replaced by its file's current text."""
    return BLOCK.sub(lambda m: m.group(1) + quoted(m["path"]) + m.group(4), text)


def stale_blocks(text: str) -> list[str]:
    """Paths of the README blocks whose body differs from the file they quote."""
    return [path for path, body in readme_blocks(text)
            if not (ROOT / path).exists() or quoted(path) != body]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a README block differs from its file")
    args = p.parse_args(argv)
    text = README.read_text()
    if args.check:
        stale = stale_blocks(text)
        for path in stale:
            print(f"error: the README block of {path} differs from the file: run "
                  "python scripts/rebuild_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for folder, command in RECIPES.items():
        if not (ROOT / command[2]).exists():
            print(f"skipping {folder}: no {command[2]} (run its recipe in the README first)")
            continue
        print(f"rebuilding {folder}: {' '.join(command[1:])}")
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    new = filled(text)
    if new != text:
        README.write_text(new)
        print("README.md: generated blocks updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
