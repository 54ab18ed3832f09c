"""How many UTF-8 bytes of the original text each token id stands for.

Bits per byte (bpb = sum NLL / (ln 2 * bytes)) compares models across tokenizers; bits
per *token* does not. The byte count of a scored token stream is the sum of this table
over its ids. Exact for the byte tokenizer and every byte-level BPE (this repo's trained
`bpe`, `gpt2`, byte-level `hf` tokenizers): the table sums to len(text.encode()) for any
text they encode. Other `hf` tokenizers use the SentencePiece convention ('▁' is one
space, '<0xNN>' one byte), which is exact for SentencePiece vocabularies and an
approximation for WordPiece (its spaces are not tokens). Special tokens (EOS, [MASK],
padding) are 0 bytes: they are separators we insert, not text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import torch

from src.data.tokenizers import ByteTokenizer, Tokenizer

_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-to-printable-char table, inverted: char -> byte (256 entries)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, shift = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:  # unprintable bytes are moved to 256 + n, in byte order
            chars[chr(256 + shift)] = b
            shift += 1
    return chars


def _token_strings(tok: Tokenizer) -> list[str | None]:
    inner: Any = getattr(tok, "_tok", None)
    if hasattr(inner, "id_to_token"):  # a `tokenizers.Tokenizer` (FastTokenizer)
        return [inner.id_to_token(i) for i in range(tok.vocab_size)]
    if hasattr(inner, "convert_ids_to_tokens"):  # a transformers tokenizer (HFTokenizer)
        return [inner.convert_ids_to_tokens(i) if i < len(inner) else None
                for i in range(tok.vocab_size)]
    raise TypeError(f"cannot list the tokens of {tok!r}: add it to src/data/token_bytes.py")


def _special_ids(tok: Tokenizer) -> set[int]:
    ids = {tok.eos_id, tok.mask_id, tok.pad_id}
    inner: Any = getattr(tok, "_tok", None)
    if hasattr(inner, "all_special_ids"):
        ids |= set(inner.all_special_ids)
    return ids


def token_byte_lengths(tok: Tokenizer) -> torch.Tensor:
    """(V,) int64: UTF-8 bytes of text each id decodes to (0 for special tokens)."""
    if isinstance(tok, ByteTokenizer):
        table = torch.zeros(tok.vocab_size, dtype=torch.long)
        table[:256] = 1
        return table
    strings, special = _token_strings(tok), _special_ids(tok)
    alphabet = byte_level_alphabet()
    ordinary = [s for i, s in enumerate(strings) if s is not None and i not in special]
    byte_level = all(c in alphabet for s in ordinary for c in s)
    out = []
    for i, s in enumerate(strings):
        if s is None or i in special:
            out.append(0)
        elif byte_level:
            out.append(len(s))  # one char per byte
        elif _BYTE_FALLBACK.fullmatch(s):
            out.append(1)
        else:
            out.append(len(s.replace("▁", " ").encode("utf-8")))
    return torch.tensor(out, dtype=torch.long)
