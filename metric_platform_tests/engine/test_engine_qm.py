"""The engine's QM domain end to end: memoization, invalidation by the schema fingerprint, errors,
column profiles, and identical profiles from the Polars and SQLite backends."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.sql_load import load_frames
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.keys import Domain
from metric_platform.errors import InvalidRequestError, UnknownNameError
from metric_platform.semantics.fingerprint import schema_fingerprint
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    QM_KEYS,
    CountingBackend,
    direct_qm,
    entries_of,
    make_settings,
    write_ac_variant,
)


def test_first_profile_computes_every_column_in_one_extract_and_stores_it(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    profile = engine.table_profile("transactions", backend=backend)

    assert backend.extracts == ["transactions"], "all missing columns are profiled in one pass"
    assert [c.column for c in profile.columns] == list(ac.schema("transactions").columns)
    assert profile.row_count == 3000
    entries = entries_of(engine, Domain.QM)
    assert sorted(e.key.anchor for e in entries) == sorted(
        ("transactions", c) for c in ac.schema("transactions").columns
    )
    for entry in entries:
        assert entry.meta.family_fingerprint == schema_fingerprint(ac, "transactions")
        assert_frame_equal(engine.store.scan(entry).collect(), direct_qm(backend, *entry.key.anchor))


def test_second_profile_is_served_from_memory_without_the_backend(
    engine: MetricEngine, backend: CountingBackend
) -> None:
    first = engine.table_profile("stores", backend=backend)
    before = {e.key: e for e in entries_of(engine, Domain.QM)}
    backend.extracts.clear()

    second = engine.table_profile("stores", backend=backend)

    assert second == first
    assert backend.extracts == [], "a memoized profile must not touch the source"
    after = {e.key: e for e in entries_of(engine, Domain.QM)}
    assert after.keys() == before.keys(), "no new entries"
    for key, entry in after.items():
        assert (entry.version, entry.path) == (before[key].version, before[key].path)
        assert entry.access_count == before[key].access_count + 1


def test_table_profile_computes_only_the_columns_not_yet_memoized(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine.column_profile("transactions", "revenue", backend=backend)
    revenue = next(e for e in entries_of(engine, Domain.QM) if e.key.dataset_id == "column_profile")
    backend.extracts.clear()

    engine.table_profile("transactions", backend=backend)

    assert backend.extracts == ["transactions"]
    profiles = [e for e in entries_of(engine, Domain.QM) if e.key.dataset_id == "column_profile"]
    assert len(profiles) == len(ac.schema("transactions").columns)
    kept = next(e for e in profiles if e.key.anchor == ("transactions", "revenue"))
    assert (kept.version, kept.path) == (revenue.version, revenue.path), "memoized column not recomputed"


def test_changing_the_schema_filter_makes_old_profiles_unservable(
    *,
    tmp_path: Path,
    sample_dir: Path,
    settings: Settings,
    ac: AnalyticalContext,
    engine: MetricEngine,
    backend: CountingBackend,
) -> None:
    changed_path = write_ac_variant(
        tmp_path / "acs",
        {
            "{schema: transactions, column: tenant_id, op: eq, value: acme}": (
                "{schema: transactions, column: tenant_id, op: ne, value: acme}"
            )
        },
    )
    changed = load_ac(changed_path, source_path=sample_dir)
    assert schema_fingerprint(changed, "transactions") != schema_fingerprint(ac, "transactions")
    assert schema_fingerprint(changed, "stores") == schema_fingerprint(ac, "stores")

    engine.table_profile("transactions", backend=backend)
    engine.table_profile("stores", backend=backend)
    old = {e.key: e for e in entries_of(engine, Domain.QM)}

    changed_backend = CountingBackend(backend_for(changed))
    changed_engine = MetricEngine.open(changed, settings)
    try:
        profile = changed_engine.table_profile("transactions", backend=changed_backend)
        assert changed_backend.extracts == ["transactions"], "the old profiles must not be served"
        assert profile.row_count == 0, "the new filter drops every row"
        changed_engine.table_profile("stores", backend=changed_backend)
        assert changed_backend.extracts == ["transactions"], "stores is untouched by the filter"
    finally:
        changed_engine.close()
        changed_backend.close()

    for key, entry in {e.key: e for e in entries_of(engine, Domain.QM)}.items():
        schema = key.anchor[0]
        if schema == "transactions":
            assert entry.version == old[key].version + 1
            assert entry.meta.family_fingerprint == schema_fingerprint(changed, schema)
            assert entry.row_count == 1 and engine.store.scan(entry).collect()["row_count"][0] == 0
        else:
            assert (entry.version, entry.path) == (old[key].version, old[key].path)
    # And the other way round: the original AC does not serve the changed AC's profiles either.
    backend.extracts.clear()
    assert engine.table_profile("transactions", backend=backend).row_count == 3000
    assert backend.extracts == ["transactions"]


def test_unknown_schema_is_a_did_you_mean_error(engine: MetricEngine, backend: CountingBackend) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown schema 'transaction'.*did you mean 'transactions'"):
        engine.table_profile("transaction", backend=backend)
    with pytest.raises(UnknownNameError, match=r"did you mean 'stores'"):
        engine.column_profile("store", "region", backend=backend)
    assert backend.extracts == []


def test_unknown_column_and_kind_are_unknown_name_errors_before_any_read(
    engine: MetricEngine, backend: CountingBackend
) -> None:
    with pytest.raises(UnknownNameError, match=r"no column 'revenu'.*revenue"):
        engine.column_profile("transactions", "revenu", backend=backend)
    with pytest.raises(UnknownNameError, match=r"unknown QM kind 'histogramm'.*histogram"):
        engine.serve(Domain.QM, "histogramm", ("transactions", "revenue"), backend=backend)
    with pytest.raises(InvalidRequestError, match=r"\(schema, column\)"):
        engine.serve(Domain.QM, "histogram", ("transactions",), backend=backend)
    assert backend.extracts == []
    assert entries_of(engine, Domain.QM) == []


@pytest.mark.parametrize("call", ["column", "kind"])
def test_unknown_column_and_kind_suggest_the_close_name(
    engine: MetricEngine, backend: CountingBackend, call: str
) -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean"):
        if call == "column":
            engine.column_profile("transactions", "revenu", backend=backend)
        else:
            engine.serve(Domain.QM, "histogramm", ("transactions", "revenue"), backend=backend)


def test_column_profile_has_top_values_and_a_histogram_for_numbers(
    engine: MetricEngine, backend: CountingBackend, sample_frames: dict[str, pl.DataFrame]
) -> None:
    transactions = sample_frames["transactions"]
    revenue = engine.column_profile("transactions", "revenue", backend=backend)

    non_null = transactions["revenue"].drop_nulls()
    assert revenue.null_count == transactions["revenue"].null_count() > 0
    assert revenue.numeric is not None and revenue.numeric.max == non_null.max()
    assert revenue.histogram, "a numeric column gets a histogram"
    assert sum(b.count for b in revenue.histogram) == non_null.len()
    assert revenue.histogram[0].lower == non_null.min()
    assert revenue.histogram[-1].upper == non_null.max()
    assert revenue.top_values and revenue.top_values[0].rank == 1

    store = engine.column_profile("transactions", "store_id", backend=backend)
    assert store.histogram == (), "text columns get no histogram"
    expected = transactions["store_id"].value_counts(sort=True).head(3)
    assert [(v.value, v.count) for v in store.top_values[:3]] == expected.rows()

    kinds = {(e.key.dataset_id, e.key.anchor[1]) for e in entries_of(engine, Domain.QM)}
    assert kinds == {
        ("column_profile", "revenue"),
        ("top_values", "revenue"),
        ("histogram", "revenue"),
        ("column_profile", "store_id"),
        ("top_values", "store_id"),
    }
    backend.extracts.clear()
    assert engine.column_profile("transactions", "revenue", backend=backend) == revenue
    assert backend.extracts == []


def test_profiles_are_identical_from_polars_and_sqlite(
    tmp_path: Path,
    ac: AnalyticalContext,
    sample_frames: dict[str, pl.DataFrame],
    engine: MetricEngine,
    backend: CountingBackend,
) -> None:
    database = tmp_path / "retail.sqlite"
    load_frames(f"sqlite:///{database}", sample_frames)
    sqlite_path = write_ac_variant(
        tmp_path / "acs",
        {"source:\n  kind: parquet\n  path: ../sample": f"source:\n  kind: sqlite\n  path: {database}"},
    )
    sqlite_ac = load_ac(sqlite_path)
    sqlite_backend = backend_for(sqlite_ac)
    assert sqlite_backend.name == "sqlite"
    sqlite_engine = MetricEngine.open(sqlite_ac, make_settings(tmp_path / "sqlite-home"))
    try:
        for schema in ac.schemas:
            assert sqlite_engine.table_profile(schema, backend=sqlite_backend) == engine.table_profile(
                schema, backend=backend
            )
        for column in ("revenue", "event_date", "updated_at", "customer_id", "is_returned"):
            assert sqlite_engine.column_profile(
                "transactions", column, backend=sqlite_backend
            ) == engine.column_profile("transactions", column, backend=backend)
        assert len(sqlite_engine.entries(Domain.QM)) >= QM_KEYS
    finally:
        sqlite_engine.close()
        sqlite_backend.close()
