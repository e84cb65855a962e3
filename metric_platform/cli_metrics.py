"""``metric-platform serve`` and ``metric-platform query``: metrics from the command line.

Post-grain operations run in the order they are written (``--having`` before ``--limit`` is not
``--limit`` before ``--having``), so they are collected from argv in order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import polars as pl

from metric_platform.errors import InvalidRequestError
from metric_platform.works.query_ops import names as _names

FORMATS = ("table", "csv", "json")
BACKENDS = ("polars", "sqlite", "postgres")


class _AppendOp(argparse.Action):
    """Keeps --having/--order/--limit/--per in command-line order in ``namespace.ops``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.dest, values))
        namespace.ops = ops


def add_commands(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve one metric at an anchor through the engine")
    p.add_argument("ac_file", type=Path)
    p.add_argument("metric")
    p.add_argument(
        "--anchor", default="", help="comma-separated dimensions, e.g. region,month ('' for a total)"
    )
    _common(p)
    p.add_argument(
        "--explain", action="store_true", help="show the serving path and why other entries were not used"
    )

    p = sub.add_parser(
        "query", help="several metrics at one grain, composed, with derived metrics and post-grain ops"
    )
    p.add_argument("ac_file", type=Path)
    p.add_argument("--metrics", required=True, help="comma-separated metric families")
    p.add_argument("--grain", default="", help="comma-separated dimensions")
    p.add_argument("--derive", action="append", default=[], metavar="NAME=EXPR", help="a derived metric")
    p.add_argument("--having", action=_AppendOp, dest="having", metavar="EXPR")
    p.add_argument("--order", action=_AppendOp, dest="order", metavar="COL|-COL[,...]")
    p.add_argument("--limit", action=_AppendOp, dest="limit", type=int, metavar="N")
    p.add_argument(
        "--per",
        action=_AppendOp,
        dest="per",
        metavar="COL[,COL]",
        help="makes the preceding --limit per group",
    )
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", type=dt.date.fromisoformat, help="first event day (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", type=dt.date.fromisoformat, help="last event day (YYYY-MM-DD)")
    add_source_options(p)
    add_today_option(p)
    add_dry_run_option(p)
    p.add_argument("--format", choices=FORMATS, default="table")


def add_source_options(p: argparse.ArgumentParser) -> None:
    """--backend/--source/--url-env: which backend reads the AC's source, and where (``open_engine``)."""
    p.add_argument(
        "--backend", choices=BACKENDS, help="read the source with this backend (default: the AC's)"
    )
    p.add_argument("--source", type=Path, help="the Parquet directory or SQLite file to read instead")
    p.add_argument("--url-env", help="with --backend postgres: the variable holding the URL")


def add_today_option(p: argparse.ArgumentParser) -> None:
    """--today: the engine's clock, so an operator (or a test) can ask what holds on day D."""
    p.add_argument(
        "--today",
        type=iso_day,
        help="run as if today were this day (YYYY-MM-DD): moves the stability cutoff (default: today)",
    )


def add_dry_run_option(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument(
        "--dry-run",
        action="store_true",
        help=help_text or "compute everything, write nothing (no memoized entry, no ledger event)",
    )


def execute_command(
    args: argparse.Namespace, ac: Any, work: str, params: dict[str, Any], *, days: Any = None
) -> Any:
    """Run ``work`` through the one execution door (a manual batch run, recorded in the ledger)
    and return its outcome's value; a dry run says on stderr what it did not write."""
    from metric_platform.settings import Settings
    from metric_platform.works.runner import batch_context, outcome_value, run_work
    from metric_platform.works.workspace import EngineWorkspace

    workspace = EngineWorkspace(ac, Settings(), today=getattr(args, "today", None))
    dry_run = bool(getattr(args, "dry_run", False))
    span = None if days is None else (days.start, days.end)
    context = batch_context(workspace, work, params, days=span, dry_run=dry_run)
    result = run_work(workspace, context)
    if dry_run:
        suppressed = ", ".join(f"{k} x{n}" for k, n in sorted((result.suppressed or {}).items())) or "none"
        print(f"dry run: nothing was written (suppressed writes: {suppressed})", file=sys.stderr)
    return outcome_value(result)


def iso_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"not a day: {text!r} (expected YYYY-MM-DD)"
        raise argparse.ArgumentTypeError(msg) from None


def _window(args: argparse.Namespace) -> Any:
    from metric_platform.backends.protocol import DateWindow

    if args.start is None and args.end is None:
        return None
    if args.start is None or args.end is None:
        msg = "give both --from and --to (or neither, for the AC's whole partition range)"
        raise InvalidRequestError(msg)
    return DateWindow(args.start, args.end)


def open_engine(args: argparse.Namespace, *, today: dt.date | None = None) -> tuple[Any, Any]:
    """The backend (``add_source_options``) and the engine of ``args.ac_file``, its clock fixed at
    ``today`` when given; the caller closes both."""
    from metric_platform.backends.factory import backend_for

    ac = load_source_ac(args)
    return backend_for(ac), engine_for(ac, today=today)


def engine_for(ac: Any, *, today: dt.date | None = None) -> Any:
    """The AC's engine, its clock fixed at ``today`` when given (``--today``)."""
    from metric_platform.engine.engine import MetricEngine

    if today is None:
        return MetricEngine.open(ac)
    return MetricEngine.open(ac, today=lambda: today)


def load_source_ac(args: argparse.Namespace) -> Any:
    """``args.ac_file`` pointed at the source ``add_source_options`` named. The source is part of
    every family's fingerprint, so commands that match memoized entries need the same options."""
    from metric_platform.semantics.loader import load_ac

    override: dict[str, str] = {}
    if args.backend is not None:
        override["kind"] = "parquet" if args.backend == "polars" else args.backend
        if args.backend == "postgres":
            if not args.url_env:
                msg = "--backend postgres needs --url-env VARIABLE (the variable holding the URL)"
                raise InvalidRequestError(msg)
            override["url_env"] = args.url_env
        elif args.source is None and args.backend != _kind_label(args.ac_file):
            msg = f"--backend {args.backend} needs --source PATH (its Parquet directory or SQLite file)"
            raise InvalidRequestError(msg)
    if args.source is not None:
        override["path"] = str(args.source.resolve())
    return load_ac(args.ac_file, source_override=override or None)


def _kind_label(ac_file: Path) -> str:
    from metric_platform.semantics.loader import load_ac

    kind = load_ac(ac_file).source.kind.value
    return "polars" if kind == "parquet" else kind


def run_serve(args: argparse.Namespace) -> int:
    params = {"family": args.metric, "anchor": list(_names(args.anchor)), "explain": args.explain}
    served = execute_command(args, load_source_ac(args), "engine.serve", params, days=_window(args))
    frame = served.frame.collect()
    # The engine's row order is whatever its parallel group-by gave: print by the anchor.
    anchor = [c for c in frame.columns if c != args.metric]
    _print(frame.sort(anchor, nulls_last=True) if anchor else frame, args.format)
    if args.explain:
        _explain(served, file=sys.stderr if args.format != "table" else sys.stdout)
    return 0


def _explain(served: Any, *, file: Any) -> None:
    p = served.provenance
    lines = [
        f"path: {p.path.describe()}",
        f"backend: {p.backend}; verification level {p.verification_level}; memoized now: {p.memoized}",
    ]
    if p.materialized_from is not None:
        first, last = p.materialized_from, p.materialized_to
        lines.append(f"entries materialized {first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} UTC")
    if p.stability_cutoffs:
        lines.append(f"stability cutoffs: {', '.join(str(c) for c in p.stability_cutoffs)}")
    if p.partial_buckets:
        lines.append(f"partial buckets (not memoized): {', '.join(str(b) for b in p.partial_buckets)}")
    if p.not_further_rollable:
        lines.append("not further rollable: the operator is not partition-invariant")
    for rejection in served.rejections:
        lines.append(f"not used ({', '.join(rejection.anchor) or '()'}): {rejection.reason}")
    print("\n".join(lines), file=file)


def run_query(args: argparse.Namespace) -> int:
    params = {
        "metrics": list(_names(args.metrics)),
        "grain": list(_names(args.grain)),
        "derive": list(args.derive),
        "ops": [[kind, str(value)] for kind, value in (getattr(args, "ops", None) or [])],
    }
    frame = execute_command(args, load_source_ac(args), "engine.query", params, days=_window(args))
    _print(frame.data, args.format)
    return 0


def _print(frame: pl.DataFrame, fmt: str) -> None:
    match fmt:
        case "csv":
            sys.stdout.write(frame.write_csv())
        case "json":
            sys.stdout.write(frame.write_json() + "\n")
        case _:
            with pl.Config(tbl_rows=200, tbl_cols=30, tbl_hide_dataframe_shape=False, fmt_str_lengths=40):
                print(frame)
