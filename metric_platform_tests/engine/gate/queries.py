"""Compose queries of the gate, each with its DuckDB SQL written by hand.

The SQL continues :meth:`RetailOracle.composed_sql` (the metrics joined at the grain, NULL keys
matching) and spells out the post-grain semantics of ``engine/post_grain.py``: HAVING keeps TRUE
rows, ORDER BY sorts NULLs last and breaks ties by the grain columns ascending, LIMIT n PER cols is
``ROW_NUMBER() OVER (PARTITION BY cols ORDER BY <current order>) <= n`` and the output is ordered by
``cols`` then the current order; operations apply in declared order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.frame_expr import DerivedMetric, FrameExpression
from metric_platform.engine.post_grain import Having, Limit, OrderBy, PostGrainOps
from metric_platform.engine.query import QueryRequest

D = dt.date
ALL = DateWindow(D(2026, 10, 12), D(2026, 11, 20))
MID = DateWindow(D(2026, 10, 20), D(2026, 11, 10))
WEEKS = DateWindow(D(2026, 10, 19), D(2026, 11, 15))


@dataclass(frozen=True)
class Query:
    name: str
    request: QueryRequest
    sql: str  # what follows the composed prefix ("WITH ..., joined AS (...)")
    ordered: bool  # the engine's row order is part of the answer
    derived: tuple[str, ...] = ()  # Float64 derived columns


def _ops(*ops: Having | OrderBy | Limit) -> PostGrainOps:
    return PostGrainOps(tuple(ops))


def _derive(*texts: str) -> FrameExpression:
    return FrameExpression(tuple(DerivedMetric.parse(t) for t in texts))


QUERIES = (
    Query(
        "roas top 3 per month",
        QueryRequest(
            ("revenue", "spend", "transaction_count"),
            ("channel", "month"),
            ALL,
            _derive("roas = revenue / nullif(spend, 0)"),
            _ops(Having("transaction_count >= 5"), OrderBy.parse("-roas"), Limit(3, ("month",))),
        ),
        ", d AS (SELECT *, revenue / nullif(spend, 0) AS roas FROM joined) "
        "SELECT * FROM d WHERE transaction_count >= 5 QUALIFY row_number() OVER "
        "(PARTITION BY month ORDER BY roas DESC NULLS LAST, channel NULLS LAST, month NULLS LAST) <= 3 "
        "ORDER BY month NULLS LAST, roas DESC NULLS LAST, channel NULLS LAST",
        ordered=True,
        derived=("roas",),
    ),
    Query(
        "boolean ties, 2 per month, broken by store",
        QueryRequest(
            ("any_returned", "transaction_count"),
            ("store", "month"),
            ALL,
            post_grain_ops=_ops(OrderBy.parse("-any_returned"), Limit(2, ("month",))),
        ),
        " SELECT * FROM joined QUALIFY row_number() OVER "
        "(PARTITION BY month ORDER BY any_returned DESC NULLS LAST, store NULLS LAST, month NULLS LAST) <= 2 "
        "ORDER BY month NULLS LAST, any_returned DESC NULLS LAST, store NULLS LAST",
        ordered=True,
    ),
    Query(
        "division by a zero spend gives inf, sorted first; HAVING on a date",
        QueryRequest(
            ("revenue", "spend"),
            ("channel", "week"),
            WEEKS,
            _derive("raw_roas = revenue / spend"),
            _ops(Having("week >= '2026-10-26'"), OrderBy.parse("-raw_roas"), Limit(2, ("week",))),
        ),
        ", d AS (SELECT *, revenue / spend AS raw_roas FROM joined) "
        "SELECT * FROM d WHERE week >= DATE '2026-10-26' QUALIFY row_number() OVER (PARTITION BY week "
        "ORDER BY raw_roas DESC NULLS LAST, channel NULLS LAST, week NULLS LAST) <= 2 "
        "ORDER BY week NULLS LAST, raw_roas DESC NULLS LAST, channel NULLS LAST",
        ordered=True,
        derived=("raw_roas",),
    ),
    Query(
        "boolean ties over the whole frame, broken by store then month",
        QueryRequest(
            ("any_returned", "largest_sale"),
            ("store", "month"),
            ALL,
            post_grain_ops=_ops(OrderBy.parse("-any_returned"), Limit(5)),
        ),
        " SELECT * FROM joined "
        "ORDER BY any_returned DESC NULLS LAST, store NULLS LAST, month NULLS LAST LIMIT 5",
        ordered=True,
    ),
    Query(
        "ties per month broken by region then channel (NULL channel last)",
        QueryRequest(
            ("any_returned", "transaction_count"),
            ("region", "channel", "month"),
            ALL,
            post_grain_ops=_ops(OrderBy.parse("-any_returned"), Limit(4, ("month",))),
        ),
        " SELECT * FROM joined QUALIFY row_number() OVER (PARTITION BY month ORDER BY "
        "any_returned DESC NULLS LAST, region NULLS LAST, channel NULLS LAST, month NULLS LAST) <= 4 "
        "ORDER BY month NULLS LAST, any_returned DESC NULLS LAST, region NULLS LAST, channel NULLS LAST",
        ordered=True,
    ),
    Query(
        "NULL ties and a NULL group, 2 per channel, grain order (week, channel)",
        QueryRequest(
            ("conversions", "largest_sale"),
            ("week", "channel"),
            WEEKS,
            post_grain_ops=_ops(OrderBy.parse("-conversions"), Limit(2, ("channel",))),
        ),
        " SELECT * FROM joined QUALIFY row_number() OVER "
        "(PARTITION BY channel ORDER BY conversions DESC NULLS LAST, week NULLS LAST, channel NULLS LAST) "
        "<= 2 "
        "ORDER BY channel NULLS LAST, conversions DESC NULLS LAST, week NULLS LAST",
        ordered=True,
    ),
    Query(
        "LIMIT before HAVING, in declared order",
        QueryRequest(
            ("revenue", "largest_sale"),
            ("region", "day"),
            MID,
            post_grain_ops=_ops(OrderBy.parse("-revenue"), Limit(10), Having("largest_sale > 150")),
        ),
        " SELECT * FROM (SELECT * FROM joined ORDER BY revenue DESC NULLS LAST, region NULLS LAST, "
        "day NULLS LAST LIMIT 10) WHERE largest_sale > 150 "
        "ORDER BY revenue DESC NULLS LAST, region NULLS LAST, day NULLS LAST",
        ordered=True,
    ),
    Query(
        "LIMIT without ORDER BY takes the grain order",
        QueryRequest(("revenue", "average_sale"), ("store",), ALL, post_grain_ops=_ops(Limit(5))),
        " SELECT * FROM joined ORDER BY store NULLS LAST LIMIT 5",
        ordered=True,
    ),
    Query(
        "empty grain with a derived ratio",
        QueryRequest(
            ("revenue", "unique_customers", "average_sale"),
            (),
            MID,
            _derive("per_customer = revenue / nullif(unique_customers, 0)"),
        ),
        " SELECT *, revenue / nullif(unique_customers, 0) AS per_customer FROM joined",
        ordered=True,
        derived=("per_customer",),
    ),
    Query(
        "NULL campaign joined across three metrics, sorted by the grain",
        QueryRequest(("spend", "revenue", "conversions"), ("campaign",), ALL),
        " SELECT * FROM joined ORDER BY campaign NULLS LAST",
        ordered=True,
    ),
    Query(
        "HAVING with three-valued logic keeps the join's rows (compared as a set)",
        QueryRequest(
            ("conversions", "revenue"),
            ("region", "week"),
            MID,
            _derive("margin = revenue - conversions * 10"),
            _ops(Having("conversions > 20 or revenue > 1500 and not (margin < 0)")),
        ),
        ", d AS (SELECT *, revenue - conversions * 10 AS margin FROM joined) "
        "SELECT * FROM d WHERE conversions > 20 OR revenue > 1500 AND NOT (margin < 0)",
        ordered=False,
        derived=("margin",),
    ),
)


def derived_dtypes(query: Query) -> dict[str, pl.DataType]:
    return {name: pl.Float64() for name in query.derived}
