"""Checkpoint files: written with content checksums, read without running code.

Reading: `torch.load(weights_only=True)`: only tensors and plain containers are unpickled, so
a crafted `.ckpt` handed to `src.evaluate ckpt=`, `training.init_from=` or dropped into a run's
`checkpoints/` cannot execute anything (our checkpoints hold nothing else). Writing: every
tensor's CRC-32 goes into the checkpoint (`checksums`), and reading verifies them, so a flipped
byte inside a weight is an error, not silently wrong weights (zip entries carry CRCs that torch
does not check). Checkpoints written before checksums load unverified.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from src.runs.file_config import check_file_config
from src.utils.atomic import atomic_write
from src.utils.cli import UserError

CHECKSUMS = "checksums"


class UnreadableCheckpoint(UserError):
    """A checkpoint that is corrupt, truncated, or holds more than tensors and containers.

    `reason` is the message without the file's path (for lines that name the file already).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} {reason}")


def _tensors(tree: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        yield path, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            if not (path == "" and key == CHECKSUMS):
                yield from _tensors(value, f"{path}/{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _tensors(value, f"{path}/{i}")


def _crc(tensor: torch.Tensor) -> int:
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return zlib.crc32(data.numpy())


def checksums(ckpt: dict[str, Any]) -> dict[str, int]:
    """CRC-32 of every tensor's bytes, keyed by its path in the checkpoint."""
    return {path: _crc(t) for path, t in _tensors(ckpt)}


def corrupt_tensors(ckpt: dict[str, Any]) -> list[str]:
    """Paths whose bytes no longer match the stored checksums (missing ones included)."""
    stored = ckpt.get(CHECKSUMS)
    if not isinstance(stored, dict):
        return []
    now = checksums(ckpt)
    return sorted(p for p in set(stored) | set(now) if stored.get(p) != now.get(p))


def save_checkpoint_file(ckpt: dict[str, Any], path: str | Path) -> None:
    """Add the checksums, then torch.save to a temp file, fsync and rename onto `path`."""
    ckpt[CHECKSUMS] = checksums(ckpt)
    atomic_write(path, lambda f: torch.save(ckpt, f), mode="wb")


def load_checkpoint_file(path: str | Path, *, mmap: bool = False,
                         verify: bool = True) -> dict[str, Any]:
    """torch.load with weights_only=True (+ checksum verification); a distributed checkpoint
    folder is gathered into the same one-file layout (src/resume/distributed_checkpoint.py).

    Raises:
        UnreadableCheckpoint: not a checkpoint, truncated, unsafe, or a checksum mismatch;
            the message names the file and what is wrong.
    """
    if Path(path).is_dir():  # a distributed checkpoint (trainer=fsdp, distributed_checkpoint)
        from src.resume.distributed_checkpoint import (
            is_distributed_checkpoint,
            load_distributed_checkpoint,
        )

        if not is_distributed_checkpoint(path):
            raise UnreadableCheckpoint(path, "is a folder, not a checkpoint file or a "
                                             "distributed checkpoint (no .metadata)")
        ckpt = load_distributed_checkpoint(path)
        if "run_config" in ckpt:
            check_file_config(ckpt["run_config"], str(path))
        return ckpt
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        blocked = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        if blocked:  # a pickled callable: what a crafted file uses to run code
            raise UnreadableCheckpoint(
                path, f"holds Python objects beyond tensors and plain containers "
                f"({blocked[0][:120]}): refusing to run code from a checkpoint; use one "
                f"written by src.train") from None
        raise UnreadableCheckpoint(path, "cannot be read (not a torch checkpoint, or "
                                         "corrupt): it is truncated or not a checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableCheckpoint(path, f"cannot be read ({first[:160]}): it is truncated or "
                                         f"not a checkpoint") from None
    if not isinstance(ckpt, dict):
        raise UnreadableCheckpoint(path, f"is not a training checkpoint (a {type(ckpt).__name__})")
    if verify and (bad := corrupt_tensors(ckpt)):
        raise UnreadableCheckpoint(
            path, f"is corrupt: {len(bad)} tensor(s) do not match their checksums (first: "
            f"{bad[0]}); use an earlier checkpoint of the run (checkpoints/step*.ckpt)")
    if "run_config" in ckpt:  # data: it may only name the repo's own classes (file_config.py)
        check_file_config(ckpt["run_config"], str(path))
    return ckpt
