"""Opening the manifest database, and what a dry run opens instead when that would write.

A real open creates a SQLite file's directory and the file, switches it to WAL and migrates the
tables to head: every step a write. A dry run (:mod:`metric_platform.write_guard`) must leave the
installation exactly as it was, so it opens the real manifest only when it can be read as it is
(a SQLite file already in WAL mode, or a PostgreSQL database, at the head revision). Otherwise it
stands in a private in-memory SQLite manifest, migrated to head: reads see an empty store, and
in-memory databases are exempt from the write backstop (nothing they hold is persisted).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from metric_platform import write_guard
from metric_platform.db import create_db_engine
from metric_platform.engine.store.migrations_runner import current_revision, head_revision, migrate

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_FORMAT = 2  # header bytes 18-19 (write/read format version): 1 = rollback journal, 2 = WAL


@dataclass(frozen=True)
class OpenedManifest:
    """The manifest engine, and whether it is a dry run's in-memory stand-in for the real one."""

    engine: Engine
    stand_in: bool


def open_manifest(url: str) -> OpenedManifest:
    """The manifest at ``url`` migrated to head; under a dry run, see the module docstring."""
    if not write_guard.is_dry_run():
        return OpenedManifest(_migrated(create_db_engine(url)), stand_in=False)
    if _readable_without_writing(url):
        engine = create_db_engine(url)
        try:
            at_head = current_revision(engine) == head_revision()
        except BaseException:
            engine.dispose()
            raise
        if at_head:
            return OpenedManifest(engine, stand_in=False)
        engine.dispose()
    return OpenedManifest(_migrated(create_db_engine(_stand_in_url())), stand_in=True)


def _migrated(engine: Engine) -> Engine:
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _readable_without_writing(url: str) -> bool:
    """Can a normal connection read ``url`` without creating or changing anything?

    PostgreSQL: yes. An on-disk SQLite file: only when it exists and is already in WAL mode,
    since connecting creates a missing file (and its directory) and switches the journal mode.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return True  # create_db_engine then reports the bad URL with its own message
    if parsed.get_backend_name() != "sqlite":
        return True
    path = _sqlite_file(parsed)
    return path is None or _is_wal_database(path)


def _sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        name, _, options = database[len("file:") :].partition("?")
        if "mode=memory" in options or url.query.get("mode") == "memory":
            return None
        return Path(name)
    return Path(database)


def _is_wal_database(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False
    return len(header) == 20 and header.startswith(_SQLITE_MAGIC) and header[18] == _WAL_FORMAT


def _stand_in_url() -> str:
    # A named shared-cache memory database: every pooled connection (and thread) of the engine
    # sees the same tables, unlike a plain ":memory:" database, which is private to one connection.
    name = f"file:mp_dry_run_{uuid.uuid4().hex}?mode=memory&cache=shared"
    return URL.create("sqlite", database=name, query={"uri": "true"}).render_as_string()
