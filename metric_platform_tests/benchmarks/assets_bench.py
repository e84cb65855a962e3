"""Building blocks of the metric-asset benchmark (``test_bench_assets.py``): the ACs it generates, a
no-op asset with a family asset's partitions, in-process runs timed in wall and CPU time, where a
run's time went according to Dagster's own event log, and a profile of one run.

Wall and CPU time are both kept because the machine is shared: other processes stretch wall time
(waiting for a core, for the disk) while this process's CPU time moves much less, so a gap between
the two says how much of a figure is waiting rather than work.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import pstats
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import dagster as dg

from metric_platform.backends.protocol import DateWindow
from metric_platform.defs.door import Door, raise_on_failure
from metric_platform.defs.instance import POOL
from metric_platform.defs.metadata import materialization_metadata, partition_metadata
from metric_platform.defs.partitions import context_window, daily_partitions, partition_keys_of
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform_tests.engine.conftest import RETAIL_YAML, write_ac_variant

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
NOOP_KEY = dg.AssetKey(["bench", "noop"])
VARIANT_KEY = dg.AssetKey(["bench", "family_with_partition_metadata"])
JOB_NAME = "bench_job"
# Dagster's console logger prints every event at DEBUG (thousands of lines for a 730-partition run);
# the benchmark keeps the console quiet for both contenders alike. Events still go to the instance.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# The generated wide AC: reducers whose partials combine (every cache-hint rollup is valid), and
# cache-hint grains of every partitioning kind (daily, weekly, monthly, quarterly, yearly, none).
_WIDE_ROOTS = (
    ("revenue", "SUM"),
    ("spend", "SUM"),
    ("conversions", "SUM"),
    ("txn_id", "COUNT"),
    ("revenue", "MAX"),
    ("revenue", "MIN"),
    ("is_returned", "BOOL_OR"),
    ("is_returned", "BOOL_AND"),
)
_WIDE_HINTS = (
    ("region", "day"),
    ("region", "week"),
    ("channel", "month"),
    ("region", "quarter"),
    ("channel", "year"),
    ("region",),
)
_WIDE_BASE = ("store", "campaign", "day")


def range_tags(window: DateWindow) -> dict[str, str]:
    """The tags that make one run cover every partition of ``window`` (a single-run backfill)."""
    return {RANGE_START_TAG: window.start.isoformat(), RANGE_END_TAG: window.end.isoformat()}


def write_range_ac(directory: Path, source: Path, first_day: dt.date) -> Path:
    """The retail AC reading ``source``, its partitions starting on the sample's ``first_day`` (the
    committed AC starts in 2026, too late for two years of partitions)."""
    return write_ac_variant(
        directory,
        {"start_date: 2026-01-01": f"start_date: {first_day.isoformat()}", "../sample": str(source)},
    )


def write_wide_ac(directory: Path, source: Path, *, families: int, grains: int) -> Path:
    """An AC named ``wide`` with the retail schemas and ``families`` families of ``grains``
    cache-hint grains each (none equal to the base grain, so each is an asset of its own)."""
    if grains > len(_WIDE_HINTS):
        msg = f"write_wide_ac offers at most {len(_WIDE_HINTS)} grains per family, got {grains}"
        raise ValueError(msg)
    head, found, _ = RETAIL_YAML.read_text(encoding="utf-8").partition("\nmetric_families:")
    assert found, f"{RETAIL_YAML} has no metric_families section"
    head = head.replace("name: retail", "name: wide", 1).replace("../sample", str(source), 1)
    lines = [head, "", "metric_families:"]
    for k in range(families):
        column, operator = _WIDE_ROOTS[k % len(_WIDE_ROOTS)]
        hints = [_WIDE_HINTS[(k + j) % len(_WIDE_HINTS)] for j in range(grains)]
        lines += [
            f"  - name: {column}_{operator.lower()}_{k:02d}",
            f"    family_root: {{schema: transactions, column: {column}}}",
            "    ip_reducers:",
            f"      - operator: {operator}",
            "        a_block: [time, geography, marketing]",
            f"    base_grain: [{', '.join(_WIDE_BASE)}]",
            "    cache_hint:",
            "      materialize_at:",
            *(f"        - [{', '.join(hint)}]" for hint in hints),
        ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "wide.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def noop_asset(ac: AnalyticalContext) -> dg.AssetsDefinition:
    """An asset with a family asset's partitions, backfill shape and pool, whose body does nothing:
    a run of it costs what Dagster alone costs."""

    @dg.asset(
        key=NOOP_KEY,
        partitions_def=daily_partitions(ac),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=POOL,
    )
    def _noop() -> dg.MaterializeResult[None]:
        return dg.MaterializeResult()

    return _noop


def partition_metadata_asset(ac: AnalyticalContext, family: str, door: Door) -> dg.AssetsDefinition:
    """The family asset as it was first built, for comparison: the same serve through the same
    door, with each partition's figures in one extra ``AssetObservation`` per partition (the family
    asset now puts them on the partition's own materialization, ``add_asset_metadata``)."""
    spec = ac.families[family]

    @dg.asset(
        key=VARIANT_KEY,
        partitions_def=daily_partitions(ac),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=POOL,
    )
    def _variant() -> Iterator[dg.MaterializeResult[None] | dg.AssetObservation]:
        context = dg.AssetExecutionContext.get()
        window = context_window(context) or door.whole_range(ac.name)
        params = {
            "family": family,
            "anchor": list(spec.base_grain),
            "pin": True,
            "refresh": True,
            "figures": True,
        }
        result = door.execute(context, ac.name, "engine.serve", params, window=window)
        raise_on_failure(result)
        keys = partition_keys_of(context)
        if len(keys) > 1:
            for key, own in partition_metadata(keys, result):
                yield dg.AssetObservation(asset_key=context.asset_key, partition=key, metadata=own)
        yield dg.MaterializeResult(metadata=materialization_metadata(result))

    return _variant


def asset_job(defs: dg.Definitions, key: dg.AssetKey) -> dg.JobDefinition:
    """A job materializing ``key`` of ``defs`` (with its resources), in process."""
    job = dg.define_asset_job(JOB_NAME, selection=[key], executor_def=dg.in_process_executor)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(JOB_NAME)


@dataclass(frozen=True)
class TimedRun:
    run_id: str
    wall: float  # seconds
    cpu: float  # seconds of this process's CPU time (all threads)
    called_at: float  # time.time() when the run was started


def run_job(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
) -> TimedRun:
    """One in-process run of ``job`` (what ``dg.materialize`` does), timed; it must succeed."""
    called_at = time.time()
    cpu = time.process_time()
    start = time.perf_counter()
    result = job.execute_in_process(
        run_config=QUIET, instance=instance, tags=dict(tags or {}), partition_key=partition_key
    )
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert result.success, f"run {result.run_id} of {job.name} failed"
    return TimedRun(result.run_id, wall, cpu, called_at)


@dataclass(frozen=True)
class Phases:
    """Where a run's wall time went, from the timestamps of its events in the instance.

    ``planning``: from the call to RUN_START, which includes storing one
    ASSET_MATERIALIZATION_PLANNED event per partition; ``body``: STEP_START to the step's first
    asset event (the asset body's own work: for a family, the engine serve and the ledger);
    ``observations`` and ``materializations``: storing those events, one per partition each;
    ``rest``: everything else (run start and end, step bookkeeping).
    """

    planning: float
    body: float
    observations: float
    materializations: float
    rest: float
    events: Mapping[str, int]


def phases_of(instance: dg.DagsterInstance, run: TimedRun) -> Phases:
    records = [r for r in instance.all_logs(run.run_id) if r.dagster_event is not None]
    # By enum name: RUN_START's value is still the legacy "PIPELINE_START".
    counts = Counter(r.get_dagster_event().event_type.name for r in records)

    def first(kind: dg.DagsterEventType) -> float | None:
        stamps = [r.timestamp for r in records if r.get_dagster_event().event_type == kind]
        return min(stamps) if stamps else None

    kinds = dg.DagsterEventType
    run_start, step_start = first(kinds.RUN_START), first(kinds.STEP_START)
    step_end = first(kinds.STEP_SUCCESS)
    assert run_start is not None and step_start is not None and step_end is not None, counts
    first_mat = first(kinds.ASSET_MATERIALIZATION) or step_end
    first_obs = first(kinds.ASSET_OBSERVATION) or first_mat
    planning = run_start - run.called_at
    body = first_obs - step_start
    observations = first_mat - first_obs
    materializations = step_end - first_mat
    rest = run.wall - planning - body - observations - materializations
    return Phases(planning, body, observations, materializations, rest, dict(counts))


@dataclass(frozen=True)
class ProfileShares:
    """Cumulative seconds of one profiled run in the functions that matter, and the total."""

    total: float
    seconds: Mapping[str, float]


# (what it is, a file name suffix or "~" for builtins, the function name)
PROFILED = (
    ("Dagster event storage (store_event)", "event_log/sql_event_log.py", "store_event"),
    ("  of which SQLite commits", "~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("  of which SQLite connection closes", "~", "<method 'close' of 'sqlite3.Connection' objects>"),
    ("the asset body's door.execute (engine + ledger)", "metric_platform/defs/door.py", "execute"),
)


def profile_run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, *, tags: Mapping[str, str], dump: Path | None
) -> ProfileShares:
    """Run ``job`` once under cProfile (slower than an unprofiled run: use shares, not seconds)."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run_job(job, instance, tags=tags)
    finally:
        profiler.disable()
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(dump)
    stats = pstats.Stats(profiler)
    # pstats keeps its table in an attribute typeshed does not declare: (file, line, name) ->
    # (primitive calls, calls, own time, cumulative time, callers).
    table = cast("dict[tuple[str, int, str], tuple[int, int, float, float, object]]", vars(stats)["stats"])
    seconds = {
        label: sum(v[3] for (file, _, name), v in table.items() if name == function and file.endswith(suffix))
        for label, suffix, function in PROFILED
    }
    return ProfileShares(float(vars(stats)["total_tt"]), seconds)
