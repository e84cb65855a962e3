"""The per-grain, per-day request log and the engine metadata listing, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from metric_platform.engine.store import Domain, EntryKey, EntryStore, GrainRequests
from metric_platform.errors import InvalidRequestError
from metric_platform_tests.engine.store._support import frame_for, key, meta
from metric_platform_tests.engine.store.conftest import FakeClock

DAY_1 = date(2026, 3, 1)


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_requests_are_counted_per_grain_and_utc_day_and_summed_since_a_day(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    revenue, orders = key(ac_name), key(ac_name, "orders", ("day",))
    qm = EntryKey(ac_name, Domain.QM, "orders", ("orders", "amount"))
    clock.now = _at(DAY_1)
    for _ in range(3):
        store.record_access([], request=revenue)
    store.record_access([], request=qm)
    clock.now = _at(DAY_1, 23) + timedelta(minutes=59)
    store.record_access([], request=orders)
    # 20:30 at UTC-5 is 01:30 UTC the next day: the day is the UTC one.
    clock.now = datetime(2026, 3, 1, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    store.record_access([], request=revenue)
    clock.now = _at(DAY_1 + timedelta(days=3))
    store.record_access([], request=revenue)
    store.record_access([], request=key(f"{ac_name}_other"))  # another AC

    day_2, day_4 = DAY_1 + timedelta(days=1), DAY_1 + timedelta(days=3)
    assert store.request_counts(ac_name, since=DAY_1) == [
        GrainRequests(
            Domain.METRIC, "orders", ("day",), hits=1, active_days=1, first_day=DAY_1, last_day=DAY_1
        ),
        GrainRequests(
            Domain.METRIC, "revenue", ("region",), hits=5, active_days=3, first_day=DAY_1, last_day=day_4
        ),
        GrainRequests(
            Domain.QM, "orders", ("orders", "amount"), hits=1, active_days=1, first_day=DAY_1, last_day=DAY_1
        ),
    ]
    assert store.request_counts(ac_name, since=day_2, domain=Domain.METRIC) == [
        GrainRequests(
            Domain.METRIC, "revenue", ("region",), hits=2, active_days=2, first_day=day_2, last_day=day_4
        ),
    ]
    assert [g.dataset_id for g in store.request_counts(ac_name, since=DAY_1, domain=Domain.QM)] == ["orders"]
    assert store.request_counts(ac_name, since=day_4 + timedelta(days=1)) == []


def test_record_access_stamps_entries_and_counts_the_request_together_or_either_alone(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base = key(ac_name)
    entry = store.publish(base, frame_for(base), meta())
    clock.advance(10)
    store.record_access([entry], request=base)
    store.record_access([entry])  # no request: the log is untouched
    got = store.get(base)
    assert got is not None and (got.access_count, got.last_access_at) == (2, clock.now)
    assert [g.hits for g in store.request_counts(ac_name, since=clock.now.date())] == [1]
    store.record_access([])  # nothing at all: no error, nothing written
    assert [g.hits for g in store.request_counts(ac_name, since=clock.now.date())] == [1]


def test_a_request_is_a_grain_not_a_slice(store: EntryStore, ac_name: str) -> None:
    with pytest.raises(InvalidRequestError, match="without a slice"):
        store.record_access([], request=key(ac_name, slice_key="2026-01-01"))
    assert store.request_counts(ac_name, since=date(2000, 1, 1)) == []


def test_concurrent_requests_lose_no_hit(store: EntryStore, ac_name: str, clock: FakeClock) -> None:
    base = key(ac_name)
    entry = store.publish(base, frame_for(base), meta())
    threads, calls = 4, 15
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(calls):
                store.record_access([entry], request=base)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    (grain,) = store.request_counts(ac_name, since=clock.now.date())
    assert grain.hits == threads * calls, "the upsert increments atomically"


def test_prune_requests_deletes_only_the_acs_days_before_the_given_one(
    store: EntryStore, ac_name: str, clock: FakeClock
) -> None:
    base, other = key(ac_name), key(f"{ac_name}_other")
    for offset in range(4):
        clock.now = _at(DAY_1 + timedelta(days=offset))
        store.record_access([], request=base)
        store.record_access([], request=key(ac_name, "orders"))
        store.record_access([], request=other)

    assert store.prune_requests(ac_name, before=DAY_1 + timedelta(days=2)) == 4  # 2 days x 2 grains
    assert store.prune_requests(ac_name, before=DAY_1 + timedelta(days=2)) == 0
    counts = store.request_counts(ac_name, since=DAY_1)
    assert [(g.dataset_id, g.hits, g.first_day) for g in counts] == [
        ("orders", 2, DAY_1 + timedelta(days=2)),
        ("revenue", 2, DAY_1 + timedelta(days=2)),
    ]
    assert store.request_counts(f"{ac_name}_other", since=DAY_1)[0].hits == 4, "other ACs keep theirs"


def test_list_meta_returns_the_acs_keys_with_a_prefix_taken_literally(
    store: EntryStore, ac_name: str
) -> None:
    store.set_meta(ac_name, "refresh:revenue", "1")
    store.set_meta(ac_name, "refresh:orders", "2")
    store.set_meta(ac_name, "refreshXorders", "3")
    store.set_meta(ac_name, "ref%_x", "4")
    store.set_meta(ac_name, "other", "5")
    store.set_meta(f"{ac_name}_other", "refresh:revenue", "6")

    assert store.list_meta(ac_name, prefix="refresh:") == {"refresh:orders": "2", "refresh:revenue": "1"}
    assert store.list_meta(ac_name, prefix="ref%_") == {"ref%_x": "4"}, "LIKE wildcards are escaped"
    assert store.list_meta(ac_name) == {
        "other": "5",
        "ref%_x": "4",
        "refresh:orders": "2",
        "refresh:revenue": "1",
        "refreshXorders": "3",
    }
    assert store.list_meta(f"{ac_name}_nobody") == {}
