"""The platform's one settings object (environment prefix ``METRIC_PLATFORM_``).

The embedded default needs no environment at all: everything lives under ``home`` (a
repository-local ``.metric_platform/`` directory), with SQLite files for every store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from metric_platform.installation import InstallationFileSource

GIB = 1024**3


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

    @property
    def manifest_url(self) -> str:
        if self.engine_manifest_url:
            return self.engine_manifest_url
        return f"sqlite:///{(self.home / 'engine' / 'manifest.sqlite').resolve()}"

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
        return self.engine_data_dir or self.home / "engine" / "data"

    @property
    def entry_byte_cap(self) -> int:
        return self.max_entry_bytes if self.max_entry_bytes is not None else self.max_bytes_per_ac // 10
