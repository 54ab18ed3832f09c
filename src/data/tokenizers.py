"""One tokenizer interface for every vocabulary the repo trains on.

Every tokenizer exposes the facts a model needs (``vocab_size`` including the
``[MASK]`` token, ``mask_id``, ``eos_id``, ``pad_id``) and never produces
``[MASK]`` or EOS from raw text: special-token strings inside documents are
encoded as ordinary text, so the only EOS ids in a token stream are the
document separators we insert ourselves.

Kinds (see :func:`build_tokenizer`): ``byte``, ``bpe`` (trained on the
training split and cached), ``gpt2`` (offline GPT-2 BPE files) and ``hf``
(any Hugging Face tokenizer by name or local path).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from src.data import tokenizer_files as files
from src.data.tokenizer_files import EOS_TOKEN, MASK_TOKEN

logger = logging.getLogger(__name__)

TOKENIZER_KINDS = ("byte", "bpe", "gpt2", "hf")


class Tokenizer:
    """Base interface shared by all tokenizer kinds.

    Attributes:
        name: Short identifier, e.g. ``"byte"``, ``"bpe4096"``, ``"gpt2"``.
        vocab_size: Embedding size, including the ``[MASK]`` token.
        mask_id: Id of ``[MASK]`` (always present).
        eos_id: End-of-document id, also used as BOS for AR sampling.
        pad_id: Padding id (may equal ``eos_id``).
    """

    name: str
    vocab_size: int
    mask_id: int
    eos_id: int
    pad_id: int

    @property
    def fingerprint(self) -> str:
        """Identity used in cache keys: equal fingerprints give equal ids."""
        return f"{self.name}-v{self.vocab_size}"

    def encode(self, text: str) -> list[int]:
        """Encodes one string (no special tokens added)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encodes many strings at once (no special tokens added)."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        """Decodes ids to text, skipping ``[MASK]``; EOS renders as ``<|endoftext|>``."""
        raise NotImplementedError

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        """Validates ids and drops [MASK] (it has no text)."""
        out = [int(i) for i in ids]
        bad = [i for i in out if i < 0 or i >= self.vocab_size]
        if bad:
            raise ValueError(
                f"token ids {bad[:5]} are outside [0, {self.vocab_size}) for {self.name}"
            )
        return [i for i in out if i != self.mask_id]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, "
            f"mask_id={self.mask_id}, eos_id={self.eos_id}, pad_id={self.pad_id})"
        )


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes 0..255, then EOS (256) and [MASK] (257)."""

    def __init__(self) -> None:
        self.name = "byte"
        self.eos_id = 256
        self.mask_id = 257
        self.pad_id = self.eos_id
        self.vocab_size = 258

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        parts: list[str] = []
        run = bytearray()
        for i in self._check_ids(ids):
            if i < 256:
                run.append(i)
                continue
            # Flush bytes before EOS so a split multi-byte char becomes U+FFFD, not an error.
            parts.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            parts.append(EOS_TOKEN)
        parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)


class FastTokenizer(Tokenizer):
    """Wraps a ``tokenizers.Tokenizer`` (trained BPE or GPT-2) that already holds EOS and [MASK]."""

    def __init__(self, backend: Any, name: str, fingerprint: str | None = None) -> None:
        self._tok = backend
        # Special-token strings inside documents must stay text, never become EOS/[MASK].
        self._tok.encode_special_tokens = True
        self.name = name
        eos, mask = backend.token_to_id(EOS_TOKEN), backend.token_to_id(MASK_TOKEN)
        if eos is None or mask is None:
            raise ValueError(f"tokenizer {name} lacks {EOS_TOKEN} or {MASK_TOKEN}")
        self.eos_id, self.mask_id = int(eos), int(mask)
        self.pad_id = self.eos_id
        self.vocab_size = int(backend.get_vocab_size(with_added_tokens=True))
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        return self._fingerprint or super().fingerprint

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(self._check_ids(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        """The tokenizer JSON (reload with ``kind=bpe, name_or_path=<file with it>``)."""
        return self._tok.to_str()

    def save(self, path: str | Path) -> None:
        """Writes the tokenizer JSON (reload with ``kind=bpe, name_or_path=path``)."""
        Path(path).write_text(self.to_json(), encoding="utf-8")


class HFTokenizer(Tokenizer):
    """Wraps a ``transformers`` tokenizer, adding [MASK] / EOS when it has none."""

    def __init__(self, tok: Any, name: str) -> None:
        if tok.mask_token is None:
            tok.add_special_tokens({"mask_token": MASK_TOKEN})
        if tok.eos_token is None:
            # BERT-style tokenizers have [SEP] as their document separator.
            if getattr(tok, "sep_token", None) is not None:
                tok.eos_token = tok.sep_token
            else:
                tok.add_special_tokens({"eos_token": EOS_TOKEN})
        tok.model_max_length = int(1e30)  # we chunk ourselves; silence length warnings
        self._tok = tok
        self.name = name
        self.mask_id = int(tok.mask_token_id)
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        ids = [self.mask_id, self.eos_id, self.pad_id]
        self.vocab_size = max(len(tok), max(ids) + 1)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = self._tok(
            texts,
            add_special_tokens=False,
            split_special_tokens=True,
            return_attention_mask=False,
            verbose=False,
        )
        return [list(x) for x in out["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(
            self._check_ids(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )


def _fixed_vocab(tok: Tokenizer, kind: str, vocab_size: int | None) -> Tokenizer:
    """Only bpe takes a size. A warning, not an error: `kind=byte` on a data config whose
    BPE size is set (shakespeare: 4096) is a normal override; the value is still never used."""
    if vocab_size is not None and int(vocab_size) != tok.vocab_size:
        logger.warning("data.tokenizer.vocab_size=%s is ignored: the %s tokenizer has %d ids "
                       "(use data.tokenizer.kind=bpe for a %s-id vocabulary)", vocab_size, kind,
                       tok.vocab_size, vocab_size)
    return tok


def build_tokenizer(
    kind: str,
    *,
    name_or_path: str | None = None,
    vocab_size: int | None = None,
    cache_dir: str | Path = ".cache/tokenizers",
    train_texts: Iterable[str] | None = None,
) -> Tokenizer:
    """Builds a tokenizer of the given kind.

    Args:
        kind: One of ``byte``, ``bpe``, ``gpt2``, ``hf``.
        name_or_path: ``hf``: hub name or local directory. ``bpe``: optional path
            to an existing tokenizer JSON (skips training).
        vocab_size: ``bpe`` only: total vocabulary size including EOS and [MASK] (default
            4096); other kinds warn when it differs from theirs.
        cache_dir: Where trained ``bpe`` tokenizers are stored.
        train_texts: ``bpe`` only: training-split documents.

    Returns:
        The tokenizer.

    Raises:
        ValueError: Unknown kind or missing training texts.
    """
    if kind == "byte":
        return _fixed_vocab(ByteTokenizer(), kind, vocab_size)
    if kind == "bpe":
        if name_or_path:
            backend = files.load_json_tokenizer(name_or_path)
            stem = Path(name_or_path).stem
            # A BPE this repo trained and cached (bpe<V>-<digest>.json) keeps its fingerprint:
            # same ids as the run that trained it (training.init_from checks it).
            trained = re.fullmatch(r"bpe\d+-[0-9a-f]{16}", stem) is not None
            return FastTokenizer(backend, name=stem, fingerprint=stem if trained else None)
        if train_texts is None:
            raise ValueError(
                "tokenizer kind 'bpe' needs train_texts (the datamodule passes the training split) "
                "or name_or_path=<saved tokenizer.json>; or use tokenizer.kind=byte|gpt2"
            )
        vocab_size = 4096 if vocab_size is None else int(vocab_size)
        backend, digest = files.trained_bpe(train_texts, vocab_size, Path(cache_dir))
        return FastTokenizer(
            backend, name=f"bpe{vocab_size}", fingerprint=f"bpe{vocab_size}-{digest}"
        )
    if kind == "gpt2":
        return _fixed_vocab(FastTokenizer(files.gpt2_backend(), name="gpt2"), kind, vocab_size)
    if kind == "hf":
        if not name_or_path:
            raise ValueError(
                "tokenizer kind 'hf' needs name_or_path (a hub name or a local directory)"
            )
        return _fixed_vocab(HFTokenizer(files.load_hf_tokenizer(name_or_path),
                                        name=str(name_or_path)), kind, vocab_size)
    raise ValueError(f"unknown tokenizer kind {kind!r}; valid kinds: {', '.join(TOKENIZER_KINDS)}")
