"""The chaos sweep (scripts/chaos_sweep.py) on the local two-node Slurm: 12 runs through the
submitit launcher under scancel, SIGKILL, a drained node, time-limit preemption, a duplicate
submission and a full disk; every point ends with one result equal to an undisturbed run
and no run was ever trained by two processes at once (slow, ~8 min on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.slurm.conftest import local_slurm
from tests.slurm.test_multinode import TWO_NODE_DIR


@pytest.mark.slow
def test_a_sweep_survives_chaos(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the disk_full fault mounts a tmpfs: run as root")
    env = local_slurm(Path(TWO_NODE_DIR), nodes=2)
    out = tmp_path / "chaos"
    proc = subprocess.run([sys.executable, "scripts/chaos_sweep.py", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=2700)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "chaos_report.json").read_text())
    assert all(report["checks"].values()), report["checks"]
    assert len(report["points"]) == 12
    # every kind of fault happened, and each left its mark
    assert report["fault_counts"] == {"scancel": 2, "sigkill": 1, "drain": 1, "time_limit": 2,
                                      "duplicate": 1, "disk_full": 1}
    assert report["requeues"], "a time-limit preemption requeues its job"
    assert len(report["launches"]) >= 2, "a cancelled / killed point needs the sweep re-launched"
    assert report["sessions"] > 12, "faulted runs were trained by more than one process"
    assert all(d.startswith(("refused", "found the run finished", "trained the run"))
               for d in report["duplicates"])
    assert "steps recomputed" in proc.stdout and "check: never two trainers at once: ok" in proc.stdout
