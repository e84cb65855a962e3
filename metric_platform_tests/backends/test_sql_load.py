"""Loading frames into SQLite and PostgreSQL: exact round trips, replace/append, atomicity, errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from metric_platform.backends.sql_load import load_frames
from metric_platform.db import create_db_engine
from metric_platform.errors import InvalidRequestError, SourceError, UnsupportedOperationError
from metric_platform.sample_data import SampleSpec, generate

SPEC = SampleSpec(rows=3_000, days=20, end_date=date(2026, 2, 28))
KEYS = {"transactions": "txn_id", "stores": "store_id", "campaigns": "campaign_id"}


@pytest.fixture(scope="module")
def sample() -> dict[str, pl.DataFrame]:
    return generate(SPEC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'load.sqlite'}"
    pg_url: str = request.getfixturevalue("pg_url")
    return pg_url


@pytest.fixture
def prefix() -> str:
    # The PostgreSQL database is shared by the whole session: keep our tables apart.
    return f"sl_{uuid.uuid4().hex[:8]}_"


@pytest.fixture(params=["platform", "plain"])
def engine(request: pytest.FixtureRequest, url: str) -> Iterator[sa.Engine]:
    # "plain": an engine not made by create_db_engine (on SQLite, pysqlite's legacy transaction
    # mode is still on, where DDL would otherwise escape the load's transaction).
    engine = create_db_engine(url) if request.param == "platform" else sa.create_engine(url)
    yield engine
    engine.dispose()


def read_back(engine: sa.Engine, name: str, schema: pl.Schema) -> pl.DataFrame:
    """SELECT the table through SQLAlchemy's reflected types, as a frame of ``schema``."""
    table = sa.Table(name, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


def test_sample_round_trips_exactly(engine: sa.Engine, sample: dict[str, pl.DataFrame], prefix: str) -> None:
    load_frames(engine, {prefix + name: frame for name, frame in sample.items()})
    for name, frame in sample.items():
        back = read_back(engine, prefix + name, frame.schema)
        assert back.height == frame.height
        key = KEYS[name]
        assert back.sort(key).equals(frame.sort(key), null_equal=True), name
    # The checks above would pass vacuously on an all-null column: make sure the hard types are there.
    facts = sample["transactions"]
    assert facts["is_returned"].sum() > 0
    assert facts["updated_at"].dt.microsecond().n_unique() > 1


def test_url_string_is_accepted_and_replace_replaces(url: str, prefix: str) -> None:
    first = pl.DataFrame({"id": [1, 2, 3], "name": ["a", None, "c"]})
    second = pl.DataFrame({"id": [10], "when": [datetime(2026, 1, 2, 3, 4, 5, 6)]})
    load_frames(url, {prefix + "t": first})
    load_frames(url, {prefix + "t": second})
    engine = create_db_engine(url)
    try:
        assert read_back(engine, prefix + "t", second.schema).equals(second)
    finally:
        engine.dispose()


def test_append_without_replace(engine: sa.Engine, prefix: str) -> None:
    frame = pl.DataFrame({"id": [1, 2], "day": [date(2026, 1, 1), None]})
    load_frames(engine, {prefix + "t": frame}, replace=False)
    load_frames(engine, {prefix + "t": frame}, replace=False)
    back = read_back(engine, prefix + "t", frame.schema)
    assert back.sort("id", nulls_last=True).equals(pl.concat([frame, frame]).sort("id", nulls_last=True))


def test_empty_frame_creates_an_empty_table(engine: sa.Engine, prefix: str) -> None:
    frame = pl.DataFrame(schema={"id": pl.Int64, "ok": pl.Boolean})
    load_frames(engine, {prefix + "empty": frame})
    assert read_back(engine, prefix + "empty", frame.schema).is_empty()
    assert sa.inspect(engine).has_table(prefix + "empty")


def test_a_failed_load_leaves_the_old_table(
    engine: sa.Engine, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = pl.DataFrame({"id": [1, 2, 3]})
    load_frames(engine, {prefix + "t": old})
    new = pl.DataFrame({"id": list(range(100))})
    # Crash while the rows are being sent (to_dicts feeds SQLite, iter_rows feeds COPY).
    real_iter_rows = pl.DataFrame.iter_rows

    def crash(self: pl.DataFrame, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
        for i, row in enumerate(real_iter_rows(self, *args, **kwargs)):
            if i == 50:
                msg = "simulated crash"
                raise RuntimeError(msg)
            yield row

    def crash_dicts(self: pl.DataFrame) -> list[dict[str, Any]]:
        msg = "simulated crash"
        raise RuntimeError(msg)

    monkeypatch.setattr(pl.DataFrame, "iter_rows", crash)
    monkeypatch.setattr(pl.DataFrame, "to_dicts", crash_dicts)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_frames(engine, {prefix + "t": new})
    monkeypatch.undo()
    assert read_back(engine, prefix + "t", old.schema).equals(old)


def test_sqlite_stores_iso_text_and_integers_for_booleans(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'iso.sqlite'}"
    frame = pl.DataFrame(
        {"d": [date(2026, 11, 20)], "ts": [datetime(2026, 11, 21, 8, 30, 0, 120)], "flag": [True]}
    )
    load_frames(url, {"t": frame})
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT d, ts, flag, typeof(flag) FROM t").one()
    finally:
        engine.dispose()
    assert tuple(raw) == ("2026-11-20", "2026-11-21 08:30:00.000120", 1, "integer")


def test_unsupported_dtype_names_table_and_column_and_touches_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bad.sqlite'}"
    good = pl.DataFrame({"id": [1]})
    bad = pl.DataFrame({"id": [1], "tags": [["a", "b"]]})
    with pytest.raises(UnsupportedOperationError, match=r"table 'bad', column 'tags': dtype List\(String\)"):
        load_frames(url, {"good": good, "bad": bad})
    engine = create_db_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "frame",
    [
        pl.DataFrame({"at": [datetime(2026, 1, 1)]}).with_columns(pl.col("at").dt.replace_time_zone("UTC")),
        pl.DataFrame({"n": pl.Series([1], dtype=pl.UInt64)}),
        pl.DataFrame({"n": pl.Series([1], dtype=pl.Decimal(10, 2))}),
    ],
)
def test_other_unsupported_dtypes(tmp_path: Path, frame: pl.DataFrame) -> None:
    with pytest.raises(UnsupportedOperationError, match="cannot be loaded into SQL"):
        load_frames(f"sqlite:///{tmp_path / 'x.sqlite'}", {"t": frame})


def test_frame_without_columns_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no columns"):
        load_frames(f"sqlite:///{tmp_path / 'x.sqlite'}", {"t": pl.DataFrame()})


def test_unreachable_database_is_a_source_error_without_the_password() -> None:
    # Port 1 on localhost refuses at once.
    url = "postgresql://loader:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(SourceError) as info:
        load_frames(url, {"t": pl.DataFrame({"id": [1]})})
    message = str(info.value)
    assert "127.0.0.1:1/nowhere" in message
    assert "s3cret-pw" not in message


def test_unusable_url_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open database"):
        load_frames("nosuchdialect://user:pw@host/db", {"t": pl.DataFrame({"id": [1]})})
