"""Slice bucket ends, the provisional flag and the stale-slice listing, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from metric_platform.engine.store import Domain, EntryKey, EntryStore
from metric_platform.errors import InvalidRequestError
from metric_platform_tests.engine.store._support import days, frame_for, key, meta, slice_base, slice_frame

CUTOFF = date(2026, 1, 10)


def _weeks(first: date, count: int) -> dict[date, date]:
    """``count`` week buckets from ``first``: start -> last day."""
    starts = [first + timedelta(weeks=i) for i in range(count)]
    return {start: start + timedelta(days=6) for start in starts}


def _flags(store: EntryStore, base: EntryKey) -> list[tuple[str, date | None, bool]]:
    return [(e.key.slice_key, e.slice_end, e.provisional) for e in store.list_slices(base)]


def test_publish_slices_records_each_bucket_end_and_whether_it_ended_after_the_cutoff(
    store: EntryStore, ac_name: str
) -> None:
    base = slice_base(ac_name, ("region", "week"))
    weeks = _weeks(date(2025, 12, 29), 3)  # 12-29..01-04, 01-05..01-11, 01-12..01-18
    starts = list(weeks)
    published = store.publish_slices(
        base,
        slice_frame(starts, rows=2),
        slice_column="day",
        slices=starts,
        meta=meta(stability_cutoff=CUTOFF),
        ends=weeks,
    )

    expected = [
        ("2025-12-29", date(2026, 1, 4), False),  # ended before the cutoff: stable
        ("2026-01-05", date(2026, 1, 11), True),  # ends the day after the cutoff
        ("2026-01-12", date(2026, 1, 18), True),  # wholly after the cutoff
    ]
    assert [(e.key.slice_key, e.slice_end, e.provisional) for e in published] == expected
    assert _flags(store, base) == expected, "the manifest row agrees with what publish returned"
    assert store.get(base.with_slice(starts[1])) == published[1]


def test_without_ends_a_slice_covers_its_day_and_a_slice_on_the_cutoff_is_stable(
    store: EntryStore, ac_name: str
) -> None:
    base, span = slice_base(ac_name), days(8, 3)  # 01-09, 01-10 (= cutoff), 01-11
    store.publish_slices(
        base, slice_frame(span), slice_column="day", slices=span, meta=meta(stability_cutoff=CUTOFF)
    )
    assert _flags(store, base) == [(d.isoformat(), d, d > CUTOFF) for d in span]
    assert [flag for _, _, flag in _flags(store, base)] == [False, False, True]


def test_per_slice_cutoffs_no_cutoff_and_whole_entries_are_never_provisional_wrongly(
    store: EntryStore, ac_name: str
) -> None:
    base, span = slice_base(ac_name), days(10, 2)  # 01-11, 01-12
    metas = {span[0]: meta(stability_cutoff=CUTOFF), span[1]: meta(stability_cutoff=span[1])}
    store.publish_slices(base, slice_frame(span), slice_column="day", slices=span, meta=metas)
    assert [flag for _, _, flag in _flags(store, base)] == [True, False]

    other = slice_base(ac_name, ("day",))
    store.publish_slices(other, slice_frame(span), slice_column="day", slices=span, meta=meta())
    assert [flag for _, _, flag in _flags(store, other)] == [False, False], "no stability: all stable"

    whole = store.publish(key(ac_name), frame_for(key(ac_name)), meta(stability_cutoff=CUTOFF))
    assert (whole.slice_end, whole.provisional) == (None, False)
    # A slice published on its own covers its day.
    alone = store.publish(base.with_slice(span[0]), slice_frame(span[:1]), meta(stability_cutoff=CUTOFF))
    assert (alone.slice_end, alone.provisional) == (span[0], True)


def test_republishing_under_a_later_cutoff_makes_a_provisional_slice_stable(
    store: EntryStore, ac_name: str
) -> None:
    base, span = slice_base(ac_name), days(10, 1)
    frame = slice_frame(span)
    store.publish_slices(base, frame, slice_column="day", slices=span, meta=meta(stability_cutoff=CUTOFF))
    assert _flags(store, base)[0][2] is True
    later = meta(stability_cutoff=CUTOFF + timedelta(days=5))
    (again,) = store.publish_slices(base, frame, slice_column="day", slices=span, meta=later)
    assert (again.version, again.provisional, again.slice_end) == (2, False, span[0])


@pytest.mark.parametrize(
    ("ends", "message"),
    [
        ({date(2026, 1, 1): date(2026, 1, 7)}, "no end for slice.*2026-01-08"),
        ({date(2026, 1, 1): date(2026, 1, 7), date(2026, 1, 8): date(2026, 1, 7)}, "end of slice 2026-01-08"),
        (
            {date(2026, 1, 1): date(2026, 1, 7), date(2026, 1, 8): datetime(2026, 1, 14)},
            "end of slice 2026-01-08",
        ),
    ],
)
def test_bad_ends_are_refused_before_anything_is_written(
    store: EntryStore, ac_name: str, data_dir: Path, ends: dict[date, date], message: str
) -> None:
    base, starts = slice_base(ac_name), [date(2026, 1, 1), date(2026, 1, 8)]
    with pytest.raises(InvalidRequestError, match=message):
        store.publish_slices(
            base, slice_frame(starts), slice_column="day", slices=starts, meta=meta(), ends=ends
        )
    assert store.list_entries(ac_name) == []
    assert not (data_dir / ac_name).exists(), "no file was written"


def test_ends_of_days_that_are_not_slices_are_ignored(store: EntryStore, ac_name: str) -> None:
    base, span = slice_base(ac_name), days(0, 1)
    calendar = {d: d + timedelta(days=1) for d in days(0, 30)}
    (entry,) = store.publish_slices(
        base, slice_frame(span), slice_column="day", slices=span, meta=meta(), ends=calendar
    )
    assert entry.slice_end == span[0] + timedelta(days=1)


def test_list_provisional_with_ended_by_lists_exactly_the_stale_slices(
    store: EntryStore, ac_name: str
) -> None:
    revenue = slice_base(ac_name, ("region", "week"))
    weeks = _weeks(date(2025, 12, 29), 4)  # ends 01-04, 01-11, 01-18, 01-25
    starts = list(weeks)
    store.publish_slices(
        revenue,
        slice_frame(starts, rows=1),
        slice_column="day",
        slices=starts,
        meta=meta(stability_cutoff=CUTOFF),
        ends=weeks,
    )
    orders = key(ac_name, "orders", ("day",))
    span = days(8, 4)  # 01-09 .. 01-12: the last two are provisional
    store.publish_slices(
        orders, slice_frame(span), slice_column="day", slices=span, meta=meta(stability_cutoff=CUTOFF)
    )
    qm = EntryKey(ac_name, Domain.QM, "orders", ("orders", "amount"))
    store.publish_slices(
        qm, slice_frame(span), slice_column="day", slices=span, meta=meta(stability_cutoff=CUTOFF)
    )
    store.publish(key(ac_name, "whole"), frame_for(key(ac_name)), meta(stability_cutoff=CUTOFF))
    other_ac = slice_base(f"{ac_name}_other")
    store.publish_slices(
        other_ac, slice_frame(span), slice_column="day", slices=span, meta=meta(stability_cutoff=CUTOFF)
    )

    def listed(**kwargs: object) -> list[tuple[str, str]]:
        return [(e.key.dataset_id, e.key.slice_key) for e in store.list_provisional(ac_name, **kwargs)]  # type: ignore[arg-type]

    provisional = [
        ("orders", "2026-01-11"),
        ("orders", "2026-01-12"),
        ("revenue", "2026-01-05"),
        ("revenue", "2026-01-12"),
        ("revenue", "2026-01-19"),
    ]
    assert listed() == provisional, "by dataset, anchor and day; METRIC only; no whole entry, no other AC"
    assert listed(ended_by=CUTOFF) == [], "nothing that ended after the cutoff has ended by it"
    assert listed(ended_by=date(2026, 1, 11)) == [("orders", "2026-01-11"), ("revenue", "2026-01-05")]
    assert listed(ended_by=date(2026, 1, 18)) == provisional[:4]
    assert listed(ended_by=date(2026, 2, 1)) == provisional
    assert listed(domain=Domain.QM) == [("orders", "2026-01-11"), ("orders", "2026-01-12")]
    both = store.list_provisional(ac_name, ended_by=date(2026, 1, 11), domain=None)
    assert [(e.key.domain, e.key.slice_key) for e in both] == [
        (Domain.METRIC, "2026-01-11"),
        (Domain.METRIC, "2026-01-05"),
        (Domain.QM, "2026-01-11"),
    ]
    assert all(e.provisional and e.slice_end is not None for e in both)

    # A refresh republishes the stale slice under the current cutoff: it is no longer listed.
    refreshed = date(2026, 1, 11)
    store.publish_slices(
        orders,
        slice_frame([refreshed]),
        slice_column="day",
        slices=[refreshed],
        meta=meta(stability_cutoff=refreshed),
    )
    assert listed(ended_by=date(2026, 1, 11)) == [("revenue", "2026-01-05")]


@pytest.mark.parametrize(
    "kwargs", [{"ended_by": date(2026, 1, 12)}, {}, {"domain": None}], ids=["stale", "all", "both_domains"]
)
def test_list_provisional_is_one_query_on_the_provisional_index(
    tmp_path: Path, ac_name: str, kwargs: dict[str, object]
) -> None:
    # SQLite has no statistics and picks by the query's shape alone: check that it takes the index.
    with EntryStore(f"sqlite:///{tmp_path / 'm.sqlite'}", tmp_path / "data") as store:
        span = days(8, 4)
        cutoff = meta(stability_cutoff=CUTOFF)
        store.publish_slices(
            slice_base(ac_name), slice_frame(span), slice_column="day", slices=span, meta=cutoff
        )
        statements: list[tuple[str, Any]] = []

        def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_args: Any) -> None:
            statements.append((sql, parameters))

        sa.event.listen(store._engine, "before_cursor_execute", record)
        assert len(store.list_provisional(ac_name, **kwargs)) == 2  # type: ignore[arg-type]
        ((query, parameters),) = statements
        with store._engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, parameters).all()
        assert any("USING INDEX ix_engine_entries_provisional" in str(step) for step in plan), plan
