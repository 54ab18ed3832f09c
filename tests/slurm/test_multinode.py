"""Two Slurm nodes (two slurmd on this machine, scripts/local_slurm.sh with DLM_SLURM_NODES=2),
one process each, trainer.num_nodes=2: the same run as 2 processes on one node, bit for bit,
continued across time-limited jobs by auto_resubmit.sh (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.resume.helpers import (assert_same_training_state, load_last, read_records,
                                  recorder_overrides, run_dir_of, tiny_overrides, train_cli)
from tests.slurm.conftest import local_slurm, squeue, wait_until_gone
from tests.slurm.test_auto_resubmit import CPU_TEMPLATE, _resubmit

TWO_NODE_DIR = os.environ.get("DLM_SLURM_2N_DIR", "/tmp/dlm-slurm-2n")


@pytest.fixture(scope="module")
def two_nodes() -> dict[str, str]:
    # The node names n1, n2 do not resolve: rank 0 listens on this machine.
    return {**local_slurm(Path(TWO_NODE_DIR), nodes=2), "MASTER_ADDR": "127.0.0.1"}


def _launches(slurmd_log: Path) -> int:
    """Job steps a node's slurmd has started (its log's "launch task" lines)."""
    return slurmd_log.read_text().count("launch task") if slurmd_log.exists() else 0


@pytest.mark.slow
def test_two_nodes_train_like_two_local_processes_across_jobs(two_nodes, tmp_path):
    steps, every = 120, 10
    extra = ("training.global_batch_size=8", "model.dropout=0.1", "trainer.accelerator=cpu",
             "trainer.devices=1", "trainer.strategy=ddp")
    ref = train_cli([*tiny_overrides(tmp_path / "ref", *extra, "trainer.devices=2", steps=steps,
                                     every=every),
                     *recorder_overrides(tmp_path / "ref" / "steps.jsonl")])
    assert ref.returncode == 0, ref.stderr[-3000:]

    overrides = [*tiny_overrides(tmp_path / "mn", *extra, "trainer.num_nodes=2", steps=steps,
                                 every=every),
                 *recorder_overrides(tmp_path / "mn" / "steps.jsonl"),
                 "+callbacks.slow._target_=tests.resume.helpers.SlowSteps",
                 "+callbacks.slow.seconds=0.5"]
    args = ["-n", "6", "-t", CPU_TEMPLATE, "--time", "00:01:30", "--sbatch=--nodes=2",
            "--sbatch=--ntasks=2", "--sbatch=--ntasks-per-node=1", "--sbatch=--cpus-per-task=1",
            "--sbatch=--signal=B:USR1@50", "--"]
    n2_log = Path(TWO_NODE_DIR) / "log" / "slurmd-n2.log"
    launched_before = _launches(n2_log)
    proc = _resubmit([*args, *overrides], two_nodes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().split("job name: ")[-1]
    assert squeue(two_nodes, name), "the chain was not queued on the 2-node cluster"
    wait_until_gone(two_nodes, name, timeout=1200)

    run_dir = run_dir_of(tmp_path / "mn", steps)
    logs = "".join(p.read_text() for p in sorted(run_dir.glob("slurm-*.out")))
    assert _launches(n2_log) > launched_before  # the second node ran training steps
    assert logs.count("stopped early with a checkpoint: the next job resumes") >= 1, logs[-4000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == steps
    records = read_records(tmp_path / "mn" / "steps.jsonl")
    assert {r["rank"] for r in records.values()} == {0, 1}
    reference = read_records(tmp_path / "ref" / "steps.jsonl")
    assert {k: (r["ids"], r["loss"]) for k, r in records.items()} == \
        {k: (r["ids"], r["loss"]) for k, r in reference.items()}
    assert_same_training_state(load_last(run_dir_of(tmp_path / "ref", steps)), load_last(run_dir))
