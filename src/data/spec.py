"""Validated data settings -> tokenizer and token streams (everything but batching)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.data import splits
from src.data.local_files import infer_source
from src.data.memmap import TokenStream, open_split
from src.data.packing import cached_tokens
from src.data.sources import ALL_SOURCES, load_corpus, load_texts, source_identity
from src.data.tokenizers import TOKENIZER_KINDS, Tokenizer, build_tokenizer

logger = logging.getLogger(__name__)

TOKENIZER_KEYS = ("kind", "name_or_path", "vocab_size")
_NEEDS_PATH = ("text", "json", "parquet", "memmap")


def plain(value: Any) -> Any:
    """Hydra DictConfig/ListConfig -> plain containers; anything else unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def tokenizer_config(tokenizer: Mapping | None) -> dict[str, Any]:
    """Checks a ``{kind, name_or_path, vocab_size}`` mapping (default: byte)."""
    cfg = dict(plain(tokenizer) or {"kind": "byte"})
    unknown = set(cfg) - set(TOKENIZER_KEYS)
    if unknown:
        raise ValueError(
            f"unknown data.tokenizer keys {sorted(unknown)}; valid keys: {TOKENIZER_KEYS}"
        )
    if cfg.get("kind", "byte") not in TOKENIZER_KINDS:
        raise ValueError(
            f"unknown data.tokenizer.kind {cfg.get('kind')!r}; valid kinds: "
            f"{', '.join(TOKENIZER_KINDS)}"
        )
    return cfg


@dataclass
class DataSpec:
    """Where the documents come from and where caches go (see ``LMDataModule`` for fields)."""

    source: str = "shakespeare"
    path: Any = None
    name: str | None = None
    config: str | None = None
    text_field: str = "text"
    cache_dir: str = ".cache"
    streaming: bool = False
    sample_by: str = "document"
    val_fraction: float = splits.DEFAULT_VAL_FRACTION
    dtype: str | None = None
    max_train_tokens: int | None = None

    def __post_init__(self) -> None:
        self.path = plain(self.path)
        if self.source in ("auto", "text") and self.path not in (None, ""):
            # Local files are read by the builder their extensions name: a .jsonl is JSON
            # lines, a .parquet a table, whatever the text_files default says.
            self.source = infer_source(self.path, prefer=None if self.source == "auto" else "text")
        if self.source not in ALL_SOURCES:
            raise ValueError(
                f"unknown data.source {self.source!r}; valid sources: auto, "
                f"{', '.join(ALL_SOURCES)}"
            )
        if self.source in _NEEDS_PATH and (self.path is None or self.path == ""):
            raise ValueError(
                f"data.source={self.source} needs a path; set data.path=/path/to/your/data"
            )

    def source_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`load_corpus` / :func:`load_texts`."""
        # Respect a user's HF_DATASETS_CACHE; otherwise keep datasets' files with ours.
        hf_cache = None if os.environ.get("HF_DATASETS_CACHE") else f"{self.cache_dir}/hf_datasets"
        return {
            "path": self.path,
            "name": self.name,
            "config": self.config,
            "text_field": self.text_field,
            "cache_dir": hf_cache,
            "streaming": self.streaming,
            "sample_by": self.sample_by,
            "val_fraction": self.val_fraction,
        }

    def build_tokenizer(self, cfg: dict[str, Any]) -> Tokenizer:
        """Tokenizer of ``cfg``; ``bpe`` without a JSON path trains on this source's train split."""
        kind, name_or_path = cfg.get("kind", "byte"), cfg.get("name_or_path")
        vocab = cfg.get("vocab_size")
        train_texts = None
        if kind == "bpe" and not name_or_path:
            if self.source == "memmap":
                raise ValueError(
                    "a bpe tokenizer cannot be trained on memmap tokens; set "
                    "data.tokenizer.name_or_path to the tokenizer JSON used to write the shards"
                )
            train_texts = load_texts(self.source, "train", **self.source_kwargs())
        tok = build_tokenizer(
            kind,
            name_or_path=name_or_path,
            vocab_size=int(vocab) if vocab is not None else None,
            cache_dir=Path(self.cache_dir) / "tokenizers",
            train_texts=train_texts,
        )
        return tok

    def token_stream(self, split: str, tok: Tokenizer) -> TokenStream:
        """Flat token stream of ``split``: memmap shards, or text tokenized once and cached."""
        if self.source == "memmap":
            return self._memmap_stream(split, tok)
        kwargs = self.source_kwargs()
        ident = source_identity(
            self.source,
            split,
            path=self.path,
            name=self.name,
            config=self.config,
            text_field=self.text_field,
            sample_by=self.sample_by,
            val_fraction=self.val_fraction,
        )
        return cached_tokens(
            ident,
            tok,
            self.cache_dir,
            load=lambda: load_corpus(self.source, split, **kwargs),
            max_tokens=self.max_train_tokens if split == "train" else None,
        )

    def _memmap_stream(self, split: str, tok: Tokenizer) -> TokenStream:
        stream, meta = open_split(self.path, split, self.dtype)
        written = (meta.get("vocab_size", tok.vocab_size), meta.get("eos_id", tok.eos_id))
        if written != (tok.vocab_size, tok.eos_id):
            raise ValueError(
                f"shards in {self.path} were written with (vocab_size, eos_id)={written} but the "
                f"tokenizer has {(tok.vocab_size, tok.eos_id)}; set data.tokenizer to the one "
                "used to write them"
            )
        if split == "train" and self.max_train_tokens is not None:
            logger.warning("data.max_train_tokens applies to text sources, not memmap; ignored")
        if len(stream) == 0:
            raise ValueError(f"memmap split {split!r} in {self.path} is empty; rewrite the shards")
        return stream
