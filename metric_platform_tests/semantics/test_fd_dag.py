"""The FD-DAG and calendar grains against simple brute-force references."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metric_platform.semantics.fd_dag import FDDag, FDEdge
from metric_platform.semantics.types import TimeGrain

NODES = [f"d{i}" for i in range(7)]

# Any directed graph (cycles and self-loops allowed) and, separately, DAGs: edges only go from a
# lower to a higher index, the way FD edges go from finer to coarser.
any_edges = st.lists(st.tuples(st.sampled_from(NODES), st.sampled_from(NODES)), max_size=14)
dag_edges = any_edges.map(lambda pairs: [(a, b) for a, b in pairs if a < b])
grains = st.lists(st.sampled_from(NODES), max_size=4, unique=True)


def make_dag(pairs: list[tuple[str, str]]) -> FDDag:
    return FDDag(tuple(FDEdge(a, b) for a, b in pairs))


def closure(pairs: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Reflexive-transitive closure by repeated relaxation (Floyd-Warshall style)."""
    reach = {n: {n} for n in NODES}
    for a, b in pairs:
        reach[a].add(b)
    for k, i in itertools.product(NODES, NODES):
        if k in reach[i]:
            reach[i] |= reach[k]
    return reach


def distances(pairs: list[tuple[str, str]], start: str) -> dict[str, int]:
    dist = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for a, b in pairs:
            if a == node and b not in dist:
                dist[b] = dist[node] + 1
                queue.append(b)
    return dist


def has_cycle(pairs: list[tuple[str, str]]) -> bool:
    """Kahn's algorithm: a graph is acyclic iff repeatedly removing sources empties it."""
    edges = list(pairs)
    nodes = {n for pair in edges for n in pair}
    while nodes:
        sources = {n for n in nodes if not any(b == n for _, b in edges)}
        if not sources:
            return True
        nodes -= sources
        edges = [(a, b) for a, b in edges if a not in sources]
    return False


@given(dag_edges)
def test_determines_matches_the_transitive_closure(pairs: list[tuple[str, str]]) -> None:
    dag, reach = make_dag(pairs), closure(pairs)
    for a, b in itertools.product(NODES, NODES):
        assert dag.determines(a, b) == (b in reach[a]), (a, b)


@given(dag_edges, grains, grains)
def test_rolls_up_and_unreachable_match_the_reference(
    pairs: list[tuple[str, str]], fine: list[str], coarse: list[str]
) -> None:
    dag, reach = make_dag(pairs), closure(pairs)
    missing = tuple(c for c in coarse if not any(c in reach[f] for f in fine))
    assert dag.unreachable(fine, coarse) == missing
    assert dag.rolls_up(fine, coarse) == (not missing)


@given(dag_edges, grains)
def test_rolls_up_is_reflexive(pairs: list[tuple[str, str]], grain: list[str]) -> None:
    assert make_dag(pairs).rolls_up(grain, grain)


@given(dag_edges, grains, st.data())
def test_rolls_up_is_transitive(pairs: list[tuple[str, str]], fine: list[str], data: st.DataObject) -> None:
    # Build a chain fine -> middle -> coarse that rolls up at each step (random triples rarely do).
    dag = make_dag(pairs)

    def coarser_than(grain: list[str]) -> list[str]:
        reachable = sorted(set().union(*(dag.reachable(d) for d in grain))) if grain else []
        if not reachable:
            return []
        return data.draw(st.lists(st.sampled_from(reachable), max_size=4, unique=True))

    middle = coarser_than(fine)
    coarse = coarser_than(middle)
    assert dag.rolls_up(fine, middle)
    assert dag.rolls_up(middle, coarse)
    assert dag.rolls_up(fine, coarse)


@given(dag_edges)
def test_path_is_a_shortest_chain_of_declared_edges(pairs: list[tuple[str, str]]) -> None:
    dag = make_dag(pairs)
    declared = set(dag.edges)
    for a in NODES:
        dist = distances(pairs, a)
        for b in NODES:
            path = dag.path(a, b)
            if not dag.determines(a, b):
                assert path is None, (a, b)
                continue
            assert path is not None, (a, b)
            assert len(path) == dist[b]
            assert all(edge in declared for edge in path)
            nodes = [a, *(edge.coarser for edge in path)]
            assert [edge.finer for edge in path] == nodes[:-1]
            assert nodes[-1] == b


@given(any_edges)
def test_find_cycle_finds_a_real_cycle_iff_one_exists(pairs: list[tuple[str, str]]) -> None:
    cycle = make_dag(pairs).find_cycle()
    assert (cycle is not None) == has_cycle(pairs)
    if cycle is not None:
        assert len(cycle) >= 2
        assert cycle[0] == cycle[-1]
        assert all(pair in set(pairs) for pair in itertools.pairwise(cycle))


def test_fd_examples() -> None:
    dag = make_dag([("store", "region"), ("day", "week"), ("day", "month"), ("month", "quarter")])
    assert dag.rolls_up(("store", "day"), ("region", "quarter"))
    assert not dag.rolls_up(("region", "day"), ("store",))
    assert not dag.rolls_up(("store", "week"), ("month",))
    assert dag.unreachable(("region", "week"), ("region", "month", "quarter")) == ("month", "quarter")
    assert dag.path("day", "quarter") == (FDEdge("day", "month"), FDEdge("month", "quarter"))
    assert make_dag([("a", "b"), ("b", "c"), ("c", "a")]).find_cycle() in {
        ("a", "b", "c", "a"),
        ("b", "c", "a", "b"),
        ("c", "a", "b", "c"),
    }


# -- calendar grains ------------------------------------------------------------------------------

DAYS = [
    dt.date(2024, 1, 1) + dt.timedelta(days=i)
    for i in range((dt.date(2027, 1, 1) - dt.date(2024, 1, 1)).days)
]


def reference_bucket(grain: TimeGrain, day: dt.date) -> object:
    """A bucket label computed differently from ``bucket_start`` (ISO calendar, month arithmetic)."""
    match grain:
        case TimeGrain.DAY:
            return day
        case TimeGrain.WEEK:
            return day.isocalendar()[:2]
        case TimeGrain.MONTH:
            return (day.year, day.month)
        case TimeGrain.QUARTER:
            return (day.year, (day.month + 2) // 3)
        case TimeGrain.YEAR:
            return day.year
    raise AssertionError(grain)


@pytest.mark.parametrize("grain", list(TimeGrain))
def test_bucket_start_is_the_first_day_of_the_reference_bucket(grain: TimeGrain) -> None:
    starts: dict[object, set[dt.date]] = {}
    for day in DAYS:
        start = grain.bucket_start(day)
        assert start <= day
        assert reference_bucket(grain, start) == reference_bucket(grain, day)
        assert start == day or reference_bucket(grain, start - dt.timedelta(days=1)) != reference_bucket(
            grain, day
        )
        starts.setdefault(reference_bucket(grain, day), set()).add(start)
    assert all(len(s) == 1 for s in starts.values())  # one start per bucket


def brute_rolls_up(fine: TimeGrain, coarse: TimeGrain) -> bool:
    """True iff every fine bucket among 2024-2026 lies inside a single coarse bucket."""
    inside: dict[dt.date, set[dt.date]] = {}
    for day in DAYS:
        inside.setdefault(fine.bucket_start(day), set()).add(coarse.bucket_start(day))
    return all(len(coarse_buckets) == 1 for coarse_buckets in inside.values())


@pytest.mark.parametrize(("fine", "coarse"), list(itertools.product(TimeGrain, TimeGrain)))
def test_rolls_up_to_matches_a_brute_force_over_three_years(fine: TimeGrain, coarse: TimeGrain) -> None:
    assert fine.rolls_up_to(coarse) == brute_rolls_up(fine, coarse)


def test_calendar_examples() -> None:
    assert TimeGrain.DAY.rolls_up_to(TimeGrain.WEEK)
    assert not TimeGrain.WEEK.rolls_up_to(TimeGrain.MONTH)  # 2024-04-29 .. 2024-05-05
    assert not TimeGrain.WEEK.rolls_up_to(TimeGrain.YEAR)  # 2024-12-30 .. 2025-01-05
    assert TimeGrain.MONTH.rolls_up_to(TimeGrain.QUARTER)
    assert not TimeGrain.QUARTER.rolls_up_to(TimeGrain.MONTH)
    assert TimeGrain.WEEK.bucket_start(dt.date(2025, 1, 1)) == dt.date(2024, 12, 30)
    assert TimeGrain.QUARTER.bucket_start(dt.date(2026, 12, 31)) == dt.date(2026, 10, 1)
