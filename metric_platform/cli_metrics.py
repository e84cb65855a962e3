"""``metric-platform serve`` and ``metric-platform query``: metrics from the command line.

Post-grain operations run in the order they are written (``--having`` before ``--limit`` is not
``--limit`` before ``--having``), so they are collected from argv in order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from metric_platform.errors import InvalidRequestError

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


def iso_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"not a day: {text!r} (expected YYYY-MM-DD)"
        raise argparse.ArgumentTypeError(msg) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


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
    backend, engine = open_engine(args, today=args.today)
    try:
        served = engine.serve_metric(
            args.metric, _names(args.anchor), backend=backend, window=_window(args), explain=args.explain
        )
        _print(served.frame.collect(), args.format)
        if args.explain:
            _explain(served, file=sys.stderr if args.format != "table" else sys.stdout)
    finally:
        engine.close()
        backend.close()
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
    from metric_platform.engine.frame_expr import DerivedMetric, FrameExpression
    from metric_platform.engine.query import QueryRequest

    request = QueryRequest(
        metrics=_names(args.metrics),
        grain=_names(args.grain),
        window=_window(args),
        frame_expression=FrameExpression(tuple(DerivedMetric.parse(d) for d in args.derive))
        if args.derive
        else None,
        post_grain_ops=_ops(getattr(args, "ops", None) or []),
    )
    backend, engine = open_engine(args, today=args.today)
    try:
        frame = engine.query(request, backend=backend)
        _print(frame.data, args.format)
    finally:
        engine.close()
        backend.close()
    return 0


def _ops(raw: Sequence[tuple[str, Any]]) -> Any:
    from metric_platform.engine.post_grain import Having, Limit, OrderBy, PostGrainOps

    ops: list[Any] = []
    for kind, value in raw:
        match kind:
            case "having":
                ops.append(Having(value))
            case "order":
                ops.append(OrderBy.parse(value))
            case "limit":
                ops.append(Limit(value))
            case "per":
                if not ops or not isinstance(ops[-1], Limit) or ops[-1].per:
                    msg = "--per COL belongs right after a --limit N"
                    raise InvalidRequestError(msg)
                ops[-1] = Limit(ops[-1].n, _names(value))
    return PostGrainOps(tuple(ops)) if ops else None


def _print(frame: pl.DataFrame, fmt: str) -> None:
    match fmt:
        case "csv":
            sys.stdout.write(frame.write_csv())
        case "json":
            sys.stdout.write(frame.write_json() + "\n")
        case _:
            with pl.Config(tbl_rows=200, tbl_cols=30, tbl_hide_dataframe_shape=False, fmt_str_lengths=40):
                print(frame)
