"""Collecting validation problems so that one run reports all of them, each with a fix hint."""

from __future__ import annotations

import re
from collections.abc import Iterable

from metric_platform.errors import ConfigError, ConfigIssue, did_you_mean

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class IssueCollector:
    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []

    def add(self, path: str, message: str, hint: str | None = None) -> None:
        self.issues.append(ConfigIssue(self.file, path, message, hint))

    def unknown(self, path: str, what: str, name: str, known: Iterable[str], fix: str) -> None:
        known = sorted(known)
        suggestion = did_you_mean(name, known)
        hint = f"{suggestion.removeprefix('; ')} " if suggestion else ""
        listing = ", ".join(known) if known else "none declared"
        self.add(path, f"unknown {what} {name!r}", f"{hint}{fix} (known: {listing})")

    def identifier(self, path: str, name: str, what: str) -> bool:
        if IDENTIFIER.fullmatch(name):
            return True
        self.add(
            path,
            f"{what} {name!r} is not a safe identifier",
            "use letters, digits and underscores only, not starting with a digit",
        )
        return False

    def raise_if_any(self) -> None:
        if self.issues:
            raise ConfigError(self.issues)
