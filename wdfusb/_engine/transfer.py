"""One reusable native transfer (``wu_xfer``), and the buffer helpers every transfer uses.

A transfer's state (idle, in flight, done), its result, the bytes it moved and whether a
cancel is pending all live in C. This object only holds the buffer C writes or reads
while the transfer is in flight, and frees the native transfer when it is collected
(C reaps it first if it is still in flight), so no thread ever calls C with a freed one.

Blocking waits run in C with the GIL released, in slices of ``SLICE_US`` so the main
thread sees Ctrl-C: on any exception (``KeyboardInterrupt`` included) the transfer is
cancelled and reaped before the exception propagates, so nothing is left in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from .device import NativeDevice
from .native import SLICE_US, WU_OK, WU_PENDING, XFER_IN_FLIGHT, CData, EngineError, ffi, lib

_xfer_run, _xfer_wait, _xfer_reap, _xfer_submit = (
    lib.wu_xfer_run,
    lib.wu_xfer_wait,
    lib.wu_xfer_reap,
    lib.wu_xfer_submit,
)
_NULL = ffi.NULL
_ISO_LOCK = threading.Lock()  # Transfer.set_iso's, across threads
_U8_ARRAY = ffi.typeof("uint8_t[]")
_from_buffer = ffi.from_buffer


def pin(obj: Any, writable: bool = False) -> CData:
    """A ``uint8_t[]`` view of any buffer-protocol object, without copying.

    The returned cdata keeps ``obj`` alive; hold it until the transfer is back.
    """
    return _from_buffer(_U8_ARRAY, obj, writable)


def byte_view(obj: Any, writable: bool = False, flat: bool = False) -> memoryview:
    """A memoryview of ``obj`` checked for what a transfer needs, with clear errors: a buffer
    (TypeError), contiguous (ValueError; ``flat``: in C order, returned as 1-D unsigned
    bytes) and, for a read (``writable``), not read-only (TypeError)."""
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not {type(obj).__name__!r}") from None
    if not (view.c_contiguous if flat else view.contiguous):
        raise ValueError("the buffer is not contiguous; pass a contiguous copy (e.g. numpy.ascontiguousarray)")
    if writable and view.readonly:
        raise TypeError(f"cannot read into a read-only buffer ({type(obj).__name__})")
    if flat and (view.format != "B" or view.ndim != 1):
        view = view.cast("B")
    return view


def address_of(cdata: CData, offset: int = 0) -> CData:
    return ffi.cast("uint8_t *", cdata) + offset


def copy_out(cdata: CData, length: int) -> bytes:
    """The first ``length`` bytes of a pinned buffer, copied."""
    return bytes(ffi.buffer(cdata, length)) if length else b""


def note_bytes(exc: BaseException, moved: int) -> None:
    """Tell the caller what moved before a blocking call was interrupted: a ``KeyboardInterrupt``
    (or any exception that is not wdfusb's own) gets ``bytes_transferred``, as wdfusb's
    errors carry it."""
    if not hasattr(exc, "bytes_transferred"):
        try:
            exc.bytes_transferred = moved  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - an exception type without a __dict__
            pass


def crc32(data: Any, crc: int = 0) -> int:
    """zlib-compatible CRC-32, computed by the shim (checks the shim against zlib)."""
    view = pin(data)
    return int(lib.wu_crc32(crc, view, len(view)))


class IsoPackets:
    """The packets of one isochronous transfer, in C memory (``wu_iso_packet[n]``): their
    lengths, laid end to end in the transfer's buffer, and once it is back each one's actual
    length and engine status (``WU_PENDING``: never reached, the transfer ended first — also
    what each one says before a transfer has taken them, or when its submit was refused)."""

    __slots__ = ("c", "n", "total")

    def __init__(self, lengths: Sequence[int]) -> None:
        self.n = len(lengths)
        self.c: CData = ffi.new("wu_iso_packet[]", max(1, self.n))
        for i, length in enumerate(lengths):
            self.c[i].length = length  # (cffi refuses what is not a uint32)
            self.c[i].status = WU_PENDING
        self.total = sum(lengths)

    def results(self) -> list[tuple[int, int, int]]:
        """``(length, actual, status)`` of each packet."""
        c = self.c
        return [(c[i].length, c[i].actual, c[i].status) for i in range(self.n)]


class Transfer:
    """One reusable ``wu_xfer``: at most one transfer in flight at a time.

    ``run`` blocks (GIL released) until the transfer is back; ``cancel`` may be called
    from any thread, also before the transfer is submitted (the submit then fails with
    ``WU_ERR_CANCELLED``). Raises :class:`EngineError` when the device cannot take a new
    transfer (closed: ``WU_ERR_NO_DEVICE``; out of memory: ``WU_ERR_NO_MEM``).
    """

    __slots__ = ("__weakref__", "_actual", "_iso", "_pinned", "_x")
    live = 0  # Transfer objects not yet freed (for leak tests)

    def __init__(self, device: NativeDevice, owner: int = 0) -> None:
        self._x: CData = _NULL
        out = ffi.new("wu_xfer **")
        rc = lib.wu_xfer_new(device.handle, owner, out)
        if rc != WU_OK:
            raise EngineError(rc, "creating a transfer")
        self._x = out[0]
        self._actual = ffi.new("size_t *")
        self._pinned: Any = None
        self._iso: IsoPackets | None = None
        Transfer.live += 1

    def set_iso(self, packets: IsoPackets | None) -> int:
        """The packets of the next isochronous submit (None: none); kept alive with the transfer.
        Engine status (``WU_ERR_IN_FLIGHT`` while a transfer is out)."""
        c, n = (_NULL, 0) if packets is None else (packets.c, packets.n)
        with _ISO_LOCK:  # C's packets and the ones kept alive here change together
            rc = int(lib.wu_xfer_set_iso(self._x, c, n))
            if rc == WU_OK:
                self._iso = packets
        return rc

    @property
    def in_flight(self) -> bool:
        return bool(lib.wu_xfer_state(self._x) == XFER_IN_FLIGHT)

    def run(
        self, ep: int, ep_type: int, buf: CData, length: int, flags: int = 0, timeout_us: int = 0
    ) -> tuple[int, int]:
        """Submit and wait. Returns ``(engine_status, actual_length)``."""
        x, actual = self._x, self._actual
        try:
            rc = _xfer_run(x, ep, ep_type, _NULL if buf is None else buf, length, flags, timeout_us, SLICE_US, actual)
            while rc == WU_PENDING:
                rc = _xfer_wait(x, SLICE_US, actual)
        except BaseException as exc:
            _xfer_reap(x, actual)  # Ctrl-C or any error: cancel and wait until the transfer is back
            note_bytes(exc, int(actual[0]))
            raise
        return rc, actual[0]

    def submit(
        self, ep: int, ep_type: int, buf: CData, length: int, flags: int = 0, timeout_us: int = 0, tag: int = 0
    ) -> int:
        """Start a transfer and return at once (engine status of the submit).

        With ``tag=0`` nobody but :meth:`wait` makes it progress; with a tag its completion
        goes to the completion queue (see :mod:`wdfusb._dispatch`). The buffer stays
        referenced until the transfer is back.
        """
        self._pinned = buf
        rc = int(_xfer_submit(self._x, ep, ep_type, _NULL if buf is None else buf, length, flags, timeout_us, tag))
        if rc != WU_OK:
            self._pinned = None
        return rc

    def wait(self, slice_us: int = SLICE_US) -> tuple[int, int]:
        """Wait for a submitted transfer: ``(WU_PENDING, moved)`` while the slice runs out,
        else ``(status, actual)``. Run it in a loop so Ctrl-C is seen between slices."""
        rc = int(_xfer_wait(self._x, slice_us, self._actual))
        if rc != WU_PENDING:
            self._pinned = None
        return rc, int(self._actual[0])

    def reap(self) -> tuple[int, int]:
        """Cancel (if in flight) and wait until the transfer is back, uninterruptibly."""
        rc = int(_xfer_reap(self._x, self._actual))
        self._pinned = None
        return rc, int(self._actual[0])

    def dispatched(self) -> None:
        """The dispatcher ran this transfer's callback: drop the buffer (unless it was sent again)."""
        if not self.in_flight:
            self._pinned = None

    def cancel(self) -> bool:
        """Cancel the transfer (any thread). True if it was in flight; otherwise the cancel
        sticks until the next submit (which it fails) or :meth:`rearm`."""
        return bool(lib.wu_xfer_cancel(self._x) == WU_OK)

    def rearm(self) -> None:
        """Forget a cancel that stuck (WdfRequestReuse)."""
        lib.wu_xfer_rearm(self._x)

    def retire(self) -> None:
        """Refuse every later submit (any thread)."""
        lib.wu_xfer_retire(self._x)

    def free(self) -> None:
        """Let go: refuse later submits and reap what is in flight. The native transfer
        itself is freed with this object."""
        lib.wu_xfer_retire(self._x)
        self.reap()

    def __del__(self) -> None:
        x, self._x = self._x, _NULL
        if x:
            lib.wu_xfer_free(x)  # reaps first if still in flight; the pinned buffer is alive until here
            Transfer.live -= 1

    def bench_loop(
        self, ep: int, ep_type: int, buf: CData, length: int, count: int, timeout_us: int = 0
    ) -> tuple[int, float]:
        """The same transfer ``count`` times in a C loop (benchmark reference)."""
        secs = ffi.new("double *")
        rc = lib.wu_bench_loop(self._x, ep, ep_type, buf, length, count, timeout_us, secs)
        return int(rc), float(secs[0])
