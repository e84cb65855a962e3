"""Snapshots of everything a run may persist, read without writing: files, database rows, ledger.

The readers never create or migrate anything (a missing SQLite file reads as no tables), so a test
can assert that a run wrote nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from metric_platform.db import create_db_engine
from metric_platform.ledger.events import StoredEvent
from metric_platform.ledger.store import RunEventStore
from metric_platform.settings import Settings

# Columns a read changes by design (LRU and promotion inputs): "unchanged but for reads" skips them.
ACCESS_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "engine_entries": ("last_access_at", "access_count"),
    "engine_requests": ("hits",),
}

Rows = dict[str, list[tuple[Any, ...]]]


def database_urls(settings: Settings) -> tuple[str, ...]:
    """The engine manifest's and the platform database's URLs (one when they are the same)."""
    return tuple(sorted({settings.manifest_url, settings.platform_url}))


# SQLite's WAL index and write-ahead log beside a database: every reader touches them (this
# module's own snapshot reads included), so only their size counts; what they hold is compared as rows.
SQLITE_SIDE_FILES = ("-wal", "-shm")


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime in ns; 0 for SQLite side files);
    {} when ``root`` is absent."""
    if not root.exists():
        return {}
    out: dict[str, tuple[int, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            side = path.name.endswith(SQLITE_SIDE_FILES)
            out[path.relative_to(root).as_posix()] = (stat.st_size, 0 if side else stat.st_mtime_ns)
    return out


def _absent_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and not Path(database).exists()


def db_rows(url: str, *, without_access: bool = False) -> Rows:
    """Every row of every table of the database (its default schema), sorted; {} without tables."""
    if _absent_sqlite_file(url):
        return {}
    engine = create_db_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn)
            out: Rows = {}
            for name, table in sorted(meta.tables.items()):
                skip = ACCESS_COLUMNS.get(name, ()) if without_access else ()
                columns = [c for c in table.columns if c.name not in skip]
                out[name] = sorted((tuple(r) for r in conn.execute(sa.select(*columns))), key=repr)
            return out
    finally:
        engine.dispose()


@dataclass(frozen=True)
class State:
    """What the stores hold: the rows of every database, then every file under the home."""

    rows: dict[str, Rows]
    files: dict[str, tuple[int, int]]


def state(settings: Settings, *, without_access: bool = False, with_files: bool = True) -> State:
    # Rows first: reading a SQLite database in WAL mode keeps side files only while connected.
    rows = {url: db_rows(url, without_access=without_access) for url in database_urls(settings)}
    return State(rows, files_under(settings.home) if with_files else {})


def ledger_events(settings: Settings, run_id: str) -> list[StoredEvent]:
    """The run's events in runSeq order ([] when the platform database has no ledger)."""
    if _absent_sqlite_file(settings.platform_url):
        return []
    engine = create_db_engine(settings.platform_url, read_only=True)
    try:
        if not sa.inspect(engine).has_table("ledger_run_events"):
            return []
        return RunEventStore(engine).events(run_id)
    finally:
        engine.dispose()


def ledger_row_count(settings: Settings) -> int:
    rows = db_rows(settings.platform_url).get("ledger_run_events", [])
    return len(rows)
