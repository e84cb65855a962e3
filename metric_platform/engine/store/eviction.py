"""Manifest statements for eviction: byte totals, eviction units, and deleting chosen units safely.

The policy (which units to evict) is the lifecycle's; this module reads what it chooses from and
deletes what it chose. A unit is the set of unpinned rows of one base key that share one file, so
evicting it frees a whole file. The deletion re-checks every chosen row under lock: a row
replaced (new version or file), pinned or deleted since the units were read is skipped and
counted, never deleted by mistake. Files are retired, not deleted: a LazyFrame planned before the
eviction still collects during the grace period, and the sweep deletes them afterwards.

Each function runs on a connection inside a transaction the caller opened, taking its locks in
the manifest's order (see ``manifest``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from metric_platform.engine.store import manifest
from metric_platform.engine.store.keys import WHOLE_ENTRY, Domain, EntryKey
from metric_platform.engine.store.records import ByteTotals, EvictionResult, EvictionUnit
from metric_platform.engine.store.schema import engine_entries
from metric_platform.errors import InvalidRequestError

# The first key of the eviction locks' two-key advisory space ("mp_e" as a signed 32-bit int).
# PostgreSQL keeps that space apart from the one-key space of the base locks and migrations.
_EVICTION_LOCK_CLASS = 0x6D705F65


def lock_eviction(conn: Connection, ac_name: str) -> None:
    """Serialise the evictors of ``ac_name`` until commit (PostgreSQL; SQLite already is).

    The second evictor then reads the totals the first left, so two never both evict for one
    overshoot. Taken first and only by evictors (the manifest's lock order, level 0).
    """
    if conn.dialect.name != "postgresql":
        return  # BEGIN IMMEDIATE already gives the evictor the whole database
    digest = hashlib.sha256(f"engine_evict\0{ac_name}".encode()).digest()
    # A collision of two ACs' ids only serialises their evictions.
    ac_id = int.from_bytes(digest[:4], "big", signed=True)
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:cls, :ac)"), {"cls": _EVICTION_LOCK_CLASS, "ac": ac_id}
    )


def byte_totals(conn: Connection, ac_name: str) -> ByteTotals:
    """The AC's manifest bytes, unpinned and pinned, in one query."""
    c = engine_entries.c
    is_pinned = c.pinned == sa.true()
    query = sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((is_pinned, 0), else_=c.byte_size)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((is_pinned, c.byte_size), else_=0)), 0),
    ).where(c.ac_name == ac_name)
    evictable, pinned = conn.execute(query).one()
    return ByteTotals(evictable=int(evictable), pinned=int(pinned))


def eviction_units(conn: Connection, ac_name: str, *, domain: Domain | None) -> list[EvictionUnit]:
    """The AC's unpinned rows grouped by (domain, dataset, anchor, file); by those, in one query."""
    c = engine_entries.c
    unit_columns = (c.domain, c.dataset_id, c.anchor_signature, c.parquet_path)
    query: sa.Select[Any] = (
        sa.select(
            *unit_columns,
            c.id,
            c.version,
            c.slice_key,
            c.byte_size,
            c.row_count,
            c.last_access_at,
            c.access_count,
        )
        .where(c.ac_name == ac_name, c.pinned == sa.false())
        .order_by(*unit_columns, c.slice_key)
    )
    if domain is not None:
        query = query.where(c.domain == domain.value)
    units: list[EvictionUnit] = []
    group: list[Row[Any]] = []
    for row in conn.execute(query):
        if group and _unit_of(group[0]) != _unit_of(row):
            units.append(_to_unit(ac_name, group))
            group = []
        group.append(row)
    if group:
        units.append(_to_unit(ac_name, group))
    return units


@dataclass(frozen=True)
class _Checked:
    """Chosen rows split by what happened to them since they were read."""

    deletable: dict[int, Row[Any]]
    skipped: int


def delete_units(
    conn: Connection,
    ac_name: str | None,
    units: Sequence[EvictionUnit],
    *,
    retire_after: datetime,
    dry_run: bool = False,
) -> EvictionResult:
    """Delete the units' rows that are still as read and unpinned; retire files left unreferenced.

    ``ac_name`` is the AC the units were read for, or None to find it from the rows (the units'
    base keys are locked before their rows, in the manifest's order). ``dry_run`` changes
    nothing, takes no lock and reports what the deletion would do now.
    """
    wanted = _wanted_rows(units)
    units = list(dict.fromkeys(units))  # a unit passed twice is evicted (and counted) once
    if not wanted:
        return EvictionResult(rows_deleted=0, bytes_freed=0, files_retired=0, rows_skipped=0)
    if dry_run:
        rows = _select_rows(conn, wanted, lock=False)
    else:
        acs = [ac_name] if ac_name is not None else _ac_names(conn, wanted)
        manifest.lock_bases(conn, [_base(ac, unit) for ac in acs for unit in units])
        rows = _select_rows(conn, wanted, lock=True)
    checked = _check(units, rows)
    doomed = checked.deletable
    freed = sum(int(row.byte_size) for row in doomed.values())
    owners = {str(row.parquet_path): str(row.ac_name) for row in doomed.values()}
    if dry_run:
        retired = _unreferenced_after(conn, owners, doomed)
    else:
        if doomed:
            conn.execute(sa.delete(engine_entries).where(engine_entries.c.id.in_(manifest.id_list(doomed))))
        retired = len(manifest.retire_unreferenced(conn, owners, retire_after))
    return EvictionResult(
        rows_deleted=len(doomed), bytes_freed=freed, files_retired=retired, rows_skipped=checked.skipped
    )


def check_chosen(units: Sequence[EvictionUnit], chosen: Sequence[EvictionUnit]) -> list[EvictionUnit]:
    """The policy's choice as a list, refused unless it is made of the offered units, each once."""
    offered = set(units)
    picked = list(chosen)
    for unit in picked:
        if not isinstance(unit, EvictionUnit) or unit not in offered:
            msg = (
                f"the eviction policy chose {unit!r}, which is not one of the units it was offered; "
                "choose only from the units passed to it"
            )
            raise InvalidRequestError(msg)
    if len(set(picked)) != len(picked):
        msg = "the eviction policy chose a unit twice; choose each unit at most once"
        raise InvalidRequestError(msg)
    return picked


def _wanted_rows(units: Sequence[EvictionUnit]) -> dict[int, tuple[EvictionUnit, int]]:
    wanted: dict[int, tuple[EvictionUnit, int]] = {}
    for unit in units:
        if not isinstance(unit, EvictionUnit):
            msg = f"eviction takes EvictionUnit values (from eviction_units), got {type(unit).__name__}"
            raise InvalidRequestError(msg)
        for entry_id, version in unit.rows:
            wanted[int(entry_id)] = (unit, int(version))
    return wanted


def _ac_names(conn: Connection, wanted: dict[int, tuple[EvictionUnit, int]]) -> list[str]:
    # Read without lock: only to know which base keys to lock. A row whose id now belongs to
    # another key (SQLite may reuse the id of a deleted row) fails the check under lock.
    c = engine_entries.c
    query = sa.select(c.ac_name).distinct().where(c.id.in_(manifest.id_list(wanted)))
    return sorted(str(name) for name in conn.execute(query).scalars())


def _select_rows(
    conn: Connection, wanted: dict[int, tuple[EvictionUnit, int]], *, lock: bool
) -> list[Row[Any]]:
    if lock:
        return manifest.lock_rows(conn, wanted)
    c = engine_entries.c
    return list(conn.execute(sa.select(engine_entries).where(c.id.in_(manifest.id_list(wanted)))).all())


def _check(units: Sequence[EvictionUnit], rows: Sequence[Row[Any]]) -> _Checked:
    """Which chosen rows are still what their unit read: same key, version and file, unpinned."""
    current = {int(row.id): row for row in rows}
    deletable: dict[int, Row[Any]] = {}
    skipped = 0
    for unit in units:
        for entry_id, version in unit.rows:
            row = current.get(int(entry_id))
            if (
                row is not None
                and int(row.version) == version
                and _unit_matches(unit, row)
                and not row.pinned
            ):
                deletable[int(entry_id)] = row
            else:
                skipped += 1
    return _Checked(deletable=deletable, skipped=skipped)


def _unit_matches(unit: EvictionUnit, row: Row[Any]) -> bool:
    return (str(row.domain), str(row.dataset_id), str(row.anchor_signature), str(row.parquet_path)) == (
        unit.domain.value,
        unit.dataset_id,
        ",".join(unit.anchor),
        unit.path,
    )


def _unreferenced_after(conn: Connection, owners: dict[str, str], doomed: dict[int, Row[Any]]) -> int:
    """How many of ``owners``' files no row would reference once ``doomed`` were deleted."""
    if not owners:
        return 0
    c = engine_entries.c
    query = sa.select(c.parquet_path).distinct().where(c.parquet_path.in_(sorted(owners)))
    if doomed:
        query = query.where(c.id.not_in(manifest.id_list(doomed)))
    still_referenced = {str(path) for path in conn.execute(query).scalars()}
    return len(set(owners) - still_referenced)


def _base(ac_name: str, unit: EvictionUnit) -> EntryKey:
    return EntryKey(ac_name, unit.domain, unit.dataset_id, unit.anchor)


def _unit_of(row: Row[Any]) -> tuple[str, str, str, str]:
    return (str(row.domain), str(row.dataset_id), str(row.anchor_signature), str(row.parquet_path))


def _to_unit(ac_name: str, rows: Sequence[Row[Any]]) -> EvictionUnit:
    first = rows[0]
    key = EntryKey.from_signature(ac_name, Domain(first.domain), first.dataset_id, first.anchor_signature)
    days = [date.fromisoformat(str(row.slice_key)) for row in rows if row.slice_key != WHOLE_ENTRY]
    return EvictionUnit(
        domain=key.domain,
        dataset_id=key.dataset_id,
        anchor=key.anchor,
        path=str(first.parquet_path),
        rows=tuple((int(row.id), int(row.version)) for row in rows),
        byte_size=sum(int(row.byte_size) for row in rows),
        row_count=sum(int(row.row_count) for row in rows),
        last_access_at=max(row.last_access_at for row in rows),
        access_count=max(int(row.access_count) for row in rows),
        first_day=min(days) if days else None,
        last_day=max(days) if days else None,
    )
