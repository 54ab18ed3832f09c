"""Flat token files: the on-disk format of both the token cache and ``memmap`` sources.

A split is one or more raw little-endian ``uint16``/``uint32`` files
(``train.bin`` or ``train_00000.bin``, ``train_00001.bin`` ...) holding the
documents' tokens, each document followed by EOS, plus an optional
``meta.json`` (``{"dtype": "uint16", "vocab_size": ..., "eos_id": ...}``).
Files are read with ``np.memmap``; nothing is loaded into RAM.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from src.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
_SPLIT_PREFIXES = {"train": ("train",), "validation": ("validation", "val")}


def dtype_for_vocab(vocab_size: int) -> str:
    """Smallest supported dtype holding ids below ``vocab_size``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


class TokenStream:
    """Read-only concatenation of flat token files, opened lazily per process.

    Pickling drops the open maps (workers reopen the files), so DataLoader
    workers never receive a copy of the data.
    """

    def __init__(self, paths: Iterable[str | Path], dtype: str) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"token dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        item = np.dtype(DTYPES[dtype]).itemsize
        self.paths = [str(p) for p in paths if Path(p).stat().st_size > 0]
        sizes = [Path(p).stat().st_size for p in self.paths]
        for p, s in zip(self.paths, sizes, strict=True):
            if s % item:
                raise ValueError(
                    f"{p} has {s} bytes, not a multiple of {dtype}; wrong dtype or corrupt file"
                )
        self.offsets = np.concatenate([[0], np.cumsum([s // item for s in sizes])]).astype(np.int64)
        self._maps: list[np.memmap] | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None
        return state

    def _open(self) -> list[np.memmap]:
        if self._maps is None:
            self._maps = [np.memmap(p, dtype=DTYPES[self.dtype], mode="r") for p in self.paths]
        return self._maps

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` as a new int64 array (may span files)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"token range [{start}, {stop}) outside [0, {len(self)})")
        maps = self._open()
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        pos, f = start, first
        while pos < stop:
            lo = pos - int(self.offsets[f])
            hi = min(stop, int(self.offsets[f + 1])) - int(self.offsets[f])
            parts.append(maps[f][lo:hi])
            pos += hi - lo
            f += 1
        if len(parts) == 1:
            return parts[0].astype(np.int64)
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def chunks(self, size: int = 1 << 24) -> Iterator[np.ndarray]:
        """Yields consecutive int64 chunks covering the whole stream (bounded RAM)."""
        for start in range(0, len(self), size):
            yield self.read(start, min(start + size, len(self)))


class TokenWriter:
    """Appends ids to ``{prefix}.bin`` (or numbered shards); temp files renamed on close."""

    def __init__(
        self, folder: str | Path, prefix: str, dtype: str, shard_tokens: int | None = None
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"token dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.folder, self.prefix, self.dtype = Path(folder), prefix, dtype
        self.shard_tokens = shard_tokens
        self.max_id = np.iinfo(DTYPES[dtype]).max
        self.num_tokens = 0
        self._shards: list[Path] = []
        self._fh: Any = None
        self._in_shard = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def _final_name(self, i: int) -> Path:
        name = f"{self.prefix}.bin" if self.shard_tokens is None else f"{self.prefix}_{i:05d}.bin"
        return self.folder / name

    def _roll(self) -> None:
        if self._fh is not None:
            self._fh.close()
        tmp = self.folder / temp_name(self._final_name(len(self._shards)).name)
        self._shards.append(tmp)
        self._fh = open(tmp, "wb")  # noqa: SIM115 - closed in close()/_roll()
        self._in_shard = 0

    def write(self, ids: np.ndarray) -> None:
        """Appends ids (any integer array)."""
        arr = np.asarray(ids)
        if arr.size and (arr.min() < 0 or arr.max() > self.max_id):
            raise ValueError(f"token id outside the range of {self.dtype}")
        arr = arr.astype(DTYPES[self.dtype])
        while arr.size:
            if self._fh is None or (self.shard_tokens and self._in_shard >= self.shard_tokens):
                self._roll()
            room = arr.size if not self.shard_tokens else self.shard_tokens - self._in_shard
            self._fh.write(arr[:room].tobytes())
            self._in_shard += min(room, arr.size)
            self.num_tokens += min(room, arr.size)
            arr = arr[room:]

    def abort(self) -> None:
        """Delete the temp files of a write that failed (a full disk, an interrupt)."""
        if self._fh is not None:
            self._fh.close()
        for tmp in self._shards:
            tmp.unlink(missing_ok=True)

    def close(self) -> list[Path]:
        """Renames the temp files to their final names and returns them."""
        if self._fh is None:
            self._roll()  # an empty split still gets a (0-byte) file
        self._fh.close()
        final = []
        for i, tmp in enumerate(self._shards):
            dst = self._final_name(i)
            os.replace(tmp, dst)
            final.append(dst)
        return final


# A writer appends continuously: a temp file from another host untouched this long is dead.
STALE_AFTER_S = 3600


def temp_name(final: str) -> str:
    """`.<final>.<host>.<pid>.tmp`: whose it is, so a later run can tell a dead writer's."""
    return f".{final}.{socket.gethostname()}.{os.getpid()}.tmp"


def remove_stale_temps(folder: Path, final: str) -> list[Path]:
    """Delete temp files of `final` left by writers that died (SIGKILL, node loss): on this
    host, their pid is gone; on another, the file has not been written for an hour."""
    removed = []
    host = socket.gethostname()
    for tmp in folder.glob(f".{final}.*.tmp"):
        parts = tmp.name[len(final) + 2:-4].rsplit(".", 1)
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        owner, pid = parts[0], int(parts[1])
        try:
            dead = (not _alive(pid)) if owner == host else \
                time.time() - tmp.stat().st_mtime > STALE_AFTER_S
            if dead:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer finished or another run cleaned it
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def write_json(path: str | Path, obj: dict[str, Any]) -> None:
    """Writes JSON via a unique temp file + rename, so readers never see half a file."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def read_json(path: str | Path) -> dict[str, Any]:
    """Reads a JSON object."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_meta(folder: str | Path, meta: dict[str, Any]) -> None:
    """Writes a shard folder's ``meta.json`` atomically."""
    write_json(Path(folder) / "meta.json", meta)


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``meta.json`` of a shard folder, or an empty dict."""
    path = Path(folder) / "meta.json"
    return read_meta_file(path) if path.is_file() else {}


def read_meta_file(path: Path) -> dict[str, Any]:
    """A shard folder's or the token cache's metadata: plain data, checked before use (a
    shard folder may come from anyone)."""
    fix = "rewrite the shards with `python -m src.data.prepare` (or delete a cache file)"
    try:
        meta = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): {fix}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds a {type(meta).__name__}, not a JSON object: {fix}")
    dtype = meta.get("dtype")
    if dtype is not None and (not isinstance(dtype, str) or dtype not in DTYPES):
        raise ValueError(f"{path}: dtype {str(dtype)[:60]!r} is not one of {list(DTYPES)}: {fix}")
    for key in ("vocab_size", "eos_id", "num_tokens"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise ValueError(f"{path}: {key} {str(value)[:60]!r} is not a whole number: {fix}")
    return meta


def split_files(folder: str | Path, split: str) -> list[Path]:
    """Shard files of ``split`` in a memmap folder, sorted by name."""
    prefixes = _SPLIT_PREFIXES.get(split, (split,))
    for prefix in prefixes:
        found = sorted(Path(folder).glob(f"{prefix}*.bin"))
        if prefix == "val":
            found = [f for f in found if not f.name.startswith("validation")]
        if found:
            return found
    return []


def open_split(
    folder: str | Path, split: str, dtype: str | None = None
) -> tuple[TokenStream, dict[str, Any]]:
    """Opens the shards of ``split`` (``train`` or ``validation``) in a memmap folder.

    Args:
        folder: Directory with ``train*.bin`` / ``validation*.bin`` (or ``val*.bin``).
        split: Split name.
        dtype: Overrides ``meta.json``'s dtype (needed when there is no meta.json).

    Raises:
        FileNotFoundError: Folder or shards missing (message names the fix).
        ValueError: dtype unknown.
    """
    root = Path(str(folder)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"memmap folder data.path={str(folder)!r} does not exist; write shards with "
            "`python -m src.data.prepare --out DIR ...` and set data.path=DIR"
        )
    meta = read_meta(root)
    dtype = dtype or meta.get("dtype")
    if dtype is None:
        raise ValueError(f"{root} has no meta.json; set data.dtype=uint16 or uint32")
    files = split_files(root, split)
    if not files:
        raise FileNotFoundError(
            f"no {split}*.bin shards in {root}; write them with `python -m src.data.prepare`"
        )
    return TokenStream(files, dtype), meta
