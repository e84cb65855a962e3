"""Secret references and their resolution (seed 004 §2): plans carry names, never values.

A :class:`SecretRef` is what a plan or a context may hold. Values exist only in the mapping an
:class:`ISecretsProvider` returns at the moment a step needs them, and that mapping
(:class:`SecretValues`) hides them from ``repr``/``str``, so a value never reaches a log line, an
error message or a traceback by accident. Errors name variables, never values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from metric_platform.errors import InvalidRequestError, SourceError

ENV_PROVIDER = "env"
# POSIX names: letters, digits, underscores, not starting with a digit (an AC's ``url_env`` may be
# lower case); tenant prefixes stay upper case.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PREFIX = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_MASK = "***"


class SecretNotSetError(SourceError):
    """A referenced secret is not available; the message says which variable to set."""


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: ``name`` (an environment-variable style name) at ``provider``."""

    name: str
    provider: str = ENV_PROVIDER

    def __post_init__(self) -> None:
        if not _ENV_NAME.match(self.name):
            msg = (
                f"secret name {self.name!r} is invalid: use letters, digits and underscores, "
                "not starting with a digit (e.g. WAREHOUSE_PASSWORD)"
            )
            raise InvalidRequestError(msg)
        if not self.provider:
            msg = f"secret {self.name} names no provider; use {ENV_PROVIDER!r} for environment variables"
            raise InvalidRequestError(msg)


class SecretValues(dict[str, str]):
    """Resolved secrets by ref name; ``repr``/``str`` show the names with the values masked."""

    def __repr__(self) -> str:
        masked = {name: _MASK for name in self}
        return f"SecretValues({masked!r})"

    __str__ = __repr__

    def copy(self) -> SecretValues:
        return SecretValues(self)


class ISecretsProvider(Protocol):
    """Resolves refs for one tenant and environment (seed 004 §2), activity-side, at use time."""

    def resolve(
        self, refs: Sequence[SecretRef], *, tenant_id: str, environment_id: str
    ) -> dict[str, str]: ...


class EnvSecretsProvider:
    """Secrets from environment variables.

    ``prefixes`` maps a tenant id to a variable prefix (``{"acme": "ACME_"}`` reads ref
    ``DB_PASSWORD`` from ``ACME_DB_PASSWORD``). Once any prefix is configured every tenant needs
    one: an unmapped tenant falling back to unprefixed variables could read another tenant's
    secret. ``environ`` defaults to the process environment, read at resolve time.
    """

    def __init__(
        self, *, prefixes: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self._prefixes = dict(prefixes or {})
        for tenant, prefix in self._prefixes.items():
            if not _PREFIX.match(prefix):
                msg = (
                    f"the secret prefix {prefix!r} of tenant {tenant!r} is invalid: use upper-case "
                    "letters, digits and underscores (e.g. ACME_)"
                )
                raise InvalidRequestError(msg)
        self._environ = environ

    def resolve(self, refs: Sequence[SecretRef], *, tenant_id: str, environment_id: str) -> dict[str, str]:
        """The value of each ref by ref name; raises :class:`SecretNotSetError` naming every variable
        that is unset or empty (and how to set them)."""
        foreign = sorted({ref.provider for ref in refs if ref.provider != ENV_PROVIDER})
        if foreign:
            msg = (
                f"EnvSecretsProvider resolves provider {ENV_PROVIDER!r} only; refs use {', '.join(foreign)}. "
                "Configure a secrets provider for those."
            )
            raise InvalidRequestError(msg)
        prefix = self._prefix(tenant_id)
        environ = os.environ if self._environ is None else self._environ
        values = SecretValues()
        missing: list[str] = []
        for ref in refs:
            variable = f"{prefix}{ref.name}"
            value = environ.get(variable)
            if value:
                values[ref.name] = value
            elif variable not in missing:
                missing.append(variable)
        if missing:
            names = ", ".join(missing)
            msg = (
                f"secret variable(s) {names} unset or empty for tenant {tenant_id!r} in environment "
                f"{environment_id!r}; export them in the environment of the process that runs the "
                f"step (e.g. `export {missing[0]}=...`)"
            )
            raise SecretNotSetError(msg)
        return values

    def _prefix(self, tenant_id: str) -> str:
        if not self._prefixes:
            return ""
        try:
            return self._prefixes[tenant_id]
        except KeyError:
            msg = (
                f"tenant {tenant_id!r} has no secret prefix; add it to the provider's prefixes "
                f"(configured: {', '.join(sorted(self._prefixes))})"
            )
            raise SecretNotSetError(msg) from None
