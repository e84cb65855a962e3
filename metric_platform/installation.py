"""The installation file (seed 003 §10.3, §15.7): ``<home>/installation.yaml``, a settings source.

::

    metric_engine:
      max_bytes_per_ac: 1073741824   # 1 GiB
      max_entry_bytes: 107374182
      eviction_policy: fd_dag

Each key of the ``metric_engine`` section sets the ``Settings`` field of the same name; an
environment variable (``METRIC_PLATFORM_<FIELD>``) or an explicit argument wins over the file. The
file is found under the home the higher-priority sources chose, or at
``METRIC_PLATFORM_INSTALLATION_FILE``. A missing file is no error; a malformed one is a ConfigError
naming the file, the key and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from metric_platform.errors import ConfigError, ConfigIssue, did_you_mean

SECTION = "metric_engine"
FILE_NAME = "installation.yaml"
# The settings an installation file may set: the engine's limits and lifecycle policy.
ENGINE_KEYS = (
    "max_bytes_per_ac",
    "max_entry_bytes",
    "eviction_policy",
    "promotion_window_days",
    "promotion_min_hits",
    "promotion_min_days",
    "file_grace_seconds",
)


class InstallationFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], default_home: Path) -> None:
        super().__init__(settings_cls)
        self._default_home = default_home

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole section at once

    def __call__(self) -> dict[str, Any]:
        state = self.current_state
        explicit = state.get("installation_file")
        path = Path(explicit) if explicit else Path(state.get("home") or self._default_home) / FILE_NAME
        if not path.is_file():
            if explicit:
                msg = f"the installation file {path} does not exist"
                raise ConfigError([ConfigIssue(str(path), "", msg, "fix METRIC_PLATFORM_INSTALLATION_FILE")])
            return {}
        return read_engine_section(path)


def read_engine_section(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            [ConfigIssue(str(path), "", f"cannot read it: {exc}", "fix the YAML syntax")]
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get(SECTION, {}), dict):
        msg = f"expected a mapping with a {SECTION!r} mapping"
        raise ConfigError([ConfigIssue(str(path), "", msg, f"write `{SECTION}:` followed by indented keys")])
    unknown = sorted(set(document) - {SECTION})
    issues = [
        ConfigIssue(str(path), key, "unknown section", f"the file has one section, {SECTION!r}")
        for key in unknown
    ]
    section: dict[str, Any] = document.get(SECTION) or {}
    issues += [
        ConfigIssue(
            str(path),
            f"{SECTION}.{key}",
            f"unknown setting{did_you_mean(str(key), ENGINE_KEYS)}",
            f"known: {', '.join(ENGINE_KEYS)}",
        )
        for key in sorted(set(section) - set(ENGINE_KEYS), key=str)
    ]
    if issues:
        raise ConfigError(issues)
    return section
