"""Pins survive eviction whichever path served them, partly memoized targets are never overwritten
by empty slices, and an AC edit that drops the hold-off turns provisional slices stale (review of
issue 4)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from polars.testing import assert_frame_equal

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.lifecycle.types import StaleSlices
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import (
    CountingBackend,
    direct_metric,
    sorted_frame,
    write_ac_variant,
)

STORE_DAY = ("store", "day")
REGION_MONTH = ("region", "month")
OCTOBER = DateWindow(date(2026, 10, 1), date(2026, 10, 31))
OCTOBER_NOVEMBER = DateWindow(date(2026, 10, 1), date(2026, 11, 30))
STABILITY_BLOCK = """stability:
  timestamp: {schema: transactions, column: updated_at}
  hold_off_days: 3
"""


def base(ac: AnalyticalContext, grain: tuple[str, ...]) -> EntryKey:
    return EntryKey(ac.name, Domain.METRIC, "revenue", grain)


def test_pinning_from_memory_pins_the_slices_read_and_eviction_keeps_them(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    window = DateWindow(date(2026, 11, 1), date(2026, 11, 10))
    engine.serve_metric("revenue", STORE_DAY, backend=backend, window=window)
    served = engine.serve_metric("revenue", STORE_DAY, backend=backend, window=window, pin=True)
    assert served.provenance.path.kind is PathKind.EXACT
    slices = engine.store.list_slices(base(ac, STORE_DAY))
    assert len(slices) == 10 and all(entry.pinned for entry in slices)
    engine.enforce_budget(to_bytes=0)
    assert len(engine.store.list_slices(base(ac, STORE_DAY))) == 10, "pinned slices are never evicted"


def test_pinning_over_target_buckets_memoized_alone_keeps_them_whole(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    engine.serve_metric("revenue", REGION_MONTH, backend=backend, window=OCTOBER)
    for entry in engine.store.list_slices(base(ac, STORE_DAY)):  # as if evicted
        engine.store.delete(entry.key)
    engine.serve_metric("revenue", REGION_MONTH, backend=backend, window=OCTOBER_NOVEMBER, pin=True)
    months = engine.store.list_slices(base(ac, REGION_MONTH))
    assert [e.key.slice_day for e in months] == [OCTOBER.start, date(2026, 11, 1)]
    assert all(e.pinned for e in months) and months[0].row_count > 0
    again = engine.serve_metric("revenue", REGION_MONTH, backend=backend, window=OCTOBER)
    assert again.provenance.path.kind is PathKind.EXACT
    expected = direct_metric(backend.inner, ac, "revenue", REGION_MONTH, window=OCTOBER)
    assert_frame_equal(sorted_frame(again.frame.collect(), REGION_MONTH), expected)


def test_dropping_the_stability_block_makes_provisional_slices_stale(
    ac: AnalyticalContext, settings: Settings, backend: CountingBackend, sample_dir: Path, tmp_path: Path
) -> None:
    window = DateWindow(date(2026, 11, 15), date(2026, 11, 20))
    with MetricEngine.open(ac, settings, today=lambda: date(2026, 11, 21)) as engine:
        served = engine.serve_metric("revenue", STORE_DAY, backend=backend, window=window)
        assert served.provenance.provisional_buckets == (date(2026, 11, 19), date(2026, 11, 20))
    edited = load_ac(write_ac_variant(tmp_path / "ac", {STABILITY_BLOCK: ""}), source_path=sample_dir)
    assert edited.stability is None
    with MetricEngine.open(edited, settings, today=lambda: date(2026, 11, 21)) as engine:
        stale = engine.stale()
        assert [(g.anchor, g.days) for g in stale] == [(STORE_DAY, (date(2026, 11, 19), date(2026, 11, 20)))]
        assert isinstance(stale[0], StaleSlices)
        backend.aggregates.clear()
        again = engine.serve_metric("revenue", STORE_DAY, backend=backend, window=window)
        assert [r.window for r in backend.aggregates] == [DateWindow(date(2026, 11, 19), date(2026, 11, 20))]
        assert not again.provenance.provisional
        assert engine.stale() == []


def test_deleting_a_listed_version_leaves_a_newer_replacement(
    engine: MetricEngine, backend: CountingBackend, ac: AnalyticalContext
) -> None:
    day = DateWindow.day(date(2026, 11, 2))
    engine.serve_metric("revenue", STORE_DAY, backend=backend, window=day)
    (listed,) = engine.store.list_slices(base(ac, STORE_DAY))
    engine.serve_metric("revenue", STORE_DAY, backend=backend, window=day, recompute=True)  # version 2
    assert not engine.store.delete(listed.key, if_version=listed.version)
    (current,) = engine.store.list_slices(base(ac, STORE_DAY))
    assert current.version == listed.version + 1
    assert engine.store.delete(current.key, if_version=current.version)
    assert engine.store.list_slices(base(ac, STORE_DAY)) == []
