"""The ``metric-platform`` command.

Exit codes: 0 success, 2 a user error (bad AC, unknown name, unreadable source: the message says how
to fix it), 1 an internal error (storage). No traceback is the only message.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from metric_platform.cli_ledger import add_ledger_commands, run_ledger
from metric_platform.cli_lifecycle import (
    add_lifecycle_commands,
    run_evict,
    run_recommend,
    run_refresh,
    run_stale,
)
from metric_platform.cli_metrics import add_commands, add_dry_run_option, run_query, run_serve
from metric_platform.errors import MetricPlatformError, UserError
from metric_platform.installation import ENGINE_KEYS

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metric-platform", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: execution start/end lines; -vv: debug"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate analytical-context YAML files")
    p.add_argument("ac_files", nargs="+", type=Path)

    p = sub.add_parser("profile", help="profile a source schema (or one column) through the engine")
    p.add_argument("ac_file", type=Path)
    p.add_argument("schema")
    p.add_argument("--column")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument(
        "--source", type=Path, help="read the AC's Parquet directory / SQLite file from here instead"
    )
    add_dry_run_option(p)

    p = sub.add_parser("entries", help="list the engine's memoized entries for an AC (the manifest)")
    p.add_argument("ac_file", type=Path)
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser("generate-sample", help="write the deterministic sample data set")
    p.add_argument("--out", type=Path, default=Path("data") / "sample")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--end-date", type=dt.date.fromisoformat, help="last event day (default: yesterday)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sqlite", type=Path, help="also load the tables into this SQLite file")

    add_commands(sub)
    add_lifecycle_commands(sub)
    add_ledger_commands(sub)

    p = sub.add_parser("main", help="the main job: sample data, validate and profile every AC")
    p.add_argument("--acs", type=Path, default=Path("data") / "acs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(_glue_dash_values(list(sys.argv[1:] if argv is None else argv)))
    with _logging(args.verbose):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return _dispatch(args)
    except ValidationError as exc:  # settings from the environment (METRIC_PLATFORM_*)
        print(f"error: invalid settings: {_settings_problems(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except MetricPlatformError as exc:
        print(f"internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error. Point stdout at devnull so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


@contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Warnings on stderr; ``-v`` adds the execution's start/end lines, ``-vv`` everything.

    Without ``-v`` the execution scaffold's own lines stay quiet: a rejected command already
    prints its error, and a dry run says on stderr what it did not write. The previous logging
    set-up is restored afterwards (``main`` is also called in-process, by tests and scripts).
    """
    root = logging.getLogger()
    execution = logging.getLogger("metric_platform.execution")
    saved = (root.level, list(root.handlers), execution.level)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    if not verbose:
        execution.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers = saved[1]
        execution.setLevel(saved[2])


def _glue_dash_values(argv: list[str]) -> list[str]:
    """``--order -roas`` would read ``-roas`` as an option: glue it to its flag (``--order=-roas``)."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--order",) and arg.startswith("-") and arg[1:2].isalpha():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _settings_problems(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"])
        where = f"METRIC_PLATFORM_{name.upper()}" + (
            f" or metric_engine.{name}" if name in ENGINE_KEYS else ""
        )
        problems.append(f"{name} ({where}): {err['msg']}")
    return "; ".join(problems) + (
        " (fix those environment variables, or the metric_engine section of the installation file "
        "installation.yaml in METRIC_PLATFORM_HOME)"
    )


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "validate":
            return _validate(args.ac_files)
        case "profile":
            return _profile(args)
        case "entries":
            return _entries(args)
        case "generate-sample":
            return _generate(args)
        case "serve":
            return run_serve(args)
        case "query":
            return run_query(args)
        case "stale":
            return run_stale(args)
        case "refresh":
            return run_refresh(args)
        case "evict":
            return run_evict(args)
        case "recommend":
            return run_recommend(args)
        case "ledger":
            return run_ledger(args)
        case "main":
            from metric_platform.main_job import run_main_job

            run_main_job(acs_dir=args.acs)
            return 0
    msg = f"unknown command {args.command!r}"
    raise AssertionError(msg)


def _validate(files: Sequence[Path]) -> int:
    from metric_platform.errors import ConfigError
    from metric_platform.semantics.loader import load_ac

    failed = False
    for file in files:
        try:
            ac = load_ac(file)
        except ConfigError as exc:
            failed = True
            print(f"{file}: invalid\n{exc}", file=sys.stderr)
            continue
        print(
            f"{file}: ok — AC {ac.name!r}: {len(ac.schemas)} schemas, {len(ac.dimensions)} dimensions, "
            f"{len(ac.fd_dag.edges)} FD edges, {len(ac.families)} metric families"
        )
        for fam in ac.families.values():
            hints = "; ".join("[" + ", ".join(g) + "]" for g in fam.cache_grains) or "none"
            print(
                f"  {fam.name}: {fam.operator}({fam.root_schema}.{fam.root_column}) {fam.mvt.label}, "
                f"base grain [{', '.join(fam.base_grain)}], cache hints {hints}, "
                f"fingerprint {fam.fingerprint}"
            )
    return EXIT_USER_ERROR if failed else 0


def _profile(args: argparse.Namespace) -> int:
    from metric_platform.cli_metrics import execute_command
    from metric_platform.engine.qm.projections import render_table
    from metric_platform.semantics.loader import load_ac

    ac = load_ac(args.ac_file, source_path=args.source)
    params = {"schema_name": args.schema, "column": args.column}
    profile = execute_command(args, ac, "qm.profile", params)
    if args.column:
        print(profile.model_dump_json(indent=2) if args.format == "json" else _render_column(profile))
    else:
        print(profile.model_dump_json(indent=2) if args.format == "json" else render_table(profile))
    return 0


def _render_column(profile: object) -> str:
    from metric_platform.engine.qm.projections import ColumnProfile

    assert isinstance(profile, ColumnProfile)
    lines = [
        f"{profile.schema_name}.{profile.column}: {profile.dtype}, kind {profile.kind_hint.value}",
        f"  rows {profile.row_count}, nulls {profile.null_count} ({profile.null_fraction:.1%}), "
        f"distinct {profile.distinct_count}, min {profile.min_text}, max {profile.max_text}",
    ]
    if profile.numeric is not None:
        n = profile.numeric
        lines.append(f"  mean {n.mean}, std {n.std}, p25 {n.p25}, p50 {n.p50}, p75 {n.p75}")
    if profile.text is not None:
        t = profile.text
        lines.append(f"  length min {t.min_length}, max {t.max_length}, mean {t.mean_length}")
    if profile.top_values:
        tops = ", ".join(f"{v.value} ({v.count})" for v in profile.top_values[:10])
        lines.append(f"  top values: {tops}")
    if profile.histogram:
        bins = ", ".join(f"[{b.lower:.4g}, {b.upper:.4g}): {b.count}" for b in profile.histogram)
        lines.append(f"  histogram: {bins}")
    return "\n".join(lines)


def _entries(args: argparse.Namespace) -> int:
    from metric_platform.engine.engine import MetricEngine
    from metric_platform.semantics.loader import load_ac

    ac = load_ac(args.ac_file)
    engine = MetricEngine.open(ac)
    try:
        entries = engine.entries()
    finally:
        engine.close()
    rows = [
        {
            "domain": e.key.domain.value,
            "dataset": e.key.dataset_id,
            "anchor": e.key.anchor_signature,
            "slice": e.key.slice_key or "-",
            "version": e.version,
            "rows": e.row_count,
            "bytes": e.byte_size,
            "accesses": e.access_count,
            "last_access": e.last_access_at.isoformat(timespec="seconds"),
            "level": e.meta.verification_level or "-",
            "pinned": e.pinned,
        }
        for e in entries
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"AC {ac.name!r}: {len(rows)} entries, {sum(e.byte_size for e in entries)} bytes")
    if rows:
        headers = list(rows[0])
        cells = [headers, *([str(r[h]) for h in headers] for r in rows)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
        for i, c in enumerate(cells):
            print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from metric_platform.sample_data import SampleSpec, generate, write_metadata, write_parquet

    spec = SampleSpec(rows=args.rows, days=args.days, end_date=args.end_date, seed=args.seed)
    frames = generate(spec)
    paths = write_parquet(frames, args.out)
    meta = write_metadata(spec, args.out)
    print(f"wrote {', '.join(str(p) for p in paths)} ({meta['rows']} transactions to {meta['end_date']})")
    if args.sqlite:
        from metric_platform.backends.sql_load import load_frames

        args.sqlite.parent.mkdir(parents=True, exist_ok=True)
        load_frames(f"sqlite:///{args.sqlite.resolve()}", frames)
        print(f"loaded {', '.join(frames)} into {args.sqlite}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
