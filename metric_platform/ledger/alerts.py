"""The projector's alerts (seed 004 §1.5 rule 5): lag above the SLA (P2) and a gap in a run (P1).

An alert is announced on the outbox (topic ``ledger.alert``) in the transaction that detected it.
Its outbox key is deterministic, so a re-detection after a crash, or on every poll while a run
stays halted, enqueues nothing new: a gap alert is keyed by (run, expected seq), a lag alert by
(projector, UTC minute). Run ids may be 255 characters long, so the key carries a hash of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from metric_platform.ledger.events import JSONValue
from metric_platform.ledger.outbox import OutboxMessage

ALERT_TOPIC = "ledger.alert"


class AlertCode(StrEnum):
    PROJECTOR_LAG_HIGH = "PROJECTOR_LAG_HIGH"
    PROJECTOR_GAP_DETECTED = "PROJECTOR_GAP_DETECTED"


class Severity(StrEnum):
    P1 = "P1"
    P2 = "P2"


_SEVERITY = {AlertCode.PROJECTOR_LAG_HIGH: Severity.P2, AlertCode.PROJECTOR_GAP_DETECTED: Severity.P1}


@dataclass(frozen=True)
class ProjectorAlert:
    """One alert raised by a projector poll. Build it with :meth:`gap` or :meth:`lag`."""

    code: AlertCode
    projector: str
    detected_at: dt.datetime
    message: str
    run_id: str | None = None
    expected_seq: int | None = None
    found_seq: int | None = None
    lag_seconds: float | None = None

    @property
    def severity(self) -> Severity:
        return _SEVERITY[self.code]

    @classmethod
    def gap(
        cls, *, projector: str, run_id: str, expected: int, found: int, detected_at: dt.datetime
    ) -> ProjectorAlert:
        message = (
            f"run {run_id!r} halted: expected runSeq {expected}, next stored is {found}; its snapshot "
            "stays at the last event before the gap until the missing event is stored"
        )
        return cls(
            AlertCode.PROJECTOR_GAP_DETECTED,
            projector,
            detected_at,
            message,
            run_id=run_id,
            expected_seq=expected,
            found_seq=found,
        )

    @classmethod
    def lag(
        cls, *, projector: str, lag_seconds: float, threshold_s: float, detected_at: dt.datetime
    ) -> ProjectorAlert:
        message = (
            f"projector {projector!r} is {lag_seconds:.1f} s behind the ledger (threshold "
            f"{threshold_s:.1f} s): the oldest event not yet projected waited that long"
        )
        return cls(AlertCode.PROJECTOR_LAG_HIGH, projector, detected_at, message, lag_seconds=lag_seconds)

    @property
    def key(self) -> str:
        """The deterministic outbox key (at most 87 characters)."""
        if self.code is AlertCode.PROJECTOR_GAP_DETECTED:
            parts: tuple[str, ...] = (self.projector, self.run_id or "", str(self.expected_seq))
        else:
            minute = self.detected_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")
            parts = (self.projector, minute)
        digest = hashlib.sha256()
        for part in parts:
            raw = part.encode("utf-8")
            digest.update(b"%d:%s," % (len(raw), raw))  # netstrings: no ambiguous joins
        return f"{self.code.value}:{digest.hexdigest()}"

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "projector": self.projector,
            "detectedAt": self.detected_at.isoformat(),
            "message": self.message,
            "runId": self.run_id,
            "expectedSeq": self.expected_seq,
            "foundSeq": self.found_seq,
            "lagSeconds": self.lag_seconds,
        }

    def to_outbox(self) -> OutboxMessage:
        return OutboxMessage(key=self.key, topic=ALERT_TOPIC, payload=self.to_json())
