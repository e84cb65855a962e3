"""The request log: how often each grain (AC, domain, dataset, anchor) was asked for, per UTC day.

Promotion recommendations (seed 003 §9.3) and the eviction score (§10.2) need sustained demand per
grain over a window of days, not per entry: a grain is requested whether it is served from the
store, rolled up from a finer grain or computed by the backend. One row per grain and day keeps
the log small however many serves there are; ``prune`` enforces the retention.

Each function runs on a connection inside a transaction the caller opened. ``count`` takes its
one row last in the manifest's lock order (see ``manifest``).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from metric_platform.db import dialect_insert
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import GrainRequests
from metric_platform.engine.store.schema import engine_requests

_GRAIN_COLUMNS = ("ac_name", "domain", "dataset_id", "anchor_signature")


def count(conn: Connection, request: EntryKey, day: date) -> None:
    """Add one hit to ``request``'s grain on ``day`` (the first hit of a day inserts its row)."""
    t = engine_requests
    insert = dialect_insert(conn, t).values(
        ac_name=request.ac_name,
        domain=request.domain.value,
        dataset_id=request.dataset_id,
        anchor_signature=request.anchor_signature,
        day=day,
        hits=1,
    )
    primary_key = [*_GRAIN_COLUMNS, "day"]
    conn.execute(insert.on_conflict_do_update(index_elements=primary_key, set_={"hits": t.c.hits + 1}))


def totals(conn: Connection, ac_name: str, *, since: date, domain: Domain | None) -> list[GrainRequests]:
    """Hits per grain on the days >= ``since``, from one GROUP BY, by domain, dataset and anchor."""
    c = engine_requests.c
    grain = (c.domain, c.dataset_id, c.anchor_signature)
    query = (
        sa.select(
            *grain,
            sa.func.sum(c.hits).label("hits"),
            sa.func.count().label("active_days"),
            sa.func.min(c.day).label("first_day"),
            sa.func.max(c.day).label("last_day"),
        )
        .where(c.ac_name == ac_name, c.day >= since)
        .group_by(*grain)
        .order_by(*grain)
    )
    if domain is not None:
        query = query.where(c.domain == domain.value)
    found: list[GrainRequests] = []
    for row in conn.execute(query):
        key = EntryKey.from_signature(ac_name, Domain(row.domain), row.dataset_id, row.anchor_signature)
        found.append(
            GrainRequests(
                domain=key.domain,
                dataset_id=key.dataset_id,
                anchor=key.anchor,
                hits=int(row.hits),
                active_days=int(row.active_days),
                first_day=row.first_day,
                last_day=row.last_day,
            )
        )
    return found


def prune(conn: Connection, ac_name: str, *, before: date) -> int:
    """Delete the AC's rows of days before ``before``; returns how many rows went.

    The rows are taken ``FOR UPDATE SKIP LOCKED``: a prune never waits, so it cannot deadlock with
    ``count`` or another prune. A row it skips is one being counted right now, i.e. today's, which
    a sensible ``before`` keeps anyway; a later prune takes it.
    """
    c = engine_requests.c
    primary_key = sa.tuple_(*(c[name] for name in (*_GRAIN_COLUMNS, "day")))
    doomed = (
        sa.select(*(c[name] for name in (*_GRAIN_COLUMNS, "day")))
        .where(c.ac_name == ac_name, c.day < before)
        .with_for_update(skip_locked=True)
    )
    statement = sa.delete(engine_requests).where(primary_key.in_(doomed))
    return int(conn.execute(statement).rowcount)
