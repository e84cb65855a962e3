"""Open the platform database (ledger, outbox, read-model, alerts) at the schema this code expects.

Under a dry run (:mod:`metric_platform.write_guard`) nothing may be written anywhere, not even an
empty SQLite file, so :func:`open_platform_db` then never migrates or creates anything:

- a database already at head is opened as it is: reads see the real ledger, and every writer
  asks ``write_guard.permit`` first and skips its write (reading a SQLite file in WAL mode makes
  SQLite keep its ``-wal``/``-shm`` side files while connected; it removes them when the last
  connection closes, and the database file itself is not written);
- a database that does not exist yet (no SQLite file) or whose platform tables were never
  created is replaced by an empty in-memory SQLite stand-in at head: the dry run reads what a real
  run would read right after creating it (an empty ledger), and carries on;
- a database at an OLDER revision holds data the stand-in would hide, so the open fails with a
  :class:`StorageError` asking for one run without the dry run (or an explicit migrate) first.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from metric_platform import write_guard
from metric_platform.db import (
    create_db_engine,
    describe_url,
    is_in_memory,
    read_transaction,
    readable_without_writing,
    write_transaction,
)
from metric_platform.errors import StorageError
from metric_platform.ledger import partitions
from metric_platform.migrations import Migrations

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "platform_alembic_version"
_PG_LOCK_KEY = 0x6D705F706C617466  # "mp_platf"
MIGRATIONS = Migrations(MIGRATIONS_DIR, VERSION_TABLE, _PG_LOCK_KEY, "platform database")

# Monthly ledger partitions are kept this many months ahead of the current one.
PARTITION_MONTHS_AHEAD = 2
# Creating a partition takes ACCESS EXCLUSIVE on ledger_run_events, which waits for the appends in
# flight, and every append that arrives meanwhile queues behind the request: a StepCompleted with
# a 3 s write budget (seed 004 §5) fails if the request waits longer than that. Every open does
# this maintenance in passing, so it gives up quickly (the default partition takes the rows until
# a later attempt); explicit maintenance (`metric-platform ledger migrate`) may wait longer.
OPEN_PARTITION_LOCK_TIMEOUT_MS = 200
MAINTENANCE_PARTITION_LOCK_TIMEOUT_MS = 1_000  # under the ledger write budget (3 s)


def open_platform_db(url: str) -> Engine:
    """An engine on the platform database at ``url``, migrated to head (see the module docstring
    for what a dry run gets instead)."""
    if write_guard.is_dry_run():
        return _open_for_dry_run(url)
    engine = create_db_engine(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def migrate(
    engine: Engine,
    *,
    today: dt.date | None = None,
    partition_lock_timeout_ms: int = OPEN_PARTITION_LOCK_TIMEOUT_MS,
) -> None:
    """Upgrade the platform tables to head, then add the ledger's monthly partitions due (PostgreSQL),
    waiting at most ``partition_lock_timeout_ms`` for the table's lock (see
    :func:`maintain_partitions`).

    Cheap when there is nothing to do: one revision read, one catalogue read, no write lock.
    """
    MIGRATIONS.migrate(engine)
    maintain_partitions(engine, today=today, lock_timeout_ms=partition_lock_timeout_ms)


def maintain_partitions(
    engine: Engine,
    *,
    today: dt.date | None = None,
    lock_timeout_ms: int = MAINTENANCE_PARTITION_LOCK_TIMEOUT_MS,
) -> list[str]:
    """Create the monthly ``ledger_run_events`` partitions from this month to
    :data:`PARTITION_MONTHS_AHEAD` months ahead; returns the names created (none on SQLite).

    A lock that is not granted within ``lock_timeout_ms`` (appends holding the table; every append
    arriving meanwhile waits behind the request) is logged and tolerated: the default partition
    stores the rows until a later open, migrate or retention pass adds the partition.
    """
    if engine.dialect.name != "postgresql":
        return []
    day = today or partitions.utc_today()
    through = partitions.add_months(partitions.month_start(day), PARTITION_MONTHS_AHEAD)
    with read_transaction(engine) as conn:
        if not partitions.missing_months(conn, through, today=day):
            return []
    try:
        with write_transaction(engine, timeout_ms=lock_timeout_ms) as conn:
            return partitions.ensure_partitions(conn, through, today=day)
    except StorageError as exc:
        log.warning("ledger partitions not created this time (the default partition is used): %s", exc)
        return []


def _open_for_dry_run(url: str) -> Engine:
    if not readable_without_writing(url):  # missing, or a SQLite file connecting would convert
        return _stand_in(url, "does not exist yet (or is not a WAL database)")
    engine = create_db_engine(url)
    if is_in_memory(engine):
        migrate(engine)  # lives in this process only: nothing is persisted
        return engine
    try:
        current = MIGRATIONS.current_revision(engine)
    except BaseException:
        engine.dispose()
        raise
    head = MIGRATIONS.head_revision()
    if current == head:
        return engine
    engine.dispose()
    if current is None:
        return _stand_in(url, "has no platform tables yet")
    msg = (
        f"dry run: the platform database at {describe_url(engine)} is at revision {current!r}, this code "
        f"needs {head!r}, and a dry run writes nothing, not even a migration. Run once without the dry "
        "run, or `metric-platform ledger migrate`, then retry."
    )
    raise StorageError(msg)


def _stand_in(url: str, why: str) -> Engine:
    shown = make_url(url).render_as_string(hide_password=True)
    log.info("dry run: the platform database %s %s; reading an empty in-memory stand-in", shown, why)
    # One connection shared by every thread, so all of them see the same (empty) tables.
    engine = sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    MIGRATIONS.migrate(engine)
    return engine
