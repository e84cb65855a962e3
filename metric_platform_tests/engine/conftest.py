"""Shared fixtures for the Metric Engine integration tests: a small sample, the retail AC, a tmp home.

Helpers here are also imported by the CLI and main-job tests and by the "spawn" workers, so they
are plain module-level functions and classes besides the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from metric_platform.backends.factory import backend_for
from metric_platform.backends.normalize import COUNT_COLUMNS
from metric_platform.backends.protocol import AggregateRequest, DataAPIBackend, DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.engine.qm.profiling import profile_columns
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.in_flight import IN_FLIGHT_MAX_AGE
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry
from metric_platform.sample_data import PROJECT_ID, TENANT_ID, SampleSpec, generate, write_parquet
from metric_platform.semantics.loader import load_ac
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.types import MissingValueTreatment
from metric_platform.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
RETAIL_YAML = REPO_ROOT / "data" / "acs" / "retail.yaml"
SAMPLE_SPEC = SampleSpec(rows=3000, days=30, end_date=date(2026, 11, 20))
# The retail AC declares 12 + 4 + 3 columns over 3 schemas, and 8 metric families.
QM_KEYS = 19
METRIC_FAMILIES = 8
# Every engine in these tests gets this "today", so default windows (the AC's partitions,
# 2026-01-01 .. today) do not move with the calendar; the sample's last day is the day before.
TODAY = date(2026, 11, 21)
SAMPLE_WINDOW = DateWindow(date(2026, 10, 22), date(2026, 11, 20))  # every day of the sample


def fixed_today() -> date:
    return TODAY


def make_settings(home: Path, manifest_url: str | None = None) -> Settings:
    # Explicit None, so a METRIC_PLATFORM_ENGINE_* variable in the environment cannot redirect a test.
    # Projected on the retail AC's project, so ``manifest_url`` and ``data_dir`` name the store its
    # engine opens (``MetricEngine.open`` projects the same way).
    settings = Settings(home=home, engine_manifest_url=manifest_url, engine_data_dir=None)
    return settings.for_project(TENANT_ID, PROJECT_ID)


def write_ac_variant(directory: Path, replacements: Mapping[str, str], *, name: str = "retail.yaml") -> Path:
    """A copy of the retail AC with each ``old`` text replaced by ``new`` (each must occur once)."""
    text = RETAIL_YAML.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} must occur exactly once in {RETAIL_YAML}"
        text = text.replace(old, new)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def sweeping_store(settings: Settings) -> EntryStore:
    """A store on the settings' manifest whose clock is far enough ahead that every orphan is old
    enough and every registration of a crashed publish (in flight for at most IN_FLIGHT_MAX_AGE)
    has fallen due."""
    ahead = datetime.now(UTC) + IN_FLIGHT_MAX_AGE + timedelta(hours=1)
    return EntryStore(
        settings.manifest_url,
        settings.data_dir,
        grace_seconds=settings.file_grace_seconds,
        clock=lambda: ahead,
    )


def direct_qm(backend: DataAPIBackend, schema: str, column: str) -> pl.DataFrame:
    """The column_profile frame computed without the engine."""
    return profile_columns(backend.extract_to_lazyframe(schema), schema, [column])


def direct_metric(
    backend: DataAPIBackend,
    ac: AnalyticalContext,
    family: str,
    anchor: tuple[str, ...],
    *,
    window: DateWindow | None = None,
    mvt: MissingValueTreatment | None = None,
    with_counts: bool = False,
) -> pl.DataFrame:
    """The family at ``anchor`` (over ``window``) straight from the backend, sorted by the anchor;
    ``with_counts`` keeps the ``__rows``/``__nonnull`` columns a memoized slice carries."""
    grain = ac.canonical_grain(anchor)
    request = AggregateRequest(ac.family(family), grain, window=window, mvt=mvt, with_counts=with_counts)
    frame = backend.aggregate(request).collect()
    counts = list(COUNT_COLUMNS) if with_counts else []
    frame = frame.select([*anchor, family, *counts])
    return frame.sort(list(anchor), nulls_last=True) if anchor else frame


# The miss policy (ARCHITECTURE.md §9), written out for the retail AC rather than read from the
# engine: a partition-invariant family is fetched without joins, each joined dimension replaced by
# the transactions dimension determining it along a dimension map, and any time dimension by day.
NATIVE_SOURCE = {"region": "store", "channel": "campaign"}
MAP_EDGES = {"region": ("store", "region"), "channel": ("campaign", "channel")}


def fetch_grain(ac: AnalyticalContext, family: str, anchor: tuple[str, ...]) -> tuple[str, ...]:
    """The grain a miss of ``family`` at ``anchor`` is fetched at (and memoized per day at, when it
    is a day grain): the native grain for a partition-invariant operator, else the target."""
    if not ac.family(family).operator.partition_invariant:
        return ac.canonical_grain(anchor)
    dims = [NATIVE_SOURCE.get(d, d) for d in anchor if ac.dimension(d).time_grain is None]
    return ac.canonical_grain([*dims, "day"])


def miss_grains(ac: AnalyticalContext, family: str, anchor: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The grains a miss (not pinned, whole buckets, more than one row) memoizes: the fetch grain
    when it has a time dimension, and the target too when it is a cache_hint grain with one."""
    target, fetch = ac.canonical_grain(anchor), fetch_grain(ac, family, anchor)
    timed = {g for g in (target, fetch) if any(ac.dimension(d).time_grain is not None for d in g)}
    return {fetch, *({target} if target in ac.family(family).cache_grains else ())} & timed


def miss_maps(ac: AnalyticalContext, family: str, anchor: tuple[str, ...]) -> set[tuple[str, str]]:
    """The dimension maps (finer, coarser) a miss rolls along: the keys of the fd_map entries."""
    if not ac.family(family).operator.partition_invariant:
        return set()
    return {MAP_EDGES[d] for d in anchor if d in MAP_EDGES}


def metric_base(ac: AnalyticalContext, family: str, anchor: tuple[str, ...]) -> EntryKey:
    """The key (without slice) under which the family's slices at ``anchor`` are memoized."""
    return EntryKey(ac.name, Domain.METRIC, family, ac.canonical_grain(anchor))


def slices_of(
    store: EntryStore,
    ac: AnalyticalContext,
    family: str,
    anchor: tuple[str, ...],
    window: DateWindow | None = None,
) -> list[Entry]:
    """The memoized slices of ``family`` at ``anchor`` (inside ``window``), by day."""
    base = metric_base(ac, family, anchor)
    if window is None:
        return store.list_slices(base)
    return store.list_slices(base, start=window.start, end=window.end)


def read_slices(store: EntryStore, entries: Sequence[Entry]) -> pl.DataFrame:
    """The rows of the slices (value and counts), sorted by their anchor, as ``direct_metric`` sorts."""
    anchor = list(entries[0].key.anchor)
    frame = store.scan_slices(entries).collect()
    return frame.sort(anchor, nulls_last=True) if anchor else frame


def sorted_by_anchor(frame: pl.DataFrame, entry: Entry) -> pl.DataFrame:
    anchor = list(entry.key.anchor)
    return frame.sort(anchor, nulls_last=True) if anchor else frame


def sorted_frame(frame: pl.DataFrame, anchor: tuple[str, ...]) -> pl.DataFrame:
    return frame.sort(list(anchor), nulls_last=True) if anchor else frame


def orphan_files(settings: Settings, ac_name: str) -> set[Path]:
    """Parquet files under the AC's data dir that no manifest row names."""
    with EntryStore.from_settings(settings) as store:
        referenced = {entry.path for entry in store.list_entries(ac_name)}
    root = settings.data_dir.resolve() / ac_name
    return {p for p in root.rglob("*.parquet") if p.is_file()} - referenced


class CountingBackend:
    """A DataAPIBackend wrapper that counts the calls the engine makes to the source."""

    def __init__(self, inner: DataAPIBackend) -> None:
        self.inner = inner
        self.extracts: list[str] = []
        self.aggregates: list[AggregateRequest] = []

    @property
    def ac(self) -> AnalyticalContext:
        return self.inner.ac

    @property
    def name(self) -> str:
        return self.inner.name

    def aggregate(self, request: AggregateRequest) -> pl.LazyFrame:
        self.aggregates.append(request)
        return self.inner.aggregate(request)

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        self.extracts.append(schema)
        return self.inner.extract_to_lazyframe(schema)

    def close(self) -> None:
        self.inner.close()

    def source_identity(self) -> str:
        return self.inner.source_identity()

    def table_stamp(self, schema: str) -> str:
        return self.inner.table_stamp(schema)


@pytest.fixture(scope="session")
def sample_frames() -> dict[str, pl.DataFrame]:
    return generate(SAMPLE_SPEC)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory, sample_frames: dict[str, pl.DataFrame]) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    write_parquet(sample_frames, directory)
    return directory


@pytest.fixture(scope="session")
def ac(sample_dir: Path) -> AnalyticalContext:
    return load_ac(RETAIL_YAML, source_path=sample_dir)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def backend(ac: AnalyticalContext) -> Iterator[CountingBackend]:
    counting = CountingBackend(backend_for(ac))
    yield counting
    counting.close()


@pytest.fixture
def engine(ac: AnalyticalContext, settings: Settings) -> Iterator[MetricEngine]:
    opened = MetricEngine.open(ac, settings, today=fixed_today)
    yield opened
    opened.close()


def entries_of(engine: MetricEngine, domain: Domain) -> list[Entry]:
    return list(engine.entries(domain))
