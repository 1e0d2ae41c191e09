"""Streaming writes: keep N requests in flight on an OUT pipe so the bus never idles.

``pipe.writer()`` returns a :class:`StreamWriter`, the write-side partner of WDF's
continuous reader (beyond WDF itself, like nusb's queues)::

    with dev.pipe(0x06).writer(depth=8, chunk=65536) as w:
        w.write(header)                  # small writes are coalesced into the ring buffers
        w.write(samples)                 # large numpy arrays / bytes go out without a copy
        w.writelines(produce_blocks())   # any iterable of bytes-like objects
        w.write_from(open("capture.bin", "rb"))  # readinto the ring buffers: no extra copy
    # leaving the block flushes and frees everything (or cancels, if the block raised)

The stream is cut into transfers of exactly ``chunk`` bytes (a multiple of the
pipe's max packet size) however the writes were sliced; only :meth:`~StreamWriter.flush`
and :meth:`~StreamWriter.close` send a shorter final transfer. So a device sees
short packets only where the stream was flushed.

asyncio: awaited forms on the same ring (:meth:`~StreamWriter.write_async`,
:meth:`~StreamWriter.writelines_async`, :meth:`~StreamWriter.flush_async`,
:meth:`~StreamWriter.aclose`, ``async with``); the loop runs while the requests are on the bus::

    async with dev.pipe(0x06).writer(depth=8, chunk=65536) as w:
        async for block in produce():
            await w.write_async(block)   # returns once queued; awaits only for back-pressure
    # leaving the block awaits the flush (or cancels, if the block raised or the task was cancelled)

Threads: a writer belongs to one thread at a time (like a file object), and to one task at a
time (a second task's awaited call raises :class:`~wdfusb.UsbBusyError`); only
:meth:`~StreamWriter.cancel` may be called from another thread.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import _aio, _engine
from ._engine import (
    WU_ERR_BUSY,
    WU_ERR_CANCELLED,
    WU_ERR_INTERRUPTED,
    WU_OK,
    ZLP,
    CData,
    NativeRing,
    RingInfo,
    note_bytes,
)
from ._stream_ring import open_ring
from .errors import error_for

if TYPE_CHECKING:
    from .device import Pipe

ZlpPolicy = Literal["never", "end", "always"]
ZLP_POLICIES = ("never", "end", "always")


class StreamWriter:
    """Keeps up to ``depth`` write requests of ``chunk`` bytes in flight on one OUT pipe.

    Create it with :meth:`wdfusb.Pipe.writer`. ``write`` returns as soon as the data is
    queued and blocks only while all ``depth`` requests are in flight (back-pressure).

    ``timeout`` (seconds, ``None`` = none) applies to each request from the moment it
    is the oldest in flight, so it does not depend on ``depth``: a request not back
    by then is cancelled with every request behind it (newest first), and
    :class:`~wdfusb.UsbTimeoutError` says exactly how many bytes moved — always a
    prefix of the stream. (Time-outs counted from submission, as the engine's are,
    could let a later request move data after an earlier one timed out.)

    ``zlp`` is the short-packet-terminate policy (WinUSB's ``SHORT_PACKET_TERMINATE``):
    ``"never"``; ``"end"`` sends a zero-length packet after the last transfer of each
    :meth:`flush`/:meth:`close` when it ended on a max-packet boundary; ``"always"``
    ends every transfer whose length is a multiple of the max packet size with one.

    Errors: a transfer that fails (stall, device gone, time-out) stops the stream:
    the requests behind it are cancelled newest first and reaped, and the error is
    raised from the current or next ``write``/``flush``/``close`` with
    ``bytes_transferred`` = :attr:`bytes_written`, the bytes the device accepted in
    all. Ctrl-C while a call is blocked does the same, then re-raises
    ``KeyboardInterrupt``: nothing is left in flight. So does cancelling a task awaiting one
    of the ``_async`` calls: its ``CancelledError`` carries ``bytes_transferred``.
    """

    def __init__(
        self,
        pipe: Pipe,
        *,
        depth: int = 8,
        chunk: int = 65536,
        timeout: float | None = None,
        zlp: ZlpPolicy = "never",
    ) -> None:
        self._closed = True  # until the ring exists (__del__ looks at it)
        if not pipe._can_write:
            pipe._refuse(False, "stream to")
        if zlp not in ZLP_POLICIES:
            raise ValueError(f"zlp must be one of {ZLP_POLICIES}, not {zlp!r}")
        self.pipe = pipe
        self._context = f"stream to pipe 0x{pipe.address:02X}"
        ring, timeout = open_ring(pipe, depth, chunk, timeout, self._context)
        self._ring: NativeRing | None = ring
        self.depth, self.chunk, self.zlp, self.timeout = depth, chunk, zlp, timeout
        self._maxp = maxp = pipe.max_packet
        self._final: RingInfo | None = None  # what the ring said last, once it is released
        self._stage: tuple[CData, memoryview] | None = None  # the staging buffer being filled
        self._fill = 0  # bytes waiting in it
        self._accepted = 0  # bytes the caller handed over (returned by the write calls)
        self._zlp_owed = False  # "end": the last transfer ended on a packet boundary without a ZLP
        self._chunk_flags, self._chunk_owes_zlp = _zlp_flags(zlp, maxp, chunk, False)  # every whole chunk's
        self._reported = False  # the ring's error was raised (or is the caller's own cancel)
        self._waker: _aio.RingWaker | None = None  # made by the first awaited call
        self._awaited = False  # a task is inside an awaited call (one at a time)
        self._closed = False

    # ---- state ----------------------------------------------------------------------

    @property
    def bytes_written(self) -> int:
        """Bytes the device accepted: the actual lengths of every transfer that came back,
        partial ones included. Exact once :meth:`flush`, :meth:`close` or :meth:`cancel`
        returned, or an error was raised."""
        return int(self._info().bytes_done)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet back (never more than ``depth``)."""
        return int(self._info().in_flight)

    @property
    def buffered(self) -> int:
        """Bytes written but not yet submitted (they wait for a full chunk or a flush)."""
        return self._fill

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever in flight at once."""
        return int(self._info().peak)

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- writing ---------------------------------------------------------------------

    def write(self, data: Any, *, copy: bool | None = None) -> int:
        """Queue all of ``data`` (any contiguous buffer: bytes, bytearray, memoryview, numpy,
        mmap, array) and return its length. Blocks only for back-pressure.

        Whole chunks of a large ``bytes`` object, numpy array or read-only buffer are
        submitted directly, without copying (``copy=None``): **do not modify such an
        array until** :meth:`flush` **returns**. Other buffers (bytearray, writable
        memoryview, ...) are copied into the ring, so they may be reused at once.
        ``copy=True`` always copies; ``copy=False`` never copies whole chunks.
        """
        try:  # _guard(), spelled out: the call every chunk makes
            if type(data) is bytes and not copy and not self._fill and not self._closed:
                n = len(data)
                if n and not n % self.chunk:  # whole chunks of bytes: one C call, no view
                    return self._run(data, n)
            view, copy = _as_view(data, copy)
            self._check_open()
            return self._write_view(view, copy, data)
        except BaseException as exc:
            self._interrupted(exc)
            raise

    def writelines(self, chunks: Iterable[Any], *, copy: bool | None = None) -> int:
        """Write every bytes-like object an iterable or generator yields; returns the bytes queued.

        ``copy`` as in :meth:`write` (pass ``copy=True`` if the generator refills one array)."""
        return self._guard(self._write_iter, chunks, copy)

    def write_from(self, fileobj: Any, size: int | None = None) -> int:
        """Stream a binary file (until EOF, or ``size`` bytes) with ``readinto`` straight into
        the ring buffers: no copy beyond the read itself. Returns the bytes queued."""
        if size is not None and size < 0:
            raise ValueError("size must be None or >= 0")
        return self._guard(self._write_file, fileobj, size)

    def flush(self) -> None:
        """Submit what is buffered (with a ZLP as the policy says) and wait until every
        request is back. Raises the stream's error, if any."""
        self._guard(self._flush)

    def close(self) -> None:
        """Flush, then release the stream. Idempotent.

        Raises the stream's error if no earlier call raised it (nothing is left in flight anyway)."""
        if self._closed:
            return
        try:
            if self._info().error == WU_OK:
                self._guard(self._flush)
            elif not self._reported:
                self._raise()
        finally:
            self._release()

    def cancel(self) -> int:
        """Cancel every request in flight, newest first, wait until all are back and return
        exactly how many bytes were written. Buffered data is dropped. Any thread.

        The stream is finished afterwards: a write blocked in another thread raises
        :class:`~wdfusb.UsbCancelledError`, as do later writes; :meth:`close` does not."""
        ring = self._ring
        if ring is None:
            return int(self._info().bytes_done)
        self._reported = self._reported or ring.info().error == WU_OK
        ring.cancel(WU_ERR_CANCELLED)
        return int(ring.info().bytes_done)

    # ---- asyncio: the same calls, awaited ----------------------------------------------------

    async def write_async(self, data: Any, *, copy: bool | None = None) -> int:
        """:meth:`write`, awaited: returns once ``data`` is queued, awaiting only for back-pressure
        (the loop runs meanwhile). ``copy`` as in :meth:`write`. Cancelling the task cancels the
        stream as Ctrl-C does (every request back, :attr:`bytes_written` exact, in the
        ``CancelledError``'s ``bytes_transferred``)."""
        view, copy = _as_view(data, copy)
        return int(await self._awaited_call(self._write_view_async, view, copy, data))

    async def writelines_async(self, chunks: Any, *, copy: bool | None = None) -> int:
        """:meth:`writelines`, awaited; ``chunks`` may also be an asynchronous iterable. Returns the
        bytes queued."""
        return int(await self._awaited_call(self._write_iter_async, chunks, copy))

    async def flush_async(self) -> None:
        """:meth:`flush`, awaited: until every request is back. Raises the stream's error, if any."""
        await self._awaited_call(self._flush_async)

    async def aclose(self) -> None:
        """:meth:`close`, awaited (the flush is awaited). Idempotent."""
        if self._closed:
            return
        try:
            if self._info().error == WU_OK:
                await self._awaited_call(self._flush_async)
            elif not self._reported:
                self._raise()
        finally:
            self._release()

    async def __aenter__(self) -> StreamWriter:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Await :meth:`aclose` on a normal exit; on an exception (a cancelled task's among them)
        cancel instead and let it propagate."""
        if exc_type is None:
            await self.aclose()
        elif not self._closed:
            self._reported = True
            self._release()

    # ---- internals --------------------------------------------------------------------

    async def _awaited_call(self, fn: Any, *args: Any) -> Any:
        """Run an awaited operation (one task at a time); on cancellation (or anything not an
        ``Exception``) cancel and reap everything first, as :meth:`_guard` does for Ctrl-C."""
        self._check_open()
        if self._awaited:
            raise error_for(WU_ERR_BUSY, 0, f"{self._context}: another task is in an awaited call")
        self._awaited = True
        try:
            if self._waker is None:
                self._waker = _aio.RingWaker(self._live_ring(), self._context)
            return await fn(self._waker, *args)
        except BaseException as exc:
            if not self._closed:
                self._interrupted(exc)
            raise
        finally:
            self._awaited = False

    async def _run_async(self, waker: _aio.RingWaker, part: Any, length: int) -> int:
        """:meth:`_run`, awaited: whole chunks of ``part`` from its memory, C's calls not waiting."""
        ring = self._live_ring()
        buf = part if type(part) is bytes else _engine.pin(part)
        keep = part if buf is part else (part, buf)
        flags, done = self._chunk_flags, 0

        def step() -> tuple[int, int]:
            nonlocal done
            rc, done, timeout_in_us = ring.run_step(buf, keep, length, flags, done)
            return rc, timeout_in_us

        try:
            rc = await waker.drive(step)
        finally:  # the ring keeps what it still needs; a traceback must not (see _aio)
            buf = keep = None
        self._zlp_owed = self._chunk_owes_zlp
        self._accepted += done
        if rc != WU_OK:
            self._raise()
        return done

    async def _submit_async(self, waker: _aio.RingWaker, buf: CData | None, length: int, flags: int) -> None:
        """:meth:`_submit`, awaited: while all ``depth`` are in flight, await the oldest."""
        ring = self._live_ring()

        def step() -> tuple[int, int]:
            while True:
                rc = ring.submit(buf, length, flags)
                if rc != WU_ERR_BUSY:
                    return rc, -1
                rc, _, timeout_in_us = ring.wait_step()  # something came back: submit again
                if rc != WU_OK:
                    return rc, timeout_in_us

        if await waker.drive(step) != WU_OK:
            self._raise()

    async def _submit_fill_async(self, waker: _aio.RingWaker, final: bool = False) -> None:
        stage, length = self._stage, self._fill
        assert stage is not None
        self._stage, self._fill = None, 0
        await self._submit_async(waker, stage[0], length, self._flags(length, final))

    async def _write_view_async(self, waker: _aio.RingWaker, view: memoryview, copy: bool, data: Any) -> int:
        """:meth:`_write_view`, awaited."""
        n, pos, chunk = len(view), 0, self.chunk
        while pos < n:
            if not self._fill and not copy and n - pos >= chunk:
                whole = (n - pos) - (n - pos) % chunk
                part = data if pos == 0 and whole == n and type(data) is bytes else view[pos : pos + whole]
                pos += await self._run_async(waker, part, whole)
                continue
            take = min(n - pos, chunk - self._fill)
            self._fill_target(take)[:] = view[pos : pos + take]
            self._fill += take
            self._accepted += take
            pos += take
            if self._fill == chunk:
                await self._submit_fill_async(waker)
        return n

    async def _write_iter_async(self, waker: _aio.RingWaker, chunks: Any, copy: bool | None) -> int:
        total = 0
        if hasattr(chunks, "__aiter__"):
            async for item in chunks:
                total += await self._write_view_async(waker, *_as_view(item, copy), item)
        else:
            for item in chunks:
                total += await self._write_view_async(waker, *_as_view(item, copy), item)
        return total

    async def _flush_async(self, waker: _aio.RingWaker) -> None:
        """:meth:`_flush`, awaited."""
        if self._fill:
            await self._submit_fill_async(waker, final=True)
        elif self._zlp_owed:
            await self._submit_async(waker, None, 0, 0)
        self._zlp_owed = False
        ring = self._live_ring()

        def step() -> tuple[int, int]:
            while True:
                rc, in_flight, timeout_in_us = ring.wait_step()
                if rc != WU_OK or not in_flight:
                    return rc, timeout_in_us

        if await waker.drive(step) != WU_OK or ring.info().error != WU_OK:
            self._raise()

    def _info(self) -> Any:
        """What C says of the ring now (after :meth:`close`: what it said last)."""
        ring = self._ring
        if ring is None:
            assert self._final is not None
            return self._final
        return ring.info()

    def _live_ring(self) -> NativeRing:
        ring = self._ring
        if ring is None:
            raise ValueError("I/O operation on a closed stream writer")
        return ring

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run a blocking operation; on Ctrl-C (or any non-``Exception``) cancel and reap
        everything first, so nothing is left in flight, then re-raise."""
        self._check_open()
        try:
            return fn(*args)
        except BaseException as exc:
            self._interrupted(exc)
            raise

    def _interrupted(self, exc: BaseException) -> None:
        """A blocking operation is leaving by ``exc``: on Ctrl-C (anything not an ``Exception``)
        cancel and reap everything, and tell ``exc`` what moved."""
        if not isinstance(exc, Exception):
            ring = self._live_ring()
            ring.cancel(WU_ERR_INTERRUPTED)
            self._reported = True
            note_bytes(exc, int(ring.info().bytes_done))

    def _check_open(self) -> None:
        ring = self._ring
        if ring is None or self._closed:
            raise ValueError("I/O operation on a closed stream writer")
        if ring.info().error != WU_OK:
            self._raise()

    def _raise(self) -> None:
        """Stop the stream (C cancels and reaps what is left) and raise its error."""
        ring = self._live_ring()
        error = ring.cancel(WU_ERR_CANCELLED)
        self._stage, self._fill = None, 0
        self._reported = True
        raise error_for(error, int(ring.info().bytes_done), self._context)

    def _flags(self, length: int, final: bool) -> int:
        """ZLP flag for a transfer of ``length`` bytes under the policy; notes a ZLP owed."""
        flags, self._zlp_owed = _zlp_flags(self.zlp, self._maxp, length, final)
        return flags

    def _run(self, part: Any, length: int) -> int:
        """Submit ``length`` bytes (whole chunks) of ``part`` straight from its memory, looped in
        C (the ring's error, if any, is raised from here); returns the bytes submitted."""
        rc, done = self._live_ring().run(part, length, self._chunk_flags)
        self._zlp_owed = self._chunk_owes_zlp
        self._accepted += done
        if rc != WU_OK:
            self._raise()
        return done

    def _submit(self, buf: CData | None, length: int, flags: int) -> None:
        """Submit one transfer, waiting for the oldest while all ``depth`` are in flight."""
        ring = self._live_ring()
        while True:
            rc = ring.submit(buf, length, flags)
            if rc == WU_ERR_BUSY:  # all depth in flight (or no room for one more in usbfs yet)
                waiting = ring.info().in_flight
                rc = ring.poll()  # retire what is already back before blocking on the oldest
                if rc == WU_OK and ring.info().in_flight == waiting:
                    rc = ring.wait()
                if rc == WU_OK:
                    continue
            if rc != WU_OK:
                self._raise()
            return

    def _fill_target(self, room: int) -> memoryview:
        """Where the next ``room`` bytes go: the rest of the staging buffer being filled."""
        if self._stage is None:
            self._stage = self._live_ring().stage()
        return self._stage[1][self._fill : self._fill + room]

    def _submit_fill(self, final: bool = False) -> None:
        """Submit the filled part of the staging buffer being filled."""
        stage, length = self._stage, self._fill
        assert stage is not None
        self._stage, self._fill = None, 0
        self._submit(stage[0], length, self._flags(length, final))

    def _write_view(self, view: memoryview, copy: bool, data: Any = None) -> int:
        """Queue ``view``; ``data`` is the object it views, handed to C itself when it is
        ``bytes`` and goes whole (no pin, no slice)."""
        n, pos, chunk = len(view), 0, self.chunk
        while pos < n:
            if not self._fill and not copy and n - pos >= chunk:
                whole = (n - pos) - (n - pos) % chunk
                pos += self._run(
                    data if pos == 0 and whole == n and type(data) is bytes else view[pos : pos + whole], whole
                )
                continue
            take = min(n - pos, chunk - self._fill)
            self._fill_target(take)[:] = view[pos : pos + take]
            self._fill += take
            self._accepted += take
            pos += take
            if self._fill == chunk:
                self._submit_fill()
        return n

    def _write_iter(self, chunks: Iterable[Any], copy: bool | None) -> int:
        total = 0
        for item in chunks:
            total += self._write_view(*_as_view(item, copy))
        return total

    def _write_file(self, fileobj: Any, size: int | None) -> int:
        readinto = getattr(fileobj, "readinto", None)
        total = 0
        while size is None or total < size:
            room = self.chunk - self._fill if size is None else min(self.chunk - self._fill, size - total)
            target = self._fill_target(room)
            if readinto is not None:
                got = readinto(target)
            else:
                data = fileobj.read(room)
                got = len(data)
                target[:got] = data
            if got is None:
                raise BlockingIOError("the file has no data now; write_from needs a blocking file")
            if not got:
                break
            self._fill += got
            self._accepted += got
            total += got
            if self._fill == self.chunk:
                self._submit_fill()
        return total

    def _flush(self) -> None:
        if self._fill:
            self._submit_fill(final=True)
        elif self._zlp_owed:
            self._submit(None, 0, 0)
        self._zlp_owed = False
        ring = self._live_ring()
        while ring.info().in_flight:
            if ring.wait() != WU_OK:
                self._raise()
        if ring.info().error != WU_OK:
            self._raise()

    def _release(self) -> None:
        """Settle the ring (nothing is left in flight), keep what it said last, free it."""
        self._closed = True
        self._stage, self._fill = None, 0
        if self._waker is not None:
            self._waker.close()
        ring = self._ring
        if ring is not None:
            ring.cancel(WU_ERR_CANCELLED)
            # the snapshot before the ring goes: a cancel() or bytes_written on another thread
            # finds one or the other, never neither
            self._final = ring.snapshot()
            self._ring = None

    # ---- context manager and finalization ------------------------------------------------

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Close (drain) on a normal exit; on an exception cancel instead and let it propagate."""
        if exc_type is None:
            self.close()
            return
        if not self._closed:
            self._reported = True
            self._release()

    def __del__(self) -> None:
        """A writer dropped without :meth:`close` cancels what it had not written, and says so
        (``ResourceWarning``, like an unclosed file), with the bytes lost."""
        if self._closed:
            return
        try:
            self._release()
            written = int(self._info().bytes_done)
            lost = self._accepted - written
            warnings.warn(
                f"{self._context}: StreamWriter dropped without close(): {written} bytes written, "
                f"{lost} bytes queued were cancelled",
                ResourceWarning,
                stacklevel=2,
            )
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.in_flight}/{self.depth} in flight"
        return (
            f"<StreamWriter pipe 0x{self.pipe.address:02X} chunk={self.chunk} zlp={self.zlp!r} "
            f"{state}, {self.bytes_written} bytes written>"
        )


def _zlp_flags(policy: ZlpPolicy, maxp: int, length: int, final: bool) -> tuple[int, bool]:
    """The ZLP flag for a transfer of ``length`` bytes under ``policy``, and whether a ZLP is
    then owed at the next flush (``"end"``: it ended on a packet boundary without one)."""
    boundary = length > 0 and length % maxp == 0
    flag = boundary and (policy == "always" or (final and policy == "end"))
    return (ZLP if flag else 0), boundary and not flag and policy == "end"


def _as_view(data: Any, copy: bool | None) -> tuple[memoryview, bool]:
    """A flat byte view of ``data`` and whether to copy it (see :meth:`StreamWriter.write`)."""
    if type(data) is bytes:  # the common case, kept short: a flat view, never copied unless asked
        return memoryview(data), bool(copy)
    view = _engine.byte_view(data, flat=True)
    if copy is None:
        copy = not (type(data) is bytes or isinstance(data, np.ndarray) or view.readonly)
    return view, copy


__all__ = ["ZLP_POLICIES", "StreamWriter", "ZlpPolicy"]
