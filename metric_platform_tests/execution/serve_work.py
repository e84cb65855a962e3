"""A tiny engine-backed Work for the scaffold's end-to-end tests: serve one family over the
context's days through a ``MetricEngine`` opened inside ``run`` (as a Dagster asset body would),
pinned like a partition materialization.

It lives in the tests: the scaffold itself knows no engine and no family (seed 000 §8).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.errors import did_you_mean
from metric_platform.execution.context import ExecutionContext, InvalidContextError
from metric_platform.execution.lookback import effective_window
from metric_platform.execution.work import PreparedWork, WorkOutcome
from metric_platform.ledger.events import ArtifactRef
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings


@dataclass(frozen=True)
class ServeFamilyWork:
    ac: AnalyticalContext
    settings: Settings
    today: Callable[[], dt.date]
    name: str = "engine.serve_family"

    def prepare(self, context: ExecutionContext) -> PreparedWork:
        problems: list[str] = []
        if context.scope.ac != self.ac.name:
            problems.append(f"scope.ac is {context.scope.ac!r}, this work serves AC {self.ac.name!r}")
        window = effective_window(context.scope)
        if window is None:
            problems.append("scope.days: the work serves a day range; give one")
        family = context.params.get("family")
        if family not in self.ac.families:
            hint = did_you_mean(str(family), self.ac.families)
            problems.append(f"params.family: unknown family {family!r}{hint}")
        anchor = context.params.get("anchor")
        if not isinstance(anchor, list | tuple) or not all(isinstance(d, str) for d in anchor):
            problems.append(f"params.anchor must be a list of dimension names, got {anchor!r}")
        if problems:
            raise InvalidContextError(f"invalid parameters of {self.name}: " + "; ".join(problems))
        assert window is not None and isinstance(anchor, list | tuple)
        return _Serve(self, str(family), tuple(anchor), DateWindow(window.start, window.end))


@dataclass(frozen=True)
class _Serve:
    work: ServeFamilyWork
    family: str
    anchor: tuple[str, ...]
    window: DateWindow

    def run(self) -> WorkOutcome:
        backend = backend_for(self.work.ac)
        try:
            with MetricEngine.open(self.work.ac, self.work.settings, today=self.work.today) as engine:
                served = engine.serve_metric(
                    self.family, self.anchor, backend=backend, window=self.window, pin=True
                )
                frame = served.frame.collect().sort(list(self.anchor), nulls_last=True)
        finally:
            backend.close()
        uri = f"engine://{self.work.ac.name}/{self.family}/{','.join(self.anchor)}"
        artifact = ArtifactRef(uri=f"{uri}?days={self.window.start}..{self.window.end}", kind="metric-result")
        # Only what the result is, never how it was served: a re-execution reads it from memory.
        summary = {"rows": frame.height, "columns": list(frame.columns)}
        return WorkOutcome(artifacts=(artifact,), summary=summary, value=frame)


def served_frame(outcome: WorkOutcome | None) -> pl.DataFrame:
    assert outcome is not None and isinstance(outcome.value, pl.DataFrame)
    return outcome.value
