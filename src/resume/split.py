"""Resuming on another split of the global batch (processes x accumulation steps).

A checkpoint counts some things per process in micro-batches: Lightning's fit-loop batch
progress and the algo's micro_step. Both are `optimizer steps x accumulation steps` of the
run that saved it, so a run that resumes with another accumulation (say 2 processes x 1
micro-batch saved, 1 process x 2 resumed) must convert them. Left as saved, Lightning would
step the optimizer after the wrong micro-batch (its accumulation boundary is `batch index
% accumulation`), mixing two global batches into one update. The data position is kept in
samples by the datamodule, and the noise by global-batch position, so they need nothing.
"""

from __future__ import annotations

from typing import Any

PROGRESS = "epoch_loop.batch_progress"


def saved_accumulation(algo_state: dict[str, Any]) -> int:
    """Accumulation steps of the run that wrote `algo_state` (older checkpoints did not
    store it: micro-batches per optimizer step, 1 when no step was taken)."""
    if "accumulation" in algo_state:
        return int(algo_state["accumulation"])
    steps = int(algo_state.get("optimizer_steps", 0))
    return int(algo_state.get("micro_step", 0)) // steps if steps > 0 else 1


def convert_batch_progress(loops: dict[str, Any], saved: int, now: int) -> None:
    """Rescale the fit loop's micro-batch counters (in place) from `saved` to `now`
    accumulation steps. Each counter keeps its distance to `started` (a checkpoint written
    at a batch's end has started, but not yet completed, that batch)."""
    progress = loops.get("fit_loop", {}).get(PROGRESS)
    if saved == now or not progress:
        return
    for part in ("total", "current"):
        counts = progress.get(part)
        if not counts:
            continue
        started = int(counts["started"])
        if started % saved:
            raise ValueError(f"the checkpoint stopped after {started} micro-batches, not a whole "
                             f"number of optimizer steps of {saved}: it cannot resume with "
                             f"{now} accumulation steps")
        for key, value in counts.items():
            counts[key] = started // saved * now - (started - int(value))
