"""Manifest statements, each run on a connection inside a transaction the caller opened.

Read-then-write statements lock what they read (``FOR UPDATE``; a no-op under SQLite's
``BEGIN IMMEDIATE``), so concurrent publishers of one key serialise instead of losing a file.

Files may be shared by the slices of one base key (``publish_slices``), so a file is retired only
when no row references it any more. Every writer first takes ``lock_bases`` for the base keys it
touches: on PostgreSQL that serialises the writers of one base key, so "is this path still
referenced?" cannot race with another writer replacing the file's other slices.

Lock order on PostgreSQL, the same in every write path so that no two transactions can wait on
each other in a cycle (SQLite has one write lock per database and cannot deadlock):

0. the AC's eviction lock (``eviction.lock_eviction``), an advisory lock of the two-key space, so
   it can never equal a base key's lock. Only ``evict`` takes it, as its very first lock;
1. the advisory locks of the base keys (``lock_bases``), by ascending lock id: one fixed total
   order of base keys;
2. ``engine_entries`` rows, by the key columns (``sort_key``; ``ORDER BY ... FOR UPDATE``);
3. ``engine_pending_deletions`` rows, by path;
4. one ``engine_requests`` row (``record_access`` with a request; ``requests``).

Every writer of ``engine_entries`` rows holds the advisory locks of their base keys, except
``record_access``, whose access stamps are best-effort: it takes its rows ``FOR UPDATE SKIP LOCKED``
and never waits for them. The sweeper takes pending rows ``SKIP LOCKED`` too. A transaction that
never waits cannot close a cycle.

Why the eviction lock (0) cannot close a cycle: a transaction waiting for it holds no lock yet
(``evict`` takes it first), so nobody can be waiting for that transaction; and its holder goes
on to take only locks of levels 1-3, in order, like any writer. Publishers never take it, so
eviction never delays a serve beyond the base keys it evicts.

Why the requests row (4) cannot close a cycle: ``record_access`` takes it after everything else
and then commits, one row per transaction; ``prune_requests`` deletes with ``SKIP LOCKED`` and
touches nothing else. The holder of a requests row therefore never waits for anything, so a
``record_access`` waiting for that row (while holding the entry rows it stamped) always gets it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from metric_platform.db import dialect_insert
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry, EntryMeta
from metric_platform.engine.store.schema import (
    KEY_COLUMNS,
    engine_entries,
    engine_meta,
    engine_pending_deletions,
)
from metric_platform.errors import StorageError

_UPSERT_ATTEMPTS = 3


def key_condition(key: EntryKey) -> sa.ColumnElement[bool]:
    return sa.and_(base_condition(key), engine_entries.c.slice_key == key.slice_key)


def base_condition(key: EntryKey) -> sa.ColumnElement[bool]:
    """Rows of ``key``'s base key: the whole entry and every slice of (ac, domain, dataset, anchor)."""
    c = engine_entries.c
    return sa.and_(
        c.ac_name == key.ac_name,
        c.domain == key.domain.value,
        c.dataset_id == key.dataset_id,
        c.anchor_signature == key.anchor_signature,
    )


def lock_bases(conn: Connection, keys: Iterable[EntryKey]) -> None:
    """Serialise the writers of these keys' base keys until commit (PostgreSQL; SQLite already is).

    Locks are taken in one sorted order, so two writers of several base keys never deadlock.
    """
    if conn.dialect.name != "postgresql":
        return  # BEGIN IMMEDIATE already gives the writer the whole database
    for lock_id in sorted({_base_lock_id(key) for key in keys}):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


def lock_rows(conn: Connection, ids: Iterable[int]) -> list[Row[Any]]:
    """Lock the rows with these ids (caller holds their bases' ``lock_bases``), in key order."""
    c = engine_entries.c
    query = (
        sa.select(engine_entries)
        .where(c.id.in_(id_list(ids)))
        .order_by(*(c[name] for name in KEY_COLUMNS))
        .with_for_update()
    )
    return list(conn.execute(query).all())


def id_list(ids: Iterable[int]) -> sa.BindParameter[list[int]]:
    """Row ids for an ``IN``, rendered inline: one statement for any number of rows, with no limit
    on the driver's bind parameters (SQLite 32766, psycopg 65535)."""
    return sa.bindparam("ids", sorted({int(i) for i in ids}), expanding=True, literal_execute=True)


def retire_unreferenced(conn: Connection, owners: Mapping[str, str], delete_after: datetime) -> list[str]:
    """Queue for deletion the files of ``owners`` (path -> AC) that no row references any more.

    Call it after the transaction's row changes; returns the paths it retired.
    """
    paths = sorted(owners)
    if not paths:
        return []
    path = engine_entries.c.parquet_path
    query = sa.select(path).distinct().where(path.in_(paths))
    still_referenced = {str(p) for p in conn.execute(query).scalars()}
    retired = [p for p in paths if p not in still_referenced]
    if retired:
        pending = engine_pending_deletions
        # A path already pending (only if a writer skipped these rules) restarts its grace.
        insert = dialect_insert(conn, pending)
        insert = insert.on_conflict_do_update(
            index_elements=[pending.c.path], set_={"delete_after": insert.excluded.delete_after}
        )
        values = [{"path": p, "ac_name": owners[p], "delete_after": delete_after} for p in retired]
        conn.execute(insert, values)
    return retired


def select_row(conn: Connection, key: EntryKey, *, for_update: bool = False) -> Row[Any] | None:
    query = sa.select(engine_entries).where(key_condition(key))
    if for_update:
        query = query.with_for_update()
    return conn.execute(query).first()


def upsert_entry(
    conn: Connection,
    key: EntryKey,
    meta: EntryMeta,
    *,
    parquet_path: str,
    row_count: int,
    byte_size: int,
    now: datetime,
) -> tuple[Row[Any], str | None]:
    """Point ``key`` at a new file; return the new row and the replaced file's path (or None).

    A whole entry has no ``slice_end`` and is never provisional; a slice key gets its own day as
    ``slice_end``. A replacement keeps the row id, access count and an existing pin, and bumps the version.
    """
    # A slice published alone covers its day (publish_slices records longer buckets).
    content = content_values(
        meta, parquet_path=parquet_path, row_count=row_count, byte_size=byte_size, slice_end=key.slice_day
    )
    for _ in range(_UPSERT_ATTEMPTS):
        old = select_row(conn, key, for_update=True)
        if old is not None:
            values = {
                **content,
                "version": old.version + 1,
                "materialized_at": now,
                "last_access_at": now,
                "pinned": bool(old.pinned or meta.pinned),
            }
            conn.execute(sa.update(engine_entries).where(engine_entries.c.id == old.id).values(**values))
            return _reselect(conn, key), str(old.parquet_path)
        insert = dialect_insert(conn, engine_entries).values(
            **key_values(key),
            **content,
            version=1,
            materialized_at=now,
            last_access_at=now,
            access_count=0,
            pinned=meta.pinned,
        )
        # On PostgreSQL a concurrent publisher may insert the key between our SELECT and INSERT;
        # DO NOTHING waits for it to commit, and the next loop locks and replaces its row.
        # RETURNING, not rowcount: on psycopg a skipped insert reports rowcount -1 (truthy), and a
        # concurrent publish was silently lost that way in the multi-process test.
        statement = insert.on_conflict_do_nothing(index_elements=list(KEY_COLUMNS)).returning(
            engine_entries.c.id
        )
        if conn.execute(statement).first() is not None:
            return _reselect(conn, key), None
    msg = f"could not publish {key.describe()}: the key kept changing under concurrent publishers; retry"
    raise StorageError(msg)


def upsert_meta(conn: Connection, ac_name: str, key: str, value: str) -> None:
    insert = dialect_insert(conn, engine_meta).values(ac_name=ac_name, key=key, value=value)
    conn.execute(insert.on_conflict_do_update(index_elements=["ac_name", "key"], set_={"value": value}))


def row_to_entry(row: Row[Any], data_dir: Path) -> Entry:
    key = EntryKey.from_signature(
        row.ac_name, Domain(row.domain), row.dataset_id, row.anchor_signature, row.slice_key
    )
    meta = EntryMeta(
        operator=row.operator,
        partition_invariant=None if row.partition_invariant is None else bool(row.partition_invariant),
        mvt=row.mvt,
        imputation_value=row.imputation_value,
        family_fingerprint=row.family_fingerprint,
        source_schemas=tuple(json.loads(row.source_schemas)),
        source_filter=row.source_filter,
        stability_cutoff=row.stability_cutoff,
        verification_level=row.verification_level,
        source_fingerprint=row.source_fingerprint,
        pinned=bool(row.pinned),
    )
    return Entry(
        key=key,
        entry_id=int(row.id),
        version=int(row.version),
        path=data_dir.joinpath(*str(row.parquet_path).split("/")),
        row_count=int(row.row_count),
        byte_size=int(row.byte_size),
        materialized_at=row.materialized_at,
        last_access_at=row.last_access_at,
        access_count=int(row.access_count),
        meta=meta,
        slice_column=row.slice_column,
        file_slice_count=None if row.file_slice_count is None else int(row.file_slice_count),
        slice_end=row.slice_end,
        provisional=bool(row.provisional),
    )


def sort_key(key: EntryKey) -> tuple[str, str, str, str, str]:
    """The order in which a transaction locks several keys (the same everywhere, so no deadlock)."""
    return _key_values(key)


def key_values(key: EntryKey) -> dict[str, str]:
    """The key columns of ``key``'s row, by column name."""
    return dict(zip(KEY_COLUMNS, _key_values(key), strict=True))


def _key_values(key: EntryKey) -> tuple[str, str, str, str, str]:
    return (key.ac_name, key.domain.value, key.dataset_id, key.anchor_signature, key.slice_key)


def _base_lock_id(key: EntryKey) -> int:
    # A signed 64-bit advisory-lock id; a collision only serialises two unrelated base keys.
    text = "\0".join(("engine_base", key.ac_name, key.domain.value, key.dataset_id, key.anchor_signature))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def content_values(
    meta: EntryMeta,
    *,
    parquet_path: str,
    row_count: int,
    byte_size: int,
    slice_column: str | None = None,
    file_slice_count: int | None = None,
    slice_end: date | None = None,
) -> dict[str, Any]:
    """The non-key columns a publish writes (a replacement overwrites every one of them).

    A slice ending after the cutoff it was computed under is provisional; a whole entry
    (``slice_end`` None) never is.
    """
    cutoff = meta.stability_cutoff
    return {
        "parquet_path": parquet_path,
        "slice_column": slice_column,
        "file_slice_count": file_slice_count,
        "slice_end": slice_end,
        "provisional": slice_end is not None and cutoff is not None and slice_end > cutoff,
        "operator": meta.operator,
        "partition_invariant": meta.partition_invariant,
        "mvt": meta.mvt,
        "imputation_value": meta.imputation_value,
        "family_fingerprint": meta.family_fingerprint,
        "source_schemas": json.dumps(list(meta.source_schemas)),
        "source_filter": meta.source_filter,
        "source_fingerprint": meta.source_fingerprint,
        "row_count": row_count,
        "byte_size": byte_size,
        "stability_cutoff": meta.stability_cutoff,
        "verification_level": meta.verification_level,
    }


def _reselect(conn: Connection, key: EntryKey) -> Row[Any]:
    row = select_row(conn, key)
    assert row is not None, "the row written in this transaction must be visible to it"
    return row
