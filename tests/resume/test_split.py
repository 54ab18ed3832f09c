"""Converting a checkpoint's per-process micro-batch counters to another accumulation."""

import pytest

from src.resume.split import convert_batch_progress, saved_accumulation


def _loops(started: int, completed: int) -> dict:
    counts = {"ready": started, "started": started, "processed": started, "completed": completed}
    return {"fit_loop": {"epoch_loop.batch_progress": {"total": dict(counts),
                                                        "current": dict(counts)}}}


def test_counters_scale_with_accumulation_and_keep_their_lag():
    # measured: 2 processes x 1 saved (3, 2) where 1 process x 2 has (6, 5) at step 3
    loops = _loops(started=3, completed=2)
    convert_batch_progress(loops, saved=1, now=2)
    total = loops["fit_loop"]["epoch_loop.batch_progress"]["total"]
    assert total == {"ready": 6, "started": 6, "processed": 6, "completed": 5}
    convert_batch_progress(loops, saved=2, now=1)  # and back
    assert loops == _loops(started=3, completed=2)
    same = _loops(4, 3)
    convert_batch_progress(same, saved=2, now=2)
    assert same == _loops(4, 3)


def test_a_checkpoint_inside_an_accumulation_cannot_change_split():
    with pytest.raises(ValueError, match="not a whole number of optimizer steps"):
        convert_batch_progress(_loops(started=3, completed=2), saved=2, now=1)


def test_saved_accumulation_is_stored_or_inferred_from_older_checkpoints():
    assert saved_accumulation({"accumulation": 4, "micro_step": 8, "optimizer_steps": 2}) == 4
    assert saved_accumulation({"micro_step": 6, "optimizer_steps": 3}) == 2
    assert saved_accumulation({"micro_step": 0, "optimizer_steps": 0}) == 1
