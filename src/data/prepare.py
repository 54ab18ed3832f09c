"""Write pre-tokenized ``memmap`` shards from any text source.

Example::

    python -m src.data.prepare --source shakespeare --tokenizer gpt2 --out data/shakespeare_gpt2
    python -m src.data.prepare --source hf --name HuggingFaceFW/fineweb-edu --config sample-10BT \\
        --tokenizer gpt2 --out data/fineweb_gpt2 --shard-tokens 500000000

then train with ``data=memmap data.path=<out> data.tokenizer.kind=gpt2``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.data.memmap import TokenWriter, dtype_for_vocab, write_meta
from src.data.packing import tokenize_to
from src.data.sources import Corpus, load_corpus
from src.data.tokenizers import FastTokenizer, Tokenizer, build_tokenizer

logger = logging.getLogger(__name__)


def write_memmap(
    out_dir: str | Path,
    tokenizer: Tokenizer,
    corpora: dict[str, Corpus | list[str]],
    *,
    dtype: str | None = None,
    shard_tokens: int | None = None,
) -> dict[str, Any]:
    """Tokenizes each split (docs + EOS) into ``<out_dir>/<split>.bin`` shards plus ``meta.json``.

    Args:
        out_dir: Output folder (created).
        tokenizer: Tokenizer whose ids are written.
        corpora: Split name (``train``, ``validation``) -> documents (Corpus or list of str).
        dtype: ``uint16`` or ``uint32``; default: smallest that fits the vocabulary.
        shard_tokens: Tokens per shard file (``train_00000.bin``...); None = one file per split.

    Returns:
        The metadata written to ``meta.json``.
    """
    dtype = dtype or dtype_for_vocab(tokenizer.vocab_size)
    meta: dict[str, Any] = {
        "dtype": dtype,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "mask_id": tokenizer.mask_id,
        "tokenizer": tokenizer.fingerprint,
        "splits": {},
    }
    for split, corpus in corpora.items():
        corpus = corpus if isinstance(corpus, Corpus) else Corpus(list(corpus))
        writer = TokenWriter(out_dir, split, dtype, shard_tokens)
        docs = tokenize_to(corpus, tokenizer, writer, desc=f"write {split}")
        files = writer.close()
        meta["splits"][split] = {
            "num_tokens": writer.num_tokens,
            "num_docs": docs,
            "files": [f.name for f in files],
        }
        logger.info(
            "%s: %d docs, %d tokens in %d file(s)", split, docs, writer.num_tokens, len(files)
        )
    if isinstance(tokenizer, FastTokenizer):
        # Ship the vocabulary with the shards so training can rebuild the exact tokenizer.
        tokenizer.save(Path(out_dir) / "tokenizer.json")
        meta["tokenizer_json"] = "tokenizer.json"
    write_meta(out_dir, meta)
    return meta


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (``python -m src.data.prepare --help``)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--source", default="shakespeare", help="shakespeare | text | json | parquet | hf"
    )
    p.add_argument("--path", default=None, help="local files/dir/glob (text, json, parquet)")
    p.add_argument("--name", default=None, help="hub dataset id (source hf)")
    p.add_argument("--config", default=None, help="hub dataset config")
    p.add_argument("--text-field", default="text")
    p.add_argument(
        "--sample-by", default="document", help="text files: document | paragraph | line"
    )
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--tokenizer", default="gpt2", help="byte | bpe | gpt2 | hf")
    p.add_argument("--tokenizer-name", default=None, help="hf name/path, or a bpe tokenizer JSON")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="bpe vocabulary size (default 4096)")
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dtype", default=None, choices=["uint16", "uint32"])
    p.add_argument("--shard-tokens", type=int, default=None)
    p.add_argument("--splits", default="train,validation")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    kwargs = {
        "path": args.path,
        "name": args.name,
        "config": args.config,
        "text_field": args.text_field,
        "cache_dir": str(Path(args.cache_dir) / "hf_datasets"),
        "streaming": args.streaming,
        "sample_by": args.sample_by,
    }
    corpora = {s: load_corpus(args.source, s, **kwargs) for s in args.splits.split(",")}
    train_texts = None
    if args.tokenizer == "bpe" and not args.tokenizer_name:
        train_texts = load_corpus(args.source, "train", **kwargs).texts()
    tok = build_tokenizer(
        args.tokenizer,
        name_or_path=args.tokenizer_name,
        vocab_size=args.vocab_size,
        cache_dir=Path(args.cache_dir) / "tokenizers",
        train_texts=train_texts,
    )
    write_memmap(args.out, tok, corpora, dtype=args.dtype, shard_tokens=args.shard_tokens)


if __name__ == "__main__":
    main()
