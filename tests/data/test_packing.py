"""Tokenize + cache + pack/pad, and the memmap token format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.memmap import TokenStream, open_split
from src.data.packing import PackedDataset, PaddedDataset, cached_tokens, document_bounds
from src.data.prepare import main as prepare_main
from src.data.prepare import write_memmap
from src.data.sources import Corpus
from src.data.tokenizers import build_tokenizer
from tests.data.helpers import make_docs, stream_of


@pytest.fixture(scope="module")
def byte_tok():
    return build_tokenizer("byte")


def _expected_stream(docs, tok):
    out = []
    for d in docs:
        ids = tok.encode(d)
        if ids:
            out += ids + [tok.eos_id]
    return np.array(out)


def test_cached_tokens_match_docs_and_second_run_is_cached(tmp_path, byte_tok):
    docs = make_docs(60) + ["", "ünïcode"]
    calls = []

    def load():
        calls.append(1)
        return Corpus(docs)

    s1 = cached_tokens("toy-train", byte_tok, tmp_path, load)
    np.testing.assert_array_equal(s1.read(0, len(s1)), _expected_stream(docs, byte_tok))
    s2 = cached_tokens("toy-train", byte_tok, tmp_path, load)
    assert len(calls) == 1 and len(s2) == len(s1)
    # Another tokenizer is another cache entry.
    cached_tokens("toy-train", build_tokenizer("gpt2"), tmp_path, load)
    assert len(calls) == 2 and len(list((tmp_path / "tokens").glob("*.bin"))) == 2


def test_empty_corpus_is_one_clear_error(tmp_path, byte_tok):
    with pytest.raises(ValueError, match="empty"):
        cached_tokens("empty", byte_tok, tmp_path, lambda: Corpus(["", ""]))


@pytest.mark.parametrize("seq_len", [2, 7, 64])
def test_pack_is_a_prefix_of_the_stream(tmp_path, byte_tok, seq_len):
    docs = make_docs(30)
    stream = cached_tokens("toy", byte_tok, tmp_path, lambda: Corpus(docs))
    ds = PackedDataset(stream, seq_len)
    expected = _expected_stream(docs, byte_tok)
    assert len(ds) == len(expected) // seq_len
    items = [ds[i]["input_ids"] for i in range(len(ds))]
    assert all(x.dtype == torch.long and x.shape == (seq_len,) for x in items)
    np.testing.assert_array_equal(torch.cat(items).numpy(), expected[: len(ds) * seq_len])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_pad_mode_chunks_documents_and_masks(tmp_path):
    eos, pad = 9, 0
    # docs (EOS included): [1,2,eos] [3,4,5,6,7,eos] [eos] [8,8] (no trailing EOS)
    tokens = np.array([1, 2, eos, 3, 4, 5, 6, 7, eos, eos, 8, 8])
    stream = stream_of(tokens, tmp_path)
    starts, lens = document_bounds(stream, eos)
    assert starts.tolist() == [0, 3, 9, 10] and lens.tolist() == [3, 6, 1, 2]
    ds = PaddedDataset(stream, 4, eos_id=eos, pad_id=pad)
    got = [(ds[i]["input_ids"].tolist(), ds[i]["attention_mask"].tolist()) for i in range(len(ds))]
    T, F = True, False
    assert got == [
        ([1, 2, eos, pad], [T, T, T, F]),
        ([3, 4, 5, 6], [T, T, T, T]),
        ([7, eos, pad, pad], [T, T, F, F]),
        ([eos, pad, pad, pad], [T, F, F, F]),
        ([8, 8, pad, pad], [T, T, F, F]),
    ]
    # Every real token appears exactly once, in order.
    real = torch.cat([ds[i]["input_ids"][ds[i]["attention_mask"]] for i in range(len(ds))])
    np.testing.assert_array_equal(real.numpy(), tokens)


@pytest.mark.parametrize("dtype,high", [("uint16", 65535), ("uint32", 2**32 - 1)])
def test_memmap_round_trip(tmp_path, dtype, high):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, high, size=10_001, dtype=np.int64)
    tokens[:3] = [0, high, 1]
    stream = stream_of(tokens, tmp_path, dtype)
    assert len(stream) == len(tokens)
    np.testing.assert_array_equal(stream.read(0, len(stream)), tokens)
    np.testing.assert_array_equal(np.concatenate(list(stream.chunks(999))), tokens)


def test_memmap_shards_span_files_and_pickle_without_data(tmp_path, byte_tok):
    docs = make_docs(40)
    corpora = {"train": Corpus(docs), "validation": Corpus(docs[:5])}
    meta = write_memmap(tmp_path / "mm", byte_tok, corpora, dtype="uint32", shard_tokens=300)
    files = meta["splits"]["train"]["files"]
    assert len(files) > 2 and files[0] == "train_00000.bin"
    stream, read_meta = open_split(tmp_path / "mm", "train")
    assert read_meta["dtype"] == "uint32" and read_meta["vocab_size"] == 258
    expected = _expected_stream(docs, byte_tok)
    np.testing.assert_array_equal(stream.read(0, len(stream)), expected)
    np.testing.assert_array_equal(
        stream.read(290, 610), expected[290:610]
    )  # crosses two boundaries
    import pickle

    clone = pickle.loads(pickle.dumps(stream))
    assert len(pickle.dumps(stream)) < 2000  # the maps are not pickled
    np.testing.assert_array_equal(clone.read(5, 500), expected[5:500])


def test_prepare_cli_and_val_prefix(tmp_path):
    out = tmp_path / "shards"
    (tmp_path / "a.txt").write_text("alpha beta gamma\n\ndelta epsilon\n\nzeta")
    prepare_main(
        [
            "--source",
            "text",
            "--path",
            str(tmp_path / "a.txt"),
            "--sample-by",
            "paragraph",
            "--tokenizer",
            "byte",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    train, meta = open_split(out, "train")
    val, _ = open_split(out, "validation")
    assert (
        meta["dtype"] == "uint16"
        and len(train) + len(val) == len("alpha beta gammadelta epsilonzeta") + 3
    )
    (out / "validation.bin").rename(out / "val.bin")  # nanoGPT-style name
    assert len(open_split(out, "validation")[0]) == len(val)


def test_memmap_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="src.data.prepare"):
        open_split(tmp_path / "missing", "train")
    (tmp_path / "train.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="data.dtype"):
        open_split(tmp_path, "train")
    with pytest.raises(ValueError, match="multiple"):
        TokenStream([tmp_path / "train.bin"], "uint16")


def test_max_tokens_keeps_whole_leading_documents(tmp_path, byte_tok):
    docs = make_docs(50)
    full = _expected_stream(docs, byte_tok)
    capped = cached_tokens("cap", byte_tok, tmp_path, lambda: Corpus(docs), max_tokens=500)
    ends = np.flatnonzero(full == byte_tok.eos_id) + 1
    assert len(capped) == ends[np.searchsorted(ends, 500)]  # first document boundary at or past 500
    np.testing.assert_array_equal(capped.read(0, len(capped)), full[: len(capped)])
