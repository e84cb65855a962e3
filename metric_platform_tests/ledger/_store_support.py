"""Events and spawn-process workers shared by the store tests (importable under "spawn")."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from metric_platform.ledger.events import EventIdentity, EventType, NewEvent
from metric_platform.ledger.store import AppendOutcome, RunEventStore
from metric_platform.platform_db import open_platform_db


def step_event(
    run_id: str,
    step_id: str,
    *,
    event_type: EventType = EventType.STEP_STARTED,
    logical: int = 1,
    engine: int = 0,
    plan_version: str = "plan-1",
    data: dict[str, Any] | None = None,
) -> NewEvent:
    identity = EventIdentity(run_id, step_id, logical, engine, plan_version)
    return NewEvent(identity, event_type, data if data is not None else {"step": step_id})


def run_event(
    run_id: str, event_type: EventType, *, data: dict[str, Any] | None = None, logical: int = 1
) -> NewEvent:
    identity = EventIdentity(run_id, logical_attempt_id=logical, plan_version="plan-1")
    return NewEvent(identity, event_type, data or {})


def writer_events(writer: int, count: int, runs: int) -> list[NewEvent]:
    """Writer ``writer``'s own events, spread round-robin over ``runs`` runs, all distinct keys."""
    return [step_event(f"run-{i % runs:02d}", f"w{writer:02d}-e{i:05d}") for i in range(count)]


def shared_events(runs: int) -> list[NewEvent]:
    """One event per run that EVERY writer appends: exactly one of them may record each."""
    return [step_event(f"run-{r:02d}", "shared", data={"shared": r}) for r in range(runs)]


@dataclass(frozen=True)
class WriterJob:
    """One writer process's share of the concurrency test."""

    url: str
    writer: int
    count: int  # own events
    runs: int


def append_worker(job: WriterJob, barrier: Any, results: Any) -> None:
    """Append the writer's events, one transaction each, interleaved with the shared ones and a
    re-append of every 50th own event; check every outcome; report (writer, shared APPENDED
    count, seconds from the barrier to done)."""
    url, writer, count, runs = job.url, job.writer, job.count, job.runs
    engine = open_platform_db(url)
    store = RunEventStore(engine)
    own = writer_events(writer, count, runs)
    shared = shared_events(runs)
    # Shared events interleaved evenly, a re-append of every 50th own event right after it.
    plan: list[tuple[NewEvent, str]] = []
    every = max(1, count // len(shared))
    for i, event in enumerate(own):
        plan.append((event, "own"))
        if i % 50 == 0:
            plan.append((event, "again"))
        if i % every == 0 and i // every < len(shared):
            plan.append((shared[i // every], "shared"))
    barrier.wait()
    started = time.perf_counter()
    first_seq: dict[str, int] = {}
    shared_appended = 0
    for event, kind in plan:
        result = store.append(event)
        assert result.event is not None
        key = event.idempotency_key
        if kind == "own":
            assert result.outcome is AppendOutcome.APPENDED, (writer, key, result.outcome)
            first_seq[key] = result.event.run_seq
        elif kind == "again":
            assert result.outcome is AppendOutcome.DUPLICATE, (writer, key, result.outcome)
            assert result.event.run_seq == first_seq[key]
        elif result.outcome is AppendOutcome.APPENDED:
            shared_appended += 1
    results.put((writer, shared_appended, time.perf_counter() - started))
    engine.dispose()


def open_worker(url: str, barrier: Any) -> None:
    barrier.wait()
    open_platform_db(url).dispose()


def run_spawned(
    target: Callable[..., None], arg_sets: Sequence[tuple[Any, ...]], *, timeout: float = 240.0
) -> list[int | None]:
    """Run ``target`` once per argument tuple, each in a fresh "spawn" process; their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in arg_sets]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    return [proc.exitcode for proc in procs]
