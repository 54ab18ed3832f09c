"""Files written atomically (temp file in the same folder, fsync, rename): a reader, another
rank or the next job sees the old file or the complete new one, never half of it, whatever
kills the writer. Standard library only."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# A full disk, a full quota, or a file-size limit (`ulimit -f`): the user frees space.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_cause(err: BaseException) -> OSError | None:
    """The full-disk OSError behind `err`, if any: torch.save reports one as a RuntimeError
    of its zip writer, raised while handling the OSError."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w",
                 **open_kwargs: Any) -> None:
    """Call `write(f)` on a temp file next to `path`, then rename it onto `path`.

    Args:
        mode: "w" (text) or "wb" (bytes).
        **open_kwargs: passed to the file object (e.g. newline="", encoding="utf-8").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder: os.replace is atomic only within one filesystem.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full_cause(err)
        if full is not None and not full.filename:  # name the file the disk refused
            raise OSError(full.errno, full.strerror, str(path)) from None
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), encoding="utf-8")
