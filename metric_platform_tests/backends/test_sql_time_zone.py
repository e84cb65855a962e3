"""PostgreSQL ``timestamptz`` values fall on their UTC day, whatever the session's time zone, as in
the Polars backend (which buckets UTC days)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext

pytestmark = pytest.mark.postgres

# 23:30 UTC on 1 Jan: 2 Jan in Tokyo; 01:00 UTC on 2 Jan: 1 Jan in New York
ROWS = "(1, TIMESTAMPTZ '2026-01-01 23:30:00+00'), (2, TIMESTAMPTZ '2026-01-02 01:00:00+00')"
UTC_DAYS = {dt.date(2026, 1, 1): 1, dt.date(2026, 1, 2): 1}
AC_TEXT = """
name: tz
tenant_id: x
project_id: 5f0c6a43-8f5e-4c1b-9a7e-2d4b1c9e7a10
partitions: {{start_date: 2026-01-01}}
source: {{kind: postgres, url_env: MP_TZ_TEST_URL}}
schemas:
  - {{name: events, table: {table}, columns: {{id: integer, ts: timestamp}}}}
dimensions:
  - {{name: day, time_grain: day, columns: {{events: ts}}}}
metric_families:
  - {{name: n, family_root: {{schema: events, column: id}}, ip_reducers: [{{operator: COUNT}}]}}
"""


@pytest.fixture
def events(pg_url: str, tmp_path: Path) -> Iterator[AnalyticalContext]:
    table = f"tz_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id bigint, ts timestamptz)")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES {ROWS}")
    path = tmp_path / "tz.yaml"
    path.write_text(AC_TEXT.format(table=table), encoding="utf-8")
    yield load_ac(path)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()


def days(backend: SqlBackend, ac: AnalyticalContext) -> dict[dt.date, int]:
    frame = backend.aggregate(AggregateRequest(ac.family("n"), ("day",))).collect()
    return dict(frame.iter_rows())


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_days_are_utc_whatever_pgtz_says(
    events: AnalyticalContext, pg_url: str, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGTZ", zone)
    backend = SqlBackend(events, pg_url)
    try:
        assert days(backend, events) == UTC_DAYS
        # the window is on the same UTC days
        first = DateWindow.day(dt.date(2026, 1, 1))
        request = AggregateRequest(events.family("n"), (), window=first)
        assert backend.aggregate(request).collect().item() == 1
        assert backend.extract_to_lazyframe("events").collect()["ts"].to_list() == [
            dt.datetime(2026, 1, 1, 23, 30),
            dt.datetime(2026, 1, 2, 1, 0),
        ]
    finally:
        backend.close()


def test_a_callers_engine_reads_in_utc_and_keeps_its_zone(events: AnalyticalContext, pg_url: str) -> None:
    engine = sa.create_engine(pg_url, connect_args={"options": "-c TimeZone=Asia/Tokyo"}, pool_size=1)
    backend = SqlBackend(events, engine)
    try:
        assert days(backend, events) == UTC_DAYS
        with engine.connect() as conn:  # the same pooled session: only the transaction was in UTC
            assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "Asia/Tokyo"
    finally:
        backend.close()
        engine.dispose()
