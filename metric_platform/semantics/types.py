"""Small closed vocabularies of the semantic layer: column types, time grains, verification levels,
missing-value treatments."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never


class ColumnType(StrEnum):
    """Logical column types an AC declares for its source columns."""

    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.INTEGER, ColumnType.FLOAT)

    @property
    def is_temporal(self) -> bool:
        return self in (ColumnType.DATE, ColumnType.TIMESTAMP)

    @property
    def is_orderable(self) -> bool:
        return self is not ColumnType.BOOLEAN


class TimeGrain(StrEnum):
    """Calendar grains; a bucket is represented by its first day (weeks start on Monday, ISO)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    def bucket_start(self, day: dt.date) -> dt.date:
        """The first day of the bucket holding ``day`` (the pure reference every backend must match)."""
        match self:
            case TimeGrain.DAY:
                return day
            case TimeGrain.WEEK:
                return day - dt.timedelta(days=day.weekday())
            case TimeGrain.MONTH:
                return day.replace(day=1)
            case TimeGrain.QUARTER:
                return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
            case TimeGrain.YEAR:
                return dt.date(day.year, 1, 1)
            case _:
                assert_never(self)

    def rolls_up_to(self, coarser: TimeGrain) -> bool:
        """Whether every bucket of this grain lies inside one bucket of ``coarser`` (a calendar FD)."""
        if self is coarser:
            return True
        if self is TimeGrain.DAY:
            return True
        if self is TimeGrain.WEEK:
            return False  # a week can straddle two months, quarters or years
        order = (TimeGrain.MONTH, TimeGrain.QUARTER, TimeGrain.YEAR)
        return coarser in order and order.index(self) < order.index(coarser)


class VerificationLevel(StrEnum):
    """How well a source schema is verified; an entry inherits the minimum of its sources (seed §12)."""

    A = "A"
    AA = "AA"
    AAA = "AAA"

    @property
    def rank(self) -> int:
        return len(self.value)

    @staticmethod
    def minimum(levels: list[VerificationLevel]) -> VerificationLevel:
        return min(levels, key=lambda level: level.rank)


class MissingValueKind(StrEnum):
    SKIP = "skip"  # SQL's default: aggregates ignore NULL; no non-null value gives NULL (COUNT gives 0)
    PROPAGATE = "propagate"  # any NULL in a group makes the group's value NULL
    IMPUTE = "impute"  # NULL is replaced by a value before aggregating


@dataclass(frozen=True)
class MissingValueTreatment:
    kind: MissingValueKind = MissingValueKind.SKIP
    value: int | float | str | bool | dt.date | dt.datetime | None = None

    def __post_init__(self) -> None:
        if (self.kind is MissingValueKind.IMPUTE) != (self.value is not None):
            msg = "an impute treatment needs a value, and only an impute treatment takes one"
            raise ValueError(msg)

    @property
    def label(self) -> str:
        return f"impute({self.value!r})" if self.kind is MissingValueKind.IMPUTE else self.kind.value


SKIP = MissingValueTreatment()
