"""Text sources: the embedded corpus, local files and Hugging Face hub datasets.

:func:`load_corpus` returns a :class:`Corpus` (documents + a cheap way to
iterate them in batches); :func:`load_texts` is the plain-documents view of it.
:func:`source_identity` names a split without loading it, so token caches can
be found before any text is read. Pre-tokenized ``memmap`` shards live in
:mod:`src.data.memmap`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from src.data import embedded, splits
from src.data.corpus import Corpus, normalize_split
from src.data.hub import load_hub
from src.data.local_files import (
    EXTENSIONS,
    files_fingerprint,
    load_local,
    require_path,
    split_files,
)

__all__ = ["ALL_SOURCES", "TEXT_SOURCES", "Corpus", "load_corpus", "load_texts", "source_identity"]

TEXT_SOURCES = ("shakespeare", "text", "json", "parquet", "hf")
ALL_SOURCES = TEXT_SOURCES + ("memmap",)


def load_corpus(
    source: str,
    split: str,
    *,
    path: Any = None,
    name: str | None = None,
    config: str | None = None,
    text_field: str = "text",
    cache_dir: str | None = None,
    streaming: bool = False,
    sample_by: str = "document",
    val_fraction: float = splits.DEFAULT_VAL_FRACTION,
) -> Corpus:
    """Loads one split of a text source as a :class:`Corpus` (arguments as :func:`load_texts`)."""
    split = normalize_split(split)
    if source == "shakespeare":
        return Corpus(embedded.load_shakespeare(split))
    common = {"text_field": text_field, "cache_dir": cache_dir, "streaming": streaming}
    if source in EXTENSIONS:
        return load_local(source, path, split, sample_by=sample_by, fraction=val_fraction, **common)
    if source == "hf":
        return load_hub(name, config, split, fraction=val_fraction, **common)
    if source == "memmap":
        raise ValueError(
            "source 'memmap' holds tokens, not text; read it with src.data.memmap.open_split"
        )
    raise ValueError(f"unknown data source {source!r}; valid sources: {', '.join(ALL_SOURCES)}")


def load_texts(
    source: str,
    split: str,
    *,
    path: Any = None,
    name: str | None = None,
    config: str | None = None,
    text_field: str = "text",
    cache_dir: str | None = None,
    streaming: bool = False,
    sample_by: str = "document",
    val_fraction: float = splits.DEFAULT_VAL_FRACTION,
) -> Sequence[str] | Iterable[str]:
    """Documents of one split as strings.

    Args:
        source: ``shakespeare``, ``text``, ``json``, ``parquet`` or ``hf``.
        split: ``train`` or ``validation`` (``val``/``valid`` accepted); hub datasets
            also accept their own split names.
        path: Local sources: a file, directory, glob or list of them (one file set,
            validation carved from it), or a mapping ``{train: ..., validation: ...}``.
        name: Hub dataset id (``source="hf"``).
        config: Hub dataset config name.
        text_field: Column holding the text (json/parquet/hub).
        cache_dir: ``datasets`` cache folder.
        streaming: Stream instead of downloading/converting first.
        sample_by: Text files: ``document`` (one file = one doc), ``paragraph`` or ``line``.
        val_fraction: Fraction of documents held out when a validation split is carved.

    Returns:
        A list (embedded corpus), a lazy sized column (datasets) or a generator (streaming).
    """
    return load_corpus(
        source,
        split,
        path=path,
        name=name,
        config=config,
        text_field=text_field,
        cache_dir=cache_dir,
        streaming=streaming,
        sample_by=sample_by,
        val_fraction=val_fraction,
    ).texts()


def source_identity(
    source: str,
    split: str,
    *,
    path: Any = None,
    name: str | None = None,
    config: str | None = None,
    text_field: str = "text",
    sample_by: str = "document",
    val_fraction: float = splits.DEFAULT_VAL_FRACTION,
) -> str:
    """Short stable name of a split's content, computed without reading the documents.

    Local files are identified by path, size and mtime; hub datasets by name and
    config; the embedded corpus by its package files. Split recipes are included.
    """
    split = normalize_split(split)
    if source == "shakespeare":
        return f"{embedded.shakespeare_identity()}-{split}"
    if source in EXTENSIONS:
        require_path(source, path)
        files, carve = split_files(path, split, source)
        desc = (
            f"{source}|{split}|{text_field}|{sample_by}|{carve}|{val_fraction}|{splits.SPLIT_SEED}|"
        )
        desc += files_fingerprint(files)
        tag = source
    elif source == "hf":
        desc = f"hf|{name}|{config}|{split}|{text_field}|{val_fraction}|{splits.SPLIT_SEED}"
        tag = str(name).replace("/", "_")
    else:
        raise ValueError(
            f"unknown text source {source!r}; valid sources: {', '.join(TEXT_SOURCES)}"
        )
    return f"{tag}-{split}-{hashlib.sha256(desc.encode()).hexdigest()[:12]}"
