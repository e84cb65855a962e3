"""Family fingerprints: a hash of everything that determines a family's values.

Changing one family (its column, reducer or missing-value treatment) changes only its own
fingerprint; changing what it reads (source, root schema, filter on a schema it reads, the
dimensions and joins it can group by) changes the fingerprints of the families reading it.
``base_grain`` and ``cache_hint`` decide which assets exist, not values, and are left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from metric_platform.semantics.spec import AnalyticalContext, MetricFamily


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def digest(payload: Any) -> str:
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def schemas_read_by(ac: AnalyticalContext, root: str) -> tuple[str, ...]:
    """The root schema and every schema reachable from it through joins."""
    return tuple(name for name in ac.schemas if ac.join_path(root, name) is not None)


def family_fingerprint(family: MetricFamily, ac: AnalyticalContext) -> str:
    read = schemas_read_by(ac, family.root_schema)
    dims = {
        name: dim for name, dim in ac.dimensions.items() if ac.binding(family.root_schema, name) is not None
    }
    payload = {
        "version": 1,
        "ac": ac.name,
        "source": ac.source.identity,
        "family": {
            "name": family.name,
            "root": [family.root_schema, family.root_column],
            "operator": family.operator.value,
            "mvt": family.mvt,
        },
        "schemas": {name: ac.schemas[name] for name in read},
        "filter": [c for c in ac.filter if c.schema in read],
        "dimensions": dims,
        "joins": [j for j in ac.joins if j.from_schema in read],
    }
    return digest(payload)


def schema_fingerprint(ac: AnalyticalContext, schema: str) -> str:
    """What determines a schema's QM profiles: its definition, the source and its filter."""
    return digest(
        {
            "version": 1,
            "source": ac.source.identity,
            "schema": ac.schemas[schema],
            "filter": ac.filters_for(schema),
        }
    )
