"""Monthly range partitions of ``ledger_run_events`` on PostgreSQL (see ``schema.py`` for the design).

The migration creates the partitioned parent and its DEFAULT partition, which catches any month
that has no partition of its own, so an append never fails for want of one. Monthly partitions
``ledger_run_events_pYYYYMM`` are added ahead of time, never in the append path: ``CREATE TABLE
... PARTITION OF`` takes an ACCESS EXCLUSIVE lock on the parent (and scans the default partition),
which would stall every concurrent append. They are made when the platform database is opened
(:func:`metric_platform.platform_db.open_platform_db`: current month + 2), by ``metric-platform
ledger migrate`` and by retention. Even there the lock is requested under a lock timeout, because
appends queue behind a waiting ACCESS EXCLUSIVE request: an open, which does this in passing,
gives up after 200 ms; explicit maintenance waits up to 5 s (see ``platform_db/database.py``).

A month whose rows already sit in the default partition (the platform ran across a month boundary
without an open or a retention pass) is skipped: PostgreSQL refuses a partition that rows in the
default one would belong to. Its rows stay in the default partition and retention deletes them
row-wise. Every function here is a no-op on SQLite, where the table is a single table.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARENT = "ledger_run_events"
DEFAULT_PARTITION = f"{PARENT}_default"
_MONTHLY = re.compile(rf"^{PARENT}_p(\d{{4}})(\d{{2}})$")
# Serialises partition maintenance between processes (any fixed number unique to it).
_PG_LOCK_KEY = 0x6D705F7061727473  # "mp_parts"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(month: dt.date, n: int) -> dt.date:
    """The first day of the month ``n`` months after ``month``'s."""
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def partition_name(month: dt.date) -> str:
    return f"{PARENT}_p{month.year:04d}{month.month:02d}"


def partition_month(name: str) -> dt.date | None:
    """The month of a monthly partition's name, None for any other name."""
    found = _MONTHLY.match(name)
    return dt.date(int(found[1]), int(found[2]), 1) if found else None


def is_partition_table(name: str) -> bool:
    """A child table of ``ledger_run_events`` (autogenerate comparisons must ignore them)."""
    return name == DEFAULT_PARTITION or partition_month(name) is not None


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def existing_partitions(conn: Connection) -> list[str]:
    """Names of the partitions of ``ledger_run_events`` (in the connection's search path), sorted."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    ).scalars()
    return sorted(str(name) for name in rows)


def missing_months(conn: Connection, through: dt.date, *, today: dt.date | None = None) -> list[dt.date]:
    """Months from ``today``'s (UTC) to ``through``'s that have no partition yet (read only)."""
    if conn.dialect.name != "postgresql":
        return []
    have = set(existing_partitions(conn))
    month = month_start(today or utc_today())
    last = month_start(through)
    wanted: list[dt.date] = []
    while month <= last:
        if partition_name(month) not in have:
            wanted.append(month)
        month = add_months(month, 1)
    return wanted


def ensure_partitions(conn: Connection, through: dt.date, *, today: dt.date | None = None) -> list[str]:
    """Create the monthly partitions from ``today``'s month (UTC) through ``through``'s; idempotent.

    Runs in the caller's write transaction and returns the names it created. Takes the parent's
    ACCESS EXCLUSIVE lock only when a partition is actually missing, so a caller that checks first
    (:func:`missing_months`) pays nothing in the common case.
    """
    if not missing_months(conn, through, today=today):
        return []
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    # Taken now so that no append can put a row of a month into the default partition between the
    # check below and the CREATE.
    conn.exec_driver_sql(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")
    created: list[str] = []
    for month in missing_months(conn, through, today=today):
        upper = add_months(month, 1)
        if _default_holds(conn, month, upper):
            continue
        name = partition_name(month)
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
        )
        created.append(name)
    return created


def drop_expired(conn: Connection, before: dt.date) -> list[str]:
    """Drop the monthly partitions whose whole month lies before ``before`` and that hold nothing.

    A partition still holding an event, or a month that still has a run row, is kept: retention
    deletes whole runs first, and a partition goes only once no run of its month remains. Runs in
    the caller's write transaction; returns the names dropped.
    """
    if conn.dialect.name != "postgresql":
        return []
    expired = [
        (name, month)
        for name in existing_partitions(conn)
        if (month := partition_month(name)) is not None and add_months(month, 1) <= before
    ]
    if not expired:
        return []
    # Taken before the checks so that no append can land in a partition between its check and its DROP.
    conn.exec_driver_sql(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE")
    dropped: list[str] = []
    for name, month in expired:
        upper = add_months(month, 1)
        holds_events = conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {name})")).scalar_one()
        holds_runs = conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM ledger_runs WHERE run_epoch >= :lo AND run_epoch < :hi)"),
            {"lo": month, "hi": upper},
        ).scalar_one()
        if holds_events or holds_runs:
            continue
        conn.exec_driver_sql(f"DROP TABLE {name}")
        dropped.append(name)
    return dropped


def _default_holds(conn: Connection, month: dt.date, upper: dt.date) -> bool:
    return bool(
        conn.execute(
            sa.text(
                f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} "
                "WHERE run_epoch >= :lo AND run_epoch < :hi)"
            ),
            {"lo": month, "hi": upper},
        ).scalar_one()
    )
