"""Where entry files live under the data dir, and how one is written so no reader sees it torn.

Layout (seed 003 §3.4, one directory level per key part; file names are never reused)::

    <data_dir>/<ac>/<domain>/<dataset_id>/anchor=<signature>/<day or _all>/<utc>-<uuid>.parquet

Slices published together share one file (``publish_slices``), named by the days it covers::

    .../anchor=<signature>/_slices/<first day>_<last day>-<utc>-<uuid>.parquet

Paths in the manifest are relative to the data dir and use "/" so that a manifest on a shared
database stays valid on every host that mounts the same data dir.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path, PurePath, PurePosixPath

import polars as pl

from metric_platform import write_guard
from metric_platform.engine.store.keys import EntryKey
from metric_platform.errors import InvalidRequestError, StorageError

PARQUET_SUFFIX = ".parquet"
TEMP_MARKER = ".tmp-"
WHOLE_DIR = "_all"
SHARED_DIR = "_slices"
# Directory names are limited to 255 bytes; very wide anchors get a stable hashed name instead.
_MAX_ANCHOR_DIR = 120


def entry_dir(key: EntryKey) -> PurePosixPath:
    """The directory (relative to the data dir) holding every version of ``key``'s file."""
    signature = key.anchor_signature
    if len(signature) > _MAX_ANCHOR_DIR:
        signature = "h-" + hashlib.sha256(signature.encode()).hexdigest()[:32]
    slice_dir = key.slice_key or WHOLE_DIR
    return PurePosixPath(key.ac_name, key.domain.value, key.dataset_id, f"anchor={signature}", slice_dir)


def shared_slices_file(base: EntryKey, first: date, last: date, now: datetime) -> PurePosixPath:
    """A fresh path (relative to the data dir) for one file holding the slices first..last of ``base``."""
    name = f"{first.isoformat()}_{last.isoformat()}-{new_file_name(now)}"
    return entry_dir(base).with_name(SHARED_DIR) / name


def new_file_name(now: datetime) -> str:
    """A fresh, never-reused file name; the timestamp is only there to help a human reading the tree."""
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}{PARQUET_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return TEMP_MARKER in name


def guarded_path(path: PurePath) -> PurePath:
    """The path whose manifest or pending row keeps ``path``: itself, or a temp file's final path.

    >>> guarded_path(PurePosixPath("a/.x.parquet.tmp-0123abcd")).as_posix()
    'a/x.parquet'
    """
    name = path.name
    if name.startswith(".") and TEMP_MARKER in name:
        return path.with_name(name[1 : name.rindex(TEMP_MARKER)])
    return path


def write_parquet_atomically(frame: pl.DataFrame, final: Path) -> int:
    """Write ``frame`` to ``final`` (temp file, fsync, rename); return the file's size in bytes.

    A crash leaves at most a temp file or an unreferenced final file, both removed by the sweep.
    """
    write_guard.check(f"the engine entry file {final.name}")
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.name}{TEMP_MARKER}{uuid.uuid4().hex[:8]}")
    try:
        with temp.open("wb") as handle:
            frame.write_parquet(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _fsync_directory(final.parent)
        return final.stat().st_size
    except pl.exceptions.PolarsError as exc:
        temp.unlink(missing_ok=True)
        msg = (
            f"the frame for {final.name} cannot be written as Parquet: {exc}; "
            "store only Parquet-compatible dtypes"
        )
        raise InvalidRequestError(msg) from exc
    except OSError as exc:
        temp.unlink(missing_ok=True)
        msg = f"cannot write entry file {final}: {exc}. Check free space and permissions of the data dir."
        raise StorageError(msg) from exc


def candidate_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` the store may have created: entry files and temp files."""
    if not root.is_dir():
        return
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            if name.endswith(PARQUET_SUFFIX) or is_temp_name(name):
                yield Path(directory, name)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable on POSIX; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
