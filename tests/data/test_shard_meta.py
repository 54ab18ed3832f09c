"""A shard folder's meta.json and the token cache are data (issue 22): bad content is one
line naming the file; a dead writer's temp file is cleaned up by the next run, and a write
that fails leaves none behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.data.corpus import Corpus
from src.data.memmap import open_split, remove_stale_temps, temp_name
from src.data.packing import cached_tokens
from src.data.prepare import write_memmap
from src.data.tokenizers import build_tokenizer
from src.train import main as train_main
from tests.cli import cli_error
from tests.resume.helpers import tiny_overrides

DOCS = [f"document {i}: " + "some words here " * (i % 7 + 1) for i in range(40)]
BAD_META = {  # name: meta.json content
    "dtype names a callable": {"dtype": {"_target_": "os.system", "_args_": ["true"]}},
    "object dtype": {"dtype": "object"},
    "not JSON": "{\"dtype\": \"uint16\",",
    "a list": ["uint16"],
    "vocab size as text": {"dtype": "uint16", "vocab_size": "258; rm -rf"},
}


@pytest.fixture()
def shards(tmp_path) -> Path:
    folder = tmp_path / "mm"
    write_memmap(folder, build_tokenizer("byte"),
                 {"train": Corpus(DOCS[:36]), "validation": Corpus(DOCS[36:])})
    return folder


def _write(folder: Path, content: object) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "meta.json").write_text(text)


@pytest.mark.parametrize("name", list(BAD_META))
def test_bad_meta_json_is_one_line(shards, name):
    _write(shards, BAD_META[name])
    with pytest.raises(ValueError) as err:
        open_split(shards, "train")
    assert "meta.json" in str(err.value) and "\n" not in str(err.value)
    assert "src.data.prepare" in str(err.value)


def test_training_on_bad_shards_says_one_line(shards, tmp_path):
    _write(shards, BAD_META["dtype names a callable"])
    line = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, steps=2), "data=memmap",
                     f"data.path={shards}", "data.tokenizer.kind=byte", "data.seq_len=32")
    assert "meta.json: dtype" in line, line


def test_a_dead_writers_temp_file_is_removed(tmp_path):
    folder = tmp_path / "tokens"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = folder / temp_name("x.bin").replace(str(os.getpid()), dead)
    live = folder / temp_name("x.bin")  # this process: still writing
    other_host = folder / ".x.bin.another-host.123.tmp"
    for path in (stale, live, other_host):
        path.write_bytes(b"\0" * 8)
    assert remove_stale_temps(folder, "x.bin") == [stale]
    os.utime(other_host, (0, 0))  # untouched for an hour: its writer is gone
    assert remove_stale_temps(folder, "x.bin") == [other_host]
    assert live.exists()


def test_a_failed_tokenization_leaves_no_temp_file(tmp_path):
    class DiskFillsUp(Corpus):
        def batches(self, size: int = 1000):
            yield self.docs  # written to the temp file, then the disk is full
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as err:
        cached_tokens("toy-train", build_tokenizer("byte"), tmp_path, lambda: DiskFillsUp(DOCS))
    assert err.value.filename == str(tmp_path / "tokens")  # the message names the folder
    assert not list((tmp_path / "tokens").glob("*.tmp"))
