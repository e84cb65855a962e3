"""The QM domain's serve: exact match or compute (seed 003 §5.5, §13.4).

Anchors are ``(schema, column)``; the frame of a ``top_values`` or ``histogram`` entry holds one row
per value or bin (the seed's third anchor element). Every entry records the profiled schema's
fingerprint (its definition and filter) and its source fingerprint (the backend's source identity
and the table's change stamp); an entry is served only while both match, else recomputed and
replaced, so a profile is never served from another source or from before its table changed.
Computation always goes through the backend's ``extract_to_lazyframe`` and the shared profiling
expressions, never through backend-specific code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import assert_never

import polars as pl

from metric_platform.backends.identity import table_fingerprint
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.engine.qm.distributions import histogram, top_values
from metric_platform.engine.qm.kind_hint import DtypeClass, dtype_class_of_name
from metric_platform.engine.qm.profiling import profile_columns
from metric_platform.engine.qm.projections import (
    ColumnProfile,
    TableProfile,
    column_profile_from_frames,
    table_profile_from_frames,
)
from metric_platform.engine.store.entry_store import EntryStore
from metric_platform.engine.store.keys import Domain, EntryKey
from metric_platform.engine.store.records import Entry, EntryMeta
from metric_platform.errors import InvalidRequestError, UnknownNameError, did_you_mean
from metric_platform.semantics.fingerprint import schema_fingerprint
from metric_platform.semantics.spec import AnalyticalContext


class QMKind(StrEnum):
    COLUMN_PROFILE = "column_profile"
    TOP_VALUES = "top_values"
    HISTOGRAM = "histogram"

    @classmethod
    def parse(cls, value: str) -> QMKind:
        try:
            return cls(value)
        except ValueError:
            kinds = [k.value for k in cls]
            hint = did_you_mean(value, kinds)
            msg = f"unknown QM kind {value!r}{hint} (the QM domain serves: {', '.join(kinds)})"
            raise UnknownNameError(msg) from None


class QMServer:
    """Serves and memoizes quasi-metadata for one AC."""

    def __init__(
        self, ac: AnalyticalContext, store: EntryStore, *, top_limit: int = 20, bins: int = 10
    ) -> None:
        self.ac = ac
        self.store = store
        self.top_limit = top_limit
        self.bins = bins

    # -- serve ---------------------------------------------------------------------------------
    def serve(self, kind: str, anchor: tuple[str, ...], *, backend: DataAPIBackend) -> pl.LazyFrame:
        qm_kind = QMKind.parse(kind)
        schema, column = self._check_anchor(anchor)
        key = self._key(qm_kind, schema, column)
        source = table_fingerprint(backend, schema)  # stamped before reading: never newer than the rows
        entry = self._valid_entry(key, source)
        if entry is not None:
            self.store.record_access([entry])
            return self.store.scan(entry)
        extract = backend.extract_to_lazyframe(schema)
        frame = self._compute(qm_kind, extract, schema, column)
        self.store.publish(key, frame, self._meta(schema, source))
        return frame.lazy()

    def column_profile(self, schema: str, column: str, *, backend: DataAPIBackend) -> ColumnProfile:
        """The typed profile of one column, with its top values and (numeric columns) histogram."""
        row = self.serve(QMKind.COLUMN_PROFILE, (schema, column), backend=backend).collect()
        tops = self.serve(QMKind.TOP_VALUES, (schema, column), backend=backend).collect()
        hist = None
        if dtype_class_of_name(row["dtype"][0]) in (DtypeClass.INTEGER, DtypeClass.FLOAT):
            hist = self.serve(QMKind.HISTOGRAM, (schema, column), backend=backend).collect()
        return column_profile_from_frames(row, tops, hist)

    def table_profile(self, schema: str, *, backend: DataAPIBackend) -> TableProfile:
        """Profiles of every declared column: memoized ones are read, the rest computed in one pass."""
        spec = self.ac.schema(schema)
        keys = {col: self._key(QMKind.COLUMN_PROFILE, schema, col) for col in spec.columns}
        source = table_fingerprint(backend, schema)
        found = {col: e for col, key in keys.items() if (e := self._valid_entry(key, source)) is not None}
        missing = [col for col in spec.columns if col not in found]
        frames: dict[str, pl.DataFrame] = {col: self.store.scan(e).collect() for col, e in found.items()}
        if found:
            self.store.record_access(list(found.values()))
        if missing:
            computed = profile_columns(backend.extract_to_lazyframe(schema), schema, missing)
            meta = self._meta(schema, source)
            fresh = {col: computed.filter(pl.col("column") == col) for col in missing}
            self.store.publish_many([(keys[col], frame, meta) for col, frame in fresh.items()])
            frames.update(fresh)
        ordered = pl.concat([frames[col] for col in spec.columns], how="vertical")
        return table_profile_from_frames(schema, ordered)

    def entries(self) -> Sequence[Entry]:
        return self.store.list_entries(self.ac.name, domain=Domain.QM)

    # -- helpers -------------------------------------------------------------------------------
    def _check_anchor(self, anchor: tuple[str, ...]) -> tuple[str, str]:
        if len(anchor) != 2:
            msg = f"a QM anchor is (schema, column), got {anchor!r}"
            raise InvalidRequestError(msg)
        schema, column = anchor
        self.ac.schema(schema).column_type(column)  # raises UnknownNameError with the known names
        return schema, column

    def _key(self, kind: QMKind, schema: str, column: str) -> EntryKey:
        return EntryKey(self.ac.name, Domain.QM, kind.value, (schema, column))

    def _valid_entry(self, key: EntryKey, source: str) -> Entry | None:
        entry = self.store.get(key)
        if entry is None or entry.meta.family_fingerprint != schema_fingerprint(self.ac, key.anchor[0]):
            return None
        return entry if entry.meta.source_fingerprint == source else None

    def _compute(self, kind: QMKind, extract: pl.LazyFrame, schema: str, column: str) -> pl.DataFrame:
        match kind:
            case QMKind.COLUMN_PROFILE:
                return profile_columns(extract, schema, [column])
            case QMKind.TOP_VALUES:
                return top_values(extract, schema, column, limit=self.top_limit)
            case QMKind.HISTOGRAM:
                return histogram(extract, schema, column, bins=self.bins)
            case _:
                assert_never(kind)

    def _meta(self, schema: str, source: str) -> EntryMeta:
        filters = [
            {"column": c.column, "op": c.op.value, "value": c.value} for c in self.ac.filters_for(schema)
        ]
        return EntryMeta(
            operator=None,
            partition_invariant=None,
            mvt=None,
            imputation_value=None,
            family_fingerprint=schema_fingerprint(self.ac, schema),
            source_schemas=(schema,),
            source_filter=json.dumps(filters, default=str) if filters else None,
            stability_cutoff=None,
            verification_level=self.ac.schema(schema).verification_level.value,
            source_fingerprint=source,
        )
