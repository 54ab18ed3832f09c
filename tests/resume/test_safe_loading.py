"""Checkpoints are read without running code, and their tensors against their checksums:
a crafted file given to evaluate / sample / init_from, or dropped into a run, runs nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from src.resume.checkpoint_file import (UnreadableCheckpoint, load_checkpoint_file,
                                        save_checkpoint_file)
from src.runs.identity import compose_train
from src.train import train
from tests.cli import cli_error
from tests.resume.helpers import flip_tensor_byte, tiny_overrides


class Payload:
    """Unpickling this (weights_only=False) would create a folder: the 'code' it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "global_step": 1, "run_config": {}, "x": Payload(marker)}, path)
    return path, marker


def test_crafted_checkpoint_runs_nothing_in_evaluate_sample_and_init_from(tmp_path):
    from src.evaluate import main as evaluate_main
    from src.sample import main as sample_main
    from src.train import main as train_main

    path, marker = _crafted(tmp_path)
    for main, module, args in ((evaluate_main, "src.evaluate", [f"ckpt={path}"]),
                               (sample_main, "src.sample", [f"ckpt={path}"]),
                               (train_main, "src.train", [*tiny_overrides(tmp_path, steps=2),
                                                          f"training.init_from={path}"])):
        line = cli_error(main, module, *args, f"paths.log_dir={tmp_path}/runs")
        assert "holds Python objects beyond tensors" in line, (module, line)
    assert not marker.exists()


def test_crafted_file_in_a_run_is_set_aside_unexecuted(tmp_path, caplog):
    path, marker = _crafted(tmp_path)
    cfg = compose_train(tiny_overrides(tmp_path, steps=2, every=1))
    from src.runs.identity import identity_of

    ckpts = Path(identity_of(cfg).run_dir) / "checkpoints"
    ckpts.mkdir(parents=True)
    os.replace(path, ckpts / "last.ckpt")
    with caplog.at_level(logging.WARNING):
        result = train(cfg)
    assert result["steps"] == 2 and not marker.exists()
    assert (ckpts / "last.ckpt.corrupt").exists()
    assert any("holds Python objects" in r.getMessage() for r in caplog.records)


def test_checksums_round_trip_and_catch_a_flipped_byte(tmp_path):
    ckpt = {"state_dict": {"w": torch.randn(64, 64), "b": torch.zeros(3, dtype=torch.bfloat16)},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(5)}}}], "global_step": 7}
    save_checkpoint_file(ckpt, tmp_path / "a.ckpt")
    loaded = load_checkpoint_file(tmp_path / "a.ckpt", mmap=True)
    assert loaded["global_step"] == 7 and len(loaded["checksums"]) == 3
    flip_tensor_byte(tmp_path / "a.ckpt")
    with pytest.raises(UnreadableCheckpoint, match="/state_dict/w"):
        load_checkpoint_file(tmp_path / "a.ckpt")
    (tmp_path / "b.ckpt").write_bytes((tmp_path / "a.ckpt").read_bytes()[:500])
    with pytest.raises(UnreadableCheckpoint, match="truncated"):
        load_checkpoint_file(tmp_path / "b.ckpt")
