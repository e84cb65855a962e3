"""Correctness gate (b), serves: every METRIC serve on Polars, SQLite and PostgreSQL equals DuckDB.

One engine per backend walks a script of serves in order, so later steps find what earlier ones
memoized: backend misses, exact hits, rollups along calendar and dimension-map edges (NULL channel
included), partial buckets at the window edges, a window that grows around memoized slices, the
non-rollable operators, and missing-value overrides. Every answer is checked against hand-written
DuckDB SQL over the Parquet files, and the path each step must take is asserted too.

The miss policy (ARCHITECTURE.md §9): a partition-invariant family is fetched at its native grain —
region by store, channel by campaign, any time dimension by day — memoized there per day, rolled up
in Polars along the verified dimension maps, and the target kept too when it is a cache_hint grain
with a time dimension. AVG and COUNT_DISTINCT are fetched (and kept) at the target.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.serving.types import PathKind
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import MissingValueKind, MissingValueTreatment
from metric_platform_tests.engine.gate.compare import assert_same_rows
from metric_platform_tests.engine.gate.conftest import OpenEngine, Sample, Source
from metric_platform_tests.engine.gate.retail_oracle import RetailOracle, propagate

D = dt.date
ALL = DateWindow(D(2026, 10, 12), D(2026, 11, 20))  # every event day of the sample
MID = DateWindow(D(2026, 10, 20), D(2026, 11, 10))  # partial October and November, partial weeks
MONTHS = DateWindow(D(2026, 10, 1), D(2026, 11, 30))  # whole months, beyond the data at both ends
WEEKS = DateWindow(D(2026, 10, 19), D(2026, 11, 15))  # Monday .. Sunday: four whole weeks
EARLY_NOV = DateWindow(D(2026, 11, 1), D(2026, 11, 10))
AROUND = DateWindow(D(2026, 10, 28), D(2026, 11, 14))  # EARLY_NOV plus days on both sides
OCT, NOV = D(2026, 10, 1), D(2026, 11, 1)

B, E, R = PathKind.BACKEND, PathKind.EXACT, PathKind.ROLLUP


@dataclass(frozen=True)
class Step:
    family: str
    anchor: tuple[str, ...]
    window: DateWindow
    kind: PathKind
    source: tuple[str, ...]  # the grain read (exact, rollup) or fetched (backend)
    partial: tuple[dt.date, ...] = ()
    mvt: MissingValueTreatment | None = None
    reducer: str | None = None  # the oracle's reducer for an mvt override


PROPAGATE = MissingValueTreatment(MissingValueKind.PROPAGATE)
IMPUTE_ZERO = MissingValueTreatment(MissingValueKind.IMPUTE, 0.0)

SCRIPT = (
    # SUM, skip: a miss at the native grain, its (region, day) cache_hint kept too; then rollups along
    # the calendar (partial months, whole weeks, no time).
    Step("revenue", ("region", "day"), ALL, B, ("store", "day")),
    Step("revenue", ("region", "day"), ALL, E, ("region", "day")),
    Step("revenue", ("region", "month"), MID, R, ("region", "day"), partial=(OCT, NOV)),
    Step("revenue", ("month", "region"), ALL, R, ("region", "day"), partial=(OCT, NOV)),
    Step("revenue", ("region",), ALL, R, ("region", "day")),
    Step("revenue", (), MID, R, ("region", "day")),
    Step("revenue", ("region", "week"), WEEKS, R, ("region", "day")),
    Step("revenue", ("store", "month"), ALL, R, ("store", "day"), partial=(OCT, NOV)),  # step 1's days
    # A window growing around memoized slices: one backend call for the missing days only.
    Step("revenue", ("campaign", "day"), EARLY_NOV, B, ("campaign", "day")),
    Step("revenue", ("campaign", "day"), AROUND, B, ("campaign", "day")),
    Step("revenue", ("campaign", "day"), AROUND, E, ("campaign", "day")),
    Step("revenue", ("region", "month"), AROUND, R, ("region", "day"), partial=(OCT, NOV)),
    # A miss that reads the native days it has (AROUND) and fetches the rest, then rolls them along
    # campaign -> channel; and one whose missing days hold no rows (not kept: nothing worth a slice)
    # while its cache_hint target, whole months, is.
    Step("revenue", ("channel", "day"), ALL, B, ("campaign", "day")),
    Step("revenue", ("channel", "month"), MID, R, ("campaign", "day"), partial=(OCT, NOV)),
    Step("revenue", ("region", "month"), MONTHS, B, ("store", "day")),
    Step("revenue", ("region", "month"), MONTHS, E, ("region", "month")),
    Step("revenue", ("region",), MONTHS, R, ("region", "month")),
    # SUM, impute 0.0, rolled up along campaign -> channel (a dimension map; organic rows: NULL).
    Step("spend", ("campaign", "day"), ALL, B, ("campaign", "day")),
    Step("spend", ("channel", "week"), WEEKS, R, ("campaign", "day")),  # a cache_hint: memoized
    Step("spend", ("channel", "week"), WEEKS, E, ("channel", "week")),
    Step("spend", ("channel",), WEEKS, R, ("channel", "week")),  # the cheapest finer entry
    Step(
        "spend", ("channel", "week"), MID, R, ("campaign", "day"), partial=(D(2026, 10, 19), D(2026, 11, 9))
    ),
    Step(
        "spend",
        ("channel", "month"),
        ALL,
        B,
        ("campaign", "day"),
        mvt=PROPAGATE,
        reducer=propagate("sum", "spend"),
        partial=(OCT, NOV),
    ),
    Step(
        "revenue",
        ("region",),
        MID,
        B,
        ("store", "day"),
        mvt=IMPUTE_ZERO,
        reducer="sum(coalesce(t.revenue, 0.0))",
    ),
    # SUM, propagate: a NULL anywhere below must survive every rollup.
    Step("conversions", ("store", "day"), MONTHS, B, ("store", "day")),
    Step("conversions", ("region", "month"), MONTHS, R, ("store", "day")),
    Step(
        "conversions",
        ("campaign", "week"),
        MID,
        B,
        ("campaign", "day"),
        partial=(D(2026, 10, 19), D(2026, 11, 9)),
    ),
    Step("conversions", ("year",), ALL, R, ("store", "day"), partial=(D(2026, 1, 1),)),
    # COUNT, MAX, BOOL_OR. A partial quarter: the cache_hint target is not kept, its days are.
    Step("transaction_count", ("region", "quarter"), MONTHS, B, ("store", "day"), partial=(OCT,)),
    Step("transaction_count", ("region", "day"), MONTHS, R, ("store", "day")),
    Step("transaction_count", ("quarter",), MONTHS, R, ("store", "day"), partial=(OCT,)),
    Step("largest_sale", ("store", "day"), ALL, B, ("store", "day")),
    Step(
        "largest_sale",
        ("region", "week"),
        MID,
        R,
        ("store", "day"),
        partial=(D(2026, 10, 19), D(2026, 11, 9)),
    ),
    Step("any_returned", ("store", "day"), ALL, B, ("store", "day")),
    Step("any_returned", ("region", "month"), MID, R, ("store", "day"), partial=(OCT, NOV)),
    Step("any_returned", ("channel",), ALL, B, ("campaign", "day")),
    Step("any_returned", ("channel",), MID, R, ("campaign", "day")),
    # AVG and COUNT_DISTINCT: never rolled up, fetched and exact hits only at their own grain.
    Step("average_sale", ("store", "day"), ALL, B, ("store", "day")),
    Step("average_sale", ("region", "month"), MONTHS, B, ("region", "month")),
    Step("average_sale", ("region", "month"), MONTHS, E, ("region", "month")),
    Step("average_sale", ("region",), MID, B, ("region",)),
    Step("unique_customers", ("day",), ALL, B, ("day",)),
    Step("unique_customers", ("month",), MONTHS, B, ("month",)),
    Step("unique_customers", ("week",), WEEKS, B, ("week",)),
    Step("unique_customers", (), MID, B, ()),
)


@pytest.fixture(scope="module")
def oracle(gate_sample: Sample) -> Iterator[RetailOracle]:
    opened = RetailOracle(gate_sample)
    yield opened
    opened.close()


def run_script(engine: MetricEngine, source: Source, oracle: RetailOracle, *, replay: bool) -> list[str]:
    """Serve every step, check it against DuckDB, explain and (first run only) the expected path;
    ``replay``: the same script on a second engine over the first one's home, where the path may
    differ (more is memoized) but the answer, the partial buckets and the explain must not."""
    failures: list[str] = []
    for number, step in enumerate(SCRIPT, 1):
        where = f"step {number} ({step.family} at {step.anchor} over {step.window.start}..{step.window.end})"
        if replay:
            where += ", replayed"
        predicted = engine.explain(step.family, step.anchor, window=step.window, mvt=step.mvt)[:2]
        served = engine.serve_metric(
            step.family, step.anchor, backend=source.backend, window=step.window, mvt=step.mvt
        )
        path = served.provenance.path
        if (path.kind, path.source_anchor) != predicted:
            failures.append(f"{where}: explain predicted {predicted}, serve did {path.describe()}")
        if not replay and path.kind is not step.kind:
            failures.append(f"{where}: {path.describe()}, expected {step.kind}")
        if not replay and path.source_anchor != step.source:
            failures.append(f"{where}: read ({', '.join(path.source_anchor)}), expected {step.source}")
        if served.provenance.partial_buckets != step.partial:
            failures.append(
                f"{where}: partial buckets {served.provenance.partial_buckets}, expected {step.partial}"
            )
        expected = oracle.metric(step.family, step.anchor, step.window, reducer=step.reducer)
        try:
            assert_same_rows(served.frame.collect(), expected, context=where)
        except AssertionError as exc:
            failures.append(str(exc))
    return failures


def test_every_serve_matches_duckdb(source: Source, oracle: RetailOracle, open_engine: OpenEngine) -> None:
    failures = run_script(open_engine(source.ac, "shared"), source, oracle, replay=False)
    assert not failures, f"{source.kind}:\n" + "\n".join(failures)
    failures = run_script(open_engine(source.ac, "shared"), source, oracle, replay=True)
    assert not failures, f"{source.kind}:\n" + "\n".join(failures)


def test_a_growing_window_computes_only_the_missing_days_in_one_call(
    source: Source, open_engine: OpenEngine
) -> None:
    engine = open_engine(source.ac)
    engine.serve_metric("revenue", ("store", "day"), backend=source.backend, window=EARLY_NOV)
    grown = engine.serve_metric("revenue", ("store", "day"), backend=source.backend, window=AROUND)
    path = grown.provenance.path
    assert path.backend_ranges == (AROUND,), "one call over the hull of the missing days"
    assert path.slices_read == EARLY_NOV.days


def test_explain_predicts_the_fetch_grain_of_an_mvt_override(
    parquet_ac: AnalyticalContext, open_engine: OpenEngine
) -> None:
    engine, backend = open_engine(parquet_ac), PolarsBackend(parquet_ac)
    predicted = engine.explain("revenue", ("region",), window=MID, mvt=IMPUTE_ZERO)[:2]
    served = engine.serve_metric("revenue", ("region",), backend=backend, window=MID, mvt=IMPUTE_ZERO)
    assert predicted == (served.provenance.path.kind, served.provenance.path.source_anchor)
