"""Transfers awaited from asyncio: the engine's asynchronous path, completed on the running loop.

A transfer is submitted with a tag (:mod:`wdfusb._dispatch`); its completion, taken off the
engine's queue by the one completion thread, is handed to the awaiting task's loop with
``call_soon_threadsafe`` — no thread per call, no polling. Cancelling the task cancels the
transfer and waits until it is back (a second cancel does not skip the wait); the
``CancelledError`` then carries ``bytes_transferred``, as every wdfusb error does. A coroutine
closed at its await (``coro.close()``, or collected) cancels and reaps the transfer before it goes.
A loop closed with tasks still awaiting transfers leaves them to the device's close (``asyncio.run``
cancels its tasks first, as it should).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import _dispatch
from ._core import CorePipe
from ._engine import EngineError, address_of, copy_out, note_bytes
from .errors import error_for


async def transfer(
    pipe: CorePipe, buf: Any, length: int, flags: int, timeout_us: int, context: str, data_at: int | None = None
) -> int:
    """Move ``length`` bytes of ``buf`` (pinned) on ``pipe``; the bytes moved, or the error with
    their count once the transfer is back (``data_at``: reads, whose error carries what arrived
    at that offset of ``buf``)."""
    loop = asyncio.get_running_loop()
    back: asyncio.Future[tuple[int, int]] = loop.create_future()

    def completed(status: int, actual: int) -> None:  # on the completion thread
        try:
            loop.call_soon_threadsafe(_settle, back, status, actual)
        except RuntimeError:  # the loop is closed: nobody awaits this transfer any more
            pass

    try:
        xfer = pipe.new_transfer()
    except EngineError as exc:  # the device is closed
        raise error_for(exc.code, 0, context) from None
    rc = _dispatch.submit(xfer, pipe.address, pipe.type, buf, length, flags, timeout_us, completed)
    if rc != 0:
        raise error_for(rc, 0, context)
    try:
        status, actual = await asyncio.shield(back)
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
    if status != 0:
        data = b"" if data_at is None else copy_out(address_of(buf, data_at), actual)
        raise error_for(status, actual, context, data)
    return actual


def _settle(back: asyncio.Future[tuple[int, int]], status: int, actual: int) -> None:
    if not back.done():
        back.set_result((status, actual))


__all__ = ["transfer"]
