"""Helpers of the Dagster-level tests of the metric assets (``defs/metric_assets.py``,
``defs/conditions.py``, ``defs/platform_sensors.py``).

The definitions are the code location's, built by ``build_definitions`` over the committed ACs
(``data/acs``) with a fixed engine clock (``today``), a throwaway home (``Settings(home=tmp_path)``:
engine store, platform database and spool under it) and a backend that counts the calls the engine
makes to the source: one ``aggregate`` call is what "one backend call" means. Runs execute in
process (``dg.materialize``) against the test's Dagster instance.

The oracle (:func:`sample_rows_per_day`) reads the committed sample with bare Polars, written from
the AC's YAML rather than from the engine, so that the engine's figures are checked against an
independent computation.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from metric_platform.acs import load_acs
from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend
from metric_platform.defs.build import build_definitions
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings
from metric_platform_tests.engine.conftest import CountingBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
ACS_DIR = REPO_ROOT / "data" / "acs"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"

# The sample holds 2026-09-22 .. 2026-11-20; retail holds 3 days back: on TODAY the cutoff is
# 2026-11-18 (19 and 20 provisional), on TOMORROW it is 2026-11-19 (day 19 crossed).
TODAY = dt.date(2026, 11, 21)
CUTOFF = dt.date(2026, 11, 18)
TOMORROW = TODAY + dt.timedelta(days=1)
SAMPLE_FIRST_DAY = dt.date(2026, 9, 22)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def key(path: str) -> dg.AssetKey:
    """``"retail/revenue/region/month"`` as an asset key."""
    return dg.AssetKey(path.split("/"))


def days(first: str, last: str) -> list[str]:
    """Every day of [first, last] as ISO partition keys."""
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """An evaluation time on ``day`` (UTC: the partitions' time zone)."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def platform_settings(home: Path) -> Settings:
    """Everything under ``home``; explicit Nones so that a METRIC_PLATFORM_* variable in the
    environment cannot point a test at a real store."""
    return Settings(home=home, engine_manifest_url=None, engine_data_dir=None, platform_db_url=None)


def committed_acs(settings: Settings, names: Sequence[str] = ("retail",)) -> list[AnalyticalContext]:
    """The ACs ``names`` of ``data/acs`` (a tmp home holds no fresh sample: they read the committed one)."""
    acs = [ac for ac in load_acs(ACS_DIR, settings) if ac.name in names]
    assert [ac.name for ac in acs] == sorted(names), f"{names} must all be ACs under {ACS_DIR}"
    return acs


# Dagster's embedded instance commits every event to SQLite (~30 ms each on a disk here, a third of
# that on tmpfs), and a range run writes two events per partition: on tmpfs, when the machine has
# one, the Dagster-level tests run about three times faster.
_TMPFS = Path("/dev/shm")


@contextmanager
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """``dg.instance_for_test`` with its storage on tmpfs when available."""
    if _TMPFS.is_dir():
        with (
            tempfile.TemporaryDirectory(dir=_TMPFS) as temp_dir,
            dg.instance_for_test(temp_dir=temp_dir) as instance,
        ):
            yield instance
    else:
        with dg.instance_for_test() as instance:
            yield instance


def metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Raw values of Dagster metadata (``MetadataValue.value``)."""
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


@dataclass(frozen=True)
class Materialized:
    """One in-process run, and the backend calls the engine made during it."""

    result: dg.ExecuteInProcessResult
    backend_calls: Sequence[AggregateRequest]

    def materializations(self, asset: str) -> dict[str | None, dict[str, Any]]:
        """The metadata of each materialization of ``asset``, by partition (None: unpartitioned)."""
        out: dict[str | None, dict[str, Any]] = {}
        for event in self.result.get_asset_materialization_events():
            materialization = event.materialization
            if materialization.asset_key == key(asset):
                out[materialization.partition] = metadata_values(materialization.metadata)
        return out

    def metadata(self, asset: str) -> dict[str, Any]:
        """The metadata of the run's materialization of ``asset`` (a range run repeats the same
        metadata on every partition's materialization: the first one)."""
        found = list(self.materializations(asset).values())
        assert found, f"the run materialized no {asset}"
        return found[0]

    def partitions(self, asset: str) -> dict[str, dict[str, Any]]:
        """Each partition's own figures in a range run (on its own materialization), by partition."""
        out = self.materializations(asset)
        assert None not in out, "a range run materializes partitions"
        return {partition: meta for partition, meta in out.items() if partition is not None}


@dataclass
class MetricDefs:
    """The platform's definitions over ``acs`` with the engine clock at ``today``, and the backend
    calls every engine session made through them."""

    settings: Settings
    acs: Sequence[AnalyticalContext]
    today: dt.date
    defs: dg.Definitions
    backends: list[CountingBackend] = field(default_factory=list)

    @classmethod
    def build(cls, acs: Sequence[AnalyticalContext], settings: Settings, today: dt.date) -> MetricDefs:
        backends: list[CountingBackend] = []

        def open_backend(ac: AnalyticalContext) -> DataAPIBackend:
            backend = CountingBackend(backend_for(ac))
            backends.append(backend)
            return backend

        defs = build_definitions(acs, settings, today=today, open_backend=open_backend)
        return cls(settings, acs, today, defs, backends)

    def on(self, today: dt.date) -> MetricDefs:
        """The same ACs and home with the clock at ``today`` (what a code location reloaded on
        another day holds)."""
        return MetricDefs.build(self.acs, self.settings, today)

    def ac(self, name: str = "retail") -> AnalyticalContext:
        return next(ac for ac in self.acs if ac.name == name)

    @property
    def aggregates(self) -> list[AggregateRequest]:
        return [request for backend in self.backends for request in backend.aggregates]

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [a for a in self.defs.assets or () if isinstance(a, dg.AssetsDefinition)]

    @property
    def asset_keys(self) -> list[dg.AssetKey]:
        return [k for a in self.assets for k in a.keys]

    def materialize(
        self,
        instance: dg.DagsterInstance,
        assets: Sequence[str | dg.AssetKey],
        *,
        partition: str | None = None,
        first: str | None = None,
        last: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Materialized:
        """Run ``assets`` in process for one partition, the range [first, last] (one run, as a
        single-run backfill), or unpartitioned; the run must succeed."""
        run_tags = dict(tags or {})
        if first is not None or last is not None:
            assert first is not None and last is not None, "a range needs both ends"
            run_tags |= {RANGE_START: first, RANGE_END: last}
        before = len(self.aggregates)
        result = dg.materialize(
            self.assets,
            selection=[a if isinstance(a, dg.AssetKey) else key(a) for a in assets],
            partition_key=partition,
            instance=instance,
            resources=self.defs.resources,
            tags=run_tags,
        )
        assert result.success
        return Materialized(result, self.aggregates[before:])

    def evaluate(
        self,
        instance: dg.DagsterInstance,
        when: dt.datetime,
        previous: dg.EvaluateAutomationConditionsResult | None = None,
    ) -> dg.EvaluateAutomationConditionsResult:
        """One tick of the automation conditions of every asset at ``when``, after ``previous``."""
        return dg.evaluate_automation_conditions(
            defs=self.defs,
            instance=instance,
            evaluation_time=when,
            cursor=previous.cursor if previous is not None else None,
        )

    def requested(
        self, result: dg.EvaluateAutomationConditionsResult, *, metrics_only: bool = False
    ) -> dict[str, set[str | None]]:
        """What a tick requested: asset (key path) -> partition keys (None: unpartitioned).
        ``metrics_only``: only the family and cache-hint grain assets (not the profiles, whose
        daily cron is not under test here)."""
        keys = self.metric_keys if metrics_only else self.asset_keys
        out: dict[str, set[str | None]] = {}
        for asset_key in keys:
            partitions = set(result.get_requested_partitions(asset_key))
            if partitions:
                out[asset_key.to_user_string()] = partitions
        return out

    @property
    def metric_keys(self) -> list[dg.AssetKey]:
        """The family assets and their cache-hint grain assets."""
        return [
            k
            for k in self.asset_keys
            if len(k.path) >= 2
            and k.path[1] in next((ac.families for ac in self.acs if ac.name == k.path[0]), {})
        ]

    def engine_entries(self, ac_name: str = "retail") -> list[Entry]:
        """Every METRIC entry of the AC's engine store (read by a fresh engine on the same home)."""
        with MetricEngine.open(self.ac(ac_name), self.settings, today=lambda: self.today) as engine:
            return list(engine.entries(Domain.METRIC))

    def pinned_days(self, family: str, grain: Sequence[str], ac_name: str = "retail") -> dict[str, bool]:
        """The pinned slices of ``family`` at ``grain``: slice day -> provisional."""
        return {
            entry.key.slice_day.isoformat(): entry.provisional
            for entry in self.engine_entries(ac_name)
            if entry.key.dataset_id == family
            and entry.key.anchor == tuple(grain)
            and entry.pinned
            and entry.key.slice_day is not None
        }


# Where each retail dimension lives in the sample (data/acs/retail.yaml: dimensions and joins).
_DIMENSION_COLUMNS: Mapping[str, tuple[str, str]] = {
    "store": ("transactions", "store_id"),
    "region": ("stores", "region"),
    "campaign": ("transactions", "campaign_id"),
    "channel": ("campaigns", "channel"),
    "customer": ("transactions", "customer_id"),
    "day": ("transactions", "event_date"),
}
_JOIN_KEYS = {"stores": "store_id", "campaigns": "campaign_id"}


def sample_rows_per_day(grain: Sequence[str], tenant: str = "acme") -> dict[str, int]:
    """Rows of a family at ``grain`` (which holds ``day``) per day, straight from the committed
    sample: the tenant's transactions, joined to the dimension tables the grain needs, grouped by
    the grain."""
    frame = pl.scan_parquet(SAMPLE_DIR / "transactions.parquet").filter(pl.col("tenant_id") == tenant)
    columns: list[str] = []
    for dimension in grain:
        table, column = _DIMENSION_COLUMNS[dimension]
        if table != "transactions" and column not in columns:
            on = _JOIN_KEYS[table]
            dim_table = pl.scan_parquet(SAMPLE_DIR / f"{table}.parquet").select(on, column)
            frame = frame.join(dim_table, on=on, how="left")
        columns.append(column)
    per_day = frame.group_by(columns).len().group_by("event_date").len().collect()
    return {day.isoformat(): int(rows) for day, rows in per_day.iter_rows()}


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The step failure's message and those of its causes (Dagster wraps an error the op raised)."""
    [event] = [e for e in result.all_events if e.event_type is dg.DagsterEventType.STEP_FAILURE]
    error = event.step_failure_data.error
    texts: list[str] = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)
