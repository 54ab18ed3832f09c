"""Distributed checkpoints (trainer=fsdp with distributed_checkpoint=true): reading them safely,
and as the one-file layout that evaluate, sample, export and a DDP resume use.

Such a checkpoint is a folder named like a step file (`step00000300.ckpt/`): one
`__<rank>_0.distcp` shard per process and `.metadata` (torch.distributed.checkpoint), plus
Lightning's `meta.pt` (step counters, loops, callbacks: everything but weights and optimizer).

torch.distributed.checkpoint reads `.metadata` with a bare `pickle.load`, which runs whatever
callable a crafted file names. Before anything reads a folder, `check_metadata` unpickles it
with only the classes torch itself writes there allowed (tensor and chunk metadata, sizes,
dtypes, paths); anything else is an UnreadableCheckpoint that names the class.
`meta.pt` is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from src.resume.checkpoint_file import UnreadableCheckpoint

METADATA = ".metadata"  # torch.distributed.checkpoint's index of the shards
LIGHTNING_META = "meta.pt"  # lightning.fabric.strategies.model_parallel._METADATA_FILENAME

_DCP = "torch.distributed.checkpoint"
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    *((f"{_DCP}.metadata", name) for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
        "BytesStorageMetadata", "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING")),
    (f"{_DCP}.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"),
    *(("torch", str(dtype).removeprefix("torch.")) for dtype in (
        torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
        torch.int16, torch.int8, torch.uint8, torch.bool)),
})


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def is_distributed_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a distributed checkpoint folder (it has `.metadata`)."""
    return (Path(path) / METADATA).is_file()


def check_metadata(path: str | Path) -> None:
    """Unpickle `path/.metadata` allowing only what torch writes there.

    Raises:
        UnreadableCheckpoint: a missing or foreign `.metadata`, or no `meta.pt`.
    """
    path = Path(path)
    if not (path / LIGHTNING_META).is_file():
        raise UnreadableCheckpoint(path, f"is a folder without {LIGHTNING_META}: not a "
                                         "distributed checkpoint written by src.train")
    try:
        with open(path / METADATA, "rb") as f:
            _MetadataUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise UnreadableCheckpoint(path, f"has a {METADATA} that names {err} (only "
                                         "torch.distributed.checkpoint's own classes may appear): "
                                         "refusing to run code from a checkpoint") from None
    except (OSError, EOFError, ValueError, AttributeError, TypeError) as err:
        raise UnreadableCheckpoint(path, f"has an unreadable {METADATA} ({err})") from None


def load_distributed_checkpoint(path: str | Path) -> dict[str, Any]:
    """The folder as one training checkpoint: full weights, optimizer states in torch's
    positional layout, and Lightning's other entries (from `meta.pt`)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from src.utils.strategies import positional_optimizer_state

    path = Path(path)
    check_metadata(path)
    meta = torch.load(path / LIGHTNING_META, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(path, Path(tmp) / "full.pt")  # every shard gathered, one process
        full = torch.load(Path(tmp) / "full.pt", map_location="cpu", weights_only=True)
    optimizers = sorted((k for k in full if k.startswith("optimizer_")),
                        key=lambda k: int(k.split("_")[1]))
    return {**meta, "state_dict": full["state_dict"],
            "optimizer_states": [positional_optimizer_state(full[k]) for k in optimizers]}
