"""What the streaming writer and reader share: their arguments, checked, and their ring made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._engine import EngineError, NativeRing
from .errors import error_for

if TYPE_CHECKING:
    from .device import Pipe


def open_ring(
    pipe: Pipe, depth: int, chunk: int, timeout: float | None, context: str
) -> tuple[NativeRing, float | None]:
    """The ring of ``depth`` transfers of ``chunk`` bytes on ``pipe`` and the time-out as kept
    (``None`` for none; ``math.inf`` is none). ValueError for a bad argument; a closed device
    raises its error."""
    maxp = pipe.max_packet
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError("depth must be an int >= 1")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < maxp or chunk % maxp or chunk > 1 << 30:
        raise ValueError(
            f"chunk must be a positive multiple of the max packet size ({maxp}) up to 1 GiB, not {chunk!r}"
        )
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be None or a number of seconds > 0")
    if timeout == float("inf"):
        timeout = None
    timeout_us = 0 if timeout is None else max(1, min(round(timeout * 1e6), 2**63 - 1))
    try:
        return pipe._core.new_ring(depth, chunk, timeout_us), timeout
    except EngineError as exc:
        raise error_for(exc.code, 0, context) from None
