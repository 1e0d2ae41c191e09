"""Streaming reads: keep N reads in flight on an IN pipe so the device never waits for the host.

``pipe.reader()`` returns a :class:`StreamReader`, the Pythonic partner of WDF's continuous
reader::

    with dev.pipe(0x86).reader(depth=8, chunk=65536, timeout=1.0) as r:
        samples = np.empty(1 << 20, dtype=np.uint16)
        r.readinto(samples)              # lands straight in the array, chunk by chunk
        for data in r:                   # each read as it completed (a read-only memoryview)
            handle(data)
            if done():
                break
        r.read_to(open("capture.bin", "wb"), 64 << 20)

From the first call on, C keeps ``depth`` reads of ``chunk`` bytes in flight and hands over
what arrives strictly in order; reads land straight in the caller's buffer while a whole chunk
of it is free, otherwise in the reader's own buffers (``depth + 1`` chunks: a caller who stops
taking data makes the device wait, as on the bus, and loses nothing). A short packet ends a
read as USB says (its bytes close up behind the ones before; iteration yields it short).

asyncio: the same calls, awaited on the same ring (:meth:`~StreamReader.readinto_async`,
:meth:`~StreamReader.read_async`, :meth:`~StreamReader.read_to_async`, ``async for``,
``async with``)::

    async with dev.pipe(0x86).reader(depth=8, chunk=65536, timeout=1.0) as r:
        header = await r.read_async(16)
        async for data in r:             # each read as it completed
            handle(data)

Cancelling a task awaiting one of them is a Ctrl-C: the reads stop, what they brought is kept
in order (in the caller's buffer, or for the next call), the ``CancelledError`` carries
``bytes_transferred`` (and ``data``, from :meth:`~StreamReader.read_async`), and the reader goes on.

Threads: a reader belongs to one thread at a time (like a file object); only
:meth:`~StreamReader.cancel` may be called from another thread (a second thread reading gets
:class:`~wdfusb.UsbBusyError`). ``pipe.abort()`` cancels the reads in flight at that moment, which
ends the stream unless they had all just completed; :meth:`~StreamReader.cancel` always ends it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from . import _aio, _engine
from ._engine import WU_ERR_CANCELLED, WU_ERR_FORKED, WU_OK, NativeRing
from ._stream_ring import open_ring
from .errors import error_for

if TYPE_CHECKING:
    from .device import Pipe


class StreamReader:
    """Keeps up to ``depth`` reads of ``chunk`` bytes in flight on one IN pipe.

    Create it with :meth:`wdfusb.Pipe.reader`.

    ``timeout`` (seconds, ``None`` = none) applies to each read from the moment it is the
    oldest in flight and a caller waits for it. A read not back by then is cancelled with every
    read behind it (newest first); what they brought stays in order (in the caller's buffer, or
    for the next call), :class:`~wdfusb.UsbTimeoutError` says how many bytes this call got, and
    the next call goes on reading. Ctrl-C does the same and re-raises ``KeyboardInterrupt``
    (with ``bytes_transferred``): nothing is left in flight.

    Any other failure (stall, overflow, device gone, :meth:`cancel`) ends the stream: what
    arrived before it is still handed over, then the error is raised, with
    ``bytes_transferred`` the bytes that call got.
    """

    def __init__(self, pipe: Pipe, *, depth: int = 8, chunk: int = 65536, timeout: float | None = None) -> None:
        self._ring: NativeRing | None = None  # until it exists (__del__ looks at it)
        if not pipe._can_read:
            pipe._refuse(True, "stream from")
        self.pipe = pipe
        self._context = f"stream from pipe 0x{pipe.address:02X}"
        self._ring, timeout = open_ring(pipe, depth, chunk, timeout, self._context)
        self.depth, self.chunk, self.timeout = depth, chunk, timeout
        self._closed = False  # the ring stays until the reader goes: a read another thread
        # still finishes lands in it, and bytes_read stays exact
        self._view: memoryview | None = None  # what iteration handed out last
        self._waker: _aio.RingWaker | None = None  # made by the first awaited call

    # ---- state ----------------------------------------------------------------------

    @property
    def bytes_read(self) -> int:
        """Bytes handed to the caller (by every ``readinto``/``read``/iteration/``read_to``)."""
        return int(self._info().bytes_done)

    @property
    def buffered(self) -> int:
        """Bytes that arrived and wait for the next call."""
        return int(self._info().buffered)

    @property
    def in_flight(self) -> int:
        """Reads submitted and not yet back (never more than ``depth``)."""
        return int(self._info().in_flight)

    @property
    def peak_in_flight(self) -> int:
        """The most reads ever in flight at once."""
        return int(self._info().peak)

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- reading ----------------------------------------------------------------------

    def readinto(self, buffer: Any) -> int:
        """Fill all of ``buffer`` (any writable contiguous buffer: bytearray, numpy array,
        memoryview, mmap) and return its length in bytes. Reads land straight in it while a
        whole chunk is free. On a failure the bytes that came are at its start, and the error's
        ``bytes_transferred`` counts them."""
        view = _engine.byte_view(buffer, writable=True)
        rc, done = self._live_ring().read(_engine.pin(buffer, True), view.nbytes)
        if rc != WU_OK:
            raise error_for(rc, done, self._context)
        return done

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes of the stream. On a failure the error's ``.data`` holds the
        bytes that came (``bytes_transferred`` of them)."""
        if not isinstance(size, int) or size < 0:
            raise ValueError("size must be an int >= 0")
        out = bytearray(size)
        try:
            rc, done = self._live_ring().read(_engine.pin(out, True), size)
        except BaseException as exc:  # Ctrl-C: the bytes that came go with it, as with an error
            exc.data = bytes(out[: getattr(exc, "bytes_transferred", 0)])  # type: ignore[attr-defined]
            raise
        if rc != WU_OK:
            raise error_for(rc, done, self._context, bytes(out[:done]))
        return bytes(out)

    def __iter__(self) -> StreamReader:
        return self

    def __next__(self) -> memoryview:
        """The data of the next read that completed (short or empty where the device ended a
        transfer early), a read-only view valid until the next step of the reader."""
        return self._next(self.chunk)

    def read_to(self, file: Any, nbytes: int) -> int:
        """Write the next ``nbytes`` of the stream to a binary file (``file.write``); returns the
        bytes written. On a failure the error's ``bytes_transferred`` counts what reached the file."""
        if not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError("nbytes must be an int >= 0")
        written = 0
        try:
            while written < nbytes:
                view = self._next(min(self.chunk, nbytes - written), written)
                file.write(view)
                written += len(view)
        except BaseException as exc:
            _engine.note_bytes(exc, written)
            raise
        return written

    # ---- asyncio: the same calls, awaited ------------------------------------------------------

    async def readinto_async(self, buffer: Any) -> int:
        """:meth:`readinto`, awaited: the loop runs while the reads are on the bus. Cancelling the
        task stops the reads as Ctrl-C does: the bytes that came are at the start of ``buffer``, the
        ``CancelledError``'s ``bytes_transferred`` counts them, and the next call goes on."""
        view = _engine.byte_view(buffer, writable=True)
        rc, done = await self._read_async(_engine.pin(buffer, True), view.nbytes)
        if rc != WU_OK:
            raise error_for(rc, done, self._context)
        return done

    async def read_async(self, size: int) -> bytes:
        """:meth:`read`, awaited: exactly ``size`` bytes. Cancelled, the ``CancelledError`` holds
        the bytes that came in ``data`` (``bytes_transferred`` of them), as an error does."""
        if not isinstance(size, int) or size < 0:
            raise ValueError("size must be an int >= 0")
        out = bytearray(size)
        try:
            rc, done = await self._read_async(_engine.pin(out, True), size)
        except BaseException as exc:
            exc.data = bytes(out[: getattr(exc, "bytes_transferred", 0)])  # type: ignore[attr-defined]
            raise
        if rc != WU_OK:
            raise error_for(rc, done, self._context, bytes(out[:done]))
        return bytes(out)

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> memoryview:
        """:meth:`__next__`, awaited: the data of the next read that completed."""
        return await self._next_async(self.chunk)

    async def read_to_async(self, file: Any, nbytes: int) -> int:
        """:meth:`read_to`, awaited (``file.write`` is called on the loop)."""
        if not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError("nbytes must be an int >= 0")
        written = 0
        try:
            while written < nbytes:
                view = await self._next_async(min(self.chunk, nbytes - written), written)
                file.write(view)
                written += len(view)
        except BaseException as exc:
            _engine.note_bytes(exc, written)
            raise
        return written

    async def aclose(self) -> None:
        """:meth:`close`, awaitable (the reads in flight are cancelled and reaped at once)."""
        self.close()

    async def __aenter__(self) -> StreamReader:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def cancel(self) -> int:
        """Cancel every read in flight, newest first, wait until all are back and return
        :attr:`bytes_read`. Any thread. The stream is finished: later calls (and one blocked in
        another thread) raise :class:`~wdfusb.UsbCancelledError` once what arrived is handed over."""
        ring = self._ring
        if ring is not None and ring.cancel(WU_ERR_CANCELLED) == WU_ERR_FORKED:
            raise error_for(WU_ERR_FORKED, 0, self._context)
        return self.bytes_read

    def close(self) -> None:
        """Stop reading (what is in flight is cancelled and reaped; what arrived and was not
        taken is dropped); its memory goes with the reader object. Idempotent."""
        ring = self._ring
        if ring is not None and not self._closed:
            self._closed = True
            if self._waker is not None:
                self._waker.close()
            ring.cancel(WU_ERR_CANCELLED)

    # ---- internals --------------------------------------------------------------------

    def _info(self) -> Any:
        assert self._ring is not None
        return self._ring.info()

    def _live_ring(self) -> NativeRing:
        ring = self._ring
        if ring is None or self._closed:
            raise ValueError("I/O operation on a closed stream reader")
        return ring

    def _awaited_ring(self) -> tuple[NativeRing, _aio.RingWaker]:
        ring = self._live_ring()
        if self._waker is None:
            self._waker = _aio.RingWaker(ring, self._context)
        return ring, self._waker

    async def _read_async(self, buf: Any, length: int) -> tuple[int, int]:
        """:meth:`NativeRing.read`, awaited: its steps do not wait; the loop awaits between them.
        Left by an exception (the task cancelled), the read ends as Ctrl-C ends it."""
        ring, waker = self._awaited_ring()
        done, _, _, info = ring.step_scratch()
        fresh = 1

        def step() -> tuple[int, int]:
            nonlocal fresh
            rc = ring.read_step(buf, length, fresh, done, info)
            fresh = 0
            return rc, int(info.timeout_in_us)

        try:
            rc = await waker.drive(step)
        except BaseException as exc:
            if not fresh:  # the read began: no read may still land in buf once this returns
                _engine.note_bytes(exc, ring.interrupt(done))
            raise
        finally:  # nothing lands in buf any more; a traceback must not keep it (see _aio)
            buf = None
        return rc, int(done[0])

    async def _next_async(self, most: int, got: int = 0) -> memoryview:
        """:meth:`_next`, awaited."""
        self._release_view()
        ring, waker = self._awaited_ring()
        done, data, length, info = ring.step_scratch()
        fresh = 1

        def step() -> tuple[int, int]:
            nonlocal fresh
            rc = ring.next_step(most, fresh, data, length, info)
            fresh = 0
            return rc, int(info.timeout_in_us)

        try:
            rc = await waker.drive(step)
        except BaseException:
            if not fresh:  # what arrived stays for the next call
                ring.interrupt(done)
            raise
        if rc != WU_OK:
            raise error_for(rc, got, self._context)
        view = self._view = ring.next_view(data, length)
        return view

    def _release_view(self) -> None:
        """The view handed out before is released: it was valid until this step."""
        last, self._view = self._view, None
        if last is not None:
            try:
                last.release()
            except BufferError:  # the caller exported it further: it keeps the memory alive
                pass

    def _next(self, most: int, got: int = 0) -> memoryview:
        """The next arrived data (up to ``most`` bytes); an error says the call got ``got``.
        The view handed out before is released: it was valid until this step."""
        self._release_view()
        rc, view = self._live_ring().next(most)
        if view is None:
            raise error_for(rc, got, self._context)
        self._view = view
        return view

    # ---- context manager and finalization ------------------------------------------------

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        """A reader dropped without :meth:`close` stops its reads and says so (``ResourceWarning``,
        like an unclosed file)."""
        if self._ring is None or self._closed:
            return
        try:
            buffered = self.buffered
            self.close()
            warnings.warn(
                f"{self._context}: StreamReader dropped without close(): {self.bytes_read} bytes read, "
                f"{buffered} bytes that had arrived were dropped",
                ResourceWarning,
                stacklevel=2,
            )
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.in_flight}/{self.depth} in flight"
        return f"<StreamReader pipe 0x{self.pipe.address:02X} chunk={self.chunk} {state}, {self.bytes_read} bytes read>"


__all__ = ["StreamReader"]
