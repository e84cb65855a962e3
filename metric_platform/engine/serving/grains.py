"""Which grains a METRIC request involves (pure, from the AC): its time dimension, and the native
grain a miss is fetched at (ARCHITECTURE.md §9: backends need not join)."""

from __future__ import annotations

from metric_platform.engine.serving.dimension_maps import map_schema
from metric_platform.semantics.spec import AnalyticalContext, Grain, MetricFamily
from metric_platform.semantics.types import TimeGrain


class GrainPlanner:
    def __init__(self, ac: AnalyticalContext) -> None:
        self.ac = ac

    def time_dims(self, grain: Grain) -> list[tuple[str, TimeGrain]]:
        return [(d, tg) for d in grain if (tg := self.ac.dimension(d).time_grain) is not None]

    def time_grain(self, grain: Grain) -> TimeGrain | None:
        dims = self.time_dims(grain)
        return dims[0][1] if dims else None

    def fetch_grain(self, family: MetricFamily, target: Grain) -> Grain:
        """The grain a miss is fetched at (ARCHITECTURE.md §9, seed 003 §7.3).

        For a partition-invariant operator: the target's dimensions that live on the family's root
        schema, each joined dimension replaced by the root dimension determining it (region ->
        store, where a verified dimension map exists), and ``day`` for any time dimension. The
        backend then aggregates without joins, the engine rolls up with the dimension maps, and the
        day slices it memoizes serve later grains and windows. Other operators: the target itself.
        """
        if not family.operator.partition_invariant:
            return target
        root = family.root_schema
        dims: list[str] = []
        for dim in target:
            if self.ac.dimension(dim).time_grain is not None:
                continue  # fetched at day
            binding = self.ac.binding(root, dim)
            native = binding is not None and not binding.join_path
            dims.append(dim if native else (self.native_source(root, dim) or dim))
        day = self.ac.day_dimension
        assert day is not None  # validated: every family reaches a day dimension
        return self.ac.canonical_grain([*dims, day])

    def native_source(self, root: str, dim: str) -> str | None:
        """The dimension bound on ``root`` itself that determines ``dim`` along map-able edges."""
        best: tuple[int, str] | None = None
        for name, spec in self.ac.dimensions.items():
            if spec.time_grain is not None or name == dim:
                continue
            binding = self.ac.binding(root, name)
            path = self.ac.fd_dag.path(name, dim)
            if binding is None or binding.join_path or path is None:
                continue
            if all(map_schema(self.ac, edge) is not None for edge in path) and (
                best is None or len(path) < best[0]
            ):
                best = (len(path), name)
        return None if best is None else best[1]
