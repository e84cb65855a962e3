"""Reading entries back: one entry's file, or the union of many slices from few shared files.

Reading 730 one-day files took 71 ms against 2.8 ms for one file, so ``scan_slices`` opens each
distinct file once and filters it to the requested days, and skips the filter when every slice
the file was written with is requested.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl

from metric_platform.engine.store.keys import WHOLE_ENTRY, EntryKey
from metric_platform.engine.store.records import Entry
from metric_platform.engine.store.unreadable import names, open_file, unreadable_error
from metric_platform.errors import InvalidRequestError, StorageError


def open_entry(entry: Entry) -> pl.LazyFrame:
    """A LazyFrame over the entry's whole file, its footer read now so a corrupt file fails here.

    A missing or unreadable file is an ``UnreadableEntryError`` naming the entry.
    """
    opened = open_file(entry.path)
    if isinstance(opened, str):
        raise unreadable_error([([entry], entry.path, opened)])
    return opened


def scan_slices(entries: Sequence[Entry], *, schema: pl.Schema | None = None) -> pl.LazyFrame:
    """The rows of all ``entries`` (slices or whole entries) as one LazyFrame.

    Each distinct file is scanned once; a shared file is filtered on its slice column to the
    requested days unless all of its slices are requested. Whole entries and one-key files are
    read unfiltered. Files are concatenated in the order their first entry appears; rows keep the
    file's order (grouped by slice), so sort if you need an order across files.

    With no entries the schema is unknown: pass ``schema`` to get an empty frame, otherwise it is
    an InvalidRequestError. ``schema`` is used only then. Files of different schemas are a
    StorageError naming the entries; missing or unreadable files one ``UnreadableEntryError``
    carrying every entry they hold (all files are checked, so one drop heals them all).
    """
    if not entries:
        if schema is None:
            msg = "scan_slices got no entries; pass schema= to get an empty frame of known columns"
            raise InvalidRequestError(msg)
        return pl.LazyFrame(schema=schema)
    by_path = _group_by_path(entries)
    opened: list[tuple[pl.LazyFrame, list[Entry]]] = []
    problems: list[tuple[list[Entry], Path, str]] = []
    for path, group in by_path.items():
        frame = open_file(path)
        if isinstance(frame, str):
            problems.append((group, path, frame))
        else:
            opened.append((frame, group))
    if problems:
        raise unreadable_error(problems)
    frames: list[pl.LazyFrame] = []
    first_schema: pl.Schema | None = None
    first_group: list[Entry] = []
    for frame, group in opened:
        got = frame.collect_schema()
        if first_schema is None:
            first_schema, first_group = got, group
        elif got != first_schema:
            msg = (
                f"scan_slices cannot combine files of different schemas: {names(first_group)} has "
                f"{dict(first_schema)} but {names(group)} has {dict(got)}. Delete the stale entries "
                "so that they are recomputed, or scan them separately."
            )
            raise StorageError(msg)
        condition = _slice_filter(group)
        frames.append(frame if condition is None else frame.filter(condition))
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")


def _group_by_path(entries: Sequence[Entry]) -> dict[Path, list[Entry]]:
    by_path: dict[Path, list[Entry]] = {}
    seen: dict[EntryKey, Entry] = {}
    for entry in entries:
        if not isinstance(entry, Entry):
            msg = f"scan_slices takes Entry values (from list_slices or get), got {type(entry).__name__}"
            raise InvalidRequestError(msg)
        earlier = seen.setdefault(entry.key, entry)
        if earlier is entry:
            by_path.setdefault(entry.path, []).append(entry)
        elif earlier.path != entry.path:
            # Two versions of one slice would read its rows twice.
            msg = (
                f"scan_slices got two versions of {entry.key.describe()} (v{earlier.version} and "
                f"v{entry.version}); pass each slice once, e.g. from one list_slices call"
            )
            raise InvalidRequestError(msg)
    return by_path


def _slice_filter(group: Sequence[Entry]) -> pl.Expr | None:
    """The filter that keeps only the group's slices of their shared file, or None for all rows."""
    column = group[0].slice_column
    if column is None or any(e.key.slice_key == WHOLE_ENTRY or e.slice_column != column for e in group):
        return None
    total = group[0].file_slice_count
    if total is not None and len(group) >= total:
        return None
    return pl.col(column).is_in(sorted(date.fromisoformat(e.key.slice_key) for e in group))
