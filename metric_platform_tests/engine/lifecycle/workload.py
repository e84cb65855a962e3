"""A replayed, skewed request stream under a small byte budget (issue 4), shared by the workload
test and the eviction benchmark.

The catalogue is every (family, grain, window) of a set of families, the grains {store, region,
campaign, channel} x {day, week, month, quarter} and windows of different lengths; a seeded Zipf
draws the stream from it (a random permutation decides which requests are popular, so popularity
is not tied to the catalogue's order). ``replay`` sends the stream in order through
``MetricEngine.serve_metric`` on a fresh store, checks every answer against a reference (the same
request aggregated by the backend directly), checks after every request that the evictable bytes
are within the budget, and counts hits: serves that made no backend call.

The store's clock is a ``StepClock`` that moves one fixed tick per request, not the wall clock:
eviction scores are ages, and a replay must rank the same units the same way whether a request
took 5 ms or 500 ms, so that two policies compared on one stream see the same history. (Nearly:
Polars groups rows in no fixed order, so Parquet files, and the byte sizes eviction adds up, may
differ by a few bytes between runs; hit counts then move by a request or so.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.lifecycle.types import EngineLimits, EvictionPolicyKind, EvictionReport
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.sample_data import SampleSpec
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform_tests.engine.conftest import CountingBackend, direct_metric, sorted_frame

# Six whole months, May..October 2026: Q3 is whole, Q2 and Q4 are partly inside.
FIRST_DAY, LAST_DAY = date(2026, 5, 1), date(2026, 10, 31)
# Three weeks after the data ends: every day is past the retail AC's 3-day hold-off (all stable).
TODAY = date(2026, 11, 21)
PLACES = ("store", "region", "campaign", "channel")
PERIODS = ("day", "week", "month", "quarter")
# Nested and overlapping windows of 7 days to 6 months: a longer window finds part of its days
# memoized by a shorter one (one backend call for the rest), and the week and month windows are
# aligned with their buckets where the coarse ones are not (partial buckets, served, not kept).
WINDOWS = (
    DateWindow(date(2026, 10, 19), date(2026, 10, 25)),  # one ISO week
    DateWindow(date(2026, 10, 5), date(2026, 10, 25)),  # three weeks
    DateWindow(date(2026, 10, 1), date(2026, 10, 31)),  # a month
    DateWindow(date(2026, 8, 1), date(2026, 10, 31)),  # three months, not a quarter
    DateWindow(date(2026, 7, 1), date(2026, 9, 30)),  # Q3
    DateWindow(FIRST_DAY, LAST_DAY),  # everything
)
ZIPF_EXPONENT = 1.1
Policy = Literal["fd_dag", "lru"]
POLICIES: tuple[Policy, ...] = ("fd_dag", "lru")
CLOCK_START = datetime(2026, 11, 21, 8, tzinfo=UTC)
CLOCK_TICK = timedelta(seconds=30)


def sample_spec(rows: int) -> SampleSpec:
    """The generated sample every replay reads: ``rows`` transactions over the six months."""
    return SampleSpec(rows=rows, days=(LAST_DAY - FIRST_DAY).days + 1, end_date=LAST_DAY)


def fixed_today() -> date:
    return TODAY


@dataclass(frozen=True)
class Request:
    family: str
    grain: Grain
    window: DateWindow

    def describe(self) -> str:
        return f"{self.family} at ({', '.join(self.grain)}) over {self.window.start}..{self.window.end}"


def catalogue(
    ac: AnalyticalContext, families: Iterable[str], windows: Sequence[DateWindow] = WINDOWS
) -> tuple[Request, ...]:
    """Every family at every place x period grain over every window (grains in canonical order)."""
    return tuple(
        Request(family, ac.canonical_grain([place, period]), window)
        for family in families
        for place in PLACES
        for period in PERIODS
        for window in windows
    )


def zipf_stream(
    requests: Sequence[Request], length: int, *, seed: int, exponent: float = ZIPF_EXPONENT
) -> tuple[Request, ...]:
    """``length`` requests drawn from ``requests`` with P(rank k) ~ 1 / k**exponent, the ranks
    given to the requests by a seeded permutation; the same arguments give the same stream."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(requests))
    weights = 1.0 / np.arange(1, len(requests) + 1, dtype=np.float64) ** exponent
    picks = rng.choice(len(requests), size=length, p=weights / weights.sum())
    return tuple(requests[int(order[int(pick)])] for pick in picks)


class StepClock:
    """The store's clock during a replay: ``CLOCK_START`` plus one ``CLOCK_TICK`` per ``tick``."""

    def __init__(self, start: datetime = CLOCK_START, step: timedelta = CLOCK_TICK) -> None:
        self._now = start
        self._step = step

    def __call__(self) -> datetime:
        return self._now

    def tick(self) -> None:
        self._now += self._step


class RecordingEngine(MetricEngine):
    """A MetricEngine that keeps the report of every budget enforcement (the engine runs one after
    every serve that wrote and keeps no count of what it evicted)."""

    def __init__(
        self, ac: AnalyticalContext, store: EntryStore, *, limits: EngineLimits, today: Callable[[], date]
    ) -> None:
        super().__init__(ac, store, limits=limits, today=today)
        self.evictions: list[EvictionReport] = []

    def enforce_budget(self, *, to_bytes: int | None = None, dry_run: bool = False) -> EvictionReport:
        report = super().enforce_budget(to_bytes=to_bytes, dry_run=dry_run)
        self.evictions.append(report)
        return report


class References:
    """The expected answer of each distinct request, aggregated by the backend directly (computed
    once, then shared by every replay of the same data)."""

    def __init__(self, ac: AnalyticalContext, backend: DataAPIBackend) -> None:
        self.ac = ac
        self.backend = backend
        self._frames: dict[Request, pl.DataFrame] = {}

    def expected(self, request: Request) -> pl.DataFrame:
        if request not in self._frames:
            self._frames[request] = direct_metric(
                self.backend, self.ac, request.family, request.grain, window=request.window
            )
        return self._frames[request]

    def check(self, request: Request, served: pl.DataFrame) -> None:
        assert_frame_equal(
            sorted_frame(served, request.grain), self.expected(request), check_exact=False, rel_tol=1e-9
        )


@dataclass(frozen=True)
class Replay:
    """What one replay of a stream did."""

    policy: Policy
    budget: int
    requests: int
    hits: int  # serves with no backend aggregate
    backend_aggregates: int
    backend_extracts: int  # dimension maps read again after their QM entry was evicted
    enforcements: int  # budget enforcements that evicted something
    units_evicted: int
    metric_units_evicted: int
    bytes_evicted: int
    max_evictable: int  # the most evictable bytes seen after a request
    final_evictable: int
    seconds: float  # serving only: the reference checks and byte totals are not counted

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def ms_per_request(self) -> float:
        return self.seconds / self.requests * 1e3 if self.requests else 0.0


def open_engine(
    ac: AnalyticalContext, directory: Path, limits: EngineLimits, clock: StepClock
) -> RecordingEngine:
    """An engine over a fresh store (SQLite manifest) in ``directory`` on the replay's clock."""
    directory.mkdir(parents=True, exist_ok=True)
    store = EntryStore(f"sqlite:///{directory / 'manifest.sqlite'}", directory / "data", clock=clock)
    return RecordingEngine(ac, store, limits=limits, today=fixed_today)


def replay(
    ac: AnalyticalContext,
    backend: DataAPIBackend,
    stream: Sequence[Request],
    *,
    policy: Policy,
    budget: int,
    directory: Path,
    references: References | None = None,
    entry_byte_cap: int | None = None,
) -> Replay:
    """Serve ``stream`` in order on a fresh store under ``budget`` evictable bytes with ``policy``.

    ``entry_byte_cap`` (default: the budget) is the largest result memoized, in Polars' estimated
    in-memory bytes: the engine's default of a tenth of the budget is meant for budgets of GiB and
    would leave most results unmemoized under a budget of kB. Raises AssertionError as soon as the
    evictable bytes exceed the budget after a request or (with ``references``) an answer differs
    from its reference.
    """
    limits = EngineLimits(
        max_bytes_per_ac=budget,
        entry_byte_cap=entry_byte_cap if entry_byte_cap is not None else budget,
        eviction_policy=EvictionPolicyKind(policy),
    )
    clock = StepClock()
    counting = CountingBackend(backend)
    hits = 0
    seconds = 0.0
    max_evictable = 0
    engine = open_engine(ac, directory, limits, clock)
    try:
        for index, request in enumerate(stream):
            clock.tick()
            start = time.perf_counter()
            served = engine.serve_metric(
                request.family, request.grain, backend=counting, window=request.window
            )
            frame = served.frame.collect()
            seconds += time.perf_counter() - start
            hits += not served.provenance.path.backend_ranges
            if references is not None:
                references.check(request, frame)
            evictable = engine.store.byte_totals(ac.name).evictable
            if evictable > budget:
                msg = (
                    f"request {index} ({request.describe()}, {policy}): {evictable} evictable bytes "
                    f"after the serve, over the {budget}-byte budget"
                )
                raise AssertionError(msg)
            max_evictable = max(max_evictable, evictable)
        evicting = [report for report in engine.evictions if report.evicted]
        units = [unit for report in evicting for unit in report.evicted]
        return Replay(
            policy=policy,
            budget=budget,
            requests=len(stream),
            hits=hits,
            backend_aggregates=len(counting.aggregates),
            backend_extracts=len(counting.extracts),
            enforcements=len(evicting),
            units_evicted=len(units),
            metric_units_evicted=sum(unit.domain == Domain.METRIC.value for unit in units),
            bytes_evicted=sum(unit.bytes for unit in units),
            max_evictable=max_evictable,
            final_evictable=engine.store.byte_totals(ac.name).evictable,
            seconds=seconds,
        )
    finally:
        engine.close()
