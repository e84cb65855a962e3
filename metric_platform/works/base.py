"""The base of every engine-backed work: parameters validated by a Pydantic model, the scope
checked against the workspace's AC, a pure ``check`` against the AC, and ``compute`` inside an
engine session (opened only in ``run``, under the dry-run guard).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from metric_platform.backends.protocol import DataAPIBackend, DateWindow
from metric_platform.engine.engine import MetricEngine
from metric_platform.execution.context import ExecutionContext, InvalidContextError, describe_problems
from metric_platform.execution.lookback import effective_window
from metric_platform.execution.work import PreparedWork, WorkOutcome
from metric_platform.works.workspace import EngineWorkspace

P = TypeVar("P", bound=BaseModel)
Session = tuple[MetricEngine, DataAPIBackend | None]


@dataclass(frozen=True)
class _Prepared:
    run_in: Callable[[], WorkOutcome]

    def run(self) -> WorkOutcome:
        return self.run_in()


class EngineWork(Generic[P]):
    """Validate params (``params_model``) and scope, then ``check`` them against the AC; ``compute``
    runs inside an engine session."""

    name: str
    params_model: type[P]
    needs_backend = True  # False: the work reads only the engine store (no source connection)

    def __init__(self, workspace: EngineWorkspace) -> None:
        self.workspace = workspace

    def prepare(self, context: ExecutionContext) -> PreparedWork:
        try:
            params = self.params_model.model_validate(dict(context.params))
        except ValidationError as exc:
            raise InvalidContextError(describe_problems(f"parameters of {self.name}", exc)) from None
        self.workspace.check_scope(context)
        days = effective_window(context.scope)
        window = None if days is None else DateWindow(days.start, days.end)
        # A bad name raises its own typed UserError (UnknownNameError with a did-you-mean, ...):
        # the scaffold rejects the context on any error from prepare, and the message stays the
        # one the user would get from the engine itself.
        checked = self.check(params, window)
        return _Prepared(lambda: self._run(context, params, window, checked))

    def check(self, params: P, window: DateWindow | None) -> Any:
        """Validate against the AC without I/O; the result is handed to ``compute``."""
        return None

    def compute(
        self, session: Session, context: ExecutionContext, params: P, window: DateWindow | None, checked: Any
    ) -> WorkOutcome:
        raise NotImplementedError

    def _run(
        self, context: ExecutionContext, params: P, window: DateWindow | None, checked: Any
    ) -> WorkOutcome:
        with self.workspace.session(backend=self.needs_backend) as session:
            return self.compute(session, context, params, window, checked)


def with_backend(session: Session) -> tuple[MetricEngine, DataAPIBackend]:
    engine, backend = session
    assert backend is not None, "a work that reads the source sets needs_backend"
    return engine, backend
