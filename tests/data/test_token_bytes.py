"""Bytes per token: the denominator of bits per byte must equal len(text.encode())."""

from __future__ import annotations

import math

import pytest
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from src.algos.base import nll_metrics
from src.data.sources import load_texts
from src.data.token_bytes import byte_level_alphabet, token_byte_lengths
from src.data.tokenizers import HFTokenizer, build_tokenizer

TEXT = "Hello world! Ünïcödé, tabs\tand\nnewlines — 日本語 🙂  double  spaces"


def _real_text() -> str:
    return load_texts("shakespeare", "validation")[0][:5000] + TEXT


def test_alphabet_is_a_bijection_onto_bytes():
    table = byte_level_alphabet()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))


@pytest.mark.parametrize("kind", ["byte", "gpt2", "bpe"])
def test_byte_level_tables_are_exact(kind, tmp_path):
    texts = load_texts("shakespeare", "train")[:2] + [TEXT]
    tok = build_tokenizer(kind, vocab_size=512, cache_dir=tmp_path, train_texts=texts)
    table = token_byte_lengths(tok)
    assert table.shape == (tok.vocab_size,)
    for text in (TEXT, _real_text()):
        assert int(table[tok.encode(text)].sum()) == len(text.encode("utf-8"))
    assert table[tok.eos_id] == 0 and table[tok.mask_id] == 0


def test_sentencepiece_convention():
    vocab = {"<unk>": 0, "▁the": 1, "▁cat": 2, "s": 3, "<0xC3>": 4, "▁": 5, "é": 6}
    backend = RustTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tok = HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>"), "sp")
    table = token_byte_lengths(tok)
    assert table[:7].tolist() == [0, 4, 4, 1, 1, 1, 2]  # <unk> is special; é is 2 bytes
    assert table[tok.mask_id] == 0 and table[tok.eos_id] == 0


def test_bits_per_byte_from_sums():
    out = nll_metrics(nll_sum=700.0, n_tokens=100.0, n_bytes=400.0)
    assert out["bits_per_token"] == pytest.approx(7.0 / math.log(2))
    assert out["bpb"] == pytest.approx(700.0 / (400.0 * math.log(2)))
    assert "bpb" not in nll_metrics(700.0, 100.0)  # bytes not counted: no bpb
