"""The host's analogue of "IRQL above PASSIVE_LEVEL": completion routines and the event thread.

A WDF driver may not block at DISPATCH_LEVEL; the synchronous sends check
``FxVerifierCheckIrqlLevel(PASSIVE_LEVEL)`` and return
``STATUS_INVALID_DEVICE_REQUEST``. Here the equivalent is a thread that runs a
WDF completion routine (the future completion dispatcher wraps every call in
:func:`completion_routine_context`) or the thread marked as the event-handling
thread (:func:`mark_event_thread`): blocking there would deadlock the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .._engine import completion_context, in_completion_context, set_completion_context


@contextmanager
def completion_routine_context() -> Iterator[None]:
    """Mark the current thread as running a WDF completion routine (nests; C keeps the count)."""
    with completion_context():
        yield


def mark_event_thread(thread: threading.Thread | None = None, on: bool = True) -> None:
    """Mark (or unmark) the current thread as an event-handling thread: blocking calls from it
    are refused, as from a completion routine (C keeps one context per thread; marks nest).
    ``thread`` may name the current thread only."""
    if thread is not None and thread is not threading.current_thread():
        raise ValueError("mark_event_thread marks the calling thread; call it on that thread")
    set_completion_context(on)


def in_completion_routine() -> bool:
    """True inside a WDF completion routine on this thread (or on wdfusb's completion thread)."""
    return bool(in_completion_context())


def at_passive_level() -> bool:
    """False where a synchronous (blocking) WDF call must be refused."""
    return not in_completion_context()
