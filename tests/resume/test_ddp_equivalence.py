"""DDP with 2 CPU processes (gloo) trains like one process with the same global batch:
the same samples at the same positions of every global batch, the same noise, the same
per-micro-batch losses and weights up to float reduction order (slow: two real launches)."""

from __future__ import annotations

import json
import math

import pytest

from tests.resume.helpers import (
    assert_equal_tree,
    load_last,
    metric_rows,
    read_records,
    recorder_overrides,
    run_dir_of,
    tiny_overrides,
    train_cli,
)

STEPS = 6
# 8 sequences per optimizer step: 1 process x 2 accumulation steps vs 2 processes x 1. Three
# validation batches over two ranks: rank 1 runs a padding batch that must not be counted.
COMMON = ("training.global_batch_size=8", "model.dropout=0.1", "training.ema=0.9",
          "training.val_max_batches=3")
DDP = ("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(tmp_path):
    runs = {}
    for name, extra in (("single", ()), ("ddp", DDP)):
        root = tmp_path / name
        proc = train_cli([*tiny_overrides(root, *COMMON, *extra, steps=STEPS, every=3),
                          *recorder_overrides(root / "steps.jsonl")])
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = root

    single, ddp = (read_records(runs[n] / "steps.jsonl") for n in ("single", "ddp"))
    assert single.keys() == ddp.keys() and len(single) == STEPS * 2
    assert {r["rank"] for r in ddp.values()} == {0, 1}
    for key in single:
        assert single[key]["ids"] == ddp[key]["ids"], key  # same sample at the same position
        a, b = float.fromhex(single[key]["loss"]), float.fromhex(ddp[key]["loss"])
        if key[0] == 0:
            assert a == b, key  # same weights, data and noise: bitwise before any update
        else:
            assert math.isclose(a, b, rel_tol=1e-4), (key, a, b)

    last = {n: load_last(run_dir_of(r, STEPS)) for n, r in runs.items()}
    assert last["single"]["global_step"] == last["ddp"]["global_step"] == STEPS
    assert_equal_tree(last["single"]["state_dict"], last["ddp"]["state_dict"], "weights",
                      atol=1e-5)
    val = {n: [float(row["val/nll"]) for row in metric_rows(run_dir_of(r, STEPS))
               if "val/nll" in row] for n, r in runs.items()}
    assert len(val["single"]) == len(val["ddp"]) >= 2
    for a, b in zip(val["single"], val["ddp"]):
        assert math.isclose(a, b, rel_tol=1e-5), (val["single"], val["ddp"])


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_bitwise_on_one_process(tmp_path):
    """2 processes x 1 micro-batch saved, 1 process x 2 accumulation steps resumed: the same
    run, bit for bit (Lightning's batch counters are converted, src/resume/split.py; left as
    saved, the optimizer stepped after the first micro-batch of the resumed step)."""
    whole, moved = tmp_path / "whole", tmp_path / "moved"
    proc = train_cli([*tiny_overrides(whole, *COMMON, *DDP, steps=STEPS, every=3),
                      *recorder_overrides(whole / "steps.jsonl")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    crash = ["+callbacks.crash._target_=tests.resume.helpers.CrashAt", "+callbacks.crash.step=4"]
    first = train_cli(tiny_overrides(moved, *COMMON, *DDP, *crash, steps=STEPS, every=3))
    assert first.returncode != 0 and "simulated crash" in first.stderr
    proc = train_cli([*tiny_overrides(moved, *COMMON, steps=STEPS, every=3),
                      *recorder_overrides(moved / "steps.jsonl")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = read_records(whole / "steps.jsonl")
    resumed = [json.loads(line) for line in (moved / "steps.jsonl.rank0").read_text().splitlines()]
    resumed = [r for r in resumed if r["step"] >= 3][-2 * (STEPS - 3):]  # the one-process job
    assert [(r["step"], r["offset"]) for r in resumed] == [(s, o) for s in range(3, STEPS)
                                                             for o in (0, 4)]
    for r in resumed:  # same samples, same loss bits as the 2-process run at each position
        ref = reference[(r["step"], r["offset"])]
        assert (r["ids"], r["loss"]) == (ref["ids"], ref["loss"]), (r, ref)
    a, b = (load_last(run_dir_of(r, STEPS)) for r in (whole, moved))
    assert_equal_tree(a["state_dict"], b["state_dict"], "weights")
    assert_equal_tree(a["optimizer_states"], b["optimizer_states"], "optimizer")
