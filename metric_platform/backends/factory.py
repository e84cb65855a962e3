"""Choose the backend for an AC from its ``source`` block."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import assert_never

from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.errors import SourceError
from metric_platform.semantics.spec import AnalyticalContext, SourceKind


def backend_for(ac: AnalyticalContext, *, environ: Mapping[str, str] | None = None) -> DataAPIBackend:
    """Parquet → :class:`PolarsBackend`; SQLite file and PostgreSQL → :class:`SqlBackend`.

    A PostgreSQL URL is read from the environment variable the AC names (``source.url_env``;
    ``environ`` defaults to ``os.environ``), so secrets never live in the AC file.
    """
    source = ac.source
    match source.kind:
        case SourceKind.PARQUET:
            return PolarsBackend(ac)
        case SourceKind.SQLITE:
            if source.path is None:
                msg = f"AC {ac.name!r}: a sqlite source needs source.path, the database file"
                raise SourceError(msg)
            return SqlBackend(ac, f"sqlite:///{source.path}")
        case SourceKind.POSTGRES:
            env = os.environ if environ is None else environ
            variable = source.url_env
            url = env.get(variable) if variable else None
            if not variable or not url:
                named = f"the environment variable {variable}" if variable else "source.url_env"
                msg = (
                    f"AC {ac.name!r} reads PostgreSQL from {named}, which is not set; "
                    f"export {variable or 'it'}=postgresql://user@host:5432/database"
                )
                raise SourceError(msg)
            return SqlBackend(ac, url)
        case _:
            assert_never(source.kind)
