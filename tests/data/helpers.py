"""Small corpora and objects shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.data.memmap import TokenStream, TokenWriter

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wise owls watch "
    "from old oak trees near rivers of silver light"
).split()


def make_docs(n: int, seed: int = 0, min_words: int = 3, max_words: int = 40) -> list[str]:
    """Deterministic pseudo-English documents of varying length."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        k = int(rng.integers(min_words, max_words))
        docs.append(f"doc {i}: " + " ".join(rng.choice(WORDS, size=k)))
    return docs


def write_text_files(folder: Path, docs: list[str]) -> Path:
    """One .txt file per document; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        (folder / f"doc_{i:04d}.txt").write_text(d, encoding="utf-8")
    return folder


def stream_of(
    tokens: np.ndarray, folder: Path, dtype: str = "uint16", name: str = "s"
) -> TokenStream:
    """Writes ``tokens`` to a flat file and opens it as a TokenStream."""
    w = TokenWriter(folder, name, dtype)
    w.write(np.asarray(tokens))
    return TokenStream(w.close(), dtype)
