"""What identifies a stored entry (seed 003 §2.7, §6): AC, domain, dataset, anchor and day slice.

Every part of a key becomes a directory name under the data dir, so each is validated here as a
plain identifier; a key that passes can never escape the data dir or collide by quoting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from metric_platform.errors import InvalidRequestError

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]+$")
# AC names may also hold dashes (directory-safe; never leading, so no option-like names).
_AC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_ISO_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
WHOLE_ENTRY = ""


class Domain(StrEnum):
    """The two domains that share the store (seed 003 §2.7)."""

    METRIC = "METRIC"
    QM = "QM"


@dataclass(frozen=True)
class EntryKey:
    """One logical entry: (AC, domain, dataset, anchor) and optionally one day slice of it.

    ``anchor`` holds AC-dimension names for METRIC and (schema, column[, ...]) names for QM.
    ``slice_key`` is ``""`` for a whole entry or an ISO day such as ``"2026-01-31"``.

    >>> EntryKey("shop", Domain.METRIC, "revenue", ("region", "day")).anchor_signature
    'region,day'
    """

    ac_name: str
    domain: Domain
    dataset_id: str
    anchor: tuple[str, ...]
    slice_key: str = WHOLE_ENTRY

    def __post_init__(self) -> None:
        if not isinstance(self.domain, Domain):
            msg = f"entry key domain {self.domain!r} is not a Domain; use Domain.METRIC or Domain.QM"
            raise InvalidRequestError(msg)
        _check(_AC_NAME, self.ac_name, "ac_name", "letters, digits, '_' and '-' (not leading)")
        _check(_IDENTIFIER, self.dataset_id, "dataset_id", "letters, digits and '_'")
        if not isinstance(self.anchor, tuple):
            msg = f"entry key anchor must be a tuple of names, got {type(self.anchor).__name__}"
            raise InvalidRequestError(msg)
        for element in self.anchor:
            _check(_IDENTIFIER, element, "anchor element", "letters, digits and '_'")
        if self.slice_key != WHOLE_ENTRY:
            _check_day(self.slice_key)

    @property
    def anchor_signature(self) -> str:
        """The anchor as stored in the manifest: names joined by commas, in order."""
        return ",".join(self.anchor)

    @property
    def slice_day(self) -> date | None:
        """The day this slice covers, or None for a whole entry."""
        return date.fromisoformat(self.slice_key) if self.slice_key else None

    @property
    def base(self) -> EntryKey:
        """The key without its slice (itself for a whole entry): what ``publish_slices`` takes."""
        return self.with_slice(None)

    def with_slice(self, day: date | None) -> EntryKey:
        """This key for the slice starting on ``day`` (None: the whole entry).

        >>> EntryKey("shop", Domain.METRIC, "revenue", ("region",)).with_slice(date(2026, 1, 31)).slice_key
        '2026-01-31'
        """
        if day is not None and (not isinstance(day, date) or isinstance(day, datetime)):
            msg = f"a slice is a datetime.date, got {day!r}"
            raise InvalidRequestError(msg)
        slice_key = WHOLE_ENTRY if day is None else day.isoformat()
        return EntryKey(self.ac_name, self.domain, self.dataset_id, self.anchor, slice_key)

    def describe(self) -> str:
        """A readable name for messages, e.g. ``shop/METRIC/revenue[region,day]@2026-01-31``."""
        where = f"@{self.slice_key}" if self.slice_key else ""
        return f"{self.ac_name}/{self.domain.value}/{self.dataset_id}[{self.anchor_signature}]{where}"

    @classmethod
    def from_signature(
        cls, ac_name: str, domain: Domain, dataset_id: str, anchor_signature: str, slice_key: str = ""
    ) -> EntryKey:
        """Rebuild a key from its manifest columns."""
        anchor = tuple(anchor_signature.split(",")) if anchor_signature else ()
        return cls(ac_name, Domain(domain), dataset_id, anchor, slice_key)


def _check(pattern: re.Pattern[str], value: object, what: str, allowed: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        msg = f"entry key {what} {value!r} is not valid; use a non-empty name of {allowed}"
        raise InvalidRequestError(msg)


def _check_day(value: object) -> None:
    valid = isinstance(value, str) and _ISO_DAY.fullmatch(value) is not None
    if valid:
        try:
            date.fromisoformat(str(value))
        except ValueError:
            valid = False
    if not valid:
        msg = (
            f"entry key slice_key {value!r} is not valid; use '' for a whole entry or an ISO day 'YYYY-MM-DD'"
        )
        raise InvalidRequestError(msg)
