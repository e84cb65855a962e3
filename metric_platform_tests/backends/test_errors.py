"""Bad sources and bad requests give user errors that say what is wrong and how to fix it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend, DateWindow
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.backends.sql_load import load_frames
from metric_platform.errors import InvalidRequestError, SourceError
from metric_platform.sample_data import write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.operators import Operator
from metric_platform.semantics.spec import AnalyticalContext, SourceKind, SourceSpec
from metric_platform_tests.backends.conftest import OpenBackend
from metric_platform_tests.backends.datasets import RETAIL_AC, Dataset, edge_frames

WINDOW = DateWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 31))


def retail(directory: Path) -> AnalyticalContext:
    return load_ac(RETAIL_AC, source_path=directory)


def revenue(ac: AnalyticalContext) -> AggregateRequest:
    return AggregateRequest(ac.family("revenue"), ("region", "day"))


def test_missing_parquet_names_schema_and_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        PolarsBackend(retail(tmp_path)).aggregate(revenue(retail(tmp_path)))
    message = str(err.value)
    assert "schema 'transactions'" in message
    assert str(tmp_path / "transactions.parquet") in message
    assert "source.path" in message


def test_parquet_directory_source(tmp_path: Path) -> None:
    frames = edge_frames()
    write_parquet({"stores": frames["stores"], "campaigns": frames["campaigns"]}, tmp_path)
    parts = tmp_path / "transactions"
    parts.mkdir()
    txns = frames["transactions"]
    txns.head(4).write_parquet(parts / "part-0.parquet")
    txns.slice(4).write_parquet(parts / "part-1.parquet")
    ac = retail(tmp_path)
    out = PolarsBackend(ac).aggregate(AggregateRequest(ac.family("transaction_count"), ())).collect()
    assert out.item() == txns.filter(pl.col("tenant_id") == "acme").height


def test_missing_parquet_column(tmp_path: Path) -> None:
    frames = edge_frames()
    write_parquet({**frames, "stores": frames["stores"].drop("region")}, tmp_path)
    ac = retail(tmp_path)
    with pytest.raises(
        SourceError, match=r"schema 'stores': column 'region' is declared in the AC but missing"
    ):
        PolarsBackend(ac).aggregate(revenue(ac))
    with pytest.raises(SourceError, match=r"column 'region'"):
        PolarsBackend(ac).extract_to_lazyframe("stores")


def test_parquet_column_of_the_wrong_type(tmp_path: Path) -> None:
    frames = edge_frames()
    bad = frames["transactions"].with_columns(pl.col("revenue").cast(pl.String))
    write_parquet({**frames, "transactions": bad}, tmp_path)
    ac = retail(tmp_path)
    with pytest.raises(SourceError, match=r"column 'revenue' is declared float but .* stores it as String"):
        PolarsBackend(ac).aggregate(revenue(ac))


def test_corrupt_parquet(tmp_path: Path) -> None:
    write_parquet(edge_frames(), tmp_path)
    (tmp_path / "transactions.parquet").write_bytes(b"this is not parquet" * 20)
    ac = retail(tmp_path)
    with pytest.raises(SourceError) as err:
        PolarsBackend(ac).aggregate(revenue(ac))
    assert isinstance(err.value.__cause__, pl.exceptions.PolarsError)  # chained, not swallowed
    message = str(err.value)
    assert "cannot read Parquet for schema 'transactions'" in message
    assert "regenerate or replace the file" in message


def test_sqlite_missing_column_and_table(tmp_path: Path) -> None:
    frames = edge_frames()
    url = f"sqlite:///{tmp_path / 'src.db'}"
    load_frames(url, {"transactions": frames["transactions"].drop("spend"), "stores": frames["stores"]})
    ac = retail(tmp_path)
    backend = SqlBackend(ac, url)
    try:
        with pytest.raises(
            SourceError, match=r"schema 'transactions': table 'transactions' has no column\(s\) spend"
        ):
            backend.aggregate(revenue(ac))
        with pytest.raises(SourceError, match=r"schema 'campaigns': table 'campaigns' does not exist"):
            backend.extract_to_lazyframe("campaigns")
    finally:
        backend.close()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    ac = replace(retail(tmp_path), source=SourceSpec(SourceKind.SQLITE, path=tmp_path / "nope.db"))
    with pytest.raises(SourceError, match=r"nope\.db does not exist"):
        backend_for(ac)
    assert not (tmp_path / "nope.db").exists()


def test_unset_postgres_variable(tmp_path: Path) -> None:
    ac = replace(retail(tmp_path), source=SourceSpec(SourceKind.POSTGRES, url_env="MP_RETAIL_PG_URL"))
    with pytest.raises(SourceError, match=r"environment variable MP_RETAIL_PG_URL, which is not set"):
        backend_for(ac, environ={})


def test_unreachable_database(tmp_path: Path) -> None:
    ac = retail(tmp_path)
    # port 1 refuses connections at once; the password must not appear in the message
    backend = SqlBackend(ac, "postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(SourceError) as err:
        backend.aggregate(revenue(ac))
    assert "cannot connect to the source database" in str(err.value)
    assert "s3cret" not in str(err.value)
    backend.close()


def test_factory_picks_the_backend(tmp_path: Path, edge: Dataset) -> None:
    parquet = backend_for(retail(tmp_path))
    assert isinstance(parquet, PolarsBackend)
    sqlite_ac = replace(edge.ac, source=SourceSpec(SourceKind.SQLITE, path=edge.directory / "source.db"))
    sqlite = backend_for(sqlite_ac)
    try:
        assert isinstance(sqlite, DataAPIBackend)
        assert sqlite.name == "sqlite"
        assert (
            sqlite.aggregate(AggregateRequest(edge.ac.family("transaction_count"), ())).collect().item() == 10
        )
    finally:
        sqlite.close()


@pytest.mark.postgres
def test_factory_reads_the_postgres_url_from_the_environment(pg_url: str, tmp_path: Path) -> None:
    ac = replace(retail(tmp_path), source=SourceSpec(SourceKind.POSTGRES, url_env="MP_RETAIL_PG_URL"))
    backend = backend_for(ac, environ={"MP_RETAIL_PG_URL": pg_url})
    try:
        assert backend.name == "postgres"
    finally:
        backend.close()


def test_window_needs_a_day_dimension(edge: Dataset) -> None:
    timeless = {n: d for n, d in edge.ac.dimensions.items() if d.time_grain is None}
    ac = replace(edge.ac, dimensions=timeless)
    request = AggregateRequest(ac.family("revenue"), ("region",), WINDOW)
    backend: DataAPIBackend
    for backend in (PolarsBackend(ac), SqlBackend(ac, edge.sqlite_url)):
        with pytest.raises(InvalidRequestError, match=r"a time window needs a day dimension .* has no day"):
            backend.aggregate(request)
        backend.close()


def test_operator_must_accept_the_column(open_backend: OpenBackend, edge: Dataset) -> None:
    base = edge.ac.family("revenue")
    family = replace(base, reducer=replace(base.reducer, operator=Operator.BOOL_AND))
    with pytest.raises(
        InvalidRequestError, match=r"BOOL_AND does not accept the float column transactions\.revenue"
    ):
        open_backend(edge).aggregate(AggregateRequest(family, ()))


def test_anchor_naming_a_dimension_twice(open_backend: OpenBackend, edge: Dataset) -> None:
    with pytest.raises(InvalidRequestError, match="names a dimension twice"):
        open_backend(edge).aggregate(AggregateRequest(edge.ac.family("revenue"), ("region", "region")))


def test_every_declared_column_is_checked(tmp_path: Path) -> None:
    """A column the request does not read is still checked, as the SQL backend does."""
    frames = edge_frames()
    write_parquet({**frames, "transactions": frames["transactions"].drop("spend")}, tmp_path)
    ac = retail(tmp_path)
    with pytest.raises(SourceError, match=r"schema 'transactions': column 'spend' is declared"):
        PolarsBackend(ac).aggregate(revenue(ac))


def test_sqlite_values_of_the_wrong_type(tmp_path: Path) -> None:
    frames = edge_frames()
    bad = frames["transactions"].with_columns(pl.col("conversions").cast(pl.String) + "x")
    url = f"sqlite:///{tmp_path / 'src.db'}"
    load_frames(url, {**frames, "transactions": bad})
    ac = retail(tmp_path)
    backend = SqlBackend(ac, url)
    try:
        with pytest.raises(SourceError, match=r"rows of transactions .* do not fit the types declared"):
            backend.extract_to_lazyframe("transactions")
    finally:
        backend.close()


def test_sqlite_epoch_integers_in_a_timestamp_column(tmp_path: Path) -> None:
    """A driver's TypeError (ISO-text parsing of an integer) becomes a SourceError naming the column."""
    frames = edge_frames()
    epoch = frames["transactions"].with_columns(pl.col("updated_at").dt.epoch("s"))
    url = f"sqlite:///{tmp_path / 'src.db'}"
    load_frames(url, {**frames, "transactions": epoch})
    ac = retail(tmp_path)
    base = ac.family("revenue")
    latest = replace(base, root_column="updated_at", reducer=replace(base.reducer, operator=Operator.MAX))
    backend = SqlBackend(ac, url)
    reads: list[Callable[[], object]] = [
        lambda: backend.extract_to_lazyframe("transactions"),
        lambda: backend.aggregate(AggregateRequest(latest, ("day",))),
    ]
    try:
        for read in reads:
            with pytest.raises(SourceError) as err:
                read()
            assert isinstance(err.value.__cause__, TypeError)
            message = str(err.value)
            assert "schema 'transactions': column 'updated_at'" in message
            assert "(a SQLite integer)" in message
            assert "datetime(updated_at, 'unixepoch')" in message
    finally:
        backend.close()


def test_sqlite_unparseable_date_text(tmp_path: Path) -> None:
    frames = edge_frames()
    url = f"sqlite:///{tmp_path / 'src.db'}"
    load_frames(url, frames)
    with sqlite3.connect(tmp_path / "src.db") as raw:
        raw.execute("UPDATE stores SET opened_on = '2020-13-45' WHERE store_id = 'S2'")
    ac = retail(tmp_path)
    backend = SqlBackend(ac, url)
    try:
        with pytest.raises(
            SourceError, match=r"column 'opened_on' .* holds '2020-13-45', which is not a date"
        ):
            backend.extract_to_lazyframe("stores")
    finally:
        backend.close()


def test_parquet_uint64_above_int64_fails_at_plan_time(tmp_path: Path) -> None:
    frames = edge_frames()
    ids = [2**64 - 1 if i == 1 else i for i in frames["transactions"]["txn_id"]]
    big = frames["transactions"].with_columns(pl.Series("txn_id", ids, dtype=pl.UInt64))
    write_parquet({**frames, "transactions": big}, tmp_path)
    ac = retail(tmp_path)
    backend = PolarsBackend(ac)
    # raised by the call, not by the caller's collect
    with pytest.raises(SourceError, match=r"column 'txn_id' .* holding 18446744073709551615, above"):
        backend.extract_to_lazyframe("transactions")
    with pytest.raises(SourceError, match=r"column 'txn_id'"):
        backend.aggregate(revenue(ac))
    # within range, an unsigned column reads as Int64
    write_parquet(
        {**frames, "transactions": frames["transactions"].with_columns(pl.col("txn_id").cast(pl.UInt64))},
        tmp_path,
    )
    count = backend.aggregate(AggregateRequest(ac.family("transaction_count"), ())).collect().item()
    assert count == 10
