"""Speed of the foundation, measured against bare Polars and DuckDB in one run on the same data.

Off by default; run with ``.venv/bin/pytest -m benchmark -s metric_platform_tests/benchmarks``.
Every timed result is also checked against DuckDB's, since ratios between wrong answers mean
nothing. The figures go to ``benchmark_reports/foundation.md`` and to stdout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from metric_platform.backends.protocol import AggregateRequest, DateWindow
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.qm.profiling import profile_columns
from metric_platform.engine.qm.projections import TableProfile
from metric_platform.engine.serving.types import PathKind
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import EntryMeta
from metric_platform.settings import Settings
from metric_platform_tests.benchmarks.conftest import Bench, BenchData
from metric_platform_tests.benchmarks.report import Report, Table, Timing, measure, ms, ratio
from metric_platform_tests.engine.conftest import miss_grains

pytestmark = pytest.mark.benchmark

REL_TOL = 1e-6
TENANT = "acme"  # data/acs/retail.yaml filters transactions on tenant_id = 'acme'
# The engine's "today": the default window (the AC's partitions, 2026-01-01 .. today) is then
# fixed, and made of whole months, so a cache_hint month grain is memoized and hit exactly.
TODAY = date(2026, 11, 30)
WINDOW = DateWindow(date(2026, 1, 1), TODAY)
MONTHS_IN_WINDOW = 11


@pytest.fixture
def engine(tmp_path: Path, bench_data: BenchData) -> Iterator[MetricEngine]:
    """An engine over an empty store with its manifest in a SQLite file, and a fixed today."""
    settings = Settings(
        home=tmp_path / "home",
        engine_manifest_url=f"sqlite:///{tmp_path / 'manifest.sqlite'}",
        engine_data_dir=tmp_path / "entries",
    )
    with MetricEngine.open(bench_data.ac, settings, today=lambda: TODAY) as opened:
        yield opened


@dataclass(frozen=True)
class Query:
    family: str
    anchor: tuple[str, ...]
    # The same aggregate written by hand: the lazy Polars plan and DuckDB SQL over the Parquet.
    polars: Callable[[BenchData], pl.LazyFrame]
    sql: str  # {t}: transactions, {s}: stores

    @property
    def label(self) -> str:
        return f"{self.family} @ ({', '.join(self.anchor)})"


def _facts(data: BenchData) -> pl.LazyFrame:
    return pl.scan_parquet(data.parquet("transactions")).filter(pl.col("tenant_id") == TENANT)


def _with_region(data: BenchData) -> pl.LazyFrame:
    stores = pl.scan_parquet(data.parquet("stores")).select("store_id", "region")
    return _facts(data).join(stores, on="store_id", how="left")


_DAY = pl.col("event_date").alias("day")
_REVENUE = pl.col("revenue").sum()
QUERIES = (
    Query(
        "revenue",
        ("region", "day"),
        lambda d: _with_region(d).group_by("region", _DAY).agg(_REVENUE),
        "select s.region, t.event_date as day, sum(t.revenue) as revenue from {t} t "
        "left join {s} s on t.store_id = s.store_id where t.tenant_id = 'acme' group by 1, 2",
    ),
    Query(
        "revenue",
        ("store", "day"),
        lambda d: _facts(d).group_by(pl.col("store_id").alias("store"), _DAY).agg(_REVENUE),
        "select store_id as store, event_date as day, sum(revenue) as revenue from {t} "
        "where tenant_id = 'acme' group by 1, 2",
    ),
    Query(
        "revenue",
        ("region", "month"),
        lambda d: (
            _with_region(d)
            .group_by("region", pl.col("event_date").dt.truncate("1mo").alias("month"))
            .agg(_REVENUE)
        ),
        "select s.region, date_trunc('month', t.event_date)::date as month, sum(t.revenue) as revenue "
        "from {t} t left join {s} s on t.store_id = s.store_id where t.tenant_id = 'acme' group by 1, 2",
    ),
    Query(
        "unique_customers",
        ("day",),
        lambda d: (
            _facts(d)
            .group_by(_DAY)
            .agg(pl.col("customer_id").drop_nulls().n_unique().alias("unique_customers"))
        ),
        "select event_date as day, count(distinct customer_id) as unique_customers from {t} "
        "where tenant_id = 'acme' group by 1",
    ),
)


def _read(data: BenchData, table: str) -> str:
    path = str(data.parquet(table)).replace("'", "''")
    return f"read_parquet('{path}')"


def assert_same(
    actual: pl.DataFrame, expected: pl.DataFrame, keys: tuple[str, ...], *, null_as_zero: bool = False
) -> None:
    """Equal after sorting by ``keys``; floats within REL_TOL; ``expected`` cast to ``actual``'s dtypes.

    ``null_as_zero``: a SUM over only NULLs is NULL in SQL but 0 in a hand-written Polars ``sum``,
    so numeric NULLs count as 0 (used for the aggregates only, never for the profiles).
    """
    assert actual.columns == expected.columns, (actual.columns, expected.columns)
    expected = expected.cast(actual.schema)
    numeric = [c for c, dtype in actual.schema.items() if c not in keys and dtype.is_numeric()]
    fill = [pl.col(c).fill_null(0) for c in numeric] if null_as_zero else []
    assert_frame_equal(
        actual.with_columns(fill).sort(keys, nulls_last=True),
        expected.with_columns(fill).sort(keys, nulls_last=True),
        check_exact=False,
        rel_tol=REL_TOL,
    )


def _print(table: Table) -> None:
    print("\n" + table.to_markdown())


def _clear(engine: MetricEngine, domain: Domain) -> Callable[[], None]:
    def clear() -> None:
        for entry in engine.entries(domain):
            engine.store.delete(entry.key, force=True)

    return clear


def _aggregate_row(query: str, name: str, timing: Timing, bare: Timing, duck: Timing) -> tuple[str, ...]:
    return (query, name, ms(timing.median_ms), ratio(timing.median_ms, bare.median_ms),
            ratio(timing.median_ms, duck.median_ms))  # fmt: skip


def test_metric_aggregate_miss_and_hit(bench: Bench, engine: MetricEngine) -> None:
    reps, ac, backend = bench.config.reps, bench.data.ac, bench.polars
    sqlite = bench.sqlite
    con = duckdb.connect()
    aggregate_rows: list[tuple[str, ...]] = []
    memo_rows: list[tuple[str, ...]] = []
    for q in QUERIES:
        request = AggregateRequest(ac.family(q.family), ac.canonical_grain(q.anchor))
        sql = q.sql.format(t=_read(bench.data, "transactions"), s=_read(bench.data, "stores"))

        def serve(q: Query = q) -> pl.DataFrame:
            return engine.serve(Domain.METRIC, q.family, q.anchor, backend=backend).collect()

        def via_backend(request: AggregateRequest = request) -> pl.DataFrame:
            return backend.aggregate(request).collect()

        def by_hand(q: Query = q) -> pl.DataFrame:
            return q.polars(bench.data).collect()

        def via_duckdb(sql: str = sql) -> pl.DataFrame:
            frame: pl.DataFrame = con.sql(sql).pl()
            return frame

        miss, missed = measure(serve, reps=reps, setup=_clear(engine, Domain.METRIC))
        hit, hit_frame = measure(serve, reps=reps)
        _check_memoized(engine, q)
        timings: dict[str, Timing] = {"engine serve, miss (backend + memoize)": miss}
        timings["Polars backend aggregate"], from_backend = measure(via_backend, reps=reps)
        timings["bare Polars (hand-written)"], from_hand = measure(by_hand, reps=reps)
        timings["DuckDB SQL over Parquet"], from_duckdb = measure(via_duckdb, reps=reps)
        results = [missed, hit_frame, from_backend, from_hand]
        if sqlite is not None:

            def via_sqlite(request: AggregateRequest = request, sqlite: SqlBackend = sqlite) -> pl.DataFrame:
                return sqlite.aggregate(request).collect()

            timings["SQLite backend aggregate"], from_sqlite = measure(via_sqlite, reps=reps)
            results.append(from_sqlite)
        for frame in results:
            expected = from_duckdb.select(missed.columns)
            assert_same(frame.select(missed.columns), expected, q.anchor, null_as_zero=True)
        bare, duck = timings["bare Polars (hand-written)"], timings["DuckDB SQL over Parquet"]
        aggregate_rows += [_aggregate_row(q.label, name, t, bare, duck) for name, t in timings.items()]
        memo_rows.append(
            (q.label, ms(miss.median_ms), ms(hit.median_ms), f"{miss.median_ms / hit.median_ms:.1f}x",
             ratio(hit.median_ms, bare.median_ms), ratio(hit.median_ms, duck.median_ms))
        )  # fmt: skip
    con.close()
    checked = "every result equals DuckDB's (sorted; floats within 1e-6 relative)"
    aggregate = Table(
        "1. Metric aggregate, backend miss",
        ("query", "contender", "median ms", "x bare Polars", "x DuckDB"),
        tuple(aggregate_rows),
        (
            "engine miss = from an empty store: backend aggregate at the native grain (region by store, "
            "by day) + rollup along the memoized store -> region map + Parquet writes + manifest commits",
            checked,
        ),
    )
    memo = Table(
        "2. Memo hit (exact entry: manifest lookup + access record + Parquet scan + collect)",
        ("query", "miss ms", "hit ms", "speed-up", "hit x bare Polars", "hit x DuckDB"),
        tuple(memo_rows),
        (checked,),
    )
    for table in (aggregate, memo):
        bench.report.add(table)
        _print(table)


def _check_memoized(engine: MetricEngine, q: Query) -> None:
    """The hits were exact reads of what the last miss memoized, by the policy: the native day
    slices over the whole window, and the target as well when it is a cache_hint grain."""
    ac = engine.ac
    target = ac.canonical_grain(q.anchor)
    kept = miss_grains(ac, q.family, q.anchor)
    assert target in kept, f"{q.label}: the target is memoized, so a hit is exact"
    metric = engine.entries(Domain.METRIC)
    assert {e.key.anchor for e in metric} == kept, q.label
    for grain in kept:
        slices = [e for e in metric if e.key.anchor == grain]
        expected = MONTHS_IN_WINDOW if "month" in grain else WINDOW.days
        assert len(slices) == expected, (q.label, grain, len(slices))
    assert engine.explain(q.family, q.anchor)[:2] == (PathKind.EXACT, target), q.label


def test_profiling(bench: Bench, engine: MetricEngine) -> None:
    reps, backend, sqlite = bench.config.reps, bench.polars, bench.sqlite
    transactions = _read(bench.data, "transactions")
    con = duckdb.connect()

    def profile() -> TableProfile:
        return engine.table_profile("transactions", backend=backend)

    def bare_profile() -> pl.DataFrame:
        return profile_columns(pl.scan_parquet(bench.data.parquet("transactions")), "transactions")

    def summarize() -> pl.DataFrame:
        frame: pl.DataFrame = con.sql(f"summarize select * from {transactions}").pl()
        return frame

    cold, cold_profile = measure(profile, reps=reps, setup=_clear(engine, Domain.QM))
    assert len(engine.entries(Domain.QM)) == len(bench.data.ac.schema("transactions").columns)
    warm, warm_profile = measure(profile, reps=reps)
    assert warm_profile == cold_profile
    bare, bare_frame = measure(bare_profile, reps=reps)
    duck, _ = measure(summarize, reps=reps)
    _check_profile(cold_profile, con, transactions)
    con.close()
    timings = {
        "engine table_profile, cold (extract + profile + publish 12)": cold,
        "engine table_profile, warm (12 entries read)": warm,
        "bare Polars profile_columns(scan_parquet)": bare,
        "DuckDB SUMMARIZE over Parquet (reference)": duck,
    }
    notes = ["engine profile checked against DuckDB: row, null and distinct counts, numeric min/max/mean"]
    if sqlite is not None:

        def sqlite_profile(sqlite: SqlBackend = sqlite) -> pl.DataFrame:
            return profile_columns(sqlite.extract_to_lazyframe("transactions"), "transactions")

        sqlite_reps = min(reps, 3)  # ~8 s each at 1M rows: the extract builds the frame row by row
        label = f"SQLite backend extract + profile_columns (median of {sqlite_reps})"
        timings[label], sqlite_frame = measure(sqlite_profile, reps=sqlite_reps)
        assert_same(sqlite_frame, bare_frame, ("column",))
        notes.append("the SQLite profile equals the bare Polars one (floats within 1e-6 relative)")
    rows = tuple(
        (name, ms(t.median_ms), ratio(t.median_ms, bare.median_ms), ratio(t.median_ms, duck.median_ms))
        for name, t in timings.items()
    )
    table = Table(
        "3. Profiling (transactions, 12 columns)",
        ("contender", "median ms", "x bare Polars", "x DuckDB SUMMARIZE"),
        rows,
        tuple(notes),
    )
    bench.report.add(table)
    _print(table)


def _check_profile(profile: TableProfile, con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Row, null and distinct counts and numeric bounds as DuckDB computes them."""
    parts = ["count(*)"]
    for column in profile.columns:
        parts += [f'count("{column.column}")', f'count(distinct "{column.column}")']
    (counts,) = con.sql(f"select {', '.join(parts)} from {source}").fetchall()
    assert profile.row_count == counts[0]
    for i, column in enumerate(profile.columns):
        expected = (counts[0] - counts[1 + 2 * i], counts[2 + 2 * i])
        assert (column.null_count, column.distinct_count) == expected, column.column
        if column.numeric is None:
            continue
        c = column.column
        ((low, high, mean),) = con.sql(
            f'select min("{c}")::double, max("{c}")::double, avg("{c}")::double from {source}'
        ).fetchall()
        assert (column.numeric.min, column.numeric.max) == (low, high), c
        assert column.numeric.mean == pytest.approx(mean, rel=REL_TOL), c


def _store_meta() -> EntryMeta:
    return EntryMeta(
        operator="SUM",
        partition_invariant=True,
        mvt="skip",
        imputation_value=None,
        family_fingerprint="bench",
        source_schemas=("transactions",),
        source_filter=None,
        stability_cutoff=None,
        verification_level="AAA",
        source_fingerprint=None,
    )


def test_store_overhead(tmp_path: Path, bench_report: Report) -> None:
    # Independent of the row count: the cost of the store itself on a small entry.
    count, height = 50, 1_000
    first = date(2026, 1, 1)
    frame = pl.DataFrame(
        {
            "region": [f"r{i % 5}" for i in range(height)],
            "day": [first + timedelta(days=i // 5) for i in range(height)],
            "revenue": [i * 1.25 for i in range(height)],
        }
    )
    meta = _store_meta()
    keys = [EntryKey("bench", Domain.METRIC, f"metric_{i}", ("region", "day")) for i in range(count)]
    with EntryStore(f"sqlite:///{tmp_path / 'manifest.sqlite'}", tmp_path / "entries") as store:

        def publish(key: EntryKey) -> Timing:
            return measure(functools.partial(store.publish, key, frame, meta), reps=1, warmup=0)[0]

        def read(key: EntryKey) -> pl.DataFrame:
            entry = store.get(key)
            assert entry is not None
            return store.scan(entry).collect()

        publish(EntryKey("bench", Domain.METRIC, "warmup", ("region", "day")))
        publishes = [publish(key) for key in keys]
        replaces = [publish(key) for key in keys]
        reads = [measure(functools.partial(read, key), reps=1, warmup=0) for key in keys]
    for _, read_back in reads:
        assert_frame_equal(read_back, frame)
    rows = []
    for name, timings in (
        ("publish, new key (Parquet write + fsync + manifest commit)", publishes),
        ("publish, replacing the key (+ retire the old file)", replaces),
        ("get + scan + collect", [t for t, _ in reads]),
    ):
        pooled = Timing(tuple(s for t in timings for s in t.samples))
        rows.append((name, ms(pooled.median_ms), ms(pooled.p95_ms)))
    table = Table(
        f"4. Store overhead ({height:,}-row entry, {count} operations, manifest on SQLite)",
        ("operation", "p50 ms", "p95 ms"),
        tuple(rows),
        ("read-back frames equal the published frame",),
    )
    bench_report.add(table)
    _print(table)
