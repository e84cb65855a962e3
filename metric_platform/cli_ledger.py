"""``metric-platform ledger ...``: the run ledger from the command line (seed 004).

``migrate`` creates or upgrades the platform database; ``runs`` lists runs; ``show RUN_ID`` prints a
run's snapshot and events; ``project`` and ``deliver`` run the projector and the outbox delivery
once or in a loop (Dagster runs them as sensors); ``replay-spool`` appends the events that failed
open; ``prune`` deletes whole finished runs older than a day (the retention policy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from metric_platform.cli_metrics import iso_day
from metric_platform.db import read_transaction
from metric_platform.ledger.events import StoredEvent, canonical_json
from metric_platform.ledger.projection import RunSnapshot, project_run, split_at_gap
from metric_platform.ledger.schema import run_snapshots, runs
from metric_platform.settings import Settings

FORMATS = ("table", "json")


def add_ledger_commands(sub: Any) -> None:
    ledger = sub.add_parser("ledger", help="the run ledger: runs, events, projector, outbox")
    cmds = ledger.add_subparsers(dest="ledger_command", required=True)

    cmds.add_parser("migrate", help="create or upgrade the platform database (and its partitions)")

    p = cmds.add_parser("runs", help="the most recent runs and their projected status")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=FORMATS, default="table")

    p = cmds.add_parser("show", help="a run's snapshot and its events, in runSeq order")
    p.add_argument("run_id")
    p.add_argument("--format", choices=FORMATS, default="table")

    for name, what in (
        ("project", "fold new events into run snapshots"),
        ("deliver", "deliver outbox messages"),
    ):
        p = cmds.add_parser(name, help=f"{what}: once, or with --loop until interrupted")
        p.add_argument("--loop", action="store_true")
        p.add_argument("--interval", type=float, default=1.0, help="seconds between passes with --loop")
        p.add_argument("--passes", type=int, help="with --loop: stop after this many passes")

    cmds.add_parser("replay-spool", help="append the events that failed open to the local spool")

    p = cmds.add_parser("prune", help="delete whole finished runs created before a day (retention)")
    p.add_argument("--before", type=iso_day, required=True, help="YYYY-MM-DD")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")


def run_ledger(args: argparse.Namespace) -> int:
    settings = Settings()
    match args.ledger_command:
        case "migrate":
            return _migrate(settings)
        case "runs":
            return _runs(settings, args)
        case "show":
            return _show(settings, args)
        case "project":
            return _loop(args, lambda: _project_once(settings))
        case "deliver":
            return _loop(args, lambda: _deliver_once(settings))
        case "replay-spool":
            return _replay(settings)
        case "prune":
            return _prune(settings, args)
    msg = f"unknown ledger command {args.ledger_command!r}"
    raise AssertionError(msg)


def _open(settings: Settings) -> Any:
    from metric_platform.ledger.store import RunEventStore

    return RunEventStore.open(settings.platform_url)


def _migrate(settings: Settings) -> int:
    from metric_platform.platform_db import maintain_partitions, open_platform_db

    engine = open_platform_db(settings.platform_url)
    try:
        created = maintain_partitions(engine)
    finally:
        engine.dispose()
    extra = f"; partitions created: {', '.join(created)}" if created else ""
    print(f"platform database at {engine.url.render_as_string(hide_password=True)} is at head{extra}")
    return 0


def _runs(settings: Settings, args: argparse.Namespace) -> int:
    store = _open(settings)
    try:
        with read_transaction(store.engine) as conn:
            rows = conn.execute(
                sa.select(
                    runs.c.run_id,
                    runs.c.created_at,
                    runs.c.last_seq,
                    run_snapshots.c.status,
                    run_snapshots.c.last_event_seq,
                    run_snapshots.c.halted_at_seq,
                )
                .select_from(runs.outerjoin(run_snapshots, run_snapshots.c.run_id == runs.c.run_id))
                .order_by(runs.c.created_at.desc(), runs.c.run_id)
                .limit(max(args.limit, 0))
            ).all()
    finally:
        store.close()
    items = [
        {
            "run_id": r.run_id,
            "created_at": r.created_at.isoformat(timespec="seconds"),
            "events": int(r.last_seq),
            "status": r.status or "(not projected)",
            "projected_to": None if r.last_event_seq is None else int(r.last_event_seq),
            "halted_at_seq": r.halted_at_seq,
        }
        for r in rows
    ]
    if args.format == "json":
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no runs in the ledger")
        return 0
    for item in items:
        lag = item["events"] - (item["projected_to"] or 0)
        note = f" ({lag} event(s) not projected yet)" if lag else ""
        halt = f" HALTED at runSeq {item['halted_at_seq']}" if item["halted_at_seq"] is not None else ""
        print(
            f"{item['run_id']}  {item['created_at']}  {item['status']}{halt}  {item['events']} events{note}"
        )
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from metric_platform.errors import UnknownNameError
    from metric_platform.ledger.projector import load_snapshot

    store = _open(settings)
    try:
        events = store.events(args.run_id)
        stored = load_snapshot(store.engine, args.run_id)
    finally:
        store.close()
    if not events:
        msg = f"no run {args.run_id!r} in the ledger; `metric-platform ledger runs` lists the runs"
        raise UnknownNameError(msg)
    # The stored projection may lag; the fold of the events read now is the current state.
    ready = split_at_gap(0, events)
    current = project_run(args.run_id, ready.ready)
    if args.format == "json":
        out = {
            "snapshot": current.to_json(),
            "projected": None if stored is None else stored.to_json(),
            "gap": None if ready.gap is None else {"expected": ready.gap.expected, "found": ready.gap.found},
            "events": [_event_json(e) for e in events],
        }
        print(json.dumps(out, indent=2))
        return 0
    _print_snapshot(current, stored, len(events))
    if ready.gap is not None:
        print(f"GAP: runSeq {ready.gap.expected} is missing (next present: {ready.gap.found})")
    print("events:")
    for e in events:
        print("  " + _event_line(e))
    return 0


def _print_snapshot(snap: RunSnapshot, stored: RunSnapshot | None, count: int) -> None:
    duration = f", {snap.total_duration_ms} ms" if snap.total_duration_ms is not None else ""
    print(f"run {snap.run_id}: {snap.status.value}{duration}, {count} events")
    if stored is None:
        print("  projection: not projected yet (run `metric-platform ledger project`)")
    elif stored.last_event_seq < snap.last_event_seq:
        print(f"  projection: at runSeq {stored.last_event_seq} of {snap.last_event_seq} (lagging)")
    if snap.root_cause is not None:
        where = f" in step {snap.root_cause.step_id}" if snap.root_cause.step_id else ""
        print(f"  root cause{where}: {snap.root_cause.error.code}: {snap.root_cause.error.message}")
    for step in snap.steps:
        attempt = f"attempt {step.logical_attempt_id}" + (
            f" (platform retry {step.engine_attempt_id})" if step.engine_attempt_id else ""
        )
        print(f"  step {step.step_id}: {step.status.value}, {attempt}, {len(step.artifacts)} artifact(s)")
        for artifact in step.artifacts:
            print(f"    {artifact.kind}: {artifact.uri}")
        if step.error is not None:
            print(f"    error {step.error.code}: {step.error.message}")


def _event_line(e: StoredEvent) -> str:
    i = e.event.identity
    step = i.step_id or "(run)"
    data = canonical_json(dict(e.event.data))
    if len(data) > 100:
        data = data[:97] + "..."
    return (
        f"#{e.run_seq} {e.persisted_at.isoformat(timespec='milliseconds')} {e.event_type.value} {step} "
        f"attempt {i.logical_attempt_id}/{i.engine_attempt_id} {data}"
    )


def _event_json(e: StoredEvent) -> dict[str, Any]:
    i = e.event.identity
    return {
        "runSeq": e.run_seq,
        "eventId": str(e.event_id),
        "eventType": e.event_type.value,
        "stepId": i.step_id,
        "logicalAttemptId": i.logical_attempt_id,
        "engineAttemptId": i.engine_attempt_id,
        "idempotencyKey": e.event.idempotency_key,
        "emittedAt": e.event.emitted_at.isoformat(),
        "persistedAt": e.persisted_at.isoformat(),
        "data": dict(e.event.data),
    }


def _loop(args: argparse.Namespace, once: Callable[[], str]) -> int:
    passes = 0
    try:
        while True:
            print(once(), flush=True)
            passes += 1
            if not args.loop or (args.passes is not None and passes >= args.passes):
                return 0
            time.sleep(max(args.interval, 0.0))
    except KeyboardInterrupt:
        return 0


def _project_once(settings: Settings) -> str:
    from metric_platform.ledger.projector import Projector
    from metric_platform.platform_db import open_platform_db

    engine = open_platform_db(settings.platform_url)
    try:
        report = Projector(engine).poll()
    finally:
        engine.dispose()
    parts = [
        f"projected {report.applied} event(s) into {len(report.runs_updated)} run(s)",
        f"watermark {report.watermark.tx}/{report.watermark.position}",
        f"lag {report.lag_seconds:.1f}s",
    ]
    parts += [f"halted {h.run_id} at runSeq {h.expected_seq}" for h in report.halted_runs]
    parts += [f"ALERT {a.code.value}: {a.message}" for a in report.alerts]
    return "; ".join(parts)


def _deliver_once(settings: Settings) -> str:
    from metric_platform.ledger.delivery import deliver
    from metric_platform.ledger.sinks import LogSink
    from metric_platform.platform_db import open_platform_db

    engine = open_platform_db(settings.platform_url)
    try:
        report = deliver(engine, LogSink(), now=dt.datetime.now(dt.UTC))
    finally:
        engine.dispose()
    return (
        f"delivered {report.delivered}, retrying {report.retried}, dead-lettered {report.dead_lettered} "
        f"(of {report.due} due)"
    )


def _replay(settings: Settings) -> int:
    from metric_platform.ledger.spool import Spool

    store = _open(settings)
    try:
        report = Spool(settings.spool_dir).replay(store)
    finally:
        store.close()
    print(
        f"replayed {report.replayed}, already recorded {report.duplicates}, failed {report.failed}, "
        f"quarantined {report.quarantined}, still waiting {report.remaining}"
    )
    return 0 if report.failed == 0 else 1


def _prune(settings: Settings, args: argparse.Namespace) -> int:
    from metric_platform import write_guard
    from metric_platform.ledger.retention import prune_runs
    from metric_platform.platform_db import open_platform_db

    with write_guard.dry_run(args.dry_run):
        engine = open_platform_db(settings.platform_url)
        try:
            report = prune_runs(engine, before=args.before, now=dt.datetime.now(dt.UTC))
        finally:
            engine.dispose()
    verb = "would delete" if report.dry_run else "deleted"
    print(
        f"{verb} {report.runs_deleted} run(s) created before {args.before} ({report.events_deleted} events); "
        f"kept {len(report.kept_unfinished)} unfinished and {len(report.kept_busy)} busy (retried next time)"
        + (
            f"; dropped partitions {', '.join(report.partitions_dropped)}"
            if report.partitions_dropped
            else ""
        )
    )
    return 0
