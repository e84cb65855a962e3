"""Opening the manifest database, and what a dry run opens instead when that would write.

A real open creates a SQLite file's directory and the file, switches it to WAL and migrates the
tables to head: every step a write. A dry run (:mod:`metric_platform.write_guard`) must leave the
installation exactly as it was, so it opens the real manifest only when it can be read as it is
(a SQLite file already in WAL mode, or a PostgreSQL database, at the head revision). Otherwise it
stands in a private in-memory SQLite manifest, migrated to head: reads see an empty store, and
in-memory databases are exempt from the write backstop (nothing they hold is persisted).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from metric_platform import write_guard
from metric_platform.db import create_db_engine, memory_stand_in_url, readable_without_writing
from metric_platform.engine.store.migrations_runner import current_revision, head_revision, migrate


@dataclass(frozen=True)
class OpenedManifest:
    """The manifest engine, and whether it is a dry run's in-memory stand-in for the real one."""

    engine: Engine
    stand_in: bool


def open_manifest(url: str) -> OpenedManifest:
    """The manifest at ``url`` migrated to head; under a dry run, see the module docstring."""
    if not write_guard.is_dry_run():
        return OpenedManifest(_migrated(create_db_engine(url)), stand_in=False)
    if readable_without_writing(url):
        engine = create_db_engine(url)
        try:
            at_head = current_revision(engine) == head_revision()
        except BaseException:
            engine.dispose()
            raise
        if at_head:
            return OpenedManifest(engine, stand_in=False)
        engine.dispose()
    return OpenedManifest(_migrated(create_db_engine(memory_stand_in_url())), stand_in=True)


def _migrated(engine: Engine) -> Engine:
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
