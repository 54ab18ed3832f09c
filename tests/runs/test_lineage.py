"""training.init_from: a WSD cool-down forked from a stable-phase checkpoint equals the
uninterrupted WSD run bit for bit; a weights-mode child starts from the parent's weights and
counts its FLOPs; a parent that does not fit is one line."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from src.builders import build_algo, build_backbone, build_datamodule
from src.runs.identity import compose_train
from src.runs.lineage import InitOptimizer, prepare_start
from src.scaling.collect import collect_runs
from src.scaling.table import prepare_table
from src.train import main as train_main
from src.train import train
from tests.cli import cli_error
from tests.resume.helpers import (assert_equal_tree, load_last, read_records, recorder_overrides,
                                  tiny_overrides)

# Dropout, EMA and 2-step accumulation: every piece of state a fork must carry over.
EXTRA = ("model.dropout=0.1", "training.ema=0.9", "training.global_batch_size=8",
         "lr_scheduler.warmup_steps=2")
WSD = ("lr_scheduler=wsd", "lr_scheduler.warmup_steps=2", "lr_scheduler.decay_frac=0.25")
N, T = 9, 12  # WSD over 12 steps decays over the last int(0.25 * 12) = 3: steps 9..11


def _run(root: Path, *extra: str, steps: int) -> dict:
    return train(compose_train(tiny_overrides(root, *EXTRA, *extra, steps=steps, every=3)))


@pytest.fixture(scope="module")
def stable(tmp_path_factory) -> dict:
    """The stable phase: constant lr after the same warmup, N steps, its checkpoints kept."""
    root = tmp_path_factory.mktemp("stable")
    return _run(root, "lr_scheduler=constant", "training.keep_steps=[6]",
                *recorder_overrides(root / "steps.jsonl"), steps=N)


def test_wsd_cooldown_fork_equals_the_uninterrupted_run(stable, tmp_path):
    ref_root, fork_root = tmp_path / "ref", tmp_path / "fork"
    reference = _run(ref_root, *WSD, *recorder_overrides(ref_root / "steps.jsonl"), steps=T)
    child = _run(fork_root, *WSD, f"training.init_from={stable['run_dir']}",
                 "training.init_mode=fork", *recorder_overrides(fork_root / "steps.jsonl"),
                 steps=T)
    a, b = load_last(Path(reference["run_dir"])), load_last(Path(child["run_dir"]))
    assert a["global_step"] == b["global_step"] == T
    for key in ("state_dict", "optimizer_states", "lr_schedulers", "algo_state"):
        assert_equal_tree(a[key], b[key], key)
    assert a["LMDataModule"] == b["LMDataModule"]
    # The decay steps saw the same samples and the same losses, bit for bit.
    ref_steps = read_records(ref_root / "steps.jsonl")
    stable_steps = read_records(Path(stable["run_dir"]).parents[6] / "steps.jsonl")
    fork_steps = read_records(fork_root / "steps.jsonl")
    assert fork_steps == {k: v for k, v in ref_steps.items() if k[0] >= N}
    assert stable_steps == {k: v for k, v in ref_steps.items() if k[0] < N}
    # Books: this run's own 3 steps, the lineage's 12.
    per_step = 8 * 32
    assert child["tokens"] == (T - N) * per_step and child["cumulative_tokens"] == T * per_step
    assert child["cumulative_flops"] == pytest.approx(reference["flops"])
    assert child["parent"]["step"] == N and child["parent"]["mode"] == "fork"
    assert child["parent"]["run_dir"] == str(Path(stable["run_dir"]).resolve())


class FirstLr(L.Callback):
    """Records the learning rate of the first optimizer step this job takes."""

    seen: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if not FirstLr.seen:
            FirstLr.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fork_takes_its_own_schedule_at_the_branch_step(stable, tmp_path):
    """Decay from step 6 of 12: the parent's constant lr (1e-3) at step 9 becomes 1e-3 x
    (1 - 3/6) in the fork, from its very first step."""
    FirstLr.seen.clear()
    _run(tmp_path, "lr_scheduler=wsd", "lr_scheduler.warmup_steps=2", "lr_scheduler.decay_frac=0.5",
         f"training.init_from={stable['run_dir']}", "training.init_mode=fork",
         "+callbacks.first_lr._target_=tests.runs.test_lineage.FirstLr", steps=T)
    assert FirstLr.seen == [pytest.approx(5e-4, rel=1e-12)]


def _built(overrides: list[str]):
    cfg = compose_train(overrides)
    from src.runs.identity import assign_identity

    assign_identity(cfg)
    dm = build_datamodule(cfg)
    algo = build_algo(cfg, dm.tokenizer, build_backbone(cfg, dm.tokenizer.vocab_size))
    return cfg, dm, algo


def test_weights_mode_starts_from_the_parent_and_counts_its_flops(stable, tmp_path):
    parent_step6 = torch.load(Path(stable["run_dir"]) / "checkpoints" / "step00000006.ckpt",
                              map_location="cpu", weights_only=False)
    overrides = tiny_overrides(tmp_path, *EXTRA, steps=4, every=2) + [
        f"training.init_from={stable['run_dir']}", "training.init_step=6",
        "training.init_optimizer=true", "optim.lr=3e-4"]
    cfg, dm, algo = _built(overrides)
    start = prepare_start(cfg, algo, dm.tokenizer, None, tmp_path / "ck", 256, 1.0, 4)
    for name, tensor in algo.backbone.state_dict().items():
        assert torch.equal(tensor, parent_step6["state_dict"][f"backbone.{name}"]), name
    assert start.resume_from is None and start.lineage.start_step == 0
    assert any(isinstance(c, InitOptimizer) for c in start.callbacks)

    child = train(compose_train(overrides))
    assert child["steps"] == 4 and child["tokens"] == 4 * 256
    assert child["parent"]["step"] == 6 and child["parent"]["mode"] == "weights"
    assert child["cumulative_tokens"] == (6 + 4) * 256
    # Scaling fits see the lineage's tokens and FLOPs.
    table = prepare_table(collect_runs(tmp_path / "runs").table)
    assert table["D"].tolist() == [10 * 256]
    assert json.loads((Path(child["run_dir"]) / "result.json").read_text())["parent"]["step"] == 6


def test_parent_that_does_not_fit_is_one_line(stable, tmp_path):
    base = [f"training.init_from={stable['run_dir']}", f"paths.log_dir={tmp_path}/runs",
            f"paths.cache_dir={tmp_path}/cache"]
    wrong_size = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, steps=3),
                           *base, "model=0.25M")
    assert "does not fit this run's backbone" in wrong_size and "use model=0.13M" in wrong_size
    missing = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, steps=3), *base,
                        "training.init_step=4")
    assert "no step00000004.ckpt (its kept steps: [3, 6, 9])" in missing
    fork = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, *EXTRA, steps=12),
                     *base, "training.init_mode=fork", "data.seq_len=16")
    assert "must match it: data.seq_len: 32 -> 16" in fork and "init_mode=weights" in fork
    short = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, *EXTRA, steps=5),
                      *base, "training.init_mode=fork")
    assert "the parent is at step 9 and this run ends at step 5" in short


def test_another_tokenizer_is_refused(stable, tmp_path):
    parent = torch.load(Path(stable["run_dir"]) / "checkpoints" / "last.ckpt",
                        map_location="cpu", weights_only=False)
    assert parent["tokenizer"]["fingerprint"] == "byte-v258"
    parent["tokenizer"]["fingerprint"] = "bpe258-0123abcd"  # same shapes, other ids
    torch.save(parent, tmp_path / "other.ckpt")
    line = cli_error(train_main, "src.train", *tiny_overrides(tmp_path, steps=3),
                     f"training.init_from={tmp_path / 'other.ckpt'}")
    assert "its tokenizer bpe258-0123abcd" in line and "is not this run's byte-v258" in line
