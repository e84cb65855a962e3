"""The reducer operators and what the engine may do with their results (seed 003 §5.3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from metric_platform.semantics.types import ColumnType


class Operator(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    MIN = "MIN"
    MAX = "MAX"
    BOOL_AND = "BOOL_AND"
    BOOL_OR = "BOOL_OR"
    AVG = "AVG"
    MEDIAN = "MEDIAN"
    COUNT_DISTINCT = "COUNT_DISTINCT"

    @property
    def info(self) -> OperatorInfo:
        return OPERATORS[self]

    @property
    def partition_invariant(self) -> bool:
        return OPERATORS[self].rollup is not None


_NUMERIC = frozenset({ColumnType.INTEGER, ColumnType.FLOAT})
_ORDERABLE = frozenset(t for t in ColumnType if t.is_orderable)
_ANY = frozenset(ColumnType)


@dataclass(frozen=True)
class OperatorInfo:
    """``rollup`` is the operator that combines partial results (None: not partition-invariant)."""

    accepts: frozenset[ColumnType]
    rollup: Operator | None

    def accepts_type(self, column_type: ColumnType) -> bool:
        return column_type in self.accepts


OPERATORS: dict[Operator, OperatorInfo] = {
    Operator.SUM: OperatorInfo(_NUMERIC, Operator.SUM),
    Operator.COUNT: OperatorInfo(_ANY, Operator.SUM),  # partial counts add up
    Operator.MIN: OperatorInfo(_ORDERABLE, Operator.MIN),
    Operator.MAX: OperatorInfo(_ORDERABLE, Operator.MAX),
    Operator.BOOL_AND: OperatorInfo(frozenset({ColumnType.BOOLEAN}), Operator.BOOL_AND),
    Operator.BOOL_OR: OperatorInfo(frozenset({ColumnType.BOOLEAN}), Operator.BOOL_OR),
    Operator.AVG: OperatorInfo(_NUMERIC, None),
    Operator.MEDIAN: OperatorInfo(_NUMERIC, None),
    Operator.COUNT_DISTINCT: OperatorInfo(_ANY, None),
}


def result_type(operator: Operator, column_type: ColumnType) -> ColumnType:
    """The logical type of an aggregate's value; every backend normalises its output to it."""
    if operator in (Operator.COUNT, Operator.COUNT_DISTINCT):
        return ColumnType.INTEGER
    if operator in (Operator.AVG, Operator.MEDIAN):
        return ColumnType.FLOAT
    return column_type
