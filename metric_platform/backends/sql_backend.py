"""The SQL backend (SQLite, PostgreSQL): one ``SELECT ... GROUP BY`` per request (counts included),
via SQLAlchemy Core.

Dimension tables are LEFT joined with their AC filter in the ON clause, so a fact row whose
dimension row is missing or filtered out keeps a NULL dimension value (as the Polars backend does).
Each table is checked against the AC (exists, has every declared column) the first time it is read,
so a bad source gives a :class:`SourceError` naming the table and column; any later driver error is
translated too, never leaked raw.

PostgreSQL sessions read in UTC, so a ``timestamptz`` falls on its UTC day as in the Polars backend:
an engine this backend opens sets it on every new session (``db.create_db_engine(read_only=True)``),
a caller's engine gets ``SET LOCAL TIME ZONE 'UTC'`` in each transaction.

SQLite has no NaN: a float NaN written to it is stored as NULL, so this backend answers over SQLite
as if those values were missing (MAX skips them, COUNT does not count them, ``propagate`` gives
NULL), where PostgreSQL and the Polars backend follow SQL's NaN (greater than every number).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.elements import ColumnElement

from metric_platform.backends.identity import (
    postgres_identity,
    postgres_stamp,
    sqlite_database,
    sqlite_stamp,
    unstamped,
)
from metric_platform.backends.normalize import NONNULL_COLUMN, POLARS_DTYPES, ROWS_COLUMN
from metric_platform.backends.plan import ROOT_ALIAS, AggregatePlan, plan_aggregate, typed_filters
from metric_platform.backends.protocol import AggregateRequest
from metric_platform.backends.sql_diagnosis import describe_unconvertible
from metric_platform.backends.sql_expressions import (
    POSTGRESQL,
    SQLITE,
    as_day,
    bucket,
    filter_clause,
    reduce,
    register_sqlite_functions,
    sa_type,
    table_for,
)
from metric_platform.db import create_db_engine, describe_url
from metric_platform.errors import SourceError, StorageError, UnsupportedOperationError
from metric_platform.semantics.spec import AnalyticalContext, SchemaSpec


class SqlBackend:
    """``DataAPIBackend`` over a SQLite file or a PostgreSQL database.

    ``engine_or_url``: an engine (the caller keeps ownership) or a URL (``sqlite:///path``,
    ``postgresql://...``), whose engine this backend creates and disposes in :meth:`close`.
    """

    def __init__(self, ac: AnalyticalContext, engine_or_url: Engine | str) -> None:
        self._ac = ac
        if isinstance(engine_or_url, Engine):
            self._engine, self._owned = engine_or_url, False
            given = engine_or_url.url
        else:
            self._engine, self._owned = _open(engine_or_url), True
            given = make_url(engine_or_url)  # before our session options were added to it
        self._dialect = self._engine.dialect.name
        if self._dialect not in (SQLITE, POSTGRESQL):
            msg = f"the SQL backend supports SQLite and PostgreSQL, not {self._dialect!r}"
            raise UnsupportedOperationError(msg)
        self._database = sqlite_database(self._engine.url) if self._dialect == SQLITE else None
        if self._dialect == POSTGRESQL:
            self._identity = postgres_identity(given)
        elif self._database is not None:
            self._identity = f"sqlite:{self._database}"
        else:  # in memory: private to this engine
            self._identity = f"sqlite:memory:{id(self._engine)}"
        self._metadata = sa.MetaData()
        self._tables: dict[str, sa.Table] = {}
        self._checked: set[str] = set()

    @property
    def ac(self) -> AnalyticalContext:
        return self._ac

    @property
    def name(self) -> str:
        return "postgres" if self._dialect == POSTGRESQL else "sqlite"

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()

    def source_identity(self) -> str:
        """``sqlite:<resolved file>`` or ``postgresql://user@host:port/database`` (no password)."""
        return self._identity

    def table_stamp(self, schema: str) -> str:
        """SQLite: the database file's (and WAL file's) size and mtime, so any write changes every
        table's stamp; PostgreSQL: ``identity.postgres_stamp`` (relation and row counters)."""
        spec = self._ac.schema(schema)
        if self._dialect == SQLITE:
            return unstamped() if self._database is None else sqlite_stamp(self._database)
        with self._connect() as conn:
            try:
                return postgres_stamp(conn, spec)
            except sa.exc.SQLAlchemyError as exc:
                msg = (
                    f"cannot read the change counters of schema {spec.name!r} on "
                    f"{describe_url(self._engine)}: {_first_line(exc)}; check the role may read pg_class"
                )
                raise SourceError(msg) from exc

    def extract_to_lazyframe(self, schema: str) -> pl.LazyFrame:
        spec = self._ac.schema(schema)
        table = self._table(schema)
        columns = [
            sa.type_coerce(table.c[spec.physical(c)], sa_type(t)).label(c) for c, t in spec.columns.items()
        ]
        stmt = sa.select(*columns).where(*self._filters(schema, table))
        out_schema = pl.Schema({c: POLARS_DTYPES[t] for c, t in spec.columns.items()})
        return self._fetch(stmt, out_schema, (schema,)).lazy()

    def aggregate(self, request: AggregateRequest) -> pl.LazyFrame:
        plan = plan_aggregate(self._ac, request)
        stmt = self._statement(plan)
        return self._fetch(stmt, plan.output_schema, (plan.root, *(j.schema for j in plan.joins))).lazy()

    # -- statement --------------------------------------------------------------------------------
    def _statement(self, plan: AggregatePlan) -> sa.Select[Any]:
        aliases = {ROOT_ALIAS: self._table(plan.root).alias(ROOT_ALIAS)}
        schemas = {ROOT_ALIAS: plan.root}

        def col(alias: str, column: str) -> ColumnElement[Any]:
            return aliases[alias].c[self._ac.schema(schemas[alias]).physical(column)]

        source: sa.FromClause = aliases[ROOT_ALIAS]
        for step in plan.joins:
            aliases[step.alias] = self._table(step.schema).alias(step.alias)
            schemas[step.alias] = step.schema
            on = col(step.parent, step.left_key) == col(step.alias, step.right_key)
            # The dimension's filter goes in ON, not WHERE: a filtered-out row becomes NULLs.
            source = source.outerjoin(
                aliases[step.alias], sa.and_(on, *self._filters(step.schema, aliases[step.alias]))
            )
        where = list(self._filters(plan.root, aliases[ROOT_ALIAS]))
        if plan.window is not None and plan.window_column is not None:
            ref = plan.window_column
            day = as_day(col(ref.alias, ref.column), ref.column_type, self._dialect)
            where.append(day.between(plan.window.start, plan.window.end))
        keys = []
        for anchor in plan.anchor:
            key = col(anchor.ref.alias, anchor.ref.column)
            if anchor.time_grain is not None:
                key = bucket(key, anchor.ref.column_type, anchor.time_grain, self._dialect)
            keys.append(key)
        x = col(plan.value.alias, plan.value.column)
        value = reduce(
            plan.operator,
            plan.treatment,
            x,
            value_type=plan.value.column_type,
            impute=plan.impute_value,
            dialect=self._dialect,
        )
        columns = [k.label(a.dimension) for k, a in zip(keys, plan.anchor, strict=True)]
        columns.append(value.label(plan.value_name))
        if plan.with_counts:
            # Of the raw column, not the imputed one: what a rollup needs to redo the treatment.
            columns += [sa.func.count().label(ROWS_COLUMN), sa.func.count(x).label(NONNULL_COLUMN)]
        # No anchor: no GROUP BY, so SQL gives one row even over zero input rows.
        stmt = sa.select(*columns).select_from(source).where(*where)
        return stmt.group_by(*keys) if keys else stmt

    def _filters(self, schema: str, table: sa.FromClause) -> list[ColumnElement[bool]]:
        spec = self._ac.schema(schema)
        return [filter_clause(c, table.c[spec.physical(c.column)]) for c in typed_filters(self._ac, schema)]

    def _table(self, schema: str) -> sa.Table:
        if schema not in self._tables:
            self._tables[schema] = table_for(self._ac.schema(schema), self._metadata)
        return self._tables[schema]

    # -- execution --------------------------------------------------------------------------------
    def _fetch(self, stmt: sa.Select[Any], schema: pl.Schema, read: Sequence[str]) -> pl.DataFrame:
        with self._connect() as conn:
            for name in read:
                self._check_table(conn, self._ac.schema(name))
            try:
                rows = conn.execute(stmt).all()
            except sa.exc.SQLAlchemyError as exc:
                msg = (
                    f"query on {describe_url(self._engine)} reading {', '.join(read)} failed: "
                    f"{_first_line(exc)}; check that the tables match AC {self._ac.name!r}"
                )
                raise SourceError(msg) from exc
            except (TypeError, ValueError) as exc:
                # Raised by the driver's result processing (e.g. ISO-text parsing on SQLite).
                specs = [self._ac.schema(name) for name in read]
                detail = describe_unconvertible(conn, specs, self._dialect)
                msg = f"reading {', '.join(read)} from {describe_url(self._engine)} failed: {detail}"
                raise SourceError(msg) from exc
        try:
            return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            # SQLite keeps whatever a row holds: text in an INTEGER column reaches us as text.
            msg = (
                f"rows of {', '.join(read)} on {describe_url(self._engine)} do not fit the types declared "
                f"in AC {self._ac.name!r} ({_first_line(exc)}); fix the stored values or the declared types"
            )
            raise SourceError(msg) from exc

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            conn = self._engine.connect()
            if self._dialect == SQLITE:
                # Registered per checkout rather than on "connect": an engine handed to us may
                # already hold pooled connections that never saw our listener.
                register_sqlite_functions(conn.connection.driver_connection)
        except (sa.exc.SQLAlchemyError, StorageError) as exc:
            msg = (
                f"cannot connect to the source database {describe_url(self._engine)} of AC "
                f"{self._ac.name!r}: {_first_line(exc)}; check the URL, that the server is running "
                "and the credentials"
            )
            raise SourceError(msg) from exc
        with conn:
            if self._dialect == POSTGRESQL and not self._owned:
                # Our own engines' sessions are in UTC from the start; a caller's engine only for
                # this transaction (autobegun here), leaving its sessions as they were.
                self._utc_transaction(conn)
            yield conn

    def _utc_transaction(self, conn: Connection) -> None:
        try:
            conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        except sa.exc.SQLAlchemyError as exc:
            msg = f"cannot set the time zone on {describe_url(self._engine)}: {_first_line(exc)}"
            raise SourceError(msg) from exc

    def _check_table(self, conn: Connection, spec: SchemaSpec) -> None:
        if spec.name in self._checked:
            return
        where = f"{spec.db_schema}.{spec.table}" if spec.db_schema else spec.table
        try:
            found = {c["name"] for c in sa.inspect(conn).get_columns(spec.table, schema=spec.db_schema)}
        except sa.exc.NoSuchTableError:
            found = set()
        except sa.exc.SQLAlchemyError as exc:
            msg = f"cannot inspect table {where!r} for schema {spec.name!r}: {_first_line(exc)}"
            raise SourceError(msg) from exc
        if not found:
            msg = (
                f"schema {spec.name!r}: table {where!r} does not exist in {describe_url(self._engine)}; "
                "load the data (e.g. backends.sql_load.load_frames) or fix the table name in the AC"
            )
            raise SourceError(msg)
        missing = [c for c in spec.columns if spec.physical(c) not in found]
        if missing:
            msg = (
                f"schema {spec.name!r}: table {where!r} has no column(s) "
                f"{', '.join(spec.physical(c) for c in missing)} declared in AC {self._ac.name!r} "
                f"(it has: {', '.join(sorted(found))}); "
                "add them to the table or fix the AC's columns/name_map"
            )
            raise SourceError(msg)
        self._checked.add(spec.name)


def _open(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        msg = f"{url!r} is not a database URL; use sqlite:///path/to/file.db or postgresql://host/db"
        raise SourceError(msg) from exc
    database = parsed.database or ""
    on_disk = database not in ("", ":memory:") and not database.startswith("file:")
    # Opening a missing SQLite file would silently create an empty database.
    if parsed.get_backend_name() == SQLITE and on_disk and not Path(database).is_file():
        msg = f"SQLite source {database} does not exist; create it (load_frames) or fix the AC's source.path"
        raise SourceError(msg)
    try:
        # A source is only read: never switch its journal mode or take write locks on it.
        return create_db_engine(url, read_only=True)
    except (StorageError, sa.exc.SQLAlchemyError) as exc:
        msg = f"cannot open the source database: {exc}"
        raise SourceError(msg) from exc


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
