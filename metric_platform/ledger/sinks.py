"""Where outbox messages go (seed 004 §4's EventBus): the sink port and the one built-in sink.

A sink is called by :func:`metric_platform.ledger.delivery.deliver` outside any database
transaction. Delivery is at least once: a sink may see one message more than once (a retry after
a failure that happened after the message got through, or a crash before the outcome was
recorded), so a consumer deduplicates by :attr:`DeliveredMessage.key`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from metric_platform.ledger.events import JSONValue, canonical_json

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveredMessage:
    """One outbox message as handed to a sink. ``attempt`` counts from 1 (this send included)."""

    key: str
    topic: str
    payload: Mapping[str, JSONValue]
    attempt: int
    created_at: dt.datetime


class Sink(Protocol):
    """Sends one message; raising means "not delivered" (it will be retried or dead-lettered)."""

    def send(self, message: DeliveredMessage) -> None: ...


class PermanentDeliveryError(Exception):
    """Raised by a sink for a message that no retry can deliver (rejected as malformed, topic gone):
    the message is dead-lettered at once with this error as the reason instead of being retried."""


class LogSink:
    """Logs one structured line per message: the bus of an installation without a message broker.

    The line carries the key, topic, attempt and the payload as canonical JSON, and the same fields
    as ``extra`` attributes (``outbox_key``, ``outbox_topic``, ``outbox_attempt``) for structured
    log handlers.
    """

    def __init__(self, logger: logging.Logger | None = None, *, level: int = logging.INFO) -> None:
        self._logger = logger or _LOG
        self._level = level

    def send(self, message: DeliveredMessage) -> None:
        self._logger.log(
            self._level,
            "outbox message topic=%s key=%s attempt=%d payload=%s",
            message.topic,
            message.key,
            message.attempt,
            canonical_json(dict(message.payload)),
            extra={
                "outbox_key": message.key,
                "outbox_topic": message.topic,
                "outbox_attempt": message.attempt,
            },
        )
