"""Entries are served only to the source they were computed from (``DataAPIBackend.source_identity``),
and QM entries and dimension maps only while their table is unchanged (``table_stamp``).

Two Parquet roots hold different data for the same AC; a third backend reads the first root again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.identity import source_fingerprint, table_fingerprint
from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.metric_server import MetricServer
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.keys import Domain
from metric_platform.sample_data import write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import (
    RETAIL_YAML,
    SAMPLE_WINDOW,
    direct_metric,
    fixed_today,
    make_settings,
    metric_base,
    sorted_frame,
)


class CountingPolars(PolarsBackend):
    """A Polars backend that records the engine's calls to the source."""

    def __init__(self, ac: AnalyticalContext, root: Path | None = None) -> None:
        super().__init__(ac, root)
        self.extracts: list[str] = []
        self.aggregates: list[AggregateRequest] = []

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        self.extracts.append(schema)
        return super().extract_to_lazyframe(schema)

    def aggregate(self, request: AggregateRequest) -> pl.LazyFrame:
        self.aggregates.append(request)
        return super().aggregate(request)


@dataclass(frozen=True)
class Setup:
    ac: AnalyticalContext
    home: Path
    root: Path  # the AC's source
    other: Path  # the same tables, other rows


@pytest.fixture
def setup(tmp_path: Path, sample_frames: dict[str, pl.DataFrame]) -> Setup:
    root, other = tmp_path / "root", tmp_path / "other"
    write_parquet(sample_frames, root)
    write_parquet({**sample_frames, "transactions": sample_frames["transactions"].head(500)}, other)
    return Setup(load_ac(RETAIL_YAML, source_path=root), tmp_path / "home", root, other)


@pytest.fixture
def engine(setup: Setup) -> Iterator[MetricEngine]:
    opened = MetricEngine.open(setup.ac, make_settings(setup.home), today=fixed_today)
    yield opened
    opened.close()


def rotated_regions(stores: pl.DataFrame) -> pl.DataFrame:
    """Every store moved to the region of the store before it: same shape, other grouping."""
    return stores.with_columns(pl.col("region").shift(1, fill_value=stores["region"][-1]))


def test_serving_through_another_root_does_not_poison_the_acs_entries(
    setup: Setup, engine: MetricEngine
) -> None:
    """The reviewer's repro: a backend over other data must not leave its slices to the AC's."""
    other = CountingPolars(setup.ac, root=setup.other)
    normal = CountingPolars(setup.ac)
    grain = ("day",)
    poisoned = engine.serve(Domain.METRIC, "transaction_count", grain, backend=other, window=SAMPLE_WINDOW)
    assert poisoned.collect()["transaction_count"].sum() == 500

    served = engine.serve_metric("transaction_count", grain, backend=normal, window=SAMPLE_WINDOW)

    assert served.provenance.path.kind is PathKind.BACKEND
    assert len(normal.aggregates) == 1
    want = direct_metric(normal, setup.ac, "transaction_count", grain, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(served.frame.collect(), grain), want)
    assert want["transaction_count"].sum() == 3000
    # the other root's slices were replaced: every slice now records the AC's own source
    slices = engine.store.list_slices(metric_base(setup.ac, "transaction_count", grain))
    assert slices
    assert {e.meta.source_fingerprint for e in slices} == {source_fingerprint(normal)}


def test_a_metric_slice_from_another_root_is_not_served(setup: Setup, engine: MetricEngine) -> None:
    grain = ("store", "day")
    other = CountingPolars(setup.ac, root=setup.other)
    engine.serve_metric("revenue", grain, backend=other, window=SAMPLE_WINDOW)
    same_root = CountingPolars(setup.ac, root=setup.other)  # another backend object, same source
    again = engine.serve_metric("revenue", grain, backend=same_root, window=SAMPLE_WINDOW)
    assert again.provenance.path.kind is PathKind.EXACT
    assert same_root.aggregates == []

    normal = CountingPolars(setup.ac)
    server = MetricServer(setup.ac, engine.store, entry_byte_cap=10**9, today=fixed_today)
    kind, _, rejections = server.explain("revenue", grain, window=SAMPLE_WINDOW, backend=normal)
    assert kind is PathKind.BACKEND
    assert any("covers 0 of 30 days" in r.reason for r in rejections), rejections
    served = engine.serve_metric("revenue", grain, backend=normal, window=SAMPLE_WINDOW)
    assert served.provenance.path.kind is PathKind.BACKEND
    assert len(normal.aggregates) == 1
    want = direct_metric(normal, setup.ac, "revenue", grain, window=SAMPLE_WINDOW)
    assert_frame_equal(sorted_frame(served.frame.collect(), grain), want)


def test_a_metric_slice_ignores_changes_to_its_table(setup: Setup, engine: MetricEngine) -> None:
    """Slices record the source, not the table stamp: memoized days follow the stability cutoff."""
    backend = CountingPolars(setup.ac)
    engine.serve_metric("transaction_count", ("day",), backend=backend, window=SAMPLE_WINDOW)
    facts = pl.read_parquet(setup.root / "transactions.parquet")
    write_parquet({"transactions": facts.head(100)}, setup.root)
    again = engine.serve_metric("transaction_count", ("day",), backend=backend, window=SAMPLE_WINDOW)
    assert again.provenance.path.kind is PathKind.EXACT
    assert len(backend.aggregates) == 1


def test_regenerating_a_table_recomputes_its_profiles_only(
    setup: Setup, engine: MetricEngine, sample_frames: dict[str, pl.DataFrame]
) -> None:
    backend = CountingPolars(setup.ac)
    engine.table_profile("transactions", backend=backend)
    before = engine.table_profile("stores", backend=backend)
    assert engine.table_profile("stores", backend=backend) == before
    assert backend.extracts == ["transactions", "stores"]
    old_entries = {e.key: e for e in engine.entries(Domain.QM)}

    stores = sample_frames["stores"]
    write_parquet(
        {"stores": pl.concat([stores, stores.head(1).with_columns(store_id=pl.lit("S999"))])}, setup.root
    )
    backend.extracts.clear()
    engine.table_profile("transactions", backend=backend)
    after = engine.table_profile("stores", backend=backend)

    assert backend.extracts == ["stores"], "only the regenerated table is read again"
    assert (before.row_count, after.row_count) == (stores.height, stores.height + 1)
    for entry in engine.entries(Domain.QM):
        old = old_entries[entry.key]  # replaced, not added
        schema = entry.key.anchor[0]
        assert (entry.version > old.version) == (schema == "stores"), entry.key
        assert entry.meta.source_fingerprint == table_fingerprint(backend, schema)


def test_a_profile_from_another_root_is_recomputed(setup: Setup, engine: MetricEngine) -> None:
    other = CountingPolars(setup.ac, root=setup.other)
    normal = CountingPolars(setup.ac)
    assert engine.column_profile("transactions", "txn_id", backend=other).row_count == 500
    profile = engine.column_profile("transactions", "txn_id", backend=normal)
    assert profile.row_count == 3000
    assert normal.extracts  # computed, not served from the other root's entries


def test_a_changed_dimension_table_rebuilds_its_map(
    setup: Setup, engine: MetricEngine, sample_frames: dict[str, pl.DataFrame]
) -> None:
    """Rollups along store -> region join the map of the stores table as it is now."""
    backend = CountingPolars(setup.ac)
    engine.serve_metric("revenue", ("store", "day"), backend=backend, window=SAMPLE_WINDOW)
    first = engine.serve_metric("revenue", ("region",), backend=backend, window=SAMPLE_WINDOW)
    assert first.provenance.path.kind is PathKind.ROLLUP

    write_parquet({"stores": rotated_regions(sample_frames["stores"])}, setup.root)
    second = engine.serve_metric("revenue", ("region",), backend=backend, window=SAMPLE_WINDOW)

    assert second.provenance.path.kind is PathKind.ROLLUP
    assert backend.extracts.count("stores") == 2, "the map was rebuilt from the rewritten table"
    want = direct_metric(backend, setup.ac, "revenue", ("region",), window=SAMPLE_WINDOW)
    got = sorted_frame(second.frame.collect(), ("region",))
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9)
    assert not got.equals(sorted_frame(first.frame.collect(), ("region",)))
