"""The functional-dependency DAG over dimensions (seed 003 §2.5, §5).

An edge ``finer -> coarser`` says each value of ``finer`` determines one value of ``coarser``
(store -> region, day -> month). A grain (a set of dimensions) rolls up to a coarser grain when every
dimension of the coarser grain is reachable from some dimension of the finer one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class FDEdge:
    finer: str
    coarser: str


@dataclass(frozen=True)
class FDDag:
    edges: tuple[FDEdge, ...] = ()
    _reach: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def _children(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for edge in self.edges:
            out.setdefault(edge.finer, []).append(edge.coarser)
        return {k: tuple(v) for k, v in out.items()}

    def coarser_of(self, dim: str) -> tuple[str, ...]:
        return self._children.get(dim, ())

    def reachable(self, dim: str) -> frozenset[str]:
        """Every dimension determined by ``dim``, including itself."""
        cached = self._reach.get(dim)
        if cached is not None:
            return cached
        seen = {dim}
        stack = [dim]
        while stack:
            for nxt in self.coarser_of(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        result = frozenset(seen)
        self._reach[dim] = result
        return result

    def determines(self, finer: str, coarser: str) -> bool:
        return coarser in self.reachable(finer)

    def rolls_up(self, fine: Iterable[str], coarse: Iterable[str]) -> bool:
        """Whether a result at grain ``fine`` can be aggregated into grain ``coarse``."""
        fine = tuple(fine)
        return all(any(self.determines(f, c) for f in fine) for c in coarse)

    def unreachable(self, fine: Sequence[str], coarse: Iterable[str]) -> tuple[str, ...]:
        """The dimensions of ``coarse`` that no dimension of ``fine`` determines."""
        return tuple(c for c in coarse if not any(self.determines(f, c) for f in fine))

    def path(self, finer: str, coarser: str) -> tuple[FDEdge, ...] | None:
        """One shortest chain of edges from ``finer`` to ``coarser`` (empty when equal), else None."""
        if finer == coarser:
            return ()
        parents: dict[str, FDEdge] = {}
        frontier = [finer]
        seen = {finer}
        while frontier:
            nxt_frontier: list[str] = []
            for node in frontier:
                for child in self.coarser_of(node):
                    if child in seen:
                        continue
                    seen.add(child)
                    parents[child] = FDEdge(node, child)
                    if child == coarser:
                        chain = [parents[child]]
                        while chain[-1].finer != finer:
                            chain.append(parents[chain[-1].finer])
                        return tuple(reversed(chain))
                    nxt_frontier.append(child)
            frontier = nxt_frontier
        return None

    def find_cycle(self) -> tuple[str, ...] | None:
        """A cycle as a sequence of dimensions (first repeated at the end), or None."""
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        stack: list[str] = []

        def visit(node: str) -> tuple[str, ...] | None:
            state[node] = 1
            stack.append(node)
            for child in self.coarser_of(node):
                if state.get(child) == 1:
                    return (*stack[stack.index(child) :], child)
                if child not in state and (found := visit(child)) is not None:
                    return found
            stack.pop()
            state[node] = 2
            return None

        for edge in self.edges:
            if edge.finer not in state and (found := visit(edge.finer)) is not None:
                return found
        return None
