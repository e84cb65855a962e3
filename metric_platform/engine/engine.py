"""The Metric Engine: one instance per analytical context (seed 003 §2.1, §4).

``serve(domain, dataset_id, anchor, *, backend)`` returns a single-column-with-anchor LazyFrame;
whether it came from a memoized entry or from the backend is the engine's business, recorded in
the manifest, not the caller's. The backend is passed per call (seed §4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

import polars as pl

from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.engine.metric_serving import MetricServer
from metric_platform.engine.qm.projections import ColumnProfile, TableProfile
from metric_platform.engine.qm.service import QMServer
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain
from metric_platform.engine.store.records import Entry
from metric_platform.semantics.spec import AnalyticalContext, Grain
from metric_platform.semantics.types import MissingValueTreatment
from metric_platform.settings import Settings


class MetricEngine:
    def __init__(self, ac: AnalyticalContext, store: EntryStore, *, entry_byte_cap: int) -> None:
        self.ac = ac
        self.store = store
        self._qm = QMServer(ac, store)
        self._metric = MetricServer(ac, store, entry_byte_cap=entry_byte_cap)

    @classmethod
    def open(cls, ac: AnalyticalContext, settings: Settings | None = None) -> MetricEngine:
        """An engine over the store the settings name (the embedded SQLite default needs none)."""
        settings = settings or Settings()
        return cls(ac, EntryStore.from_settings(settings), entry_byte_cap=settings.entry_byte_cap)

    def serve(
        self,
        domain: Domain,
        dataset_id: str,
        anchor: Grain,
        *,
        mvt: MissingValueTreatment | None = None,
        backend: DataAPIBackend,
    ) -> pl.LazyFrame:
        match domain:
            case Domain.METRIC:
                return self._metric.serve(dataset_id, anchor, mvt=mvt, backend=backend)
            case Domain.QM:
                return self._qm.serve(dataset_id, anchor, backend=backend)
            case _:
                assert_never(domain)

    def column_profile(self, schema: str, column: str, *, backend: DataAPIBackend) -> ColumnProfile:
        return self._qm.column_profile(schema, column, backend=backend)

    def table_profile(self, schema: str, *, backend: DataAPIBackend) -> TableProfile:
        return self._qm.table_profile(schema, backend=backend)

    def entries(self, domain: Domain | None = None) -> Sequence[Entry]:
        return self.store.list_entries(self.ac.name, domain=domain)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> MetricEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
