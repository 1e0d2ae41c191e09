"""Transfers awaited from asyncio: the engine's asynchronous path, completed on the running loop.

A transfer is submitted with a tag (:mod:`wdfusb._dispatch`); its completion, taken off the
engine's queue by the one completion thread, is handed to the awaiting task's loop with
``call_soon_threadsafe`` — no thread per call, no polling. Cancelling the task cancels the
transfer and waits until it is back (a second cancel does not skip the wait); the
``CancelledError`` then carries ``bytes_transferred``, as every wdfusb error does. A coroutine
closed at its await (``coro.close()``, or collected) cancels and reaps the transfer before it goes.
A loop closed with tasks still awaiting transfers leaves them to the device's close (``asyncio.run``
cancels its tasks first, as it should).

The streaming writer and reader await their ring the same way (:class:`RingWaker`): they make
the ring's own calls without waiting (``WU_PENDING`` where a blocking call would wait), and C
posts the ring's note to the same completion queue whenever one of its transfers comes back
(``wu_ring_notify``); the completion thread hands it to the awaiting loop. The ring's time-out,
which C counts on its clock, wakes the task at the time C says is left (``call_later``), so a
time-out fires with no completion at all.

An awaited call drops its pin of the caller's buffer before it returns or raises: a
cancelled task's traceback keeps the call's frame, often in a reference cycle, and CPython's
collector may clear a memoryview that a pin still exports, which crashes it later when the pin
lets go (the view's buffer is gone). Whatever C still needs is kept by the ring itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from . import _dispatch
from ._core import CorePipe
from ._engine import WU_PENDING, EngineError, NativeRing, Transfer, address_of, copy_out, note_bytes
from .errors import error_for


async def transfer(
    pipe: CorePipe, buf: Any, length: int, flags: int, timeout_us: int, context: str, data_at: int | None = None
) -> int:
    """Move ``length`` bytes of ``buf`` (pinned) on ``pipe``; the bytes moved, or the error with
    their count once the transfer is back (``data_at``: reads, whose error carries what arrived
    at that offset of ``buf``)."""
    try:
        xfer = pipe.new_transfer()
    except EngineError as exc:  # the device is closed
        raise error_for(exc.code, 0, context) from None
    status, actual = await complete(pipe, xfer, buf, length, flags, timeout_us)
    if status != 0:
        data = b"" if data_at is None or not actual else copy_out(address_of(buf, data_at), actual)
        raise error_for(status, actual, context, data)
    return actual


async def complete(
    pipe: CorePipe, xfer: Transfer, buf: Any, length: int, flags: int, timeout_us: int
) -> tuple[int, int]:
    """Submit ``xfer`` on ``pipe`` and await it: ``(engine status, bytes moved)`` once it is back
    (a refused submit: its status and 0). ``xfer.cancel()`` from anywhere ends it early with its
    count; so does cancelling the awaiting task, which waits until the transfer is back and
    raises ``CancelledError`` with ``bytes_transferred``."""
    loop = asyncio.get_running_loop()
    back: asyncio.Future[tuple[int, int]] = loop.create_future()

    def completed(status: int, actual: int) -> None:  # on the completion thread
        try:
            loop.call_soon_threadsafe(_settle, back, status, actual)
        except RuntimeError:  # the loop is closed: nobody awaits this transfer any more
            pass

    rc = _dispatch.submit(xfer, pipe.address, pipe.type, buf, length, flags, timeout_us, completed)
    if rc != 0:
        return rc, 0
    try:
        return await asyncio.shield(back)
    except asyncio.CancelledError as cancelled:
        xfer.cancel()
        while not back.done():  # until it is back: nothing of the caller's is left in flight
            try:
                await asyncio.shield(back)
            except asyncio.CancelledError:
                xfer.cancel()
        note_bytes(cancelled, back.result()[1])
        raise
    except GeneratorExit:  # the coroutine is closed (or collected) at its await: no loop to wait on
        xfer.reap()
        raise


class RingWaker:
    """Wakes the tasks that await a ring: a listener of the completion thread for the ring's note.

    Holds no fact of the ring, only who waits now: each awaited call registers itself before
    its first call into C, so a transfer that comes back after a call wakes it (one back before,
    the call itself saw). A call C refused (another task's read is in progress) goes without
    touching the waiting one's registration."""

    __slots__ = ("_tag", "_waits")

    def __init__(self, ring: NativeRing, context: str) -> None:
        self._waits: list[_Wait] = []  # the awaited calls on the ring now (one, unless refused)
        self._tag = _dispatch.listen(self._completed)
        rc = ring.notify(self._tag)
        if rc != 0:
            _dispatch.unlisten(self._tag)
            raise error_for(rc, 0, context)

    async def drive(self, step: Callable[[], tuple[int, int]]) -> int:
        """Call ``step`` (a ring call that does not wait: ``(result, µs until the ring's time-out
        or -1)``) until its result is not ``WU_PENDING``, awaiting the ring between the calls."""
        loop = asyncio.get_running_loop()
        me = _Wait(loop)
        self._waits.append(me)
        try:
            while True:
                rc, timeout_in_us = step()
                if rc != WU_PENDING:
                    return rc
                back = me.future = loop.create_future()
                timer = loop.call_later(timeout_in_us / 1e6, _fire, me) if timeout_in_us >= 0 else None
                try:
                    await back
                finally:
                    me.future = None
                    if timer is not None:
                        timer.cancel()
        finally:
            self._waits.remove(me)

    def close(self) -> None:
        """No more wake-ups (the stream is closed or gone)."""
        _dispatch.unlisten(self._tag)

    def _completed(self, status: int, actual: int) -> None:  # on the completion thread
        for me in tuple(self._waits):  # none: nobody waits, the next call sees what came back
            try:
                me.loop.call_soon_threadsafe(_fire, me)
            except RuntimeError:  # the loop is closed: nobody awaits there any more
                pass


class _Wait:
    """One awaited call on a ring: its loop, and the future it awaits between two calls into C."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] | None = None


def _fire(me: _Wait) -> None:  # on the waiting task's loop
    back = me.future
    if back is not None and not back.done():
        back.set_result(None)


def _settle(back: asyncio.Future[tuple[int, int]], status: int, actual: int) -> None:
    if not back.done():
        back.set_result((status, actual))


__all__ = ["RingWaker", "complete", "transfer"]
