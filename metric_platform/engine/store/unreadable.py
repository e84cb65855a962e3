"""Entries whose file is missing or unreadable: the error that names them, and healing by dropping them.

A file deleted or corrupted behind the store's back would otherwise fail every later serve the
same way forever. ``scan``/``scan_slices`` raise ``UnreadableEntryError`` carrying the entries;
the engine passes them to ``EntryStore.drop_unreadable`` and recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metric_platform.db import write_transaction
from metric_platform.engine.store import manifest
from metric_platform.engine.store.records import Entry
from metric_platform.engine.store.schema import engine_entries
from metric_platform.errors import InvalidRequestError, StorageError

_NAMED = 3  # entries named in a message


class UnreadableEntryError(StorageError):
    """The files of ``entries`` are missing or unreadable; drop them and recompute."""

    def __init__(self, message: str, entries: Sequence[Entry]) -> None:
        super().__init__(message)
        self.entries: tuple[Entry, ...] = tuple(entries)

    def __reduce__(self) -> tuple[type[UnreadableEntryError], tuple[str, tuple[Entry, ...]]]:
        # Exceptions pickle their args only; keep the entries across process boundaries.
        return (type(self), (str(self), self.entries))


def open_file(path: Path) -> pl.LazyFrame | str:
    """A LazyFrame over ``path`` with its footer already read, or why the file cannot be read."""
    if not path.is_file():
        return "is missing"
    try:
        frame = pl.scan_parquet(path)
        frame.collect_schema()  # reads the Parquet footer, so a truncated or corrupt file fails here
    except (pl.exceptions.PolarsError, OSError) as exc:
        return f"is unreadable ({exc})"
    return frame


def unreadable_error(problems: Sequence[tuple[Sequence[Entry], Path, str]]) -> UnreadableEntryError:
    """One error for every (entries, file, problem) found by a scan."""
    parts = [f"the file of {names(group)} {problem}: {path}" for group, path, problem in problems]
    msg = (
        "; ".join(parts) + ". It was deleted or damaged outside the store (or the entry was replaced "
        "longer ago than the grace period); the engine drops such entries and recomputes them on the "
        "next request."
    )
    return UnreadableEntryError(msg, [entry for group, _, _ in problems for entry in group])


def drop_unreadable(
    engine: Engine, data_dir: Path, entries: Sequence[Entry], *, retire_after: datetime
) -> int:
    """Delete the rows of ``entries`` whose file is missing or unreadable and that no writer replaced.

    Files are checked before the write transaction (a path is never rewritten or reused, so the
    verdict cannot change), which keeps the SQLite write lock short. Returns the rows deleted.
    """
    verdicts: dict[Path, bool] = {}
    suspects: list[Entry] = []
    for entry in entries:
        if not isinstance(entry, Entry):
            msg = f"drop_unreadable takes Entry values (from a scan error or get), got {type(entry).__name__}"
            raise InvalidRequestError(msg)
        if entry.path not in verdicts:
            verdicts[entry.path] = isinstance(open_file(entry.path), str)
        if verdicts[entry.path]:
            suspects.append(entry)
    if not suspects:
        return 0
    with write_transaction(engine) as conn:
        manifest.lock_bases(conn, [entry.key for entry in suspects])
        locked = manifest.lock_rows(conn, [entry.entry_id for entry in suspects])
        rows = {int(row.id): row for row in locked}
        doomed: dict[int, str] = {}
        for entry in suspects:
            row = rows.get(entry.entry_id)
            if row is None:
                continue
            # A row that a concurrent writer replaced (new version, new file) is left alone.
            current = manifest.row_to_entry(row, data_dir)
            if (current.key, current.version, current.path) == (entry.key, entry.version, entry.path):
                doomed[entry.entry_id] = str(row.parquet_path)
        if not doomed:
            return 0
        conn.execute(sa.delete(engine_entries).where(engine_entries.c.id.in_(manifest.id_list(doomed))))
        owners = {path: rows[entry_id].ac_name for entry_id, path in doomed.items()}
        # A damaged file still takes space: retire it like a deleted entry's (kept while referenced).
        manifest.retire_unreferenced(conn, owners, retire_after)
    return len(doomed)


def names(group: Sequence[Entry]) -> str:
    """The first few entries of ``group`` for a message, e.g. ``entry ac/METRIC/x[a] v2``."""
    shown = ", ".join(f"entry {e.key.describe()} v{e.version}" for e in group[:_NAMED])
    more = len(group) - _NAMED
    return f"{shown} (and {more} more)" if more > 0 else shown
