"""LMDataModule end to end: default corpus, modes, memmap, unigram baseline, ranks, errors."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from src.data import spec as spec_module
from src.data import tokenizer_files
from src.data.datamodule import LMDataModule
from src.data.prepare import write_memmap
from src.data.sources import Corpus
from src.data.tokenizers import build_tokenizer
from src.data.unigram import unigram_nll
from tests.data.helpers import make_docs, write_text_files

BYTE = {"kind": "byte"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def shakespeare_dm(cache):
    dm = LMDataModule(
        tokenizer={"kind": "bpe", "name_or_path": None, "vocab_size": 4096},
        seq_len=128,
        batch_size=32,
        eval_batch_size=64,
        cache_dir=str(cache),
    )
    dm.build_tokenizer()
    dm.setup("fit")
    return dm


def _fake_trainer(world_size, rank, use_distributed_sampler=False):
    return SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=use_distributed_sampler),
    )


def test_default_shakespeare_datamodule(shakespeare_dm):
    dm = shakespeare_dm
    tok = dm.tokenizer
    assert (tok.vocab_size, tok.mask_id, tok.eos_id) == (4096, 4095, 0)
    assert dm.num_train_tokens > 1_000_000 and dm.num_train_samples == dm.num_train_tokens // 128
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (32, 128) and batch["input_ids"].dtype == torch.long
    assert int(batch["input_ids"].max()) < tok.mask_id  # data never contains [MASK]
    val = torch.cat([b["input_ids"] for b in dm.val_dataloader()])
    assert len(val) == len(dm.dataset("validation"))
    base = dm.unigram_baseline()
    assert 4.0 < base["unigram_nll"] < math.log(4095) and base["unigram_ppl"] == pytest.approx(
        math.exp(base["unigram_nll"])
    )


def test_second_build_uses_caches(shakespeare_dm, cache, monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("cache miss")

    monkeypatch.setattr(tokenizer_files, "train_bpe", boom)
    monkeypatch.setattr(spec_module, "load_corpus", boom)  # re-tokenizing would need the documents
    dm = LMDataModule(
        tokenizer={"kind": "bpe", "vocab_size": 4096}, seq_len=128, cache_dir=str(cache)
    )
    dm.setup("fit")
    assert dm.num_train_samples == shakespeare_dm.num_train_samples
    a = next(iter(dm.train_dataloader()))["input_ids"]
    b = next(iter(shakespeare_dm.train_dataloader()))["input_ids"]
    assert torch.equal(a, b)


def test_pad_mode_batches(tmp_path):
    folder = write_text_files(tmp_path / "t", make_docs(40))
    dm = LMDataModule(
        source="text",
        path=str(folder),
        tokenizer=BYTE,
        seq_len=32,
        batch_size=4,
        mode="pad",
        cache_dir=str(tmp_path / "c"),
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (4, 32) and mask.dtype == torch.bool
    assert torch.all(ids[~mask] == dm.tokenizer.pad_id) and mask[:, 0].all()


def test_memmap_source_matches_text_source(tmp_path):
    docs = make_docs(50)
    tok = build_tokenizer("byte")
    write_memmap(
        tmp_path / "mm", tok, {"train": Corpus(docs[:45]), "validation": Corpus(docs[45:])}
    )
    dm = LMDataModule(
        source="memmap",
        path=str(tmp_path / "mm"),
        tokenizer=BYTE,
        seq_len=16,
        batch_size=2,
        cache_dir=str(tmp_path / "c"),
    )
    dm.setup("fit")
    expected = [t for d in docs[:45] for t in tok.encode(d) + [tok.eos_id]]
    assert dm.num_train_tokens == len(expected)
    first = dm.dataset("train")[1]["input_ids"].tolist()
    assert first == expected[16:32]
    bad = LMDataModule(
        source="memmap",
        path=str(tmp_path / "mm"),
        tokenizer={"kind": "gpt2"},
        seq_len=16,
        cache_dir=str(tmp_path / "c"),
    )
    with pytest.raises(ValueError, match="data.tokenizer"):
        bad.setup("fit")


def test_unigram_hand_computed():
    # train ids 0,1,1,2 with vocab 4 ([MASK]=3): p = (c+1)/(N+K) = 2/7, 3/7, 2/7 over K=3 real ids.
    train = np.bincount([0, 1, 1, 2], minlength=4)
    val = np.bincount([1, 2], minlength=4)
    out = unigram_nll(train, val, mask_id=3)
    nll = -(math.log(3 / 7) + math.log(2 / 7)) / 2
    assert out["unigram_nll"] == pytest.approx(nll, rel=1e-12)
    assert out["unigram_ppl"] == pytest.approx(math.exp(nll), rel=1e-12)


def test_unigram_baseline_of_datamodule(tmp_path):
    docs = ["abcab", "bca", "aaa", "cab", "zz"]
    folder = write_text_files(tmp_path / "t", docs)
    dm = LMDataModule(
        source="text",
        path={
            "train": [str(folder / f"doc_000{i}.txt") for i in range(4)],
            "validation": str(folder / "doc_0004.txt"),
        },
        tokenizer=BYTE,
        seq_len=2,
        batch_size=1,
        cache_dir=str(tmp_path / "c"),
    )
    counts = Counter(b for d in docs[:4] for b in d.encode()) + Counter({256: 4})  # 4 EOS
    n, k = sum(counts.values()), 257  # real vocab: 256 bytes + EOS
    val_ids = list(b"zz") + [256]
    expected = -sum(math.log((counts[i] + 1) / (n + k)) for i in val_ids) / len(val_ids)
    assert dm.unigram_baseline()["unigram_nll"] == pytest.approx(expected, rel=1e-12)


def test_ranks_and_resume_state(tmp_path):
    folder = write_text_files(tmp_path / "t", make_docs(30))
    kw = {
        "source": "text",
        "path": str(folder),
        "tokenizer": BYTE,
        "seq_len": 16,
        "batch_size": 4,
        "cache_dir": str(tmp_path / "c"),
        "max_train_batches": 12,
    }
    seen = []
    for rank in (0, 1):
        dm = LMDataModule(**kw)
        dm.trainer = _fake_trainer(2, rank)
        dm.setup("fit")
        seen.append([b["input_ids"] for b in dm.train_dataloader()])
        loader = dm.val_dataloader()
        counted = [b["input_ids"] for k, b in enumerate(loader)
                   if not dm.val_sampler.is_padding(dm.val_sampler.global_index(k))]
        seen.append(torch.cat(counted))
    train0, val0, train1, val1 = seen
    assert len(train0) == len(train1) == 12
    rows0 = {tuple(r.tolist()) for b in train0[:5] for r in b}
    rows1 = {tuple(r.tolist()) for b in train1[:5] for r in b}
    assert not rows0 & rows1
    total_val = len(LMDataModule(**kw).dataset("validation"))
    assert len(val0) + len(val1) == total_val

    dm = LMDataModule(**kw)
    dm.setup("fit")
    full = [b["input_ids"] for b in dm.train_dataloader()]
    dm.consumed_batches = 7
    state = dm.state_dict()
    assert state == {"consumed_batches": 7, "consumed_samples": 28, "seed": 0,
                     "num_train_samples": dm.num_train_samples}
    resumed = LMDataModule(**kw)
    resumed.setup("fit")
    resumed.load_state_dict(state)
    tail = [b["input_ids"] for b in resumed.train_dataloader()]
    assert len(tail) == 5 and all(torch.equal(a, b) for a, b in zip(full[7:], tail, strict=True))


def test_resume_on_another_number_of_processes(tmp_path):
    """Global batch 8 as 2 ranks x 4 (no accumulation), resumed as 1 rank x 4 x 2 accumulation
    steps: the position is kept in samples, and each step trains on the same 8 samples."""
    folder = write_text_files(tmp_path / "t", make_docs(30))
    kw = {"source": "text", "path": str(folder), "tokenizer": BYTE, "seq_len": 16,
          "batch_size": 4, "cache_dir": str(tmp_path / "c")}

    def steps(dm: LMDataModule) -> list[set]:
        batches = [b["input_ids"] for b in dm.train_dataloader()]
        per_step = dm.accumulation
        return [{tuple(r.tolist()) for b in batches[i:i + per_step] for r in b}
                for i in range(0, len(batches), per_step)]

    two = []
    for rank in (0, 1):
        dm = LMDataModule(**kw, max_train_batches=6)
        dm.trainer = _fake_trainer(2, rank)
        dm.setup("fit")
        two.append(steps(dm))
    two_ranks = [a | b for a, b in zip(*two)]  # 6 steps of 8 samples
    dm.consumed_batches = 3  # stopped after 3 steps
    state = dm.state_dict()

    one = LMDataModule(**kw, max_train_batches=12)
    one.accumulation = 2
    one.setup("fit")
    one.load_state_dict(state)
    assert steps(one) == two_ranks[3:] and one.consumed_batches == 6


def test_distributed_sampler_must_be_off(tmp_path):
    folder = write_text_files(tmp_path / "t", make_docs(10))
    dm = LMDataModule(
        source="text",
        path=str(folder),
        tokenizer=BYTE,
        seq_len=8,
        batch_size=2,
        cache_dir=str(tmp_path / "c"),
    )
    dm.trainer = _fake_trainer(2, 0, use_distributed_sampler=True)
    dm.setup("fit")
    with pytest.raises(ValueError, match="use_distributed_sampler=False"):
        dm.train_dataloader()


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="data.seq_len"):
        LMDataModule(seq_len=1)
    with pytest.raises(ValueError, match="data.path"):
        LMDataModule(source="text")
    with pytest.raises(ValueError, match="valid sources"):
        LMDataModule(source="s3")
    with pytest.raises(ValueError, match="valid modes"):
        LMDataModule(mode="stream")
    with pytest.raises(ValueError, match="valid keys"):
        LMDataModule(tokenizer={"kind": "byte", "vocab": 3})
    with pytest.raises(FileNotFoundError, match="data.path"):
        LMDataModule(
            source="text",
            path=str(tmp_path / "missing"),
            tokenizer=BYTE,
            cache_dir=str(tmp_path / "c"),
        ).setup("fit")
    empty = write_text_files(tmp_path / "empty", ["", "", ""])
    with pytest.raises(ValueError, match="empty"):
        LMDataModule(
            source="text", path=str(empty), tokenizer=BYTE, cache_dir=str(tmp_path / "c")
        ).setup("fit")
    small = write_text_files(tmp_path / "small", ["tiny", "docs", "here"])
    with pytest.raises(ValueError, match="lower data.seq_len"):
        LMDataModule(
            source="text",
            path=str(small),
            tokenizer=BYTE,
            seq_len=64,
            cache_dir=str(tmp_path / "c"),
        ).setup("fit")
    with pytest.raises(ValueError, match="tokenizer.name_or_path"):
        LMDataModule(
            source="memmap", path=str(tmp_path), tokenizer={"kind": "bpe"}
        ).build_tokenizer()
