"""The Metric Engine: one instance per analytical context (seed 003 §2.1, §4).

``serve(domain, dataset_id, anchor, *, backend)`` returns a single-column-with-anchor LazyFrame;
whether it came from a memoized entry, a rollup or the backend is the engine's business, recorded
in the manifest and in the provenance of ``serve_metric``, not the caller's. The backend is passed
per call (seed §4.4).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar, assert_never

import polars as pl

from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.engine.compose import Frame
from metric_platform.engine.lifecycle.late_updates import LateDay
from metric_platform.engine.lifecycle.service import Lifecycle
from metric_platform.engine.lifecycle.types import (
    EngineLimits,
    EvictionPolicyKind,
    EvictionReport,
    Recommendation,
    RefreshReport,
    StaleSlices,
)
from metric_platform.engine.qm.projections import ColumnProfile, TableProfile
from metric_platform.engine.qm.service import QMServer
from metric_platform.engine.query import QueryRequest, execute_query
from metric_platform.engine.serving.metric_server import MetricServer
from metric_platform.engine.serving.types import PathKind, Rejection, Served
from metric_platform.engine.store import UnreadableEntryError
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import MissingValueTreatment
from metric_platform.settings import GIB, Settings

_T = TypeVar("_T")
log = logging.getLogger(__name__)
DEFAULT_LIMITS = EngineLimits(max_bytes_per_ac=GIB, entry_byte_cap=GIB // 10)
# Rounds of "an entry vanished under us (evicted or replaced): plan again" before giving up.
_REPLAN_ATTEMPTS = 5


def limits_from(settings: Settings) -> EngineLimits:
    return EngineLimits(
        max_bytes_per_ac=settings.max_bytes_per_ac,
        entry_byte_cap=settings.entry_byte_cap,
        eviction_policy=EvictionPolicyKind(settings.eviction_policy),
        promotion_window_days=settings.promotion_window_days,
        promotion_min_hits=settings.promotion_min_hits,
        promotion_min_days=settings.promotion_min_days,
    )


class MetricEngine:
    def __init__(
        self,
        ac: AnalyticalContext,
        store: EntryStore,
        *,
        limits: EngineLimits = DEFAULT_LIMITS,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.ac = ac
        self.store = store
        self.limits = limits
        self._qm = QMServer(ac, store)
        self._metric = MetricServer(ac, store, entry_byte_cap=limits.entry_byte_cap, today=today)
        self._lifecycle = Lifecycle(ac, store, limits, cutoff=self._metric.cutoff, serve=self.serve_metric)

    @classmethod
    def open(
        cls,
        ac: AnalyticalContext,
        settings: Settings | None = None,
        *,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> MetricEngine:
        """An engine over the AC's project store the settings name (the embedded SQLite default
        needs none): each tenant's project has its own engine home unless the settings name one
        shared store (:meth:`Settings.for_project`)."""
        settings = (settings or Settings()).for_project(ac.tenant_id, str(ac.project_id))
        return cls(ac, EntryStore.from_settings(settings), limits=limits_from(settings), today=today)

    def serve(
        self,
        domain: Domain,
        dataset_id: str,
        anchor: Grain,
        *,
        mvt: MissingValueTreatment | None = None,
        backend: DataAPIBackend,
        window: DateWindow | None = None,
    ) -> pl.LazyFrame:
        """Seed 003 §4.1: anchor columns (in the order asked) and the dataset's value column."""
        match domain:
            case Domain.METRIC:
                return self._healing(
                    lambda: (
                        self._metric.serve(dataset_id, anchor, backend=backend, window=window, mvt=mvt).frame
                    )
                )
            case Domain.QM:
                return self._healing(lambda: self._qm.serve(dataset_id, anchor, backend=backend))
            case _:
                assert_never(domain)

    def serve_metric(
        self,
        family: str,
        anchor: Grain,
        *,
        backend: DataAPIBackend,
        window: DateWindow | None = None,
        mvt: MissingValueTreatment | None = None,
        pin: bool = False,
        recompute: bool = False,
        refresh: bool = False,
        trust_base: bool = False,
        explain: bool = False,
    ) -> Served:
        """A METRIC serve with its provenance. ``pin`` keeps the result whatever the memoization
        rules say and protects it from eviction (entries behind a materialized Dagster partition);
        ``recompute`` goes to the backend even when memoized slices exist, and replaces them;
        ``refresh`` recomputes the slices still provisional (inside the hold-off window) and
        serves stable ones from memory (a partition materialization or a refresh); with
        ``trust_base`` it rolls provisional buckets up from the family's base-grain slices, which
        the family's own partitions keep fresh (a cache-hint grain's materialization)."""
        return self._healing(
            lambda: self._metric.serve(
                family,
                anchor,
                backend=backend,
                window=window,
                mvt=mvt,
                pin=pin,
                recompute=recompute,
                refresh=refresh,
                trust_base=trust_base,
                explain=explain,
            )
        )

    def explain(
        self,
        family: str,
        anchor: Grain,
        *,
        window: DateWindow | None = None,
        mvt: MissingValueTreatment | None = None,
        backend: DataAPIBackend | None = None,
    ) -> tuple[PathKind, Grain, tuple[Rejection, ...]]:
        """The serving path a request through ``backend`` would take now, and why each other
        memoized grain is not used (without a backend, entries from any source count)."""
        return self._metric.explain(family, anchor, window=window, mvt=mvt, backend=backend)

    def warm(self, *, backend: DataAPIBackend, window: DateWindow | None = None) -> list[Served]:
        """Pre-materialize every family's base grain and cache_hint grains through serve (seed §9.2)."""
        out = []
        for family in self.ac.families.values():
            for grain in (family.base_grain, *family.cache_grains):
                out.append(self.serve_metric(family.name, grain, backend=backend, window=window))
        return out

    def query(self, request: QueryRequest, *, backend: DataAPIBackend) -> Frame:
        """Several metrics at one grain, composed (seed 003 §8), every metric through serve."""
        return execute_query(self.ac, backend, request, engine=self)

    # -- lifecycle (seed 003 §9.3, §10, §11) ------------------------------------------------------
    def stability_cutoff(self) -> dt.date | None:
        """The last stable day now (today minus the AC's hold-off); None without a stability block."""
        return self._metric.cutoff()

    def stale(self) -> list[StaleSlices]:
        """Which (family, grain, bucket) slices need recomputing: read-only, one manifest query."""
        return self._lifecycle.stale()

    def refresh(
        self,
        *,
        backend: DataAPIBackend,
        dry_run: bool = False,
        provisional: bool = False,
        late_updates: bool = False,
    ) -> RefreshReport:
        """Recompute the stale slices (``provisional``: also those still in the hold-off window;
        ``late_updates``: also those holding a day updated after it had become stable)."""
        return self._lifecycle.refresh(
            backend=backend, dry_run=dry_run, provisional=provisional, late_updates=late_updates
        )

    def late_updates(self, *, backend: DataAPIBackend, window: DateWindow | None = None) -> list[LateDay]:
        """Days whose rows were updated after the day had passed the cutoff (scans the source's
        update-timestamp column): the stability promise did not hold for them."""
        return self._lifecycle.late_updates(backend=backend, window=window)

    def enforce_budget(self, *, to_bytes: int | None = None, dry_run: bool = False) -> EvictionReport:
        """Evict until the evictable bytes are within budget (or ``to_bytes``); runs by itself
        after every engine operation that wrote."""
        return self._lifecycle.enforce_budget(to_bytes=to_bytes, dry_run=dry_run)

    def recommend(self) -> list[Recommendation]:
        """Promotion (hot grains) and too-large-to-memoize recommendations, with YAML to paste."""
        return self._lifecycle.recommend()

    def today(self) -> dt.date:
        """The engine's clock (injectable, so tests and backfills can fix the day)."""
        return self._metric.today()

    @property
    def recommendations(self) -> Sequence[str]:
        return tuple(self._metric.recommendations)

    def column_profile(self, schema: str, column: str, *, backend: DataAPIBackend) -> ColumnProfile:
        return self._healing(lambda: self._qm.column_profile(schema, column, backend=backend))

    def table_profile(self, schema: str, *, backend: DataAPIBackend) -> TableProfile:
        return self._healing(lambda: self._qm.table_profile(schema, backend=backend))

    def entries(self, domain: Domain | None = None) -> Sequence[Entry]:
        return self.store.list_entries(self.ac.name, domain=domain)

    def _healing(self, call: Callable[[], _T]) -> _T:
        """Run ``call``, then keep the AC within its byte budget if it wrote anything.

        When memoized files turned out missing or corrupt, drop those entries (only if nobody
        replaced them meanwhile) and run it again, recomputing them; each round drops what one read
        found, so it repeats while it makes progress. Entries evicted or replaced by another process
        between planning and reading (their files past the grace period) are planned again."""
        writes = self.store.write_count
        replans = 0
        while True:
            try:
                result = call()
                break
            except UnreadableEntryError as exc:
                dropped = self.store.drop_unreadable(exc.entries)
                if dropped > 0:
                    log.warning(
                        "dropped %d unreadable entries of AC %r; recomputing: %s", dropped, self.ac.name, exc
                    )
                    continue
                current = self.store.still_current(exc.entries)
                replans += 1
                if len(current) == len(exc.entries) or replans > _REPLAN_ATTEMPTS:
                    raise
                log.info("entries of AC %r changed while being read; planning again", self.ac.name)
        if self.store.write_count != writes:
            self.enforce_budget()
        return result

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> MetricEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
