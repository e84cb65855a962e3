"""The platform's one settings object (environment prefix ``METRIC_PLATFORM_``).

The embedded default needs no environment at all: everything lives under ``home`` (a
repository-local ``.metric_platform/`` directory), with SQLite files for every store.

Engine homes are per project: :meth:`Settings.for_project` gives each (tenant, project) its own
manifest and Parquet root under ``home/engine/<tenant_id>/<project_id>/``, so one tenant's engine
store never holds, sweeps or evicts another's entries. An explicit ``engine_manifest_url`` or
``engine_data_dir`` (a production PostgreSQL manifest, shared storage for Parquet) keeps one store
for every project, in which ACs are namespaced by name. The platform database (ledger, outbox,
read-model) stays one per installation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from metric_platform.errors import InvalidRequestError
from metric_platform.installation import InstallationFileSource

GIB = 1024**3
# A tenant or project id becomes a directory name: no separators, no "..", nothing a shell mangles.
_PATH_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Settings(BaseSettings):
    """Installation settings; every field can be set as ``METRIC_PLATFORM_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="METRIC_PLATFORM_", frozen=True, extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".metric_platform")
    installation_file: Path | None = Field(
        default=None, description="The installation file; default: installation.yaml in home."
    )
    engine_manifest_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the engine manifest; default: a SQLite file in home."
    )
    platform_db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the platform database (ledger, outbox, read-model, alerts); "
        "default: a SQLite file in home",
    )
    ledger_write_budget_ms: int = Field(
        default=3000, gt=0, description="seed 004 §5 stateStore.writeLatencyBudgetMs"
    )
    engine_data_dir: Path | None = Field(default=None, description="Root of the engine's Parquet entries.")
    max_bytes_per_ac: int = Field(
        default=GIB, gt=0, description="seed 003 §10.3 metric_engine.max_bytes_per_ac"
    )
    max_entry_bytes: int | None = Field(
        default=None, gt=0, description="seed 003 §15.7; default 10% of max_bytes_per_ac"
    )
    eviction_policy: Literal["fd_dag", "lru"] = Field(
        default="fd_dag",
        description="seed 003 §10: 'fd_dag' biases METRIC eviction against grains that serve coarser "
        "ones; 'lru' is plain least-recently-used (QM entries are always LRU)",
    )
    promotion_window_days: int = Field(
        default=7, gt=0, description="seed 003 §9.3: the window over which request counts are summed"
    )
    promotion_min_hits: int = Field(
        default=100, gt=0, description="requests of one grain within the window that make it hot"
    )
    promotion_min_days: int = Field(
        default=3, gt=0, description="distinct days with requests: hot access must be sustained"
    )
    # Replaced entry files are kept this long so a LazyFrame planned before a replacement or an
    # eviction still collects (ARCHITECTURE.md §6).
    file_grace_seconds: float = Field(default=900.0, ge=0)
    # (tenant_id, project_id) once :meth:`for_project` chose an engine home; private, so neither the
    # environment nor an installation file can set it.
    _project: tuple[str, str] | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Lowest priority: arguments and environment variables override the installation file.
        installation = InstallationFileSource(settings_cls, Path.cwd() / ".metric_platform")
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, installation)

    @model_validator(mode="after")
    def _entry_cap_within_budget(self) -> Settings:
        if self.max_entry_bytes is not None and self.max_entry_bytes > self.max_bytes_per_ac:
            msg = "max_entry_bytes cannot exceed max_bytes_per_ac"
            raise ValueError(msg)
        return self

    def for_project(self, tenant_id: str, project_id: str) -> Settings:
        """A copy whose engine store is the project's own (``home/engine/<tenant>/<project>/``).

        When either ``engine_manifest_url`` or ``engine_data_dir`` is set, the copy keeps the one
        shared store: a manifest and its Parquet root are one store (entry paths are relative to the
        root, and a sweep of the root deletes files its manifest does not name), so splitting one of
        them per project while the other is shared would let one project's sweep delete another's
        entries. Projecting again (for another project) replaces the earlier choice.
        """
        for what, value in (("tenant_id", tenant_id), ("project_id", project_id)):
            if not _PATH_SAFE.fullmatch(value) or value in {".", ".."}:
                msg = (
                    f"{what} {value!r} cannot name an engine home directory; use letters, digits, "
                    "'_', '.' and '-' only (and not '.' or '..'), e.g. 'acme'"
                )
                raise InvalidRequestError(msg)
        projected = self.model_copy()
        projected._project = (tenant_id, project_id)
        return projected

    @property
    def shares_engine_store(self) -> bool:
        """True when an explicit manifest URL or data dir makes every project use one engine store."""
        return bool(self.engine_manifest_url) or self.engine_data_dir is not None

    @property
    def engine_home(self) -> Path:
        """Where the embedded engine store lives: the project's directory once :meth:`for_project`
        chose one (and no explicit store is set), else ``home/engine``."""
        root = self.home / "engine"
        if self._project is None or self.shares_engine_store:
            return root
        tenant_id, project_id = self._project
        return root / tenant_id / project_id

    @property
    def manifest_url(self) -> str:
        if self.engine_manifest_url:
            return self.engine_manifest_url
        return f"sqlite:///{(self.engine_home / 'manifest.sqlite').resolve()}"

    @property
    def platform_url(self) -> str:
        if self.platform_db_url:
            return self.platform_db_url
        return f"sqlite:///{(self.home / 'platform.sqlite').resolve()}"

    @property
    def spool_dir(self) -> Path:
        """Where ledger events that failed open wait to be replayed (seed 004 §5)."""
        return self.home / "ledger" / "spool"

    @property
    def data_dir(self) -> Path:
        return self.engine_data_dir or self.engine_home / "data"

    @property
    def entry_byte_cap(self) -> int:
        return self.max_entry_bytes if self.max_entry_bytes is not None else self.max_bytes_per_ac // 10
