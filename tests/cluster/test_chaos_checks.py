"""The chaos sweep's end checks and fault helpers, on hand-made journals and results: each
would pass a broken sweep if its arithmetic were wrong."""

from __future__ import annotations

import json
import os

import pytest
import torch

from src.callbacks.step_journal import journal_file
from src.cluster.chaos_checks import (overlaps, read_journals, result_differences, sessions,
                                      state_differences, steps_recomputed)
from src.cluster.faults import fill, minutes, training_runs
from src.runs.lock import OWNER_FILE


def _rows(pid: int, steps: range, t0: float, run: str = "/r") -> list[dict]:
    return [{"run_dir": run, "host": "h", "pid": pid, "job": str(pid), "step": s,
             "time": t0 + i} for i, s in enumerate(steps)]


def test_sessions_in_turn_do_not_overlap_and_count_recomputed_steps():
    # pid 1 trains steps 1-25 and dies after its checkpoint at 20; pid 2 resumes at 21
    rows = _rows(1, range(1, 26), 0.0) + _rows(2, range(21, 41), 100.0)
    found = sessions(rows)
    assert [(s.pid, s.first_step, s.last_step, s.steps) for s in found] == \
        [(1, 1, 25, 25), (2, 21, 40, 20)]
    assert overlaps(found) == []
    assert steps_recomputed(rows) == 5  # 21-25 twice


def test_two_trainers_at_once_are_caught():
    rows = _rows(1, range(1, 30), 0.0) + _rows(2, range(1, 5), 10.0)  # pid 2 starts at t=10
    pairs = overlaps(sessions(rows))
    assert [(a.pid, b.pid) for a, b in pairs] == [(1, 2)]


def test_journals_are_grouped_by_run_and_a_torn_line_is_skipped(tmp_path):
    for run, pid in (("/a", 1), ("/b", 2)):
        path = journal_file(tmp_path, run)
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows(pid, range(1, 4), 0.0, run))
                        + '{"run_dir": "/a", "ho')
    got = read_journals(tmp_path)
    assert sorted(got) == ["/a", "/b"] and [len(v) for v in got.values()] == [3, 3]


def test_results_compare_everything_but_timings_and_folder():
    ref = {"val_nll": 2.5, "steps": 150, "train_time_s": 10.0, "run_dir": "x", "tokens": 9}
    same = {**ref, "train_time_s": 99.0, "wall_time_s": 3.0, "run_dir": "y"}
    assert result_differences(same, ref) == []
    assert result_differences({**same, "val_nll": 2.5000000001}, ref) == ["val_nll"]
    assert result_differences({k: v for k, v in same.items() if k != "tokens"}, ref) == ["tokens"]


def test_state_differences_are_bitwise():
    def ckpt(w: torch.Tensor, m: torch.Tensor, step: int) -> dict:
        return {"state_dict": {"w": w},
                "optimizer_states": [{"state": {0: {"exp_avg": m, "step": step}}}]}

    w, m = torch.randn(4), torch.randn(4)
    assert state_differences(ckpt(w.clone(), m.clone(), 3), ckpt(w, m, 3)) == []
    nudged = w.clone()
    nudged[0] = torch.nextafter(nudged[0], torch.tensor(1e9))
    assert state_differences(ckpt(nudged, m, 3), ckpt(w, m, 3)) == ["state_dict.w"]
    assert state_differences(ckpt(w, m, 4), ckpt(w, m, 3)) == ["optimizer.0.step"]


@pytest.mark.parametrize("text, expected", [("0:30", 0.5), ("01:02:00", 62.0),
                                            ("1-00:00:00", 1440.0), ("10:00", 10.0)])
def test_slurm_durations(text, expected):
    assert minutes(text) == expected


def test_training_runs_are_the_live_lock_owners(tmp_path):
    live, dead = tmp_path / "a" / "s0", tmp_path / "b" / "s1"
    for d, pid in ((live, os.getpid()), (dead, 2**22 + 12345)):
        d.mkdir(parents=True)
        (d / OWNER_FILE).write_text(json.dumps({"pid": pid, "slurm_job_id": "7", "host": "h"}))
    assert [(t.run_dir, t.job) for t in training_runs(tmp_path)] == [(live.resolve(), "7")]


def test_fill_stops_at_the_file_systems_end(tmp_path, monkeypatch):
    class Small:
        """A file that takes 3.5 MiB, then refuses as a full disk does."""

        def __init__(self) -> None:
            self.size = 0

        def write(self, data: bytes) -> int:
            if self.size + len(data) > 3.5 * 2**20:
                raise OSError(28, "No space left on device")
            self.size += len(data)
            return len(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    small = Small()
    monkeypatch.setattr("builtins.open", lambda *a, **k: small)
    assert fill(tmp_path / "ballast") == int(3.5 * 2**20)
