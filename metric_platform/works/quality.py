"""``qm.checks``: the quality checks of one source schema (issue 6 item 7), as an engine-backed work.

The body of every Dagster asset check of a schema: build a context for this work, ``execute`` it,
and read the outcomes with :func:`check_outcomes`. The work profiles the schema (memoized QM
entries), verifies the FD edges whose maps the engine reads from it (through the engine's own
dimension maps, so a check and a rollup cannot disagree), and derives the checks
(:mod:`metric_platform.engine.qm.checks` documents what each one means).

The summary holds every outcome as JSON: a re-execution the ledger answers from its record has no
value, and the outcomes are read back from the summary unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from metric_platform.backends.protocol import DateWindow
from metric_platform.engine.qm.checks import CheckOutcome, evaluate
from metric_platform.engine.qm.fd_verification import verified_edges, verify_edges
from metric_platform.engine.store.keys import Domain
from metric_platform.errors import InternalError
from metric_platform.execution.context import ExecutionContext
from metric_platform.execution.work import WorkOutcome
from metric_platform.works.artifacts import entry_refs
from metric_platform.works.base import EngineWork, Session, with_backend
from metric_platform.works.params import _Params

NAME = "qm.checks"


class QualityParams(_Params):
    schema_name: str = Field(min_length=1)


class QualityWork(EngineWork[QualityParams]):
    """Every check of one source schema; the value is the tuple of :class:`CheckOutcome`."""

    name = NAME
    params_model = QualityParams

    def check(self, params: QualityParams, window: DateWindow | None) -> Any:
        self.workspace.ac.schema(params.schema_name)  # UnknownNameError with a did-you-mean
        return None

    def compute(
        self,
        session: Session,
        context: ExecutionContext,
        params: QualityParams,
        window: DateWindow | None,
        _: Any,
    ) -> WorkOutcome:
        engine, backend = with_backend(session)
        schema = params.schema_name
        profile = engine.table_profile(schema, backend=backend)
        verifications = verify_edges(engine.ac, engine.store, schema, backend=backend)
        outcomes = evaluate(engine.ac, profile, verifications)
        # What the checks read: the schema's column profiles and the verified maps it holds.
        edges = {(e.finer, e.coarser) for e in verified_edges(engine.ac, schema)}
        read = [
            e
            for e in engine.entries(Domain.QM)
            if (e.key.dataset_id == "column_profile" and e.key.anchor[:1] == (schema,))
            or (e.key.dataset_id == "fd_map" and e.key.anchor in edges)
        ]
        summary = {
            "schema": schema,
            "passed": all(o.passed for o in outcomes),
            "failed": [o.name for o in outcomes if not o.passed],
            "checks": [o.to_json() for o in outcomes],
        }
        return WorkOutcome(entry_refs(read), summary, outcomes)


def check_outcomes(outcome: WorkOutcome) -> tuple[CheckOutcome, ...]:
    """The outcomes of a ``qm.checks`` run: its value, or (a step the ledger had recorded as
    completed, which keeps no value) read back from its summary."""
    if isinstance(outcome.value, tuple):
        return outcome.value
    return outcomes_from_summary(outcome.summary)


def outcomes_from_summary(summary: Mapping[str, Any]) -> tuple[CheckOutcome, ...]:
    checks = summary.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, Mapping) for c in checks):
        msg = f"a {NAME} summary holds its outcomes under 'checks'; got keys {sorted(summary)}"
        raise InternalError(msg)
    return tuple(CheckOutcome.from_json(c) for c in checks)
