"""Correctness gate (c): a query through the engine returns exactly what the backend alone returns.

``execute_query(ac, backend, request)`` calls the backend once per metric at the target grain;
with ``engine=`` every metric is served (a miss fetched at its native grain and rolled up, an exact
hit or a rollup) and what the memo policy keeps is memoized. The frames must be identical, on a
cold engine, on the same engine warm, and after ``engine.warm``, on every backend.
Float sums may associate differently along a rollup, so floats agree to 1e-12 relative; every other
column, the row order and the NULLs agree exactly.
"""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from metric_platform.engine.compose import compose
from metric_platform.engine.post_grain import Having, Limit, OrderBy, PostGrainOps
from metric_platform.engine.query import QueryRequest, execute_query
from metric_platform.engine.serving.types import PathKind, Provenance, ServingPath
from metric_platform.semantics.operators import Operator
from metric_platform_tests.engine.gate.conftest import TODAY, OpenEngine, Source
from metric_platform_tests.engine.gate.queries import ALL, MID, QUERIES, WEEKS

REQUESTS: tuple[QueryRequest, ...] = (
    *(q.request for q in QUERIES),
    # No window: both paths cover the AC's partitions up to the same today.
    QueryRequest(("average_sale", "unique_customers"), ("region", "month")),
    QueryRequest(("revenue", "spend"), ("region",)),
    QueryRequest(("transaction_count", "largest_sale", "any_returned"), ("quarter", "region"), ALL),
    QueryRequest(("conversions",), ("store", "week"), WEEKS),
    QueryRequest(("spend", "any_returned"), ("channel", "day"), MID),
    QueryRequest(("revenue", "conversions"), ()),
)


def orders_rows(request: QueryRequest) -> bool:
    """Whether the composed rows come in a defined order (see the xfail below for the others)."""
    ops = request.post_grain_ops
    return ops is None or any(isinstance(op, OrderBy | Limit) for op in ops.ops)


def assert_identical(on: pl.DataFrame, off: pl.DataFrame, context: str, *, grain: tuple[str, ...]) -> None:
    if grain:  # rows in the join's arbitrary order: compare them sorted by the grain (a key)
        on, off = on.sort(list(grain), nulls_last=True), off.sort(list(grain), nulls_last=True)
    exact = [c for c, t in off.schema.items() if not t.is_float()]
    try:
        assert on.schema == off.schema
        assert_frame_equal(on.select(exact), off.select(exact), check_exact=True)
        assert_frame_equal(on, off, check_exact=False, rel_tol=1e-12, abs_tol=1e-9)
    except AssertionError as exc:
        msg = f"{context}\nengine on:\n{on}\nengine off:\n{off}\n{exc}"
        raise AssertionError(msg) from None


def test_engine_on_equals_engine_off(source: Source, open_engine: OpenEngine) -> None:
    off = [execute_query(source.ac, source.backend, r, today=TODAY).data for r in REQUESTS]
    engine = open_engine(source.ac)
    failures: list[str] = []
    for phase in ("cold", "warm", "after warm()"):
        if phase == "after warm()":
            engine.warm(backend=source.backend)
        for number, (request, expected) in enumerate(zip(REQUESTS, off, strict=True), 1):
            context = f"{source.kind}, {phase}, request {number}: {request.metrics} at {request.grain}"
            on = execute_query(source.ac, source.backend, request, engine=engine, today=TODAY)
            via_engine = engine.query(request, backend=source.backend)
            try:
                assert expected.height > 0, "the request selects no row and tests nothing"
                grain = () if orders_rows(request) else request.grain
                assert_identical(on.data, expected, context, grain=grain)
                assert_identical(via_engine.data, expected, f"{context} (engine.query)", grain=grain)
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_having_alone_still_gives_rows_in_grain_order() -> None:
    path = ServingPath(PathKind.BACKEND, "m", Operator.SUM, ("g",), ("g",))
    provenance = Provenance("m", path, "polars", "A")
    frame = pl.DataFrame({"g": ["a", "b", "c"], "m": [1, 2, 3]})
    having = PostGrainOps((Having("m > 0"),))
    for rows in (frame, frame.reverse()):
        # Without post-grain ops the rows come sorted by the grain whatever the input order...
        assert compose({"m": (rows.lazy(), provenance)}, ("g",)).data["g"].to_list() == ["a", "b", "c"]
        # ...and a HAVING that keeps every row must not make the order depend on the input's.
        kept = compose({"m": (rows.lazy(), provenance)}, ("g",), post_grain_ops=having)
        assert kept.data["g"].to_list() == ["a", "b", "c"]
