"""Where a backend reads from, and cheap change detectors for one table (seed 003 §6 provenance).

The engine stores, with every entry, a fingerprint of the source it was computed from, so an entry
computed from one source is never served for another, and a QM entry (or dimension map) computed
before its table changed is recomputed. Identities never hold a secret: no password, no URL query
other than libpq's ``options`` (which may pick another search_path, hence other tables).

Stamps are change *detectors*, not content hashes: when the data changes they change (within the lag
documented per source below); they may also change without a data change (a recompute, never a
stale answer).

- Parquet: size and ``mtime_ns`` of the table's file, or of every file under its directory. No lag;
  missed only by a rewrite of the same size that keeps the old mtime (``cp -p``, ``rsync -t``) or
  lands in the same tick of a coarse-timestamp filesystem.
- SQLite: size and ``mtime_ns`` of the database file and of its ``-wal`` file (WAL writes reach the
  main file only at a checkpoint), so any write to the database changes every table's stamp.
  ``PRAGMA data_version`` would be finer but only means something within one connection.
- PostgreSQL: see :func:`postgres_stamp`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from metric_platform.errors import SourceError
from metric_platform.semantics.spec import SchemaSpec

if TYPE_CHECKING:
    from metric_platform.backends.protocol import DataAPIBackend


def fingerprint(identity: str, stamp: str | None = None) -> str:
    """The value stored as ``EntryMeta.source_fingerprint``: a digest (64 hex characters), since an
    identity holds a path of any length and the manifest column holds 128 characters."""
    text = identity if stamp is None else f"{identity}\n{stamp}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_fingerprint(backend: DataAPIBackend) -> str:
    """What a METRIC slice records: where it was read from (not when: slices follow the stability
    cutoff, not every append to the fact table)."""
    return fingerprint(backend.source_identity())


def table_fingerprint(backend: DataAPIBackend, schema: str) -> str:
    """What a QM entry or dimension map records: the source and the change stamp of its table.
    Take it before reading the rows, so it is never newer than what was computed."""
    return fingerprint(backend.source_identity(), backend.table_stamp(schema))


def unstamped() -> str:
    """A stamp for a source with no cheap change signal (a view, an in-memory database): unique per
    call, so whatever was computed from it is recomputed rather than served stale."""
    return f"unstamped:{uuid.uuid4().hex}"


def files_stamp(path: Path) -> str:
    """``size-mtime_ns`` of a file; for a directory, of every file under it (count and a digest)."""
    if path.is_file():
        info = path.stat()
        return f"{info.st_size}-{info.st_mtime_ns}"
    files = sorted(p for p in path.rglob("*") if p.is_file())
    lines = []
    for file in files:
        info = file.stat()
        lines.append(f"{file.relative_to(path)}\t{info.st_size}\t{info.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]
    return f"{len(files)}files-{digest}"


def sqlite_database(url: URL) -> Path | None:
    """The file a SQLite URL opens (also in the ``file:...?mode=ro`` form), or None in memory."""
    database = url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if database in ("", ":memory:"):
        return None
    return Path(database).resolve()


def sqlite_stamp(database: Path) -> str:
    """The database file's and its WAL file's ``size-mtime_ns``."""
    try:
        stamp = files_stamp(database)
    except OSError as exc:
        msg = f"cannot stat the SQLite source {database}: {exc}; check that the file exists"
        raise SourceError(msg) from exc
    wal = database.with_name(database.name + "-wal")
    try:
        return f"{stamp}+wal:{files_stamp(wal)}"
    except OSError:  # no WAL file (rollback journal, or checkpointed and removed): nothing pending
        return stamp


def postgres_identity(url: URL) -> str:
    """``postgresql://user@host:port/database`` (no password), with the URL's libpq ``options``."""
    host = url.host or _query_text(url.query, "host") or "local-socket"
    user = f"{url.username}@" if url.username else ""
    identity = f"postgresql://{user}{host}:{url.port or 5432}/{url.database or ''}"
    options = _query_text(url.query, "options")
    return f"{identity}?options={options}" if options else identity


def _query_text(query: Mapping[str, str | tuple[str, ...]], name: str) -> str:
    value = query.get(name)
    return " ".join(value) if isinstance(value, tuple) else (value or "")


# One row per relation holding the rows: the table itself, or every leaf partition of a partitioned
# table, with whether it has storage of its own (a foreign-table partition has none).
_PG_STAMP = sa.text(
    """
    WITH target AS (SELECT to_regclass(:name) AS oid),
    leaves AS (
        SELECT t.relid FROM target, pg_partition_tree(target.oid) AS t WHERE t.isleaf
        UNION
        SELECT c.oid FROM target JOIN pg_class AS c ON c.oid = target.oid WHERE c.relkind <> 'p'
    )
    SELECT l.relid::oid::bigint AS oid, c.relkind IN ('r', 'm') AS stored,
           pg_relation_filenode(l.relid) AS node, pg_relation_size(l.relid) AS size,
           s.n_tup_ins, s.n_tup_upd, s.n_tup_del
    FROM leaves AS l
    JOIN pg_class AS c ON c.oid = l.relid
    LEFT JOIN pg_stat_all_tables AS s ON s.relid = l.relid
    ORDER BY 1
    """
)
_PG_EXISTS = sa.text("SELECT to_regclass(:name) IS NOT NULL")


def postgres_stamp(conn: Connection, spec: SchemaSpec) -> str:
    """Per relation holding the rows (the table, or each leaf partition): oid,
    ``pg_relation_filenode``, ``pg_relation_size`` and the ``pg_stat_all_tables`` counters
    ``n_tup_ins``/``n_tup_upd``/``n_tup_del``.

    What each catches, and its lag. The oid and filenode change at the commit of DROP/CREATE,
    TRUNCATE (which counts no deleted rows), VACUUM FULL and CLUSTER; the size as soon as the file
    grows. Rows inserted, updated or deleted within existing pages show only in the counters, which
    the writing session flushes after its transaction: at once when it disconnects or when its last
    flush is over a second old, else when its idle timer fires, up to 10 s later (measured on
    PostgreSQL 15; a session that stays busy flushes at least every minute; before 15, the stats
    collector lagged ~0.5 s and could drop messages under load). Counters are not replicated: on a
    physical standby only size and filenode move. A stats reset changes the stamp (a recompute, not
    a stale answer). A view or a foreign table (or partition) has no such signal: :func:`unstamped`.
    """
    name = _regclass_name(conn, spec)
    if not conn.execute(_PG_EXISTS, {"name": name}).scalar():
        where = f"{spec.db_schema}.{spec.table}" if spec.db_schema else spec.table
        msg = (
            f"schema {spec.name!r}: table {where!r} does not exist in the source database; "
            "load the data or fix the table name in the AC"
        )
        raise SourceError(msg)
    rows = conn.execute(_PG_STAMP, {"name": name}).all()
    if not rows or not all(row.stored for row in rows):
        return unstamped()
    return ",".join(
        ":".join("-" if v is None else str(v) for v in (r.oid, r.node, r.size, *r[4:])) for r in rows
    )


def _regclass_name(conn: Connection, spec: SchemaSpec) -> str:
    """The (schema-qualified) name quoted as PostgreSQL does, so mixed case resolves as SQLAlchemy's
    quoted table name does; unqualified, it resolves through the session's search_path."""
    preparer = conn.dialect.identifier_preparer
    table = preparer.quote(spec.table)
    return f"{preparer.quote_schema(spec.db_schema)}.{table}" if spec.db_schema else table
