"""Checkpoint files written atomically: a reader (or the next job) sees the old file or the
complete new one, never half a file, whatever kills the writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from src.resume.checkpoint_file import load_checkpoint_file, save_checkpoint_file
from src.utils.atomic import fsync_dir

__all__ = ["AtomicCheckpointIO", "fsync_dir"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic local saves with checksums; loads without running code.

    Lightning's default writes the bytes straight onto the target, so a job killed
    mid-write leaves a truncated `last.ckpt`. Remote (fsspec) paths keep the default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # Tensors and plain containers only (no code runs); find_resume_checkpoint has
        # verified its checksums already (src/resume/checkpoint_file.py). A distributed
        # checkpoint's folder (trainer=fsdp) is gathered into the same layout, so DDP or one
        # process resumes from it too.
        if "://" not in str(path) and Path(path).is_dir():
            return load_checkpoint_file(path)
        return super().load_checkpoint(
            path, map_location=map_location or (lambda storage, loc: storage), weights_only=True)
