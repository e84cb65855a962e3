"""Platform-database migrations: up/down/up and agreement with ledger/schema.py on both dialects,
concurrent first opens, dry-run opens that create nothing, and the PostgreSQL partitioned table's
constraints and monthly partitions."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import metric_platform
from metric_platform import write_guard
from metric_platform.db import create_db_engine, is_in_memory, write_transaction
from metric_platform.errors import StorageError
from metric_platform.ledger import partitions
from metric_platform.ledger.events import EventType
from metric_platform.ledger.schema import metadata, run_events
from metric_platform.ledger.store import AppendOutcome, RunEventStore
from metric_platform.platform_db import (
    MIGRATIONS,
    VERSION_TABLE,
    maintain_partitions,
    migrate,
    open_platform_db,
)
from metric_platform.platform_db import database as platform_database
from metric_platform_tests.ledger._store_support import open_worker, run_spawned, step_event

LEDGER_TABLES = {
    "ledger_runs",
    "ledger_run_attempts",
    "ledger_run_events",
    "ledger_run_snapshots",
    "ledger_projector_state",
    "ledger_outbox",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _tables(engine: sa.Engine) -> set[str]:
    return {name for name in sa.inspect(engine).get_table_names() if not partitions.is_partition_table(name)}


def _schema_diff(engine: sa.Engine) -> list[Any]:
    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return not (type_ == "table" and name is not None and partitions.is_partition_table(name))

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "include_name": include_name}
        )
        return list(compare_metadata(context, metadata))


def _sequence_exists(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(sa.text("SELECT to_regclass('ledger_event_position_seq') IS NOT NULL")).scalar()
        )


def _partitions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return partitions.existing_partitions(conn)


def _this_and_next_months() -> list[str]:
    month = partitions.month_start(partitions.utc_today())
    return [partitions.partition_name(partitions.add_months(month, n)) for n in range(3)]


def test_upgrade_from_empty_downgrade_to_base_and_agreement_with_schema_module(empty_db_url: str) -> None:
    engine = create_db_engine(empty_db_url)
    postgres = engine.dialect.name == "postgresql"
    try:
        assert MIGRATIONS.current_revision(engine) is None
        migrate(engine)
        assert MIGRATIONS.current_revision(engine) == MIGRATIONS.head_revision() == "0001"
        assert _tables(engine) == LEDGER_TABLES | {VERSION_TABLE}
        assert _schema_diff(engine) == [], "ledger/schema.py and the migrations disagree"
        if postgres:
            assert _sequence_exists(engine)
            assert _partitions(engine) == sorted([partitions.DEFAULT_PARTITION, *_this_and_next_months()])

        MIGRATIONS.downgrade(engine)
        assert MIGRATIONS.current_revision(engine) is None
        assert set(sa.inspect(engine).get_table_names()) == {VERSION_TABLE}, "partitions dropped too"
        if postgres:
            assert not _sequence_exists(engine)

        migrate(engine)
        migrate(engine)  # idempotent
        assert MIGRATIONS.current_revision(engine) == MIGRATIONS.head_revision()
        assert _schema_diff(engine) == []
        with RunEventStore(engine) as store:
            assert store.append(step_event("run-1", "s")).outcome is AppendOutcome.APPENDED
    finally:
        engine.dispose()


def test_four_processes_opening_a_fresh_database_at_once(empty_db_url: str) -> None:
    barrier = multiprocessing.get_context("spawn").Barrier(4)
    assert run_spawned(open_worker, [(empty_db_url, barrier)] * 4) == [0] * 4
    engine = create_db_engine(empty_db_url)
    try:
        assert MIGRATIONS.current_revision(engine) == MIGRATIONS.head_revision()
        with engine.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
        if engine.dialect.name == "postgresql":
            assert _partitions(engine) == sorted([partitions.DEFAULT_PARTITION, *_this_and_next_months()])
    finally:
        engine.dispose()


def test_a_database_from_a_newer_release_is_a_storage_error(platform_url: str) -> None:
    engine = create_db_engine(platform_url)
    try:
        with write_transaction(engine) as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff9999'"))
        with pytest.raises(StorageError, match=r"platform database.*newer metric_platform") as info:
            open_platform_db(platform_url)
        assert "ffff9999" in str(info.value)
    finally:
        engine.dispose()


# -- dry runs ------------------------------------------------------------------------------------


def test_a_dry_run_open_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'platform.sqlite'}"
    with write_guard.dry_run() as suppressed:
        engine = open_platform_db(url)
        try:
            assert is_in_memory(engine)
            store = RunEventStore(engine)
            assert store.run_ids() == [] and store.events("run-1") == []
            assert store.append(step_event("run-1", "s")).outcome is AppendOutcome.SUPPRESSED
        finally:
            engine.dispose()
    assert suppressed is not None and suppressed.counts == {"ledger.append": 1}
    assert not home.exists(), "a dry run created the database's directory"


def _files(url: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file beside a SQLite database; {} for PostgreSQL."""
    database = sa.engine.make_url(url).database
    if not url.startswith("sqlite") or not database:
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(database).parent.iterdir()}


def test_a_dry_run_open_reads_a_database_at_head_and_writes_nothing(platform_url: str) -> None:
    with RunEventStore.open(platform_url) as store:
        store.append(step_event("run-1", "s1"))
    files = _files(platform_url)
    with write_guard.dry_run():
        engine = open_platform_db(platform_url)
        try:
            assert not is_in_memory(engine)
            store = RunEventStore(engine)
            assert [e.run_seq for e in store.events("run-1")] == [1]
            assert store.append(step_event("run-1", "s2")).outcome is AppendOutcome.SUPPRESSED
        finally:
            engine.dispose()
    assert _files(platform_url) == files, "the dry run touched the SQLite file or left side files"
    with RunEventStore.open(platform_url) as store:
        assert [e.run_seq for e in store.events("run-1")] == [1]


def test_a_dry_run_open_of_an_empty_database_stands_in_and_creates_no_table(empty_db_url: str) -> None:
    if empty_db_url.startswith("sqlite"):
        create_db_engine(empty_db_url).dispose()  # the file exists (as a real run left it), empty
    with write_guard.dry_run():
        engine = open_platform_db(empty_db_url)
        try:
            assert is_in_memory(engine) and RunEventStore(engine).run_ids() == []
        finally:
            engine.dispose()
    real = create_db_engine(empty_db_url)
    try:
        assert sa.inspect(real).get_table_names() == []
    finally:
        real.dispose()


def test_a_dry_run_open_of_a_database_at_an_older_revision_asks_for_a_real_migration(
    platform_url: str,
) -> None:
    engine = create_db_engine(platform_url)
    try:
        with write_transaction(engine) as conn:  # stands for a revision older than head
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0000'"))
        with write_guard.dry_run(), pytest.raises(StorageError, match=r"without the dry run.*ledger migrate"):
            open_platform_db(platform_url)
    finally:
        engine.dispose()


# -- PostgreSQL: the partitioned table -----------------------------------------------------------


def _row_like(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row = dict(template)
    row.update(event_id=uuid.uuid4(), position=int(row["position"]) + 1000, **changes)
    return row


@pytest.mark.postgres
def test_the_partitioned_table_enforces_both_uniqueness_guarantees_and_the_run_epoch(
    pg_platform_url: str,
) -> None:
    with RunEventStore.open(pg_platform_url) as store:
        store.append(step_event("run-p", "s1"))
        store.append(step_event("run-p", "s2"))
        engine = store.engine
        with engine.connect() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT relkind FROM pg_class WHERE relname = 'ledger_run_events'")
                ).scalar()
                == "p"
            )
            homes = conn.execute(
                sa.text("SELECT DISTINCT tableoid::regclass::text FROM ledger_run_events")
            ).scalars()
            assert list(homes) == [partitions.partition_name(partitions.month_start(partitions.utc_today()))]
            first = dict(
                conn.execute(sa.select(run_events).where(run_events.c.run_seq == 1)).mappings().one()
            )

        violations = {
            "same (run, runSeq)": _row_like(first, idempotency_key="e" * 64),
            "same (run, idempotency key)": _row_like(first, run_seq=3),
            "run_epoch not the run's": _row_like(
                first,
                run_seq=3,
                idempotency_key="d" * 64,
                run_epoch=partitions.add_months(first["run_epoch"], 1),
            ),
        }
        for what, row in violations.items():
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(sa.insert(run_events).values(row))
            assert [e.run_seq for e in store.events("run-p")] == [1, 2], what
        with engine.begin() as conn:  # the control: a valid row is accepted
            conn.execute(sa.insert(run_events).values(_row_like(first, run_seq=3, idempotency_key="c" * 64)))


@pytest.mark.postgres
def test_partitions_are_made_ahead_skipped_when_the_default_holds_their_month_and_dropped_when_empty(
    pg_platform_url: str,
) -> None:
    engine = create_db_engine(pg_platform_url)
    july, september = dt.date(2024, 7, 1), dt.date(2024, 9, 1)
    try:
        # A run of August 2024 lands in the default partition (August has no partition yet).
        with RunEventStore(engine, clock=lambda: dt.datetime(2024, 8, 20, tzinfo=dt.UTC)) as store:
            store.append(step_event("run-aug", "s1"))
        assert maintain_partitions(engine, today=dt.date(2024, 7, 3)) == [
            partitions.partition_name(july),
            partitions.partition_name(september),
        ], "July and September made; August skipped: the default partition holds one of its rows"
        assert maintain_partitions(engine, today=dt.date(2024, 7, 3)) == []  # idempotent

        with write_transaction(engine) as conn:
            dropped = partitions.drop_expired(conn, dt.date(2024, 10, 1))
        assert dropped == [partitions.partition_name(july), partitions.partition_name(september)]
        with write_transaction(engine) as conn:
            # Not before its month ends, and not while a run of its month remains.
            assert partitions.ensure_partitions(conn, september, today=july) == [
                partitions.partition_name(july),
                partitions.partition_name(september),
            ]
            conn.execute(
                sa.text(
                    "INSERT INTO ledger_runs (run_id, run_epoch, last_seq, created_at) "
                    "VALUES ('run-jul', '2024-07-01', 0, now())"
                )
            )
            assert partitions.drop_expired(conn, dt.date(2024, 9, 30)) == []
        assert partitions.partition_name(july) in _partitions(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_busy_ledger_delays_partition_creation_instead_of_blocking_the_caller(pg_platform_url: str) -> None:
    engine = create_db_engine(pg_platform_url)
    try:
        store = RunEventStore(engine)
        with write_transaction(engine) as holder:  # an append in flight holds the parent table
            store.append_in(holder, step_event("run-b", "s1"))
            assert maintain_partitions(engine, today=dt.date(2030, 1, 1), lock_timeout_ms=300) == []
        created = maintain_partitions(engine, today=dt.date(2030, 1, 1))
        assert created == [partitions.partition_name(dt.date(2030, m, 1)) for m in (1, 2, 3)]
    finally:
        engine.dispose()


def _drop_the_furthest_partition(engine: sa.Engine) -> str:
    """Make the open find a month without its partition (the one two months ahead, empty)."""
    month = partitions.add_months(partitions.month_start(partitions.utc_today()), 2)
    name = partitions.partition_name(month)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql(f"DROP TABLE {name}")
    return name


def _waiting_for_the_table(engine: sa.Engine) -> bool:
    """Whether some session waits for ACCESS EXCLUSIVE on ledger_run_events (in this schema)."""
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted "
                    "AND mode = 'AccessExclusiveLock' AND relation = to_regclass('ledger_run_events'))"
                )
            ).scalar_one()
        )


@pytest.mark.postgres
def test_an_open_gives_up_on_a_partition_quickly_so_appends_keep_their_budget(pg_platform_url: str) -> None:
    """An open missing a month's partition requests ACCESS EXCLUSIVE on the ledger; while an append
    is in flight that request waits, and every later append waits behind it. The open's short lock
    timeout bounds that: a StepCompleted with seed 004's 3 s budget still gets in."""
    engine = create_db_engine(pg_platform_url)
    try:
        missing = _drop_the_furthest_partition(engine)
        store = RunEventStore(engine)
        opened: list[float] = []

        def open_and_time() -> None:
            started = time.monotonic()
            open_platform_db(pg_platform_url).dispose()
            opened.append(time.monotonic() - started)

        with write_transaction(engine) as holder:  # an append in flight: it holds the table
            store.append_in(holder, step_event("run-held", "s1"))
            opener = threading.Thread(target=open_and_time)
            opener.start()
            deadline = time.monotonic() + 2
            while opener.is_alive() and not _waiting_for_the_table(engine) and time.monotonic() < deadline:
                time.sleep(0.01)
            started = time.monotonic()
            late = store.append(
                step_event("run-late", "s1", event_type=EventType.STEP_COMPLETED), timeout_ms=3000
            )
            append_s = time.monotonic() - started
            opener.join(timeout=10)
        assert late.outcome is AppendOutcome.APPENDED and append_s < 1.5, f"the append waited {append_s:.2f}s"
        assert opened and opened[0] < 1.5, f"the open waited {opened}s for the ledger's lock"
        assert missing not in _partitions(engine), "the open gave up; the default partition is used"
        assert maintain_partitions(engine) == [missing], (
            "explicit maintenance adds it once the ledger is free"
        )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_explicit_maintenance_waits_longer_than_an_open(pg_platform_url: str) -> None:
    engine = create_db_engine(pg_platform_url)
    try:
        missing = _drop_the_furthest_partition(engine)
        holder_done = threading.Event()

        def hold_the_table_for(seconds: float) -> None:
            with write_transaction(engine) as holder:
                RunEventStore(engine).append_in(holder, step_event("run-held", "s1"))
                holder_done.wait(seconds)

        holding = threading.Thread(target=hold_the_table_for, args=(0.8,))
        holding.start()
        time.sleep(0.1)
        started = time.monotonic()
        assert maintain_partitions(engine) == [missing]  # waited for the holder, within 5 s
        waited = time.monotonic() - started
        holding.join()
        assert 0.4 < waited < 4, waited
    finally:
        engine.dispose()


def test_partition_helpers_are_pure_date_arithmetic() -> None:
    assert partitions.add_months(dt.date(2026, 11, 1), 2) == dt.date(2027, 1, 1)
    assert partitions.add_months(dt.date(2026, 1, 1), -1) == dt.date(2025, 12, 1)
    assert partitions.partition_name(dt.date(2026, 3, 1)) == "ledger_run_events_p202603"
    assert partitions.partition_month("ledger_run_events_p202603") == dt.date(2026, 3, 1)
    assert partitions.partition_month("ledger_run_events_default") is None
    assert partitions.is_partition_table("ledger_run_events_default")
    assert not partitions.is_partition_table("ledger_run_events")


def test_every_migrations_file_is_covered_by_the_package_data_globs() -> None:
    """Non-package files ship in the wheel only through pyproject's package-data globs."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["metric_platform"]
    package_root = Path(metric_platform.__file__).parent
    shipped = {path for pattern in globs for path in package_root.glob(pattern)}
    needed = {
        path
        for path in platform_database.MIGRATIONS_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".mako", ".ini"}
    }
    assert platform_database.MIGRATIONS_DIR / "env.py" in needed
    assert any(p.parent.name == "versions" for p in needed)
    assert needed <= shipped, f"not shipped: {sorted(str(p) for p in needed - shipped)}"
