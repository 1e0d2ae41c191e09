"""Time-outs in seconds, as every blocking call of wdfusb takes them (pyserial's convention).

``None`` or ``math.inf``: wait for ever; ``0``: do not wait; NaN or a negative number: ValueError.
"""

from __future__ import annotations

import math

US_MAX = 2**63 - 1  # the engine's int64 microseconds (~292,000 years)
_FAST_LIMIT = 1e12  # seconds: below this, a plain conversion cannot reach US_MAX


def seconds(timeout: float | None) -> float | None:
    """``timeout`` checked: ``None`` for ever (``None`` or ``math.inf``), else the seconds (>= 0)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not hasattr(type(timeout), "__float__"):
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout must be None, math.inf or a number of seconds >= 0, not {timeout!r}")
    return None if value == math.inf else value


def timeout_us(timeout: float | None) -> int:
    """Seconds as the engine's microseconds: 0 = for ever (``None``, ``math.inf``); ``0`` s = 1 us (do not wait)."""
    kind = type(timeout)
    if (kind is float or kind is int) and 0 <= timeout < _FAST_LIMIT:  # type: ignore[operator]
        fast = round(timeout * 1e6)  # type: ignore[operator]  # every synchronous call: kept short
        return fast if fast > 0 else 1
    value = seconds(timeout)
    if value is None:
        return 0
    us = value * 1e6
    return US_MAX if us >= US_MAX else max(1, round(us))  # beyond the engine's range: for ever
