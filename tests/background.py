"""Fault-test helpers: a blocking call in a thread (every wait bounded), and exact leak counts."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from wdfusb import _engine
from wdfusb.wdf import wait_for_completions


def native_counts_unchanged(join_s: float) -> Iterator[None]:
    """Fixture body: native transfers and native objects return to their starting values."""
    gc.collect()
    before = (_engine.Transfer.live, _engine.live_objects())
    yield
    assert wait_for_completions(join_s)
    gc.collect()
    after = (_engine.Transfer.live, _engine.live_objects())
    assert after == before, f"(Python transfers, native objects) went from {before} to {after}"


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)  # a hung one fails its test, not the exit
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
