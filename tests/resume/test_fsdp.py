"""trainer=fsdp (FSDP2 through Lightning's ModelParallelStrategy) on 2 CPU processes (gloo):
it really shards, trains like DDP within fp32 tolerance, resumes exactly, and its checkpoint
resumes on another process count and is read by src.evaluate (slow: real launches)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.resume.helpers import (
    ROOT,
    assert_equal_tree,
    assert_same_training_state,
    load_last,
    read_records,
    recorder_overrides,
    run_dir_of,
    tiny_overrides,
    train_cli,
)

STEPS = 6
COMMON = ("training.global_batch_size=8", "model.dropout=0.1", "training.val_max_batches=3")
TWO = ("trainer.accelerator=cpu", "trainer.devices=2")
DDP = (*TWO, "trainer.strategy=ddp")
FSDP = (*TWO, "trainer.strategy=fsdp")
PROBE = "+callbacks.probe._target_=tests.resume.helpers.ShardProbe"


def _train(root, *extra, steps=STEPS, record=True):
    overrides = tiny_overrides(root, *COMMON, *extra, steps=steps, every=3)
    if record:
        overrides += recorder_overrides(root / "steps.jsonl")
    proc = train_cli(overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_fsdp_shards_and_trains_like_ddp(tmp_path):
    _train(tmp_path / "ddp", *DDP)
    _train(tmp_path / "fsdp", *FSDP, PROBE, f"+callbacks.probe.path={tmp_path / 'probe'}")
    probes = [json.loads((tmp_path / f"probe.rank{r}").read_text()) for r in (0, 1)]
    for p in probes:  # DTensors, each rank holding about half of every parameter
        assert p["classes"] == ["DTensor"] and p["world"] == 2
        assert p["local"] < 0.6 * p["full"]
    assert sum(p["local"] for p in probes) == probes[0]["full"]

    ddp, fsdp = (read_records(tmp_path / n / "steps.jsonl") for n in ("ddp", "fsdp"))
    assert ddp.keys() == fsdp.keys() and len(ddp) == STEPS * 2
    worst = 0.0
    for key in ddp:
        assert ddp[key]["ids"] == fsdp[key]["ids"], key
        a, b = float.fromhex(ddp[key]["loss"]), float.fromhex(fsdp[key]["loss"])
        worst = max(worst, abs(a - b) / abs(a))
    assert worst < 1e-5, worst  # fp32 reduction order only (README: "Scaling out")
    last = {n: load_last(run_dir_of(tmp_path / n, STEPS)) for n in ("ddp", "fsdp")}
    assert_equal_tree(last["ddp"]["state_dict"], last["fsdp"]["state_dict"], "weights",
                      atol=1e-5)
    # the checkpoint is the one-file format DDP writes: same keys and shapes everywhere
    assert_equal_tree(last["ddp"]["optimizer_states"], last["fsdp"]["optimizer_states"],
                      "optimizer", atol=1e-4)
    weights = max((last["ddp"]["state_dict"][k] - v).abs().max().item()
                  for k, v in last["fsdp"]["state_dict"].items())
    print(f"FSDP vs DDP over {STEPS} steps: max relative loss difference {worst:.2e}, "
          f"max weight difference {weights:.2e}")


@pytest.mark.slow
def test_fsdp_resumes_exactly_and_on_another_process_count(tmp_path):
    whole = tmp_path / "whole"
    _train(whole, *FSDP, record=False)
    reference = load_last(run_dir_of(whole, STEPS))

    # killed after step 3 (its checkpoint), resumed by a second job with the same 2 processes
    broken = tmp_path / "broken"
    crash = ["+callbacks.crash._target_=tests.resume.helpers.CrashAt", "+callbacks.crash.step=4"]
    first = train_cli(tiny_overrides(broken, *COMMON, *FSDP, *crash, steps=STEPS, every=3))
    assert first.returncode != 0 and "simulated crash" in first.stderr
    _train(broken, *FSDP, record=False)
    assert_same_training_state(load_last(run_dir_of(broken, STEPS)), reference)

    # the same step-3 checkpoint resumed by one process (2 accumulation steps): equal within
    # fp32 reduction order
    moved = tmp_path / "moved"
    first = train_cli(tiny_overrides(moved, *COMMON, *FSDP, *crash, steps=STEPS, every=3))
    assert first.returncode != 0
    _train(moved, record=False)
    resumed = load_last(run_dir_of(moved, STEPS))
    assert resumed["global_step"] == STEPS
    assert_equal_tree(resumed["state_dict"], reference["state_dict"], "weights", atol=1e-5)

    # src.evaluate reads the FSDP run's checkpoint as it reads any other
    out = subprocess.run([sys.executable, "-m", "src.evaluate",
                          f"ckpt={run_dir_of(whole, STEPS)}", "max_batches=2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"nll"' in out.stdout


DISTRIBUTED = ("trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2",
               "trainer.strategy.distributed_checkpoint=true", "training.ema=0")
CRASH = ("+callbacks.crash._target_=tests.resume.helpers.CrashAt", "+callbacks.crash.step=4")


def _gathered(run_dir):
    from src.resume.checkpoint_file import load_checkpoint_file

    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_symlink() and last.resolve().is_dir()  # one shard per rank + index
    assert sorted(p.name for p in last.resolve().iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp", "meta.pt"]
    return load_checkpoint_file(last)


@pytest.mark.slow
def test_distributed_checkpoint_resumes_exactly_reshards_and_reads_as_one_file(tmp_path):
    whole = tmp_path / "whole"
    _train(whole, *DISTRIBUTED, record=False)
    reference = _gathered(run_dir_of(whole, STEPS))
    assert reference["global_step"] == STEPS and len(reference["optimizer_states"]) == 1

    broken = tmp_path / "broken"  # killed after step 3, resumed on the same 2 processes
    first = train_cli(tiny_overrides(broken, *COMMON, *DISTRIBUTED, *CRASH, steps=STEPS, every=3))
    assert first.returncode != 0 and "simulated crash" in first.stderr
    _train(broken, *DISTRIBUTED, record=False)
    assert_same_training_state(_gathered(run_dir_of(broken, STEPS)), reference)

    # the step-3 folder resumed by FSDP on 1 process (torch.distributed.checkpoint reshards
    # it) and by a plain single process (it is gathered into the one-file layout)
    for name, extra in (("fsdp1", ("trainer=fsdp", "trainer.accelerator=cpu",
                                   "trainer.devices=1", "training.ema=0")), ("plain", ())):
        moved = tmp_path / name
        first = train_cli(tiny_overrides(moved, *COMMON, *DISTRIBUTED, *CRASH, steps=STEPS,
                                         every=3))
        assert first.returncode != 0
        _train(moved, *extra, record=False)
        last = run_dir_of(moved, STEPS) / "checkpoints" / "last.ckpt"
        from src.resume.checkpoint_file import load_checkpoint_file

        resumed = load_checkpoint_file(last)
        assert resumed["global_step"] == STEPS, name
        assert_equal_tree(resumed["state_dict"], reference["state_dict"], name, atol=1e-5)

    out = subprocess.run([sys.executable, "-m", "src.evaluate",
                          f"ckpt={run_dir_of(whole, STEPS)}", "max_batches=2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and '"nll"' in out.stdout, out.stderr[-2000:]
