"""The streaming ring (``wu_ring``, csrc/ring.c): depth transfers on one pipe, driven in C.

C owns every fact of the ring: which transfers are in flight, which staging buffer each
carries, the bytes that moved (or, reading, arrived and were delivered), the time-outs (on the
engine's clock), the first failure and the newest-first cancel. This wrapper only keeps the
caller's buffers alive while C may use them, and waits in slices so Ctrl-C is seen.

The ``*_step`` methods are the same calls with a slice that does not wait (``NO_WAIT``): they
return ``WU_PENDING`` where a blocking call would wait, with C's time left until the ring's
time-out, for a caller that awaits instead (an event loop, woken through :meth:`notify`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .device import NativeDevice
from .native import SLICE_US, WU_OK, WU_PENDING, CData, EngineError, ffi, lib
from .transfer import note_bytes, pin

_ring_wait, _ring_run, _ring_submit, _ring_info, _ring_read, _ring_next = (
    lib.wu_ring_wait,
    lib.wu_ring_run,
    lib.wu_ring_submit,
    lib.wu_ring_info_get,
    lib.wu_ring_read,
    lib.wu_ring_next,
)
_buffer, _new, _gc, _NULL = ffi.buffer, ffi.new, ffi.gc, ffi.NULL
NO_WAIT = -1  # a slice that does not wait: WU_PENDING where the call would wait


def _interrupt(r: CData, done: CData) -> None:
    """A read leaves by an exception: stop every read (C). A second Ctrl-C arriving before the
    call ran must not skip it: reads may still be landing in the caller's buffer."""
    while True:
        try:
            lib.wu_ring_interrupt(r, done)
            return
        except BaseException:  # noqa: BLE001, S112 - the first exception is the one that propagates
            continue


@dataclass(frozen=True)
class RingInfo:
    """What C says of a ring (``wu_ring_info``)."""

    depth: int
    in_flight: int
    peak: int
    error: int
    bytes_done: int
    submitted: int
    retired: int
    buffered: int


class NativeRing:
    """``depth`` transfers of up to ``chunk`` bytes, with ``depth + 1`` staging buffers."""

    __slots__ = ("__weakref__", "_carried", "_done", "_info", "_r", "_views", "chunk", "depth")

    def __init__(
        self, device: NativeDevice, owner: int, ep: int, ep_type: int, depth: int, chunk: int, timeout_us: int
    ) -> None:
        self._r: CData = ffi.NULL
        out = ffi.new("wu_ring **")
        rc = lib.wu_ring_new(device.handle, owner, ep, ep_type, depth, chunk, timeout_us, out)
        if rc != WU_OK:
            raise EngineError(rc, "creating a stream ring")
        self._r = out[0]
        self.depth, self.chunk = depth, chunk
        # run()'s scratch: a writer belongs to one thread (any other thread's look is info())
        self._info = ffi.new("wu_ring_info *")
        self._done = ffi.new("size_t *")
        self._carried: deque[tuple[int, Any]] = deque()  # (submitted count after it, caller's buffer)
        self._views: dict[int, tuple[CData, memoryview]] = {}  # staging buffers by address

    # ---- what C says ---------------------------------------------------------------

    def info(self) -> Any:
        """What C says of the ring now: a ``wu_ring_info`` struct of the caller's own (``in_flight``,
        ``peak``, ``error``, ``bytes_done``, ``submitted``, ``retired``, ``buffered``); any thread."""
        info = _new("wu_ring_info *")
        _ring_info(self._r, info)
        return info

    def snapshot(self) -> RingInfo:
        """What C says of the ring now, as a value that stays."""
        i = self.info()
        return RingInfo(i.depth, i.in_flight, i.peak, i.error, i.bytes_done, i.submitted, i.retired, i.buffered)

    def _let_go(self) -> None:
        """Drop the caller's buffers C is done with (every transfer up to the ones they carried retired)."""
        retired = self.info().retired
        carried = self._carried
        while carried and carried[0][0] <= retired:
            carried.popleft()

    # ---- driving -------------------------------------------------------------------

    def stage(self) -> tuple[CData, memoryview]:
        """The staging buffer to fill next (``chunk`` bytes, writable): the same one until it
        is submitted."""
        ptr = lib.wu_ring_stage(self._r)
        key = int(ffi.cast("uintptr_t", ptr))
        entry = self._views.get(key)
        if entry is None:
            entry = self._views[key] = (ptr, memoryview(ffi.buffer(ptr, self.chunk)))
        return entry

    def submit(self, buf: CData | None, length: int, flags: int, keep: Any = None) -> int:
        """Submit one transfer (a staging buffer, ``keep``'s memory, or None for a ZLP).
        ``WU_ERR_BUSY`` when all are in flight; any other error failed the ring."""
        rc = int(_ring_submit(self._r, ffi.NULL if buf is None else buf, length, flags))
        if rc == WU_OK and keep is not None:
            self._carried.append((self.info().submitted, keep))
        elif self._carried:
            self._let_go()
        return rc

    def run(self, data: Any, length: int, flags: int) -> tuple[int, int]:
        """Submit ``length`` bytes of ``data`` (``bytes``, or a flat view) in chunks straight
        from the caller's memory, retiring as needed, all in C. Returns ``(result, bytes
        submitted)``; the last transfers may still carry ``data``, which is kept until then."""
        buf = data if type(data) is bytes else pin(data)  # cffi hands C a bytes' own storage
        done, info, r = self._done, self._info, self._r
        done[0] = 0
        try:  # each call leaves in `info` what retired and what was sent: no second look
            rc = _ring_run(r, buf, length, flags, SLICE_US, done, info)
            while rc == WU_PENDING:  # a slice ended: Ctrl-C is seen between slices
                rc = _ring_run(r, buf, length, flags, SLICE_US, done, info)
        finally:  # (interrupted before the first call returned, nothing of `buf` went out)
            retired, carried = info.retired, self._carried
            while carried and carried[0][0] <= retired:
                carried.popleft()
            carried.append((info.submitted, data if buf is data else (data, buf)))
        return rc, done[0]

    # ---- reading (an IN pipe's ring) ----------------------------------------------------

    def read(self, buf: CData, length: int) -> tuple[int, int]:
        """Fill ``length`` bytes of ``buf`` (pinned, writable) from the stream; returns ``(result,
        bytes filled)``. Interrupted (Ctrl-C), it stops the reads first (they land, in order, in
        ``buf`` or for the next call), tells the exception what it filled, and re-raises."""
        done, r = _new("size_t *"), self._r  # the caller's own: another thread may be refused meanwhile
        try:
            rc = _ring_read(r, buf, length, 1, SLICE_US, done, _NULL)
            while rc == WU_PENDING:  # a slice ended: Ctrl-C is seen between slices
                rc = _ring_read(r, buf, length, 0, SLICE_US, done, _NULL)
        except BaseException as exc:
            _interrupt(r, done)
            note_bytes(exc, int(done[0]))
            raise
        return rc, done[0]

    def next(self, most: int) -> tuple[int, memoryview | None]:
        """The oldest data that arrived, up to ``most`` bytes, as a read-only view valid until the
        next call; ``(result, None)`` on an error. Interrupted, it stops the reads (what arrived
        stays for the next call) and re-raises."""
        data, length, r = _new("uint8_t **"), _new("size_t *"), self._r
        try:
            rc = _ring_next(r, most, 1, SLICE_US, data, length, _NULL)
            while rc == WU_PENDING:
                rc = _ring_next(r, most, 0, SLICE_US, data, length, _NULL)
        except BaseException:
            _interrupt(r, _new("size_t *"))
            raise
        if rc != WU_OK:
            return rc, None
        return rc, self.next_view(data, length)

    def next_view(self, data: CData, length: CData) -> memoryview:
        """The read-only view of what :meth:`next` or :meth:`next_step` handed out."""
        # the view keeps this ring (and so the staging memory) alive: it outlives close() safely
        held = _gc(data[0], lambda _ptr, ring=self: ring)
        return memoryview(_buffer(held, length[0])).toreadonly()

    # ---- not waiting (an event loop awaits between the steps) -----------------------------

    def notify(self, tag: int) -> int:
        """From now on C queues a completion with ``tag`` whenever one of the ring's transfers
        comes back (one at a time), and the device's transfers move with nobody waiting; 0: no more."""
        return int(lib.wu_ring_notify(self._r, tag))

    def run_step(self, buf: CData, keep: Any, length: int, flags: int, done: int) -> tuple[int, int, int]:
        """:meth:`run` from byte ``done`` of ``buf`` (the pinned ``keep``, or ``bytes``) without
        waiting: ``(result, bytes submitted so far, µs until the ring's time-out or -1)``."""
        d, info = self._done, self._info
        d[0] = done
        rc = int(_ring_run(self._r, buf, length, flags, NO_WAIT, d, info))
        retired, carried = info.retired, self._carried
        while carried and carried[0][0] <= retired:
            carried.popleft()
        if d[0] > done:
            carried.append((info.submitted, keep))
        return rc, int(d[0]), int(info.timeout_in_us)

    def wait_step(self) -> tuple[int, int, int]:
        """Retire what is back (or time the oldest out) without waiting: ``(result, transfers in
        flight, µs until the ring's time-out or -1)``; the result is ``WU_PENDING`` when nothing
        came back, else ``WU_OK`` or the ring's error."""
        rc = int(_ring_wait(self._r, NO_WAIT))
        info = self._info
        _ring_info(self._r, info)
        if self._carried:
            self._let_go()
        return rc, int(info.in_flight), int(info.timeout_in_us)

    @staticmethod
    def step_scratch() -> tuple[CData, CData, CData, CData]:
        """What one read's steps fill, the caller's own: ``(done, data, length, info)``."""
        return _new("size_t *"), _new("uint8_t **"), _new("size_t *"), _new("wu_ring_info *")

    def read_step(self, buf: CData, length: int, fresh: int, done: CData, info: CData) -> int:
        """:meth:`read` without waiting (``fresh``: the first call of a read, then the same ``buf``
        and ``length`` until it returns something else than ``WU_PENDING``)."""
        return int(_ring_read(self._r, buf, length, fresh, NO_WAIT, done, info))

    def next_step(self, most: int, fresh: int, data: CData, length: CData, info: CData) -> int:
        """:meth:`next` without waiting (``fresh`` as in :meth:`read_step`); :meth:`next_view`."""
        return int(_ring_next(self._r, most, fresh, NO_WAIT, data, length, info))

    def interrupt(self, done: CData) -> int:
        """End a read left between its steps (cancelled), as Ctrl-C ends a blocking one: every
        read back, what they brought kept in order; returns the bytes of its buffer filled."""
        _interrupt(self._r, done)
        return int(done[0])

    def wait(self) -> int:
        """Retire the oldest transfer (waiting for it): ``WU_OK`` or the ring's error."""
        rc = WU_PENDING
        while rc == WU_PENDING:
            rc = int(_ring_wait(self._r, SLICE_US))
        if self._carried:
            self._let_go()
        return rc

    def poll(self) -> int:
        """Retire what is already back, without waiting; the ring's error or ``WU_OK``."""
        rc = int(lib.wu_ring_poll(self._r))
        if self._carried:
            self._let_go()
        return rc

    def cancel(self, reason: int) -> int:
        """Fail the ring with ``reason`` (unless it failed already), cancel newest first and
        wait until every transfer is back and counted. Any thread. Returns the ring's error."""
        rc = int(lib.wu_ring_cancel(self._r, reason))
        self._let_go()  # nothing is in flight any more
        return rc

    def __del__(self) -> None:
        r, self._r = self._r, ffi.NULL
        if r:
            lib.wu_ring_free(r)  # cancels and reaps first: the carried buffers are alive until here
