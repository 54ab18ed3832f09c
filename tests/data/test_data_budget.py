"""Data-constrained training: `data.unique_tokens` = U keeps the first ceil(U / L) packed
sequences, repeated epoch after epoch, each epoch a fresh permutation of exactly them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from src.data.datamodule import DataProgress, LMDataModule
from tests.cli import cli_error
from tests.data.helpers import make_docs, write_text_files

SEQ, BATCH = 16, 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    return write_text_files(root / "docs", make_docs(120)), root / "cache"


def make_dm(corpus, unique_tokens, world_size=1, rank=0):
    folder, cache = corpus
    dm = LMDataModule(source="text", path=str(folder), tokenizer={"kind": "byte"}, seq_len=SEQ,
                      batch_size=BATCH, cache_dir=str(cache), unique_tokens=unique_tokens)
    dm.world_size, dm.rank = world_size, rank
    dm.setup("fit")
    return dm


def test_budget_is_the_first_sequences_of_the_full_stream(corpus):
    full, dm = make_dm(corpus, None), make_dm(corpus, 250)
    n = math.ceil(250 / SEQ)  # 16 sequences = 256 unique tokens
    assert dm.num_train_samples == n and dm.train_tokens_per_epoch == n * SEQ
    assert full.num_train_samples > 4 * n
    for i in range(n):
        assert torch.equal(dm.dataset("train")[i]["input_ids"], full.dataset("train")[i]["input_ids"])
    assert len(dm.dataset("validation")) == len(full.dataset("validation"))  # val untouched


@pytest.mark.parametrize("world_size", [1, 2])
def test_epochs_are_reshuffled_permutations_of_the_budget(corpus, world_size):
    dms = [make_dm(corpus, 32 * SEQ, world_size, r) for r in range(world_size)]
    per_epoch = 32 // (world_size * BATCH)  # exact number of micro-batches per epoch
    samplers = []
    for dm in dms:
        dm.max_train_batches = 3 * per_epoch
        dm.train_dataloader()
        samplers.append(dm.train_sampler)
    epochs = []
    for e in range(3):
        seen = [i for k in range(e * per_epoch, (e + 1) * per_epoch)
                for s in samplers for i in s.batch(k)]
        assert sorted(seen) == list(range(32))  # exact counts, no repeat inside an epoch
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    assert dms[0].epoch_of(per_epoch - 1) == 0 and dms[0].epoch_of(per_epoch) == 1


def test_data_progress_logs_the_epoch(corpus):
    dm = make_dm(corpus, 8 * SEQ)  # 2 micro-batches per epoch
    logged = []
    module = SimpleNamespace(log=lambda key, value, **_: logged.append((key, value)))
    trainer = SimpleNamespace(datamodule=dm)
    for _ in range(5):
        DataProgress().on_train_batch_end(trainer, module, None, None, 0)
    assert [v for _, v in logged] == [0.0, 0.0, 1.0, 1.0, 2.0] and logged[0][0] == "data/epoch"


def test_budget_larger_than_the_corpus_is_one_clear_error(corpus):
    with pytest.raises(ValueError, match=r"data\.unique_tokens=10000000 is larger than the "
                                         r"training corpus \(\d+ tokens"):
        make_dm(corpus, 10_000_000)


def test_budget_error_is_one_line_from_the_cli(corpus, tmp_path):
    folder, cache = corpus
    from src.train import main

    line = cli_error(main, "src.train", "data=text_files", f"data.path={folder}",
                     "data.tokenizer.kind=byte", "data.seq_len=16", "data.unique_tokens=1e9",
                     "model=0.13M", f"paths.log_dir={tmp_path}", f"paths.cache_dir={cache}")
    assert line.startswith("error: data.unique_tokens=") and "training corpus" in line, line
