"""Correctness gate (a): rollups over generated data and generated ACs equal SQL over the raw rows.

Each example writes a fresh fact table and AC (operator x column type x missing-value treatment x
base grain, sometimes a cache hint; read from Parquet or from a SQLite copy), opens a fresh engine
home, memoizes the base grain over a wide window, then serves coarse anchors over a window inside
it. Every coarse answer must come by rollup (the path ``explain`` predicted) and equal both the
backend's direct aggregate and hand-written DuckDB SQL over the Parquet files; and a cold serve,
its memoized re-serve and a third serve must give identical frames.
"""

from __future__ import annotations

import calendar
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from hypothesis import event, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend, DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.types import PathKind, Served
from metric_platform.errors import UserError
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import make_settings
from metric_platform_tests.engine.gate.compare import assert_same_rows
from metric_platform_tests.engine.gate.generated import (
    FAMILY,
    FINE_WINDOW,
    Case,
    cases,
    oracle,
    windows,
    write_case,
)

TODAY = dt.date(2026, 11, 21)
_TIME = {"day", "week", "month"}


@dataclass(frozen=True)
class Opened:
    case: Case
    directory: Path
    ac: AnalyticalContext
    backend: DataAPIBackend
    engine: MetricEngine


@contextmanager
def opened(case: Case) -> Iterator[Opened]:
    """The case on disk with a fresh engine home: no store is shared between examples."""
    directory = Path(tempfile.mkdtemp(prefix="gate-"))
    try:
        ac = load_ac(write_case(case, directory))
        backend = backend_for(ac)
        engine = MetricEngine.open(ac, make_settings(directory / "home"), today=lambda: TODAY)
        try:
            yield Opened(case, directory, ac, backend, engine)
        finally:
            engine.close()
            backend.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def expected_schema(case: Case, anchor: tuple[str, ...]) -> pl.Schema:
    """Written out here, not taken from the engine: dimension dtypes, then the value's."""
    columns: list[tuple[str, pl.DataType]] = [(d, pl.Date() if d in _TIME else pl.String()) for d in anchor]
    if case.operator == "COUNT":
        value: pl.DataType = pl.Int64()
    elif case.column_type == "boolean":
        value = pl.Boolean()
    else:
        value = pl.Int64() if case.column_type == "integer" else pl.Float64()
    return pl.Schema([*columns, (FAMILY, value)])


def check_answer(o: Opened, anchor: tuple[str, ...], window: DateWindow, served: pl.DataFrame) -> None:
    """``served`` equals the backend aggregating the raw rows and DuckDB doing the same."""
    c = o.case
    context = f"{c.source_kind}: {c.operator}/{c.column_type}/{c.treatment} at {anchor} over {window}"
    schema = expected_schema(o.case, anchor)
    assert served.schema == schema, f"{context}: schema {served.schema} != {schema}"
    family = o.ac.family(FAMILY)
    direct = o.backend.aggregate(AggregateRequest(family, o.ac.canonical_grain(anchor), window=window))
    assert_same_rows(served, direct.collect().select([*anchor, FAMILY]), context=f"{context} vs backend")
    assert_same_rows(
        served, oracle(o.case, o.directory, anchor, window, schema), context=f"{context} vs DuckDB"
    )


def _bucket(grain: str, day: dt.date) -> tuple[dt.date, int]:
    """The first day and the length in days of the ``grain`` bucket holding ``day``."""
    if grain == "month":
        return day.replace(day=1), calendar.monthrange(day.year, day.month)[1]
    return day - dt.timedelta(days=day.weekday()), 7


def partial_buckets(anchor: tuple[str, ...], window: DateWindow) -> tuple[dt.date, ...]:
    """Buckets of the anchor's time dimension only partly inside ``window``, counted day by day."""
    grain = next((g for g in ("month", "week") if g in anchor), None)
    if grain is None:
        return ()
    inside: dict[tuple[dt.date, int], int] = {}
    for offset in range(window.days):
        bucket = _bucket(grain, window.start + dt.timedelta(days=offset))
        inside[bucket] = inside.get(bucket, 0) + 1
    return tuple(start for (start, length), n in sorted(inside.items()) if n < length)


@settings(max_examples=25)
@given(case=cases(), window=windows(), data=st.data())
def test_rollup_from_a_memoized_finer_entry_equals_aggregating_the_raw_rows(
    case: Case, window: DateWindow, data: st.DataObject
) -> None:
    anchors = data.draw(st.permutations(case.coarse_anchors()), label="serve order")
    with opened(case) as o:
        fine = o.engine.serve_metric(FAMILY, case.base_grain, backend=o.backend, window=FINE_WINDOW)
        fine_frame = fine.frame.collect()
        assert fine.provenance.path.kind is PathKind.BACKEND
        check_answer(o, case.base_grain, FINE_WINDOW, fine_frame)
        # Day slices over a many-day window: always kept (only a one-cell lookup is a singleton;
        # empty days are kept too, so they are not fetched again).
        assert fine.provenance.memoized
        for anchor in anchors:
            predicted = o.engine.explain(FAMILY, anchor, window=window)[:2]
            served = o.engine.serve_metric(FAMILY, anchor, backend=o.backend, window=window)
            path = served.provenance.path
            assert (path.kind, path.source_anchor) == predicted, (
                f"explain said {predicted}: {path.describe()}"
            )
            event(f"coarse serve: {served.provenance.path.kind}")
            if fine.provenance.memoized:
                assert path.kind is PathKind.ROLLUP, f"{anchor}: {path.describe()}"
            assert served.provenance.partial_buckets == partial_buckets(anchor, window)
            check_answer(o, anchor, window, served.frame.collect())


def _kinds(served: list[Served]) -> list[PathKind]:
    return [s.provenance.path.kind for s in served]


@settings(max_examples=25)
@given(case=cases(), data=st.data())
def test_cold_memoized_and_reserved_answers_are_identical(case: Case, data: st.DataObject) -> None:
    anchor = data.draw(st.sampled_from([case.base_grain, *case.coarse_anchors()]), label="anchor")
    # Mostly whole buckets (memoizable); sometimes partial edges, which are recomputed every time.
    aligned = data.draw(st.sampled_from([anchor, anchor, ()]), label="align the window to")
    window = data.draw(windows(aligned), label="window")
    with opened(case) as o:
        served = [o.engine.serve_metric(FAMILY, anchor, backend=o.backend, window=window) for _ in range(3)]
        frames = [s.frame.collect() for s in served]
        keys = list(frames[0].columns)
        cold, memoized, reserved = (f.sort(keys, nulls_last=True) for f in frames)
        # Served from memory twice: identical to the bit. Cold vs memory: the same rows summed in
        # another order (a fresh frame vs the memoized file), so floats agree to rounding only.
        assert_frame_equal(reserved, memoized, check_exact=True)
        assert_frame_equal(memoized, cold, rel_tol=1e-12, abs_tol=1e-9)
        check_answer(o, anchor, window, frames[0])
        kinds = _kinds(served)
        event(f"serves: {', '.join(kinds)} anchor={anchor} memo={served[0].provenance.memoized}")
        assert kinds[0] is PathKind.BACKEND
        if served[0].provenance.memoized:
            fetched = served[0].provenance.path.source_anchor
            at_target = fetched == o.ac.canonical_grain(anchor)
            if not at_target:  # fetched at the native grain, memoized there (and at a hinted target)
                assert set(kinds[1:]) <= {PathKind.ROLLUP, PathKind.EXACT}, kinds
                assert kinds[1] == kinds[2], kinds
            elif not served[0].provenance.partial_buckets:
                assert kinds[1:] == [PathKind.EXACT, PathKind.EXACT], kinds
            assert not any(s.provenance.memoized for s in served[1:]), "memoized once, then read"


def test_max_over_nan_matches_sql() -> None:
    day = FINE_WINDOW.start + dt.timedelta(days=20)
    facts = pl.DataFrame(
        {
            "event_date": [day, day, day + dt.timedelta(days=1)],
            "store_id": ["s1", "s1", "s2"],
            "campaign_id": ["c1", "c1", "c1"],
            "amount": [1.0, float("nan"), 2.0],
            "flag": [True, True, True],
        }
    )
    stores = pl.DataFrame({"store_id": ["s1", "s2"], "region": ["north", "north"]})
    case = Case(facts, stores, "MAX", "float", "skip", ("day",), None)
    with opened(case) as o:
        o.engine.serve_metric(FAMILY, ("day",), backend=o.backend, window=FINE_WINDOW)
        served = o.engine.serve_metric(FAMILY, ("month",), backend=o.backend, window=FINE_WINDOW)
        assert served.provenance.path.kind is PathKind.ROLLUP
        check_answer(o, ("month",), FINE_WINDOW, served.frame.collect())


def test_a_repeated_dimension_key_does_not_make_rollup_and_backend_disagree() -> None:
    day = FINE_WINDOW.start + dt.timedelta(days=20)
    facts = pl.DataFrame(
        {
            "event_date": [day, day + dt.timedelta(days=1)],
            "store_id": ["s1", "s2"],
            "campaign_id": ["c1", "c1"],
            "amount": [1.0, 2.0],
            "flag": [True, True],
        }
    )
    stores = pl.DataFrame({"store_id": ["s1", "s1", "s2"], "region": ["north", "north", "south"]})
    case = Case(facts, stores, "SUM", "float", "skip", ("store", "day"), None)
    with opened(case) as o:
        o.engine.serve_metric(FAMILY, ("store", "day"), backend=o.backend, window=FINE_WINDOW)
        try:
            served = o.engine.serve_metric(FAMILY, ("region",), backend=o.backend, window=FINE_WINDOW)
        except UserError:
            return  # a typed error naming the repeated key is an acceptable answer too
        assert served.provenance.path.kind is PathKind.ROLLUP
        request = AggregateRequest(o.ac.family(FAMILY), ("region",), window=FINE_WINDOW)
        assert_same_rows(served.frame.collect(), o.backend.aggregate(request).collect())
