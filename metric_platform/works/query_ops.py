"""Post-grain operations (``--having``/``--order``/``--limit``/``--per``) from their JSON form."""

from __future__ import annotations

from collections.abc import Sequence

from metric_platform.engine.post_grain import Having, Limit, OrderBy, PostGrainOp, PostGrainOps
from metric_platform.errors import InvalidRequestError


def names(text: str) -> tuple[str, ...]:
    """``"a, b,"`` → ``("a", "b")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_ops(raw: Sequence[tuple[str, str]]) -> PostGrainOps | None:
    """The operations in the order given; ``per`` makes the preceding ``limit`` per group."""
    ops: list[PostGrainOp] = []
    for kind, value in raw:
        match kind:
            case "having":
                ops.append(Having(value))
            case "order":
                ops.append(OrderBy.parse(value))
            case "limit":
                ops.append(Limit(_count(value)))
            case "per":
                last = ops[-1] if ops else None
                if not isinstance(last, Limit) or last.per:
                    msg = "--per COL belongs right after a --limit N"
                    raise InvalidRequestError(msg)
                ops[-1] = Limit(last.n, names(value))
            case _:
                msg = f"unknown post-grain operation {kind!r} (having, order, limit, per)"
                raise InvalidRequestError(msg)
    return PostGrainOps(tuple(ops)) if ops else None


def _count(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        msg = f"--limit takes a whole number, not {value!r}"
        raise InvalidRequestError(msg) from None
