"""Manifest statements for the slices of one base key, in bulk: a range publish touches hundreds.

Each function runs on a connection inside a transaction the caller opened; a writer must hold
``manifest.lock_bases`` for the base key first, which serialises the read-then-write here on
PostgreSQL (SQLite's ``BEGIN IMMEDIATE`` already does). The rows are also locked, in slice-key
order, so writers that skip the base lock (``record_access``) cannot change them in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from metric_platform.engine.store import manifest
from metric_platform.engine.store.keys import WHOLE_ENTRY, Domain, EntryKey
from metric_platform.engine.store.records import EntryMeta, GrainSummary
from metric_platform.engine.store.schema import engine_entries
from metric_platform.errors import InvalidRequestError

_SHOWN = 5  # slices named in a message


@dataclass(frozen=True)
class SliceRow:
    """One slice's row of a shared file, as ``publish_slices`` computed it."""

    slice_key: str
    meta: EntryMeta
    row_count: int
    byte_size: int
    slice_end: date


def upsert_slices(
    conn: Connection,
    base: EntryKey,
    slices: Sequence[SliceRow],
    *,
    parquet_path: str,
    slice_column: str,
    now: datetime,
) -> tuple[list[Row[Any]], set[str]]:
    """Point every slice of ``slices`` at ``parquet_path``; return the rows and the replaced paths.

    As ``manifest.upsert_entry`` does for one key: a replacement keeps the row id, access count
    and an existing pin, and bumps the version. Four statements whatever the number of slices.
    """
    if not slices:
        return [], set()
    wanted = {item.slice_key for item in slices}
    locked = _rows_between(conn, base, min(wanted), max(wanted), for_update=True)
    existing = {str(row.slice_key): row for row in locked}
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    replaced: set[str] = set()
    # By slice key, the lock order of every writer (see ``manifest``), whatever the caller's order.
    for item in sorted(slices, key=lambda s: s.slice_key):
        content = manifest.content_values(
            item.meta,
            parquet_path=parquet_path,
            row_count=item.row_count,
            byte_size=item.byte_size,
            slice_column=slice_column,
            file_slice_count=len(slices),
            slice_end=item.slice_end,
        )
        old = existing.get(item.slice_key)
        if old is not None:
            replaced.add(str(old.parquet_path))
            pinned = bool(old.pinned or item.meta.pinned)
            updates.append(
                {**content, "b_id": old.id, "version": old.version + 1, "pinned": pinned}
                | {"materialized_at": now, "last_access_at": now}
            )
        else:
            key = EntryKey(base.ac_name, base.domain, base.dataset_id, base.anchor, item.slice_key)
            inserts.append(
                {**manifest.key_values(key), **content, "version": 1, "pinned": item.meta.pinned}
                | {"materialized_at": now, "last_access_at": now, "access_count": 0}
            )
    if updates:
        statement = sa.update(engine_entries).where(engine_entries.c.id == sa.bindparam("b_id"))
        conn.execute(statement, updates)
    if inserts:
        conn.execute(sa.insert(engine_entries), inserts)
    rows = [row for row in _rows_between(conn, base, min(wanted), max(wanted)) if row.slice_key in wanted]
    return rows, replaced


def slice_ends(where: str, days: Sequence[date], ends: Mapping[date, date] | None) -> dict[date, date]:
    """Each slice's last day: ``ends[day]``, or the day itself without ``ends`` (one-day slices).

    Raises InvalidRequestError when ``ends`` misses a slice or ends one before it starts. Days
    in ``ends`` that are not slices are ignored, so a caller may pass the ends of a whole calendar.
    """
    if ends is None:
        return {day: day for day in days}
    if not isinstance(ends, Mapping):
        msg = f"publish_slices of {where}: ends must be a mapping slice day -> last day of its bucket"
        raise InvalidRequestError(msg)
    missing = [day for day in days if day not in ends]
    if missing:
        shown = ", ".join(day.isoformat() for day in missing[:_SHOWN])
        more = f" (and {len(missing) - _SHOWN} more)" if len(missing) > _SHOWN else ""
        msg = (
            f"publish_slices of {where}: ends has no end for slice(s) {shown}{more}; give every slice its end"
        )
        raise InvalidRequestError(msg)
    for day in days:
        end = ends[day]
        if not isinstance(end, date) or isinstance(end, datetime) or end < day:
            msg = (
                f"publish_slices of {where}: the end of slice {day.isoformat()} is {end!r}; "
                "pass the bucket's last day, a datetime.date on or after the slice day"
            )
            raise InvalidRequestError(msg)
    return {day: ends[day] for day in days}


def select_slices(conn: Connection, base: EntryKey, start: date | None, end: date | None) -> list[Row[Any]]:
    """The slice rows of ``base`` with slice day in [start, end], by day (ISO days sort as text)."""
    c = engine_entries.c
    query = sa.select(engine_entries).where(manifest.base_condition(base), c.slice_key != WHOLE_ENTRY)
    if start is not None:
        query = query.where(c.slice_key >= start.isoformat())
    if end is not None:
        query = query.where(c.slice_key <= end.isoformat())
    return list(conn.execute(query.order_by(c.slice_key)).all())


def grain_summaries(
    conn: Connection, ac_name: str, domain: Domain, dataset_id: str
) -> dict[tuple[str, ...], GrainSummary]:
    """One summary per anchor of the dataset, from one GROUP BY."""
    c = engine_entries.c
    is_slice = c.slice_key != WHOLE_ENTRY
    query = (
        sa.select(
            c.anchor_signature,
            sa.func.sum(sa.case((is_slice, 1), else_=0)).label("slice_count"),
            sa.func.min(sa.case((is_slice, c.slice_key))).label("first_key"),
            sa.func.max(sa.case((is_slice, c.slice_key))).label("last_key"),
            sa.func.sum(sa.case((is_slice, c.row_count), else_=0)).label("slice_rows"),
            sa.func.sum(sa.case((is_slice, 0), else_=1)).label("whole_count"),
            sa.func.sum(sa.case((is_slice, 0), else_=c.row_count)).label("whole_rows"),
        )
        .where(c.ac_name == ac_name, c.domain == domain.value, c.dataset_id == dataset_id)
        .group_by(c.anchor_signature)
    )
    summaries: dict[tuple[str, ...], GrainSummary] = {}
    for row in conn.execute(query):
        anchor = EntryKey.from_signature(ac_name, domain, dataset_id, str(row.anchor_signature)).anchor
        summaries[anchor] = GrainSummary(
            anchor=anchor,
            slice_count=int(row.slice_count),
            first_day=None if row.first_key is None else date.fromisoformat(str(row.first_key)),
            last_day=None if row.last_key is None else date.fromisoformat(str(row.last_key)),
            total_rows=int(row.slice_rows),
            has_whole_entry=int(row.whole_count) > 0,
            whole_rows=int(row.whole_rows),
        )
    return summaries


def _rows_between(
    conn: Connection, base: EntryKey, first: str, last: str, *, for_update: bool = False
) -> list[Row[Any]]:
    # A range on the unique index instead of an IN list: no bind-parameter limit at any count.
    c = engine_entries.c
    query = (
        sa.select(engine_entries)
        .where(manifest.base_condition(base), c.slice_key >= first, c.slice_key <= last)
        .order_by(c.slice_key)
    )
    if for_update:
        # Locked in slice-key order (PostgreSQL locks the sorted rows), as ``manifest`` prescribes.
        query = query.with_for_update()
    return list(conn.execute(query).all())


def select_provisional(
    conn: Connection, ac_name: str, *, ended_by: date | None, domain: Domain | None
) -> list[Row[Any]]:
    """The AC's provisional slice rows (ending by ``ended_by`` when given: the stale ones).

    The filter on (ac_name, provisional, slice_end) is a range of ``ix_engine_entries_provisional``.
    """
    c = engine_entries.c
    # "= true", not "IS true": PostgreSQL uses an index only for the former.
    query = sa.select(engine_entries).where(c.ac_name == ac_name, c.provisional == sa.true())
    # Without ended_by, a range that every provisional row is in still constrains the index's
    # third column: SQLite, having no statistics, otherwise prefers the unique key's index for the
    # ORDER BY and reads every row of the AC.
    query = query.where(c.slice_end <= (ended_by or date.max))
    if domain is not None:
        query = query.where(c.domain == domain.value)
    query = query.order_by(c.domain, c.dataset_id, c.anchor_signature, c.slice_key)
    return list(conn.execute(query).all())
