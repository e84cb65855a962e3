"""Post-grain operations: HAVING, ORDER BY, LIMIT [PER], applied in declared order (seed 003 §8.2 step 4).

Semantics — SQL as DuckDB implements it is the reference (the tests use DuckDB as the oracle):

* Operations apply in the order they are declared, not in SQL's fixed HAVING → ORDER BY → LIMIT order:
  ``LIMIT 3`` then ``HAVING roas > 2`` keeps those of the first three rows that pass, while ``HAVING``
  then ``LIMIT 3`` keeps the first three rows that pass.
* HAVING keeps the rows where the condition (a :mod:`frame_expr <metric_platform.engine.frame_expr>`
  predicate) is TRUE; FALSE and NULL drop the row. It keeps the current order.
* ORDER BY sorts by its keys with NULLs last for ascending and descending keys alike (DuckDB's default);
  NaN sorts above every number, as in DuckDB. Ties are broken by the grain columns ascending (NULLs last),
  so results never depend on sort stability or thread scheduling (the grain is expected to be a key).
  Its order becomes the *current order*.
* LIMIT n keeps the first n rows in the current order; before any ORDER BY, the current order is the
  grain ascending, so the result is still deterministic.
* LIMIT n PER cols keeps the first n rows of each group of ``cols`` in the current order, like
  ``ROW_NUMBER() OVER (PARTITION BY cols ORDER BY <current order>) <= n`` (NULL is a group of its own).
  The output is ordered by ``cols`` ascending (NULLs last), then by the current order, and that becomes
  the current order.
* With no ORDER BY and no LIMIT the input order is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, assert_never

import polars as pl

from metric_platform.engine.frame_expr import parse_predicate, referenced_columns
from metric_platform.errors import InvalidRequestError, did_you_mean

__all__ = ["Having", "Limit", "OrderBy", "PostGrainOp", "PostGrainOps", "SortKey"]


def _check_column_names(names: Sequence[str], what: str) -> None:
    if any(not isinstance(name, str) or not name for name in names):
        msg = f"{what} needs column names, got {list(names)!r}"
        raise InvalidRequestError(msg)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        msg = f"{what} names {', '.join(map(repr, duplicates))} more than once; list each column once"
        raise InvalidRequestError(msg)


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY key; ``-column`` in the CLI form means descending."""

    column: str
    descending: bool = False

    def __post_init__(self) -> None:
        _check_column_names([self.column], "a sort key")

    def __str__(self) -> str:
        return f"-{self.column}" if self.descending else self.column


@dataclass(frozen=True)
class Having:
    """Keep the rows where ``expression`` is TRUE."""

    expression: str

    def __post_init__(self) -> None:
        referenced_columns(self.expression)  # syntax and allow-list now; the columns at apply()


@dataclass(frozen=True)
class OrderBy:
    """Sort by ``keys``; ties are broken by the grain (see the module docstring)."""

    keys: tuple[SortKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            msg = "ORDER BY needs at least one column, e.g. '-roas,month'"
            raise InvalidRequestError(msg)
        _check_column_names([key.column for key in self.keys], "ORDER BY")

    @classmethod
    def parse(cls, text: str) -> OrderBy:
        """From the CLI form ``-roas,month``: comma-separated columns, a leading ``-`` for descending."""
        keys: list[SortKey] = []
        for part in text.split(","):
            item = part.strip()
            descending = item.startswith("-")
            column = item[1:].strip() if item[:1] in ("-", "+") else item
            if not column:
                msg = f"empty sort key in {text!r}; write columns separated by commas, e.g. '-roas,month'"
                raise InvalidRequestError(msg)
            keys.append(SortKey(column, descending))
        return cls(tuple(keys))


@dataclass(frozen=True)
class Limit:
    """Keep the first ``n`` rows in the current order, or the first ``n`` of each ``per`` group."""

    n: int
    per: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.n) is not int or self.n < 1:
            msg = f"LIMIT needs a whole number of rows of at least 1, got {self.n!r}"
            raise InvalidRequestError(msg)
        _check_column_names(self.per, "LIMIT ... PER")


PostGrainOp: TypeAlias = Having | OrderBy | Limit


def _first_per_column(keys: Iterable[SortKey]) -> tuple[SortKey, ...]:
    """Drop later keys on a column already sorted on: they can never decide anything."""
    seen: set[str] = set()
    kept: list[SortKey] = []
    for key in keys:
        if key.column not in seen:
            seen.add(key.column)
            kept.append(key)
    return tuple(kept)


def _sort(lf: pl.LazyFrame, order: Sequence[SortKey]) -> pl.LazyFrame:
    if not order:
        return lf
    columns = [key.column for key in order]
    descending = [key.descending for key in order]
    # maintain_order: rows equal on every key (a grain that is not a key) keep their input order.
    return lf.sort(columns, descending=descending, nulls_last=True, maintain_order=True)


def _require_columns(names: Iterable[str], columns: Collection[str], what: str) -> None:
    for name in names:
        if name not in columns:
            hint = did_you_mean(name, columns) or ";"
            msg = f"{what} names unknown column {name!r}{hint} the frame has {', '.join(columns)}"
            raise InvalidRequestError(msg)


@dataclass(frozen=True)
class PostGrainOps:
    """HAVING / ORDER BY / LIMIT [PER] in declared order."""

    ops: tuple[PostGrainOp, ...] = ()

    def __post_init__(self) -> None:
        for op in self.ops:
            if not isinstance(op, Having | OrderBy | Limit):
                msg = f"post-grain operations are Having, OrderBy or Limit, got {type(op).__name__}"
                raise InvalidRequestError(msg)

    def apply(self, lf: pl.LazyFrame, *, grain: Sequence[str]) -> pl.LazyFrame:
        """``lf`` (one row per ``grain`` value) after every operation, in declared order."""
        schema = lf.collect_schema()
        columns = schema.names()
        _require_columns(grain, columns, "the grain")
        tie_break = tuple(SortKey(column) for column in grain)
        order: tuple[SortKey, ...] | None = None  # None: the input order, nothing sorted yet
        for op in self.ops:
            match op:
                case Having():
                    lf = lf.filter(parse_predicate(op.expression, columns=schema))
                case OrderBy():
                    _require_columns((key.column for key in op.keys), columns, "ORDER BY")
                    order = _first_per_column(op.keys + tie_break)
                    lf = _sort(lf, order)
                case Limit() if op.per:
                    _require_columns(op.per, columns, "LIMIT ... PER")
                    order = _first_per_column((*(SortKey(c) for c in op.per), *(order or tie_break)))
                    rank = pl.int_range(pl.len()).over(op.per)  # position within its group, in sorted order
                    lf = _sort(lf, order).filter(rank < op.n)
                case Limit():
                    if order is None:
                        order = tie_break
                        lf = _sort(lf, order)
                    lf = lf.head(op.n)
                case _:
                    assert_never(op)
        return lf
