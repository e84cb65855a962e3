"""Fixtures of the cross-backend suite: every test taking ``open_backend`` runs once per backend
(Polars, SQLite, PostgreSQL), against the same datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.backends.sql_load import load_frames
from metric_platform.db import create_db_engine
from metric_platform_tests.backends.datasets import (
    HIDDEN_STORE,
    Dataset,
    calendar_frames,
    day_from_timestamp,
    edge_frames,
    materialise,
    nan_frames,
    sample_frames,
)

OpenBackend = Callable[[Dataset], DataAPIBackend]
BACKEND_KINDS = ["polars", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class BackendPool:
    """One backend per (kind, dataset) for the session; PostgreSQL data is loaded on first use."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], DataAPIBackend] = {}

    def get(self, kind: str, dataset: Dataset, pg_url: str | None) -> DataAPIBackend:
        key = (kind, dataset.name)
        if key not in self._open:
            self._open[key] = self._create(kind, dataset, pg_url)
        return self._open[key]

    @staticmethod
    def _create(kind: str, dataset: Dataset, pg_url: str | None) -> DataAPIBackend:
        if kind == "polars":
            return PolarsBackend(dataset.ac)
        if kind == "sqlite":
            return SqlBackend(dataset.ac, dataset.sqlite_url)
        assert pg_url is not None
        load_frames(pg_url, dataset.stored)
        if dataset.name == "edge":
            _locale_collation(pg_url, "edge_transactions", "customer_id")
        return SqlBackend(dataset.ac, pg_url)

    def close(self) -> None:
        for backend in self._open.values():
            backend.close()


def _locale_collation(pg_url: str, table: str, column: str) -> None:
    """Give ``column`` a locale collation ("a" < "B"), as a database created with en_US would have,
    so the bytewise MIN/MAX test means something on a server whose default collation is C."""
    engine = create_db_engine(pg_url)
    try:
        with engine.begin() as conn:
            icu = conn.execute(sa.text("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'")).first()
            if icu is not None:
                conn.execute(
                    sa.text(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE "und-x-icu"')
                )
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def backend_pool() -> Iterator[BackendPool]:
    pool = BackendPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session", params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def open_backend(backend_kind: str, backend_pool: BackendPool, request: pytest.FixtureRequest) -> OpenBackend:
    pg_url: str | None = request.getfixturevalue("pg_url") if backend_kind == "postgres" else None
    return lambda dataset: backend_pool.get(backend_kind, dataset, pg_url)


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return materialise("sample", sample_frames(), tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    directory = tmp_path_factory.mktemp("edge")
    return materialise("edge", edge_frames(), directory, prefix="edge_", extra_filter=(HIDDEN_STORE,))


@pytest.fixture(scope="session")
def nan_edge(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The edge cases with NaN revenues (``datasets.NAN_REVENUE``)."""
    directory = tmp_path_factory.mktemp("nan")
    return materialise("nan", nan_frames(), directory, prefix="nan_", extra_filter=(HIDDEN_STORE,))


@pytest.fixture(scope="session")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The edge cases stored under other column names, read through the AC's name_map."""
    maps = {"transactions": {"revenue": "amount", "store_id": "shop"}, "stores": {"store_id": "shop_code"}}
    directory = tmp_path_factory.mktemp("renamed")
    return materialise(
        "renamed", edge_frames(), directory, prefix="ren_", extra_filter=(HIDDEN_STORE,), name_maps=maps
    )


@pytest.fixture(scope="session")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return materialise("calendar", calendar_frames(), tmp_path_factory.mktemp("calendar"), prefix="cal_")


@pytest.fixture(scope="session")
def calendar_ts(calendar: Dataset) -> Dataset:
    return day_from_timestamp(calendar)
