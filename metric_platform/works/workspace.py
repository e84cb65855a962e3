"""An AC and the way to open its engine and backend: what every engine-backed work runs against.

Opening is deferred to :meth:`EngineWorkspace.session`, called from a work's ``run`` (inside the
dry-run guard), never from ``prepare``: opening a store may create and migrate its database, which
validation must not do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from metric_platform.backends.factory import backend_for
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.engine.engine import MetricEngine
from metric_platform.execution.context import ExecutionContext, InvalidContextError
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.settings import Settings


@dataclass(frozen=True)
class EngineWorkspace:
    ac: AnalyticalContext
    settings: Settings = field(default_factory=Settings)
    today: dt.date | None = None  # the engine's clock (``--today``); None: the real calendar
    open_backend: Callable[[AnalyticalContext], DataAPIBackend] = backend_for

    def check_scope(self, context: ExecutionContext) -> None:
        """The context must address this AC, for its tenant (no cross-tenant work by accident)."""
        if context.scope.ac != self.ac.name:
            msg = (
                f"invalid execution context: scope.ac is {context.scope.ac!r} but this workspace serves "
                f"AC {self.ac.name!r}; address the AC the work was supplied for"
            )
            raise InvalidContextError(msg)
        if context.tenant_id != self.ac.tenant_id:
            msg = (
                f"invalid execution context: tenant {context.tenant_id!r} does not own AC {self.ac.name!r} "
                f"(its tenant is {self.ac.tenant_id!r})"
            )
            raise InvalidContextError(msg)

    @contextmanager
    def session(self, *, backend: bool = True) -> Iterator[tuple[MetricEngine, DataAPIBackend | None]]:
        """The AC's engine and (unless ``backend`` is false: eviction reads no source) its backend,
        closed afterwards."""
        today = self.today
        clock = dt.date.today if today is None else (lambda: today)
        engine = MetricEngine.open(self.ac, self.settings, today=clock)
        try:
            source = self.open_backend(self.ac) if backend else None
            try:
                yield engine, source
            finally:
                if source is not None:
                    source.close()
        finally:
            engine.close()
