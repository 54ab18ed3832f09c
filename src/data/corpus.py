"""A split's documents, plus the split helpers shared by local files and hub datasets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from src.data import splits

VAL_ALIASES = ("validation", "valid", "val")


def normalize_split(split: str) -> str:
    """Maps ``val``/``valid`` to ``validation``; other names pass through."""
    return "validation" if split in VAL_ALIASES else split


class Corpus:
    """Documents of one split: a list of strings or a (streaming) ``datasets`` dataset."""

    def __init__(self, docs: Any, text_field: str = "text") -> None:
        if not isinstance(docs, list) and hasattr(docs, "select_columns"):
            docs = docs.select_columns([text_field])  # don't decode columns we never read
        self.docs = docs
        self.text_field = text_field

    @property
    def num_docs(self) -> int | None:
        """Number of documents, or None for streaming datasets."""
        try:
            return len(self.docs)
        except TypeError:
            return None

    def batches(self, size: int = 1000) -> Iterator[list[str]]:
        """Yields lists of up to ``size`` documents, in order."""
        if isinstance(self.docs, list):
            for i in range(0, len(self.docs), size):
                yield self.docs[i : i + size]
            return
        for batch in self.docs.iter(batch_size=size):
            yield [t if t is not None else "" for t in batch[self.text_field]]

    def texts(self) -> Sequence[str] | Iterable[str]:
        """Documents as strings: a list, a lazy datasets column, or a generator when streaming."""
        if isinstance(self.docs, list):
            return self.docs
        if self.num_docs is not None:
            return self.docs[self.text_field]
        return (t for b in self.batches() for t in b)


def carve(ds: Any, split: str, fraction: float) -> Any:
    """Keeps the documents of ``split`` under the hash rule of :mod:`src.data.splits`."""
    try:
        n = len(ds)
    except TypeError:  # streaming: decide document by document
        want = split == "validation"
        return ds.filter(
            lambda _ex, i: splits.is_validation(i, fraction) == want, with_indices=True
        )
    return ds.select(splits.split_indices(n, split, fraction))


def check_field(ds: Any, text_field: str) -> None:
    """Raises a clear error when the text column is missing."""
    cols = getattr(ds, "column_names", None)
    if cols is not None and text_field not in cols:
        raise ValueError(
            f"text field {text_field!r} not in columns {cols}; set data.text_field to one of them"
        )
