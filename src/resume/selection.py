"""Choose the checkpoint a (re)started run resumes from.

Layout of `run_dir/checkpoints/`: `stepNNNNNNNN.ckpt` (the last K saves) and `last.ckpt`
(a hard link to, or copy of, the newest). The newest readable file wins; an unreadable one
is renamed `*.corrupt` (kept for inspection, never deleted) and the previous one is used.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from src.resume.checkpoint_file import load_checkpoint_file
from src.resume.distributed_checkpoint import LIGHTNING_META, check_metadata

log = logging.getLogger(__name__)

LAST = "last.ckpt"
STEP_RE = re.compile(r"^step(\d+)\.ckpt$")
# Leftovers of a writer killed mid-save: incomplete by construction.
STALE_GLOBS = (".*.tmp", ".*.pending", ".*.tmp-link")


def step_file_name(step: int) -> str:
    return f"step{step:08d}.ckpt"


def step_files(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints in `ckpt_dir`, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := STEP_RE.match(p.name))]
    return sorted(found)


def probe(path: Path) -> int:
    """The global step stored in a readable checkpoint; raises if it cannot be loaded.

    Tensors only (no code runs) and every tensor checked against its stored checksum
    (src/resume/checkpoint_file.py); mmap=True pages the tensor bytes in as they are hashed.
    """
    if path.is_dir():  # distributed: its index checked, its step read, nothing gathered
        check_metadata(path)
        meta = torch.load(path / LIGHTNING_META, map_location="cpu", weights_only=True)
        return int(meta["global_step"])
    ckpt = load_checkpoint_file(path, mmap=True)
    if "state_dict" not in ckpt or "global_step" not in ckpt:
        raise ValueError("not a Lightning training checkpoint")
    return int(ckpt["global_step"])


@dataclass
class Choice:
    """The checkpoint to resume from (None = from scratch) and what was set aside."""

    path: Path | None
    step: int
    corrupt: list[Path]


def _short(error: BaseException) -> str:
    text = getattr(error, "reason", None) or str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text[:160]


def _set_aside(paths: list[Path]) -> list[Path]:
    """Rename unreadable checkpoints to `*.corrupt` (a later run must not try them again)."""
    moved = []
    for p in paths:
        target = p.with_name(p.name + ".corrupt")
        n = 1
        while target.exists():
            target, n = p.with_name(f"{p.name}.corrupt{n}"), n + 1
        try:
            os.replace(p, target)
            moved.append(target)
        except FileNotFoundError:  # another process set it aside first
            pass
    return moved


def remove_path(path: Path) -> None:
    """Delete a checkpoint: a file, a link, or a distributed checkpoint's folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temp_files(ckpt_dir: Path) -> None:
    for pattern in STALE_GLOBS:
        for p in ckpt_dir.glob(pattern):
            log.info("removing an incomplete checkpoint write left by a killed job: %s", p)
            remove_path(p)


def find_resume_checkpoint(ckpt_dir: Path, rank_zero: bool = True) -> Choice:
    """The newest loadable checkpoint of `ckpt_dir`.

    Only rank zero renames corrupt files, removes stale temp files and logs; every rank
    reaches the same choice because readability is a property of the files.
    """
    ckpt_dir = Path(ckpt_dir)
    if rank_zero and ckpt_dir.is_dir():
        remove_stale_temp_files(ckpt_dir)
    # last.ckpt first: it is the newest save unless a job died between committing a step
    # file and re-pointing last.ckpt, hence the step files newer than it come before it.
    last = ckpt_dir / LAST
    last_step = -1
    bad: list[tuple[Path, str]] = []
    if last.exists():
        try:
            last_step = probe(last)
        except Exception as e:  # noqa: BLE001 - any load failure means "unreadable"
            bad.append((last, _short(e)))
    newest_first = list(reversed(step_files(ckpt_dir)))
    candidates = [p for s, p in newest_first if s > last_step]
    if last_step >= 0:
        candidates += [last] + [p for s, p in newest_first if s <= last_step]
    chosen, chosen_step = None, 0
    for path in candidates:
        try:
            step = last_step if path == last else probe(path)
        except Exception as e:  # noqa: BLE001
            bad.append((path, _short(e)))
            continue
        chosen, chosen_step = path, step
        break
    if rank_zero and bad:
        _report(ckpt_dir, bad, chosen, chosen_step)
    return Choice(chosen, chosen_step, [p for p, _ in bad])


def _report(ckpt_dir: Path, bad: list[tuple[Path, str]], chosen: Path | None, step: int) -> None:
    """One warning line for the incident, then the unreadable files are set aside."""
    where = (f"resuming from {chosen.name} (step {step})" if chosen is not None
             else "no loadable checkpoint left: training from scratch")
    log.warning("unreadable checkpoint %s in %s (%s): renamed to *.corrupt; %s",
                " and ".join(p.name for p, _ in bad), ckpt_dir, bad[0][1], where)
    _set_aside([p for p, _ in bad])
