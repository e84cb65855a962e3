"""Quality checks of one source schema, derived from its QM profile and its FD verifications (pure).

For a schema S of the AC the checks are, in this order (:func:`planned_checks` names them before
any data is read, so asset checks can be declared up front):

``null_fraction`` (WARN)
    Metadata: the null fraction of every column of S. Fails when a *required key* has a null,
    i.e. a column whose null loses or misplaces rows without a trace:

    - a time dimension's column (``event_date``): every serve is windowed on it, so a row with a
      null day is in no window and drops out of every result (measured: its revenue vanishes);
    - a lookup key, the column S is joined *to* on (``stores.store_id``): a null one matches no
      fact row, so the dimension row it carries is unreachable;
    - a column of an FD map the engine reads from S (``stores.region``): a null coarser value
      sends every fact of its finer value to the null group of each rollup along the edge.

    Other dimension and join-key columns (a fact table's ``campaign_id``) are reported, not
    judged: backends join left and group by keeps nulls, so a null reference is an explicit
    "unattributed" group that keeps its rows (the sample has transactions with no campaign).
    This is narrower than "any null in a dimension or join-key column" on purpose.

``distinct_counts`` (WARN)
    Metadata: the distinct count of every dimension column of S. Fails when S has rows but a
    dimension column has no non-null value at all, or when for a declared edge finer -> coarser
    with both dimensions bound in S the coarser column has more distinct values than the finer
    one (impossible if the edge holds; a cheap hint from the profile alone). A column whose
    distinct count the profile could not take (unhashable) is reported as null and not judged.

``fd_<finer>__<coarser>`` (ERROR: blocking), one per declared non-calendar edge whose map the
engine reads from S (:func:`~metric_platform.engine.qm.fd_verification.verified_edges`)
    Passes exactly when the engine accepts the edge's map, i.e. every finer value maps to exactly
    one coarser value in S, and no finer value is listed twice (a join on it would count facts
    twice: stricter than the FD itself, and the engine refuses such a map too, so the check does).
    Metadata: the number of violating finer values, of repeated ones, and up to 10 examples. The
    engine refuses every rollup along a failing edge (``FDViolationError``), which is why this
    check blocks.

Outcomes are :class:`CheckOutcome`; their JSON (``to_json``) is what a work's summary and the
ledger keep, and ``from_json`` reads it back unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from metric_platform.engine.qm.fd_verification import EdgeVerification, verified_edges
from metric_platform.engine.qm.projections import TableProfile
from metric_platform.errors import InvalidRequestError
from metric_platform.semantics.fd_dag import FDEdge
from metric_platform.semantics.spec import AnalyticalContext

Severity = Literal["WARN", "ERROR"]
JSONValue = Any  # a JSON value: CheckOutcome normalizes its metadata through json to enforce it

NULL_FRACTION = "null_fraction"
DISTINCT_COUNTS = "distinct_counts"
_FIELDS = ("name", "passed", "severity", "description", "metadata")


def fd_check_name(edge: FDEdge) -> str:
    return f"fd_{edge.finer}__{edge.coarser}"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result. ``metadata`` is stored as plain JSON (tuples become lists), so an
    outcome equals its own ``from_json(to_json())``."""

    name: str
    passed: bool
    severity: Severity
    description: str
    metadata: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in get_args(Severity):
            msg = f"check {self.name!r}: severity must be one of {get_args(Severity)}, got {self.severity!r}"
            raise InvalidRequestError(msg)
        try:
            plain = json.loads(json.dumps(dict(self.metadata), allow_nan=False))
        except (TypeError, ValueError) as exc:
            msg = f"check {self.name!r}: metadata must be plain JSON (no dates, NaN or objects): {exc}"
            raise InvalidRequestError(msg) from None
        object.__setattr__(self, "metadata", plain)

    @property
    def blocking(self) -> bool:
        return self.severity == "ERROR"

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "passed": self.passed,
            "severity": self.severity,
            "description": self.description,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, JSONValue]) -> CheckOutcome:
        if set(raw) != set(_FIELDS):
            msg = f"a check outcome has exactly the keys {list(_FIELDS)}, got {sorted(raw)}"
            raise InvalidRequestError(msg)
        name, passed, severity, description, metadata = (raw[k] for k in _FIELDS)
        if not (
            isinstance(name, str)
            and isinstance(passed, bool)
            and isinstance(description, str)
            and isinstance(metadata, Mapping)
        ):
            msg = f"a check outcome needs str name and description, bool passed, object metadata: {raw!r}"
            raise InvalidRequestError(msg)
        return cls(name, passed, severity, description, metadata)


@dataclass(frozen=True)
class PlannedCheck:
    """A check a schema gets, known from the AC alone (for declaring asset checks)."""

    name: str
    severity: Severity
    description: str
    edge: FDEdge | None = None


def planned_checks(ac: AnalyticalContext, schema: str) -> tuple[PlannedCheck, ...]:
    ac.schema(schema)
    keys = ", ".join(required_columns(ac, schema)) or "none"
    fixed = (
        PlannedCheck(
            NULL_FRACTION, "WARN", f"null fraction of every column; fails on a null required key ({keys})"
        ),
        PlannedCheck(
            DISTINCT_COUNTS,
            "WARN",
            "distinct values of every dimension column; fails on an empty one, or on a coarser "
            "dimension with more values than its finer one",
        ),
    )
    edges = tuple(
        PlannedCheck(
            fd_check_name(edge),
            "ERROR",
            f"every {edge.finer} maps to exactly one {edge.coarser} (rollups along the edge need it)",
            edge,
        )
        for edge in verified_edges(ac, schema)
    )
    return fixed + edges


def required_columns(ac: AnalyticalContext, schema: str) -> dict[str, str]:
    """Columns of ``schema`` that must have no null, each with the reason, in column order."""
    why: dict[str, str] = {}
    for dim in ac.dimensions.values():
        if dim.is_time and schema in dim.columns:
            why.setdefault(
                dim.columns[schema], f"a null {dim.name} is outside every window: its rows are lost"
            )
    for join in ac.joins:
        column = ac.dimension(join.on).columns.get(schema) if join.to_schema == schema else None
        if column is not None:
            why.setdefault(
                column, f"the key {join.from_schema} is joined on: a row with a null one is unreachable"
            )
    for edge in verified_edges(ac, schema):
        for name in (edge.finer, edge.coarser):
            why.setdefault(
                ac.dimension(name).columns[schema],
                f"in the map {edge.finer} -> {edge.coarser}: a null misplaces facts in every rollup",
            )
    return {c: why[c] for c in ac.schema(schema).columns if c in why}


def reference_columns(ac: AnalyticalContext, schema: str) -> tuple[str, ...]:
    """The other dimension columns of ``schema`` (joins are on dimensions, so its foreign keys are
    among them): nulls there are reported only."""
    required = required_columns(ac, schema)
    bound = {dim.columns[schema] for dim in ac.dimensions.values() if schema in dim.columns}
    return tuple(c for c in ac.schema(schema).columns if c in bound and c not in required)


def evaluate(
    ac: AnalyticalContext, profile: TableProfile, verifications: Sequence[EdgeVerification]
) -> tuple[CheckOutcome, ...]:
    """Every planned check of the profiled schema, in :func:`planned_checks` order."""
    schema = profile.schema_name
    expected = verified_edges(ac, schema)
    by_edge = {v.edge: v for v in verifications if v.schema == schema}
    if set(by_edge) != set(expected) or len(verifications) != len(expected):
        msg = (
            f"schema {schema!r} needs one verification per edge {[(e.finer, e.coarser) for e in expected]}, "
            f"got {[(v.edge.finer, v.edge.coarser, v.schema) for v in verifications]}"
        )
        raise InvalidRequestError(msg)
    return (
        null_fraction(ac, profile),
        distinct_counts(ac, profile),
        *(fd_check(by_edge[edge]) for edge in expected),
    )


def null_fraction(ac: AnalyticalContext, profile: TableProfile) -> CheckOutcome:
    schema, rows = profile.schema_name, profile.row_count
    required = required_columns(ac, schema)
    nulls = {c.column: c.null_count for c in profile.columns if c.null_count > 0}
    failing = {c: n for c, n in nulls.items() if c in required}
    unattributed = {c: nulls[c] for c in reference_columns(ac, schema) if c in nulls}
    metadata = {
        "row_count": rows,
        "null_fractions": {c.column: c.null_fraction for c in profile.columns},
        "required_columns": list(required),
        "required_nulls": failing,
        "reference_nulls": unattributed,
    }
    if failing:
        listed = "; ".join(f"{c} has {n} of {rows} rows null ({required[c]})" for c, n in failing.items())
        description = (
            f"required key column(s) of {schema!r} have nulls: {listed}; fill them in the source, or "
            "exclude such rows with the AC's filter"
        )
    else:
        description = f"no null in the required key columns of {schema!r} ({', '.join(required) or 'none'})"
        if unattributed:
            listed = ", ".join(f"{c} ({n} of {rows} rows)" for c, n in unattributed.items())
            description += f"; rows kept as an unattributed (null) group: {listed}"
    return CheckOutcome(NULL_FRACTION, not failing, "WARN", description, metadata)


def distinct_counts(ac: AnalyticalContext, profile: TableProfile) -> CheckOutcome:
    schema = profile.schema_name
    dims = {d.name: d.columns[schema] for d in ac.dimensions.values() if schema in d.columns}
    counts = {dim: profile.column(column).distinct_count for dim, column in dims.items()}
    problems = []
    if profile.row_count > 0:
        problems += [
            f"{dims[dim]} (dimension {dim}) has no non-null value" for dim, n in counts.items() if n == 0
        ]
    for edge in ac.fd_dag.edges:
        finer, coarser = counts.get(edge.finer), counts.get(edge.coarser)
        if finer is not None and coarser is not None and coarser > finer:
            problems.append(
                f"{coarser} distinct {edge.coarser} but only {finer} distinct {edge.finer}, so the edge "
                f"{edge.finer} -> {edge.coarser} cannot hold"
            )
    metadata = {
        "row_count": profile.row_count,
        "distinct_counts": {dims[dim]: n for dim, n in counts.items()},
        "dimensions": dims,
    }
    if problems:
        description = f"dimension columns of {schema!r}: {'; '.join(problems)}; fix the source data"
    else:
        shown = ", ".join(f"{dims[d]}={'?' if n is None else n}" for d, n in counts.items()) or "none"
        description = f"distinct values of the dimension columns of {schema!r}: {shown}"
    return CheckOutcome(DISTINCT_COUNTS, not problems, "WARN", description, metadata)


def fd_check(verification: EdgeVerification) -> CheckOutcome:
    edge, schema = verification.edge, verification.schema
    metadata = {
        "schema": schema,
        "finer": edge.finer,
        "coarser": edge.coarser,
        "violating_values": verification.violating,
        "repeated_values": verification.repeated,
        "examples": [
            {edge.finer: _scalar(v.finer), edge.coarser: [_scalar(c) for c in v.coarser]}
            for v in verification.examples
        ],
    }
    if verification.holds:
        description = (
            f"every {edge.finer} maps to exactly one {edge.coarser} in {schema!r}: rollups along "
            f"{edge.finer} -> {edge.coarser} may proceed"
        )
    else:
        description = (
            f"{verification.refusal}; the engine refuses every rollup along {edge.finer} -> {edge.coarser} "
            "until this check passes"
        )
    return CheckOutcome(fd_check_name(edge), verification.holds, "ERROR", description, metadata)


def _scalar(value: object) -> JSONValue:
    """A data value as JSON: dates and other non-JSON scalars as their ISO / str form."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return str(value)
