"""Tokenize documents once into a cached flat token file, and view it as fixed-length samples.

Token stream format: every non-empty document's ids followed by EOS.

* ``pack`` mode (:class:`PackedDataset`): the stream is cut into
  non-overlapping windows of ``seq_len`` tokens; the remainder (< seq_len)
  is dropped. Item ``i`` is tokens ``[i*L, (i+1)*L)``.
* ``pad`` mode (:class:`PaddedDataset`): each document (with its EOS) is
  split into consecutive ``seq_len`` chunks, so no text is thrown away; the
  last chunk of a document is right-padded with ``pad_id`` and
  ``attention_mask`` (bool, True = real token) marks the real tokens.

Items index straight into the (memory-mapped) stream: no dataset-sized copy.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from src.data.memmap import (
    TokenStream,
    TokenWriter,
    dtype_for_vocab,
    read_meta_file,
    remove_stale_temps,
    write_json,
)
from src.data.sources import Corpus
from src.data.tokenizers import Tokenizer
from src.utils.atomic import DISK_FULL

logger = logging.getLogger(__name__)

_CACHE_VERSION = "tokens-v1"
_PROGRESS_MIN_DOCS = 1000


def tokenize_to(
    corpus: Corpus,
    tokenizer: Tokenizer,
    writer: TokenWriter,
    batch_size: int = 512,
    desc: str = "tokenize",
    max_tokens: int | None = None,
) -> int:
    """Streams ``corpus`` through ``tokenizer`` into ``writer`` (docs + EOS); returns the doc count.

    Empty documents are skipped (they would only add a stray EOS). With
    ``max_tokens``, stops after the first document that reaches the limit
    (whole documents only), so huge corpora can be capped deterministically.
    """
    n = corpus.num_docs
    bar = tqdm(total=n, desc=desc, unit="doc", disable=n is not None and n < _PROGRESS_MIN_DOCS)
    eos = [tokenizer.eos_id]
    num_docs = 0
    for batch in corpus.batches(batch_size):
        ids = [x for x in tokenizer.encode_batch(batch) if x]
        if max_tokens is not None:
            lengths = np.cumsum([len(x) + 1 for x in ids]) + writer.num_tokens
            ids = ids[: int(np.searchsorted(lengths, max_tokens)) + 1]
        num_docs += len(ids)
        total = sum(len(x) for x in ids) + len(ids)
        flat = np.fromiter(
            itertools.chain.from_iterable(x + eos for x in ids), dtype=np.int64, count=total
        )
        writer.write(flat)
        bar.update(len(batch))
        if max_tokens is not None and writer.num_tokens >= max_tokens:
            logger.info("stopped at max_tokens=%d after %d documents", max_tokens, num_docs)
            break
    bar.close()
    return num_docs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def cached_tokens(
    identity: str,
    tokenizer: Tokenizer,
    cache_dir: str | Path,
    load: Callable[[], Corpus],
    max_tokens: int | None = None,
) -> TokenStream:
    """Token stream of a split, tokenized on first use and read from ``cache_dir`` afterwards.

    Args:
        identity: Source identity of the split (:func:`src.data.sources.source_identity`).
        tokenizer: Tokenizer; its fingerprint (name, vocab size, training hash) is part of the key.
        cache_dir: Root cache folder; files go to ``<cache_dir>/tokens/``.
        load: Called only on a cache miss, returns the documents.
        max_tokens: Cap on the tokens kept (whole documents; part of the cache key).

    Raises:
        ValueError: The split has no documents or no tokens.
    """
    desc = f"{_CACHE_VERSION}|{identity}|{tokenizer.fingerprint}|{max_tokens}"
    key = hashlib.sha256(desc.encode()).hexdigest()[:12]
    stem = f"{_slug(identity)}.{_slug(tokenizer.name)}-{tokenizer.vocab_size}.{key}"
    folder = Path(cache_dir) / "tokens"
    meta_path = folder / f"{stem}.json"
    if meta_path.is_file() and (folder / f"{stem}.bin").is_file():
        meta = read_meta_file(meta_path)
        logger.info("token cache hit: %s (%s tokens)", meta_path.name, meta.get("num_tokens"))
        return TokenStream([folder / f"{stem}.bin"], meta["dtype"])
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    for stale in remove_stale_temps(folder, f"{stem}.bin") if folder.is_dir() else []:
        logger.info("removed %s (left by a tokenizer process that died)", stale.name)
    writer = TokenWriter(folder, stem, dtype)
    try:
        num_docs = tokenize_to(
            load(), tokenizer, writer, desc=f"tokenize {identity}", max_tokens=max_tokens
        )
    except BaseException as err:  # a full disk or an interrupt: leave no partial file behind
        writer.abort()
        if isinstance(err, OSError) and err.errno in DISK_FULL and not err.filename:
            raise OSError(err.errno, err.strerror, str(folder)) from None  # name the folder
        raise
    writer.close()
    if num_docs == 0 or writer.num_tokens == 0:
        raise ValueError(
            f"data split {identity!r} is empty (no documents/tokens); check data.path, "
            "data.text_field and that the files contain text"
        )
    meta = {
        "dtype": dtype,
        "num_tokens": writer.num_tokens,
        "num_docs": num_docs,
        "tokenizer": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
    }
    # The meta file is the completion marker: written last, atomically.
    write_json(meta_path, meta)
    logger.info(
        "tokenized %s: %d docs, %d tokens -> %s", identity, num_docs, writer.num_tokens, folder
    )
    return TokenStream([folder / f"{stem}.bin"], dtype)


class PackedDataset(Dataset):
    """Non-overlapping ``seq_len`` windows of a token stream: ``{"input_ids": LongTensor(L)}``."""

    def __init__(self, stream: TokenStream, seq_len: int) -> None:
        self.stream = stream
        self.seq_len = seq_len
        self.num_samples = len(stream) // seq_len

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.num_samples:
            raise IndexError(f"sample {i} outside [0, {self.num_samples})")
        ids = self.stream.read(i * self.seq_len, (i + 1) * self.seq_len)
        return {"input_ids": torch.from_numpy(ids)}


def document_bounds(stream: TokenStream, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths (EOS included) of the documents in a stream."""
    ends = []
    offset = 0
    for chunk in stream.chunks():
        ends.append(np.flatnonzero(chunk == eos_id) + offset)
        offset += len(chunk)
    end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    if len(stream) and (end.size == 0 or end[-1] != len(stream) - 1):
        end = np.append(end, len(stream) - 1)  # trailing tokens without EOS form a last document
    starts = np.concatenate([[0], end[:-1] + 1]).astype(np.int64) if end.size else end
    return starts, (end - starts + 1).astype(np.int64)


class PaddedDataset(Dataset):
    """Documents split into ``seq_len`` chunks, right-padded, with an ``attention_mask``."""

    def __init__(self, stream: TokenStream, seq_len: int, eos_id: int, pad_id: int) -> None:
        self.stream, self.seq_len, self.pad_id = stream, seq_len, pad_id
        doc_start, doc_len = document_bounds(stream, eos_id)
        per_doc = (doc_len + seq_len - 1) // seq_len
        doc_of = np.repeat(np.arange(len(doc_len)), per_doc)
        first = np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        within = (np.arange(len(doc_of)) - first) * seq_len
        self.starts = doc_start[doc_of] + within
        self.lengths = np.minimum(seq_len, doc_len[doc_of] - within)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self.starts):
            raise IndexError(f"sample {i} outside [0, {len(self.starts)})")
        s, n = int(self.starts[i]), int(self.lengths[i])
        ids = torch.full((self.seq_len,), self.pad_id, dtype=torch.long)
        ids[:n] = torch.from_numpy(self.stream.read(s, s + n))
        mask = torch.zeros(self.seq_len, dtype=torch.bool)
        mask[:n] = True
        return {"input_ids": ids, "attention_mask": mask}
