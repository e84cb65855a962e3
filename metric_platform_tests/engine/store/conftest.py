"""Fixtures binding the store suite to each manifest dialect (SQLite file, PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metric_platform.engine.store import EntryStore

GRACE_SECONDS = 60.0


class FakeClock:
    """A settable UTC clock; starts at the real time so file mtimes compare sensibly with it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=123456)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def manifest_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The manifest URL of one dialect; PostgreSQL tests share the session database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'manifest' / 'manifest.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def ac_name() -> str:
    """A unique AC per test, isolating tests that share the PostgreSQL session database."""
    return f"ac_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_store(manifest_url: str, data_dir: Path, clock: FakeClock) -> Iterator[Callable[..., EntryStore]]:
    """Open stores on this test's manifest and data dir (``cls=`` for a subclass); all closed after."""
    opened: list[EntryStore] = []

    def make(cls: type[EntryStore] = EntryStore) -> EntryStore:
        store = cls(manifest_url, data_dir, grace_seconds=GRACE_SECONDS, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., EntryStore]) -> EntryStore:
    return make_store()
