"""Local ``text``/``json``/``parquet`` files loaded through ``datasets.load_dataset``."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from src.data.corpus import Corpus, carve, check_field, normalize_split

logger = logging.getLogger(__name__)

EXTENSIONS = {
    "text": (".txt",),
    "json": (".json", ".jsonl", ".json.gz", ".jsonl.gz"),
    "parquet": (".parquet",),
}


def _path_items(path: Any) -> list[str]:
    if isinstance(path, Mapping):
        return [x for v in path.values() for x in _path_items(v)]
    if isinstance(path, (list, tuple)):
        return [str(x) for x in path]
    return [] if path is None else [str(path)]


def infer_source(path: Any, prefer: str | None = None) -> str:
    """The builder the files' extensions name (.txt text, .json / .jsonl json, .parquet
    parquet; folders and globs by the files they hold); `prefer` wins when it has files.

    Raises:
        ValueError: files of more than one kind and no preference among them.
    """
    kinds: set[str] = set()
    for item in _path_items(path):
        p = Path(item).expanduser()
        names = [str(f) for f in p.rglob("*") if f.is_file()] if p.is_dir() else (
            [str(p)] if p.is_file() else glob.glob(str(p), recursive=True) or [str(p)])
        for name in names:
            kinds.update(b for b, exts in EXTENSIONS.items() if name.endswith(exts))
    if prefer in kinds:
        return prefer
    if len(kinds) > 1:
        raise ValueError(f"data.path={path!r} holds {' and '.join(sorted(kinds))} files: set "
                         f"data.source=text|json|parquet to say which to read")
    return kinds.pop() if kinds else "text"


def require_path(source: str, path: Any) -> None:
    """Raises when a file-based source has no path."""
    if path is None or path == "":
        raise ValueError(f"data source {source!r} needs a path; set data.path=/path/to/your/files")


def resolve_files(spec: Any, builder: str) -> list[str]:
    """Expands a file, a directory (recursive, by extension), a glob, or a list of those.

    Raises:
        FileNotFoundError: Nothing matches (message names the path and the fix).
    """
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    exts = EXTENSIONS[builder]
    files: list[str] = []
    for item in items:
        p = Path(str(item)).expanduser()
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.name.endswith(exts))
        elif p.is_file():
            found = [str(p)]
        else:
            found = sorted(f for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
        if not found:
            raise FileNotFoundError(
                f"no {builder} files found at data.path={str(item)!r} "
                f"(looked for {', '.join(exts)}); "
                "set data.path to an existing file, directory or glob"
            )
        files.extend(str(Path(f).resolve()) for f in found)
    return files


def split_files(path: Any, split: str, builder: str) -> tuple[list[str], bool]:
    """Files for ``split`` and whether a validation split must be carved from them."""
    if isinstance(path, Mapping):
        keyed = {normalize_split(str(k)): v for k, v in path.items()}
        if split in keyed and (split != "train" or "validation" in keyed):
            return resolve_files(keyed[split], builder), False
        if split in ("train", "validation") and "train" in keyed:
            # Only train files given: carve validation from them, as for a single file set.
            return resolve_files(keyed["train"], builder), True
        raise ValueError(
            f"data.path has splits {sorted(keyed)}, not {split!r}; add a {split}: entry"
        )
    if split not in ("train", "validation"):
        raise ValueError(f"a single file set has splits 'train' and 'validation', not {split!r}")
    return resolve_files(path, builder), True


def files_fingerprint(files: list[str]) -> str:
    """Path, size and mtime of each file (changes when any file changes)."""
    parts = []
    for f in files:
        st = Path(f).stat()
        parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def load_local(
    builder: str,
    path: Any,
    split: str,
    *,
    text_field: str,
    cache_dir: str | None,
    streaming: bool,
    sample_by: str,
    fraction: float,
) -> Corpus:
    """One split of local files (validation carved when only one file set is given)."""
    import datasets

    require_path(builder, path)
    files, must_carve = split_files(path, split, builder)
    if all(os.path.getsize(f) == 0 for f in files):
        raise ValueError(
            f"the corpus at data.path={path!r} is empty (0 bytes in {len(files)} file(s)): "
            "point data.path at files with text"
        )
    kwargs: dict[str, Any] = {"sample_by": sample_by} if builder == "text" else {}
    try:
        ds = datasets.load_dataset(
            builder,
            data_files={"train": files},
            split="train",
            cache_dir=cache_dir,
            streaming=streaming,
            **kwargs,
        )
    except Exception as err:  # datasets wraps the decode error in its own
        if not _caused_by(err, UnicodeDecodeError):
            raise
        raise ValueError(_not_utf8_message(files)) from None
    check_field(ds, text_field)
    if not streaming and builder != "text":
        report_missing_text(ds, text_field, path)
    return Corpus(carve(ds, split, fraction) if must_carve else ds, text_field)


def report_missing_text(ds: Any, text_field: str, path: Any) -> None:
    """Rows without the text field (null, or absent in JSON lines) become empty documents:
    say how many, and stop when none has it."""
    missing = sum(t is None for t in ds[text_field])
    if missing == 0:
        return
    if missing == len(ds):
        raise ValueError(f"no row of data.path={path!r} has a {text_field!r} value: set "
                         f"data.text_field to the column that holds the text")
    logger.warning("%d of %d rows of data.path=%s have no %r value: they are skipped (set "
                   "data.text_field if the text is in another column)", missing, len(ds), path,
                   text_field)


def _caused_by(err: BaseException, kind: type[BaseException]) -> bool:
    while err is not None:
        if isinstance(err, kind):
            return True
        err = err.__cause__ or err.__context__
    return False


def first_invalid_utf8(path: str | Path, block_size: int = 1 << 20) -> int | None:
    """Byte offset of the first byte of `path` that is not valid UTF-8 (None: all valid)."""
    offset, carry = 0, b""  # carry: the start of a character split across two blocks
    with open(path, "rb") as f:
        while True:
            block = f.read(block_size)
            data = carry + block
            try:
                data.decode("utf-8")
                offset, carry = offset + len(data), b""
            except UnicodeDecodeError as e:
                if block and e.reason == "unexpected end of data":
                    offset, carry = offset + e.start, data[e.start:]
                else:
                    return offset + e.start
            if not block:
                return None


BINARY_MAGIC = {b"PAR1": "parquet"}  # formats a text reader must not be pointed at


def _not_utf8_message(files: list[str]) -> str:
    for f in files:
        with open(f, "rb") as fh:
            kind = BINARY_MAGIC.get(fh.read(4))
        if kind is not None:
            return (f"{f} is a {kind} file, not text: use data.source={kind} (or leave "
                    f"data.source=auto to go by the file ending)")
        at = first_invalid_utf8(f)
        if at is not None:
            with open(f, "rb") as fh:
                fh.seek(at)
                byte = fh.read(1)
            return (f"{f} is not UTF-8 text: byte 0x{byte.hex()} at offset {at}; convert it "
                    f"(e.g. iconv -f latin1 -t utf-8) or leave it out of data.path")
    return f"a file under data.path is not UTF-8 text ({len(files)} file(s)): convert it to UTF-8"
