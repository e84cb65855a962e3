"""Choose the backend for an AC from its ``source`` block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from metric_platform.backends.polars_backend import PolarsBackend
from metric_platform.backends.protocol import DataAPIBackend
from metric_platform.backends.sql_backend import SqlBackend
from metric_platform.errors import SourceError
from metric_platform.secrets import EnvSecretsProvider, ISecretsProvider, SecretNotSetError, SecretRef
from metric_platform.semantics.spec import AnalyticalContext, SourceKind


def backend_for(
    ac: AnalyticalContext,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: ISecretsProvider | None = None,
    environment_id: str = "default",
) -> DataAPIBackend:
    """Parquet → :class:`PolarsBackend`; SQLite file and PostgreSQL → :class:`SqlBackend`.

    A PostgreSQL URL is a secret: the AC names it (``source.url_env``) and ``secrets`` resolves it
    for the AC's tenant at use time (seed 004 §2); the default provider reads environment variables
    (``environ``, default ``os.environ``), so secrets never live in the AC file.
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
            return SqlBackend(
                ac, _postgres_url(ac, secrets or EnvSecretsProvider(environ=environ), environment_id)
            )
        case _:
            assert_never(source.kind)


def _postgres_url(ac: AnalyticalContext, secrets: ISecretsProvider, environment_id: str) -> str:
    variable = ac.source.url_env
    try:
        if not variable:
            raise SecretNotSetError("source.url_env is not set")
        ref = SecretRef(variable)
        return secrets.resolve([ref], tenant_id=ac.tenant_id, environment_id=environment_id)[ref.name]
    except SecretNotSetError as exc:
        named = f"the environment variable {variable}" if variable else "source.url_env"
        msg = (
            f"AC {ac.name!r} reads PostgreSQL from {named}, which is not set; "
            f"export {variable or 'it'}=postgresql://user@host:5432/database ({exc})"
        )
        raise SourceError(msg) from None
