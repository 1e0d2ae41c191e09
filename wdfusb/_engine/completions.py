"""The completion queue and the completion context, both owned by C.

Asynchronous transfers are completed by the engine's event threads, which queue them;
:func:`next_completions` takes them off (waiting in C with the GIL released). A thread
that runs completion routines is in *completion context*: C refuses every blocking call
from it (``WU_ERR_WRONG_CONTEXT``), and the layers above ask :func:`in_completion_context`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .native import CData, ffi, lib

_BATCH = 64
# True (non-zero) on a thread that runs completion routines (blocking calls are refused there).
# The C function itself: every synchronous WDF call asks, so no Python frame wraps it.
in_completion_context: Callable[[], int] = lib.wu_in_completion_context


def next_completions(batch: CData = None, timeout_us: int = -1) -> list[tuple[int, int, int]]:
    """The completions that are back: ``(tag, status, actual)``, waiting for at least one
    (``timeout_us`` < 0: for ever) or a :func:`wake`."""
    out = ffi.new("wu_completion[]", _BATCH) if batch is None else batch
    n = lib.wu_cq_wait(timeout_us, out, _BATCH)
    return [(int(c.tag), int(c.status), int(c.actual)) for c in out[0:n]]


def new_batch() -> CData:
    return ffi.new("wu_completion[]", _BATCH)


def wake() -> None:
    """Make one waiting :func:`next_completions` return now."""
    lib.wu_cq_wake()


def set_completion_context(on: bool) -> None:
    """Enter (``True``) or leave the completion context on this thread; nests."""
    lib.wu_set_completion_context(1 if on else 0)


@contextmanager
def completion_context() -> Iterator[None]:
    """This thread runs a completion routine for the duration (nests)."""
    lib.wu_set_completion_context(1)
    try:
        yield
    finally:
        lib.wu_set_completion_context(0)
