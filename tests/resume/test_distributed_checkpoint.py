"""A distributed checkpoint folder is data: its pickled .metadata may name only the classes
torch.distributed.checkpoint writes there (torch reads it with a bare pickle.load)."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from src.resume.checkpoint_file import UnreadableCheckpoint, load_checkpoint_file
from src.resume.distributed_checkpoint import check_metadata
from src.resume.selection import find_resume_checkpoint


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _folder(tmp_path, metadata: bytes):
    folder = tmp_path / "checkpoints" / "step00000003.ckpt"
    folder.mkdir(parents=True)
    torch.save({"global_step": 3}, folder / "meta.pt")
    (folder / ".metadata").write_bytes(metadata)
    return folder


def test_a_crafted_metadata_is_refused_before_torch_unpickles_it(tmp_path):
    marker = tmp_path / "pwned"
    folder = _folder(tmp_path, pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UnreadableCheckpoint, match="posix.system|os.system"):
        check_metadata(folder)
    with pytest.raises(UnreadableCheckpoint, match="refusing to run code"):
        load_checkpoint_file(folder)
    # a resume sets it aside as unreadable and starts from scratch
    choice = find_resume_checkpoint(folder.parent)
    assert choice.path is None and len(choice.corrupt) == 1
    assert (folder.parent / "step00000003.ckpt.corrupt").is_dir() and not folder.exists()
    assert not marker.exists()


def test_metadata_written_by_torch_passes(tmp_path):
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "step00000001.ckpt"
    dcp.save({"state_dict": {"w": torch.ones(3, dtype=torch.bfloat16)}},
             storage_writer=dcp.FileSystemWriter(folder), no_dist=True)
    torch.save({"global_step": 1}, folder / "meta.pt")
    check_metadata(folder)  # no error
    with pytest.raises(UnreadableCheckpoint, match="without meta.pt"):
        (folder / "meta.pt").unlink()
        check_metadata(folder)
