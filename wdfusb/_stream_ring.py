"""The ring under :class:`wdfusb.stream.StreamWriter`: N native transfers, N + 1 aligned buffers.

One buffer more than transfers, so the writer fills the next buffer while all N
requests are in flight. Slots (transfers) are used in ring order. ``head`` is the oldest transfer in flight and
``count`` how many are in flight, so the slot after them (``next_slot``) is the one
being filled or about to be submitted. Transfers on one pipe complete in
submission order, so waiting on the oldest is all the writer ever needs: on the
virtual device that wait moves the bus model forward, on libusb it reaps what the
kernel finished.

Every change to the bookkeeping happens under ``lock``, so :meth:`Ring.abort` may run
on another thread (``StreamWriter.cancel``) while the writer's thread waits on the
oldest transfer; whoever retires a transfer first counts its bytes, exactly once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _engine
from ._engine import SLICE_US, WU_OK, WU_PENDING, CData, Transfer

if TYPE_CHECKING:
    from ._core import CorePipe

ALIGN = 4096  # ring buffers start on a page boundary (DMA-friendly, no split cache lines)
_WU_ERR_CANCELLED = _engine.lib.WU_ERR_CANCELLED
_WU_ERR_TIMEOUT = _engine.lib.WU_ERR_TIMEOUT
_WU_ERR_NO_DEVICE = _engine.lib.WU_ERR_NO_DEVICE
_XFER_DONE = _engine.lib.WU_XFER_DONE
_xfer_state = _engine.lib.wu_xfer_state
_ring_run = _engine.lib.wu_ring_run


@dataclass(eq=False)
class Buffer:
    """One ring buffer of ``chunk`` bytes, pinned once."""

    view: memoryview  # writable
    cdata: CData  # for submits
    busy: bool = False  # carried by a transfer in flight


@dataclass(eq=False)
class Slot:
    """One ring entry: a native transfer and what it carries now."""

    xfer: Transfer
    live: bool = False  # submitted and not yet retired
    own: Buffer | None = None  # the ring buffer it carries, or
    ext: Any = field(default=None, repr=False)  # a caller's buffer sent without copying


class Ring:
    """``depth`` transfers of up to ``chunk`` bytes on one OUT pipe, retired in order."""

    def __init__(self, core: CorePipe, depth: int, chunk: int, timeout: float | None) -> None:
        self.ep, self.ep_type = core.address, core.type
        self.depth, self.chunk, self.timeout = depth, chunk, timeout
        self.front_since = 0.0  # monotonic time the oldest transfer became the oldest
        self.lock = threading.Lock()
        self.head = 0  # oldest slot in flight
        self.count = 0  # slots in flight
        self.bytes_done = 0  # sum of the actual lengths of every retired transfer
        self.error = WU_OK  # first failure (engine code); once set, nothing more is submitted
        self.peak = 0  # most transfers ever in flight at once (for tests and benchmarks)
        n = depth + 1
        block = np.empty(n * chunk + ALIGN, dtype=np.uint8)
        start = -block.ctypes.data % ALIGN
        rows = block[start : start + n * chunk].reshape(n, chunk)
        self.buffer: np.ndarray | None = block  # kept for leak tests (weakref-able)
        self.buffers = [Buffer(row.data, _engine.pin(row, True)) for row in rows]
        self.slots: list[Slot] = []
        try:
            for _ in range(depth):
                self.slots.append(Slot(core.new_transfer()))
        except BaseException:
            self.free()
            raise
        self._native = _engine.ffi.new("wu_xfer *[]", [slot.xfer._x for slot in self.slots])
        self._state = _engine.ffi.new("wu_ring_state *")
        self._timeout_us = 0 if timeout is None else max(1, round(timeout * 1e6))
        self._c_idle = threading.Event()  # clear while run_span's C loop owns the slots
        self._c_idle.set()

    # ---- where the writer stands -------------------------------------------------

    def next_slot(self) -> Slot:
        """The slot after those in flight (only valid while ``count < depth``)."""
        return self.slots[(self.head + self.count) % self.depth]

    def free_buffer(self) -> Buffer:
        """A ring buffer no transfer carries (at most ``depth`` of the ``depth + 1`` are carried)."""
        for b in self.buffers:
            if not b.busy:
                return b
        raise RuntimeError("no free stream buffer")  # pragma: no cover - depth + 1 buffers, depth transfers

    def submit(
        self, slot: Slot, buf: CData, length: int, flags: int, own: Buffer | None = None, ext: Any = None
    ) -> bool:
        """Start ``slot`` (the next slot) on ``length`` bytes of ``buf`` (``own``'s or a caller's
        buffer ``ext``). False once the ring failed."""
        with self.lock:
            if self.error != WU_OK:
                return False
            slot.own, slot.ext = own, ext
            rc = slot.xfer.submit(self.ep, self.ep_type, buf, length, flags)
            if rc != WU_OK:
                slot.own = slot.ext = None
                self.error = rc
                return False
            if own is not None:
                own.busy = True
            slot.live = True
            if not self.count:
                self.front_since = time.monotonic()
            self.count += 1
            if self.count > self.peak:
                self.peak = self.count
            return True

    def run_span(self, view: memoryview, flags: int) -> int:
        """Send the whole chunks of ``view`` without copying, retiring and submitting in C
        (no Python per transfer). Returns the bytes submitted; the last transfers may still
        be in flight, carrying ``view``. Ctrl-C is seen between 50 ms slices."""
        n = len(view) - len(view) % self.chunk
        if not n:
            return 0
        span = view[:n]
        pinned = _engine.pin(span)
        entered = [slot.xfer for slot in self.slots if slot.xfer._enter() is not None]
        try:  # the C loop uses every slot's transfer: none may be freed meanwhile
            if len(entered) != len(self.slots):
                with self.lock:
                    if self.error == WU_OK:
                        self.error = _WU_ERR_NO_DEVICE  # the device was closed under the writer
                return 0
            return self._run_span_c(span, pinned, n, flags)
        finally:
            for xfer in entered:
                xfer._leave()

    def _run_span_c(self, span: memoryview, pinned: CData, n: int, flags: int) -> int:
        st = self._state
        with self.lock:
            if self.error != WU_OK:
                return 0
            st.head, st.count, st.next, st.bytes_done, st.error, st.stop = (
                self.head, self.count, 0, self.bytes_done, WU_OK, 0
            )  # fmt: skip
            st.front_ns = int(self.front_since * 1e9)  # time.monotonic() and the engine share a clock
            self._c_idle.clear()
        try:
            rc = WU_PENDING
            while rc == WU_PENDING:
                rc = _ring_run(
                    self._native, self.depth, st, self.ep, self.ep_type, pinned, n, self.chunk, flags,
                    self._timeout_us, SLICE_US,
                )  # fmt: skip
                self._take_state((span, pinned))
        finally:
            self._take_state((span, pinned))
            self._c_idle.set()
        return int(st.next)

    def _take_state(self, carried: Any) -> None:
        """Apply what the last C call did to the bookkeeping: retire the slots it retired
        (oldest first), then mark the ones it submitted as carrying ``carried``. Idempotent:
        the call's ``retired`` count is consumed."""
        st = self._state
        with self.lock:
            h0, c0 = self.head, self.count
            for i in range(st.retired):
                slot = self.slots[(h0 + i) % self.depth]
                if slot.own is not None:
                    slot.own.busy = False
                slot.live, slot.own, slot.ext = False, None, None
            for i in range(st.count - (c0 - st.retired)):
                slot = self.slots[(h0 + c0 + i) % self.depth]
                slot.live, slot.own, slot.ext = True, None, carried
            if st.retired or not c0:
                self.front_since = time.monotonic()
            st.retired = 0
            self.head, self.count, self.bytes_done = int(st.head), int(st.count), int(st.bytes_done)
            self.peak = max(self.peak, self.count)
            if st.error != WU_OK and self.error == WU_OK:
                self.error = int(st.error)

    def _retire(self, slot: Slot, rc: int, actual: int) -> None:
        """Count a transfer that is back (the oldest); under ``lock``."""
        if slot.own is not None:
            slot.own.busy = False
        slot.live, slot.own, slot.ext = False, None, None
        self.bytes_done += actual
        self.head, self.count = (self.head + 1) % self.depth, self.count - 1
        self.front_since = time.monotonic()
        if rc != WU_OK and self.error == WU_OK:
            self.error = rc

    def poll(self) -> None:
        """Retire the transfers at the front that are already back (no waiting, no system call)."""
        with self.lock:
            while self.count:
                slot = self.slots[self.head]
                x = slot.xfer._x
                if x is not None and _xfer_state(x) != _XFER_DONE:
                    return
                rc, actual = slot.xfer.wait(1)  # returns at once: the transfer is back
                self._retire(slot, rc, actual)

    def wait_oldest(self) -> None:
        """Block until the oldest transfer is back and retire it (Ctrl-C is seen between slices).

        With a time-out, a transfer that is not back ``timeout`` seconds after it became the
        oldest is cancelled together with every one behind it (:meth:`abort`), so the bytes
        that moved are always a prefix of the stream."""
        slot = self.slots[self.head]
        if not slot.live:
            return
        xfer, deadline = slot.xfer, None if self.timeout is None else self.front_since + self.timeout
        while True:
            us = SLICE_US if deadline is None else max(1, min(SLICE_US, int((deadline - time.monotonic()) * 1e6)))
            rc, actual = xfer.wait(us)
            if rc != WU_PENDING:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.abort(_WU_ERR_TIMEOUT)
                return
        with self.lock:
            if slot.live and self.count and self.slots[self.head] is slot:
                self._retire(slot, rc, actual)

    def drain(self) -> None:
        """Wait until nothing is in flight (stops at the first failure; the caller aborts)."""
        while self.count and self.error == WU_OK:
            self.wait_oldest()

    def abort(self, reason: int = _WU_ERR_CANCELLED) -> int:
        """Fail the ring with ``reason`` (unless it failed already), cancel every transfer newest
        first, wait until each is back and count its bytes. Any thread; idempotent. Returns
        the bytes written."""
        with self.lock:  # first fail the ring: from here on no run_span starts its C loop
            if self.error == WU_OK:
                self.error = reason
        if not self._c_idle.is_set():
            # run_span's C loop is driving (it started before the line above): ask it to stop
            # (it checks between transfers and after each 50 ms wait slice), it cancels newest
            # first and settles every transfer itself; wait until it hands the slots back.
            # Never cancel beside it: a transfer it submits after ours would move bytes
            # behind a cut-short one, and the stream would no longer be a prefix.
            self._state.stop = 1
            self._c_idle.wait()
        with self.lock:
            order = [self.slots[(self.head + i) % self.depth] for i in range(self.count)]
            if self.count < self.depth and self.slots:
                spare = self.next_slot()  # submitted, but interrupted before it was counted?
                if not spare.live and spare.xfer.in_flight:
                    spare.live = True
                    self.count += 1
                    order.append(spare)
            for slot in reversed(order):  # newest first: no later transfer moves after an earlier one stopped
                slot.xfer.cancel()
            for slot in order:
                rc, actual = slot.xfer.reap()
                if slot.live:
                    self._retire(slot, rc, actual)
            return self.bytes_done

    def free(self) -> None:
        """Abort what is left, free the native transfers and drop every buffer reference."""
        if self.count:
            self.abort()
        for slot in self.slots:
            slot.xfer.free()
            slot.own = slot.ext = None
        self.slots, self.buffers = [], []
        self.buffer = None
