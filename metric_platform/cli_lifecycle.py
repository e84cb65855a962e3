"""``metric-platform stale | refresh | evict | recommend``: the engine's lifecycle from the command line.

Each command prints what it did (or, with ``--dry-run``, would do) as a table or as one JSON object
with stable keys and ISO dates (seed 003 §9.3, §10, §11). ``--today`` fixes the engine's clock, so
an operator can ask what will be stale on a given day, and tests need no real calendar.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metric_platform.cli_metrics import (
    add_source_options,
    add_today_option,
    engine_for,
    execute_command,
    load_source_ac,
)
from metric_platform.engine.lifecycle.types import (
    EvictionReport,
    Recommendation,
    RefreshReport,
    StaleSlices,
    day_ranges,
)
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.loader import load_ac
from metric_platform.settings import Settings

FORMATS = ("table", "json")

# Decimal (kB = 1000) and binary (KiB = 1024) units, case-insensitive; a bare number is bytes.
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_BYTE_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def add_lifecycle_commands(sub: Any) -> None:
    p = sub.add_parser("stale", help="list the memoized slices that crossed the stability cutoff")
    p.add_argument("ac_file", type=Path)
    add_today_option(p)
    add_source_options(p)  # the source is part of the families' fingerprints: give it as to serve
    _format(p)

    p = sub.add_parser("refresh", help="recompute the stale slices (read-only with --dry-run)")
    p.add_argument("ac_file", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list what would be recomputed, change nothing")
    p.add_argument(
        "--provisional",
        action="store_true",
        help="also recompute the slices still inside the hold-off window",
    )
    p.add_argument(
        "--late-updates",
        action="store_true",
        help="also scan the update timestamps and recompute the memoized days updated after they were stable",
    )
    add_today_option(p)
    add_source_options(p)
    _format(p)

    p = sub.add_parser("evict", help="evict memoized entries down to the byte budget (or --to-bytes)")
    p.add_argument("ac_file", type=Path)
    p.add_argument(
        "--to-bytes",
        metavar="N",
        help="evict down to N evictable bytes instead of the budget: 0, 500000, 10MB, 1GiB, ...",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be evicted, change nothing")
    _format(p)

    p = sub.add_parser("recommend", help="grains to declare hot or pre-aggregate, with the YAML to paste")
    p.add_argument("ac_file", type=Path)
    _format(p)


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table")


def parse_byte_size(text: str) -> int:
    """``10MB`` -> 10_000_000, ``1GiB`` -> 1_073_741_824, ``4096`` -> 4096 (whole bytes, rounded down)."""
    match = _BYTE_SIZE.fullmatch(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        msg = (
            f"--to-bytes {text!r} is not a byte size: give a whole number of bytes or a number with a "
            "unit (kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 500MB"
        )
        raise InvalidRequestError(msg)
    number = match.group(1)
    if "." not in number:  # exact for integers of any size (a float would round 10**20)
        return int(number) * unit
    return int(float(number) * unit)


# -- stale ---------------------------------------------------------------------------------------
def run_stale(args: argparse.Namespace) -> int:
    engine = engine_for(load_source_ac(args), today=args.today)
    try:
        today, cutoff, groups = engine.today(), engine.stability_cutoff(), engine.stale()
        hold_off = engine.ac.stability.hold_off_days if engine.ac.stability is not None else None
    finally:
        engine.close()
    if args.format == "json":
        _json(
            {
                "ac": engine.ac.name,
                "today": today.isoformat(),
                "hold_off_days": hold_off,
                "cutoff": _iso(cutoff),
                "groups": [_group_json(g) for g in groups],
                "total_slices": sum(len(g.days) for g in groups),
            }
        )
        return 0
    print(_cutoff_line(engine.ac.name, today, cutoff, hold_off))
    if not groups:
        print("nothing is stale")
        return 0
    _print_groups(groups)
    print(f"total: {_slices(sum(len(g.days) for g in groups))} stale in {_grains(len(groups))}")
    return 0


def _cutoff_line(ac_name: str, today: dt.date, cutoff: dt.date | None, hold_off: int | None) -> str:
    if cutoff is None:
        return f"AC {ac_name!r}: no stability block, every day is stable (today {today})"
    return f"AC {ac_name!r}: stability cutoff {cutoff} (today {today}, hold-off {hold_off} days)"


def _print_groups(groups: Sequence[StaleSlices]) -> None:
    for group in groups:
        print(f"  {group.describe()}{' [pinned]' if group.pinned else ''}")


def _group_json(group: StaleSlices) -> dict[str, Any]:
    return {
        "family": group.family,
        "anchor": list(group.anchor),
        "days": [day.isoformat() for day in group.days],
        "ranges": day_ranges(group.days),
        "slices": len(group.days),
        "pinned": group.pinned,
    }


# -- refresh -------------------------------------------------------------------------------------
def run_refresh(args: argparse.Namespace) -> int:
    ac = load_source_ac(args)
    params = {"provisional": args.provisional, "late_updates": args.late_updates}
    report: RefreshReport = execute_command(args, ac, "engine.refresh", params)
    today = args.today or dt.date.today()
    hold_off = ac.stability.hold_off_days if ac.stability is not None else None
    if args.format == "json":
        _json(_refresh_json(ac.name, today, args.provisional, report))
        return 0
    print(_cutoff_line(ac.name, today, report.cutoff, hold_off))
    if args.late_updates:
        _print_late(report, hold_off)
    what = "provisional" if args.provisional else "stale"
    total = sum(len(g.days) for g in report.groups)
    if not report.groups:
        print(f"nothing is {what}: nothing to refresh")
        return 0
    if report.dry_run:
        print(f"would recompute {_slices(total)} ({what}) in {_grains(len(report.groups))} (dry run):")
        _print_groups(report.groups)
        return 0
    print(f"recomputed {_slices(report.recomputed)} ({what}) in {_grains(len(report.groups))}:")
    _print_groups(report.groups)
    calls = report.backend_calls
    print(f"backend calls: {calls} (finer grains first: coarser ones roll up from the fresh days)")
    return 0


def _print_late(report: RefreshReport, hold_off: int | None) -> None:
    late = report.late_days
    if not late:
        print("late updates: none (every stable day kept its promise)")
        return
    delay = max((d.last_update.date() - d.day).days for d in late)
    rows = sum(d.rows for d in late)
    # A day is stable from day + hold_off on: a hold-off one day longer than the delay covers it.
    print(
        f"late updates: {len(late)} day(s) had {rows} row(s) updated after they were stable "
        f"({day_ranges(tuple(d.day for d in late))}); the longest delay was {delay} days"
        + (
            f" against a hold-off of {hold_off}: consider hold_off_days: {delay + 1}"
            if hold_off is not None and delay >= hold_off
            else ""
        )
        + " (--format json lists every day)"
    )
    if report.late_groups:
        verb = "would recompute" if report.dry_run else "recomputed"
        print(f"{verb} the memoized slices holding them:")
        _print_groups(report.late_groups)
    else:
        print("every memoized slice holding them was computed after their last update: nothing to recompute")


def _refresh_json(ac_name: str, today: dt.date, provisional: bool, report: RefreshReport) -> dict[str, Any]:
    return {
        "ac": ac_name,
        "today": today.isoformat(),
        "cutoff": _iso(report.cutoff),
        "dry_run": report.dry_run,
        "provisional": provisional,
        "groups": [_group_json(g) for g in report.groups],
        "slices": sum(len(g.days) for g in report.groups),
        "recomputed": report.recomputed,
        "backend_calls": report.backend_calls,
        "late_days": [
            {"day": d.day.isoformat(), "rows": d.rows, "last_update": d.last_update.isoformat()}
            for d in report.late_days
        ],
        "late_groups": [_group_json(g) for g in report.late_groups],
    }


# -- evict ---------------------------------------------------------------------------------------
def run_evict(args: argparse.Namespace) -> int:
    to_bytes = None if args.to_bytes is None else parse_byte_size(args.to_bytes)
    ac = load_ac(args.ac_file)
    report: EvictionReport = execute_command(args, ac, "engine.evict", {"to_bytes": to_bytes})
    budget = Settings().max_bytes_per_ac  # the engine's limits come from the same settings
    if args.format == "json":
        _json(_evict_json(ac.name, budget, report))
        return 0
    for line in _evict_lines(ac.name, budget, to_bytes is not None, report):
        print(line)
    return 0


def _evict_lines(ac_name: str, budget: int, explicit: bool, report: EvictionReport) -> list[str]:
    target = f"target {report.budget} bytes" + (f" (budget {budget})" if explicit else " (the budget)")
    lines = [
        f"AC {ac_name!r}: policy {report.policy}, {target}",
        f"evictable bytes {report.evictable_before} -> {report.evictable_after}; "
        f"pinned bytes {report.pinned_bytes} (never evicted)",
    ]
    verb = "would evict" if report.dry_run else "evicted"
    if not report.evicted and report.evictable_before <= report.budget:
        lines.append(f"nothing to evict: {report.evictable_before} evictable bytes within the target")
    elif not report.evicted:  # the store offered no unit (another process evicted them meanwhile)
        lines.append("nothing evicted: no evictable unit was left to choose")
    else:
        lines.append(
            f"{verb} {len(report.evicted)} unit(s), {report.bytes_evicted} bytes"
            + (" (dry run: nothing removed)" if report.dry_run else "")
            + ":"
        )
        for unit in report.evicted:
            lines.append(
                f"  {unit.domain} {unit.dataset_id} at ({', '.join(unit.anchor)}): "
                f"{unit.slices} slice(s), {unit.bytes} bytes, score {unit.score:.4g}"
            )
    if report.rows_skipped:
        lines.append(f"kept {report.rows_skipped} chosen entries another writer replaced or pinned meanwhile")
    if report.pinned_over_budget:
        lines.append(
            f"warning: pinned entries alone hold {report.pinned_bytes} bytes, over the {budget}-byte "
            "budget; they back materialized partitions and are never evicted: raise "
            "METRIC_PLATFORM_MAX_BYTES_PER_AC or unpin them"
        )
    return lines


def _evict_json(ac_name: str, budget: int, report: EvictionReport) -> dict[str, Any]:
    return {
        "ac": ac_name,
        "policy": report.policy,
        "budget": budget,
        "target": report.budget,
        "dry_run": report.dry_run,
        "evictable_before": report.evictable_before,
        "evictable_after": report.evictable_after,
        "pinned_bytes": report.pinned_bytes,
        "pinned_over_budget": report.pinned_over_budget,
        "bytes_evicted": report.bytes_evicted,
        "rows_skipped": report.rows_skipped,
        "evicted": [
            {
                "domain": unit.domain,
                "dataset": unit.dataset_id,
                "anchor": list(unit.anchor),
                "slices": unit.slices,
                "bytes": unit.bytes,
                "score": unit.score,
            }
            for unit in report.evicted
        ],
    }


# -- recommend -----------------------------------------------------------------------------------
def run_recommend(args: argparse.Namespace) -> int:
    engine = engine_for(load_ac(args.ac_file))
    try:
        recommendations: list[Recommendation] = engine.recommend()
    finally:
        engine.close()
    if args.format == "json":
        _json({"ac": engine.ac.name, "recommendations": [_recommendation_json(r) for r in recommendations]})
        return 0
    if not recommendations:
        print(f"AC {engine.ac.name!r}: no recommendations")
        return 0
    print(f"AC {engine.ac.name!r}: {len(recommendations)} recommendation(s)")
    for rec in recommendations:
        print(f"\n[{rec.kind}] {rec.family} at ({', '.join(rec.anchor)}): {rec.hits} hit(s)")
        print(f"  {rec.reason}")
        if rec.stanza:
            print("  paste:")
            print("\n".join(f"    {line}" for line in rec.stanza.rstrip("\n").splitlines()))
    return 0


def _recommendation_json(rec: Recommendation) -> dict[str, Any]:
    return {
        "kind": rec.kind,
        "family": rec.family,
        "anchor": list(rec.anchor),
        "hits": rec.hits,
        "reason": rec.reason,
        "stanza": rec.stanza,
    }


# -- helpers -------------------------------------------------------------------------------------
def _json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2))


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _slices(n: int) -> str:
    return f"{n} slice{'' if n == 1 else 's'}"


def _grains(n: int) -> str:
    return f"{n} grain{'' if n == 1 else 's'}"
