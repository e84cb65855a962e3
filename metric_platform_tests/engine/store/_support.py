"""Frames, metadata and subprocess workers shared by the store tests (importable under "spawn")."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from metric_platform.engine.store import Domain, EntryKey, EntryMeta, EntryStore
from metric_platform.errors import UnknownNameError

CRASH_EXIT_CODE = 17


def meta(**changes: object) -> EntryMeta:
    values: dict[str, object] = {
        "operator": "SUM",
        "partition_invariant": True,
        "mvt": "skip",
        "imputation_value": None,
        "family_fingerprint": "fp-1",
        "source_schemas": ("orders",),
        "source_filter": None,
        "stability_cutoff": None,
        "verification_level": "A",
        "source_fingerprint": None,
    }
    values.update(changes)
    return EntryMeta(**values)  # type: ignore[arg-type]


def key(
    ac_name: str, dataset_id: str = "revenue", anchor: tuple[str, ...] = ("region",), **kw: str
) -> EntryKey:
    return EntryKey(ac_name, Domain.METRIC, dataset_id, anchor, **kw)


def frame_for(key: EntryKey, rows: int = 500) -> pl.DataFrame:
    """A deterministic frame per key, so any writer's copy must equal any reader's expectation."""
    seed = sum(map(ord, key.dataset_id + key.anchor_signature + key.slice_key))
    return pl.DataFrame(
        {
            "region": [f"r{(i + seed) % 17}" for i in range(rows)],
            "day": [date(2026, 1, 1) + timedelta(days=i % 31) for i in range(rows)],
            "value": [None if i % 11 == 0 else float(i * seed) for i in range(rows)],
        }
    )


def concurrent_keys(ac_name: str) -> list[EntryKey]:
    return [key(ac_name, f"family_{i}", ("region", "day")) for i in range(5)]


class CrashingStore(EntryStore):
    """Dies like a killed process right after writing the files, before the manifest commit."""

    def _before_manifest_commit(self, paths: Sequence[Path]) -> None:
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)


def crash_publish_worker(manifest_url: str, data_dir: str, ac_name: str) -> None:
    store = CrashingStore(manifest_url, Path(data_dir))
    k = key(ac_name)
    store.publish(k, frame_for(k, rows=50), meta(family_fingerprint="crashed"))
    raise AssertionError("unreachable: the hook exits the process")


def publish_and_read_worker(manifest_url: str, data_dir: str, ac_name: str, worker: int, rounds: int) -> None:
    """Publish the shared keys (batched, in a worker-specific order) and verify every read-back."""
    keys = concurrent_keys(ac_name)
    with EntryStore(manifest_url, Path(data_dir), clock=lambda: datetime.now(UTC)) as store:
        for round_ in range(rounds):
            rotated = keys[worker % len(keys) :] + keys[: worker % len(keys)]
            if round_ % 2 == 0:
                store.publish_many([(k, frame_for(k), meta()) for k in rotated])
            else:
                for k in reversed(rotated):
                    store.publish(k, frame_for(k), meta())
            for k in keys:
                entry = store.get(k)
                assert entry is not None, f"{k} vanished"
                assert_frame_equal(store.scan(entry).collect(), frame_for(k))


# -- slices ------------------------------------------------------------------------------------

SLICE_START = date(2026, 1, 1)
SLICE_SCHEMA = pl.Schema({"region": pl.String, "day": pl.Date, "value": pl.Float64})


def days(first: int, count: int) -> list[date]:
    """``count`` consecutive days from SLICE_START + ``first`` days."""
    return [SLICE_START + timedelta(days=first + i) for i in range(count)]


def day_rows(day: date, rows: int | None = None) -> pl.DataFrame:
    """The deterministic rows of one day's slice; by default 0-3 rows, so some days are empty."""
    n = day.toordinal() % 4 if rows is None else rows
    return pl.DataFrame(
        {
            "region": [f"r{(day.toordinal() + i) % 5}" for i in range(n)],
            "day": [day] * n,
            "value": [float(day.toordinal() * 10 + i) for i in range(n)],
        },
        schema=SLICE_SCHEMA,
    )


def slice_frame(slice_days: Sequence[date], rows: int | None = None) -> pl.DataFrame:
    return pl.concat([day_rows(day, rows) for day in slice_days]) if slice_days else SLICE_SCHEMA.to_frame()


def slice_base(ac_name: str, anchor: tuple[str, ...] = ("region", "day")) -> EntryKey:
    return key(ac_name, "revenue", anchor)


def publish_slices_worker(manifest_url: str, data_dir: str, ac_name: str, worker: int, rounds: int) -> None:
    """Publish an overlapping 12-day range (days 4w..4w+11) ``rounds`` times; verify each read-back."""
    base = slice_base(ac_name)
    mine = days(4 * worker, 12)
    with EntryStore(manifest_url, Path(data_dir), clock=lambda: datetime.now(UTC)) as store:
        for _ in range(rounds):
            store.publish_slices(base, slice_frame(mine), slice_column="day", slices=mine, meta=meta())
            listed = store.list_slices(base, start=mine[0], end=mine[-1])
            assert [e.key.slice_day for e in listed] == mine, "a slice of the range is missing"
            got = store.scan_slices(listed).collect().sort("day", "value")
            assert_frame_equal(got, slice_frame(mine).sort("day", "value"))


# -- lock order --------------------------------------------------------------------------------

LOCK_ORDER_KEYS = 4


def lock_order_worker(manifest_url: str, data_dir: str, ac_name: str, worker: int, seconds: float) -> None:
    """Run every write path over overlapping keys, in worker-specific orders, for ``seconds``.

    Worker 0 also sweeps with no grace and a clock two hours ahead, so only the in-flight
    registration keeps the other workers' files alive between their writes and their commits.
    Any error (a deadlock is one) fails the process.
    """
    whole = [key(ac_name, f"family_{i}") for i in range(LOCK_ORDER_KEYS)]
    base = slice_base(ac_name)
    ahead = timedelta(hours=2)
    with (
        EntryStore(manifest_url, Path(data_dir), clock=lambda: datetime.now(UTC)) as store,
        EntryStore(
            manifest_url, Path(data_dir), grace_seconds=0, clock=lambda: datetime.now(UTC) + ahead
        ) as sweeper,
    ):
        deadline = time.monotonic() + seconds
        round_ = 0
        while round_ < 3 or time.monotonic() < deadline:
            shift = (worker + round_) % len(whole)
            order = whole[shift:] + whole[:shift]
            if worker % 2:
                order.reverse()
            published = store.publish_many([(k, frame_for(k, rows=20), meta()) for k in order])
            span = days(2 * worker + round_ % 3, 6)
            slices = span[::-1] if worker % 2 else span
            sliced = store.publish_slices(
                base, slice_frame(span), slice_column="day", slices=slices, meta=meta()
            )
            listed = store.list_entries(ac_name)
            store.record_access(listed[::-1] + published + sliced if worker % 2 else listed + sliced)
            with contextlib.suppress(UnknownNameError):  # another worker may have just deleted it
                store.set_pinned(order[0], round_ % 2 == 0)
            assert store.drop_unreadable(listed) == 0, "a current row named a missing file"
            if round_ % 4 == worker % 4:
                store.delete(order[-1], force=True)
            if worker == 0:
                sweeper.sweep(ac_name=ac_name)
            round_ += 1


def run_spawned(target: Callable[..., None], arg_sets: Sequence[tuple[Any, ...]]) -> list[int | None]:
    """Run ``target`` once per argument tuple, each in a fresh "spawn" process, and return their
    exit codes (a worker's traceback is printed by the process itself)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in arg_sets]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    return [proc.exitcode for proc in procs]
