"""Running a blocking call in a thread, for fault tests: every wait is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def joined(t: threading.Thread, seconds: float) -> None:
    t.join(seconds)
    assert not t.is_alive(), "a transfer hung"


def wait_until(cond: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)
