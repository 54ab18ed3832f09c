"""Checkpoint files written atomically: a reader (or the next job) sees the old file or the
complete new one, never half a file, whatever kills the writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from src.utils.atomic import atomic_write, fsync_dir

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "fsync_dir"]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then os.replace onto `path`."""
    atomic_write(path, lambda f: torch.save(obj, f), mode="wb")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic local saves; loads our own (trusted) checkpoints in full.

    Lightning's default writes the bytes straight onto the target, so a job killed
    mid-write leaves a truncated `last.ckpt`. Remote (fsspec) paths keep the default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # weights_only=False: our checkpoints carry the run config and loop state (trusted files).
        return super().load_checkpoint(
            path, map_location=map_location or (lambda storage, loc: storage),
            weights_only=False if weights_only is None else weights_only,
        )
