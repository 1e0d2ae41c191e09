"""The one module that talks to the compiled shim (``wdfusb._native``).

It turns raw C calls into Python values: devices, transfers, descriptors, and
engine result codes (see :mod:`wdfusb._status`). It knows nothing of WDF names
or exceptions beyond :class:`~wdfusb.errors.LibusbNotFoundError`; the WDF layer
and the Pythonic layer both stand on it.

Blocking waits run in C with the GIL released, in slices of ``SLICE_S`` so the
main thread sees Ctrl-C: on any exception (``KeyboardInterrupt`` included) the
transfer is cancelled and reaped before the exception propagates, so nothing is
ever left in flight.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import __version__
from .errors import LibusbNotFoundError

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - a broken install
    raise ImportError(f"wdfusb's native module is missing or broken ({exc}); reinstall wdfusb") from exc

_built = ffi.string(lib.wu_shim_version()).decode()
if _built != __version__:  # pragma: no cover - a stale build
    raise ImportError(f"wdfusb native module is version {_built}, the package is {__version__}; rebuild it")
if lib.wu_sizeof_check() != 0:  # pragma: no cover - a platform the shim does not know
    raise ImportError("wdfusb native module: the libusb ABI assumptions do not hold on this platform")

SLICE_US = 50_000  # wait slice: bounds the Ctrl-C latency
_xfer_run, _xfer_wait, _xfer_reap = lib.wu_xfer_run, lib.wu_xfer_wait, lib.wu_xfer_reap
_NULL = ffi.NULL
_U8_ARRAY = ffi.typeof("uint8_t[]")
_from_buffer = ffi.from_buffer
_WU_ERR_NO_DEVICE = lib.WU_ERR_NO_DEVICE
CData = Any  # cffi's cdata objects are not typed

WU_OK = lib.WU_OK
WU_PENDING = lib.WU_PENDING
EP_CONTROL, EP_ISOCHRONOUS, EP_BULK, EP_INTERRUPT = 0, 1, 2, 3
ZLP = lib.WU_XFER_ZLP
SPEEDS = {"none": 0, "low": 1, "full": 2, "high": 3, "super": 4, "super_plus": 5}
SPEED_NAMES = {v: k for k, v in SPEEDS.items()}


# ---- libusb loading -----------------------------------------------------------

_load_lock = threading.Lock()
_load_error: str | None = None


def libusb_candidates() -> list[str]:
    """The libusb paths tried, in order: ``WDFUSB_LIBUSB`` alone if set, else the
    ``libusb-package`` wheel's library, then the system's."""
    override = os.environ.get("WDFUSB_LIBUSB")
    if override:
        return [override]
    paths: list[str] = []
    try:
        import libusb_package

        path = libusb_package.get_library_path()
        if path:
            paths.append(str(path))
    except Exception:  # noqa: BLE001, S110 - a missing or broken wheel only removes a candidate
        pass
    found = ctypes.util.find_library("usb-1.0")
    if found:
        paths.append(found)
    paths += {"win32": ["libusb-1.0.dll"], "darwin": ["libusb-1.0.dylib"]}.get(sys.platform, ["libusb-1.0.so.0"])
    return list(dict.fromkeys(paths))


def ensure_libusb() -> None:
    """Load libusb once; raise :class:`LibusbNotFoundError` naming every path tried."""
    global _load_error
    if lib.wu_libusb_loaded():
        return
    with _load_lock:
        if lib.wu_libusb_loaded():
            return
        err = ffi.new("char[512]")
        tried = []
        for path in libusb_candidates():
            if lib.wu_libusb_load(path.encode(), err, 512) == WU_OK:
                _load_error = None
                return
            tried.append(f"  {path}: {ffi.string(err).decode(errors='replace')}")
        _load_error = "\n".join(tried)
        raise LibusbNotFoundError(
            "libusb could not be loaded. Tried:\n"
            + _load_error
            + "\nFix: `pip install libusb-package`, install your system's libusb-1.0, or set "
            "WDFUSB_LIBUSB=/path/to/libusb-1.0 library.",
            0xC0000135,
        )


def libusb_version() -> str:
    """The loaded libusb's version, or ``""``."""
    return ffi.string(lib.wu_libusb_version()).decode()


def libusb_path() -> str:
    return ffi.string(lib.wu_libusb_path()).decode()


# ---- devices --------------------------------------------------------------------


@dataclass(frozen=True)
class DevInfo:
    """One device libusb sees, without opening it."""

    bus: int
    address: int
    speed: int
    ports: tuple[int, ...]
    device_descriptor: bytes

    @property
    def vid(self) -> int:
        return int.from_bytes(self.device_descriptor[8:10], "little")

    @property
    def pid(self) -> int:
        return int.from_bytes(self.device_descriptor[10:12], "little")


def libusb_list() -> list[DevInfo]:
    """Every device libusb sees."""
    ensure_libusb()
    n = 64
    while True:
        arr = ffi.new("wu_devinfo[]", n)
        count = lib.wu_libusb_list(arr, n)
        if count < 0:
            from .errors import error_for

            raise error_for(count, context="listing USB devices")
        if count <= n:
            break
        n = count
    return [
        DevInfo(
            d.bus,
            d.address,
            d.speed,
            tuple(d.ports[0 : d.port_count]),
            bytes(ffi.buffer(d.device_descriptor, 18)),
        )
        for d in arr[0:count]
    ]


class NativeDevice:
    """An open ``wu_device``: a real device through libusb, or the virtual device."""

    def __init__(self, handle: CData) -> None:
        self._h: CData | None = handle
        self._lock = threading.Lock()
        self.is_virtual = bool(lib.wu_device_is_virtual(handle))

    @classmethod
    def open_libusb(cls, bus: int, address: int) -> tuple[int, NativeDevice | None]:
        ensure_libusb()
        out = ffi.new("wu_device **")
        rc = lib.wu_libusb_open(bus, address, out)
        return rc, (cls(out[0]) if rc == WU_OK else None)

    @classmethod
    def create_virtual(
        cls,
        speed: int,
        endpoints: list[tuple[int, int, int, int, int]],
        loopback_capacity: int,
        descriptors: bytes,
    ) -> NativeDevice:
        eps = ffi.new("wu_vep_config[]", max(1, len(endpoints)))
        for i, (addr, typ, maxp, interval, role) in enumerate(endpoints):
            eps[i].address, eps[i].type, eps[i].max_packet = addr, typ, maxp
            eps[i].interval, eps[i].role = interval, role
        blob = ffi.new("uint8_t[]", descriptors)
        cfg = ffi.new(
            "wu_vdev_config *",
            {
                "speed": speed,
                "endpoints": eps,
                "n_endpoints": len(endpoints),
                "loopback_capacity": loopback_capacity,
                "descriptors": blob,
                "descriptors_len": len(descriptors),
            },
        )
        out = ffi.new("wu_device **")
        rc = lib.wu_virtual_create(cfg, out)
        if rc != WU_OK:
            from .errors import error_for

            raise error_for(rc, context="creating the virtual device")
        return cls(out[0])

    @property
    def handle(self) -> CData:
        if self._h is None:
            return ffi.NULL
        return self._h

    @property
    def closed(self) -> bool:
        return self._h is None

    def speed(self) -> int:
        return int(lib.wu_device_speed(self.handle)) if self._h is not None else 0

    def get_descriptor(self, dtype: int, index: int = 0, langid: int = 0, length: int = 4096) -> tuple[int, bytes]:
        buf = ffi.new("uint8_t[]", length)
        n = lib.wu_device_get_descriptor(self.handle, dtype, index, langid, buf, length)
        return (n, b"") if n < 0 else (WU_OK, bytes(ffi.buffer(buf, n)))

    def get_configuration(self) -> tuple[int, int]:
        out = ffi.new("int *")
        rc = lib.wu_device_get_configuration(self.handle, out)
        return rc, out[0]

    def set_configuration(self, value: int) -> int:
        return int(lib.wu_device_set_configuration(self.handle, value))

    def claim_interface(self, iface: int) -> int:
        return int(lib.wu_device_claim_interface(self.handle, iface))

    def release_interface(self, iface: int) -> int:
        return int(lib.wu_device_release_interface(self.handle, iface))

    def set_altsetting(self, iface: int, alt: int) -> int:
        return int(lib.wu_device_set_altsetting(self.handle, iface, alt))

    def clear_halt(self, ep: int) -> int:
        return int(lib.wu_device_clear_halt(self.handle, ep))

    def abort(self, ep: int) -> int:
        return int(lib.wu_device_abort(self.handle, ep))

    def live_transfers(self) -> int:
        return int(lib.wu_device_live_transfers(self.handle)) if self._h is not None else 0

    def close(self) -> None:
        """Cancel and drain every transfer, then release the device. Idempotent."""
        with self._lock:
            h, self._h = self._h, None
        if h is not None:
            lib.wu_device_close(h)

    # virtual device only
    def ep_stats(self, ep: int) -> dict[str, int]:
        st = ffi.new("wu_vep_stats *")
        rc = lib.wu_virtual_ep_stats(self.handle, ep, st)
        if rc != WU_OK:
            from .errors import error_for

            raise error_for(rc, context=f"endpoint 0x{ep:02X}")
        return {
            "received_bytes": st.received_bytes,
            "sent_bytes": st.sent_bytes,
            "transfers": st.transfers,
            "crc32": st.crc32,
            "halted": st.halted,
            "loopback_dropped": st.loopback_dropped,
        }

    def stall(self, ep: int) -> int:
        return int(lib.wu_virtual_stall(self.handle, ep))

    def nak(self, ep: int, seconds: float) -> int:
        return int(lib.wu_virtual_nak(self.handle, ep, seconds))

    def unplug(self) -> int:
        return int(lib.wu_virtual_unplug(self.handle))

    def set_switch(self, value: int) -> int:
        return int(lib.wu_virtual_set_switch(self.handle, value))


# ---- transfers --------------------------------------------------------------------


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


class Transfer:
    """One reusable ``wu_xfer``: at most one transfer in flight at a time.

    ``run`` blocks (GIL released) until the transfer is back; ``cancel`` may be
    called from any thread. The buffer given to ``run`` stays referenced until
    the transfer is reaped.
    """

    live = 0  # Transfer objects not yet freed (for leak tests)

    def __init__(self, device: NativeDevice) -> None:
        x = lib.wu_xfer_new(device.handle)
        if x == ffi.NULL:
            raise MemoryError("wu_xfer_new failed")
        self._x: CData | None = x
        self._lock = threading.Lock()
        self._actual = ffi.new("size_t *")
        self._pinned: Any = None
        self.dispatch_tag = 0  # set while the completion dispatcher owes a callback
        self._free_requested = False
        # One entry per thread inside run/wait/submit/reap. list.append/pop are atomic under
        # the GIL, so the hot path takes no lock; free() clears _x first and then defers
        # while this is non-empty, so nobody ever calls C with a freed transfer.
        self._busy: list[None] = []
        self._deferred: CData | None = None
        Transfer.live += 1

    @property
    def in_flight(self) -> bool:
        x = self._enter(draining=True)
        if x is None:
            return False
        try:
            return bool(lib.wu_xfer_state(x) == lib.WU_XFER_IN_FLIGHT)
        finally:
            self._leave()

    def _enter(self, draining: bool = False) -> CData | None:
        """Mark a call in progress; the native transfer, or None once freed. ``draining``
        calls (wait, reap) may still reach a transfer whose free is deferred."""
        self._busy.append(None)
        x = self._x
        if x is None and draining:
            x = self._deferred
        if x is None:
            self._leave()
        return x

    def _leave(self) -> None:
        busy = self._busy
        busy.pop()
        if self._free_requested and not busy:
            self._free_deferred()

    def run(
        self, ep: int, ep_type: int, buf: CData, length: int, flags: int = 0, timeout_us: int = 0
    ) -> tuple[int, int]:
        """Submit and wait. Returns ``(engine_status, actual_length)``."""
        busy = self._busy
        busy.append(None)
        x = self._x
        if x is None:
            self._leave()
            return _WU_ERR_NO_DEVICE, 0
        actual = self._actual
        self._pinned = buf
        try:
            rc = _xfer_run(x, ep, ep_type, _NULL if buf is None else buf, length, flags, timeout_us, SLICE_US, actual)
            while rc == WU_PENDING:
                rc = _xfer_wait(x, SLICE_US, actual)
        except BaseException:
            _xfer_reap(x, actual)  # Ctrl-C or any error: cancel and wait until the transfer is back
            raise
        finally:
            self._pinned = None
            busy.pop()
            if self._free_requested and not busy:
                self._free_deferred()
        return rc, actual[0]

    def submit(
        self, ep: int, ep_type: int, buf: CData, length: int, flags: int = 0, timeout_us: int = 0, tag: int = 0
    ) -> int:
        """Start a transfer and return at once (engine status of the submit).

        With ``tag=0`` nobody but :meth:`wait` makes it progress; with a tag its
        completion goes to the completion queue (see :mod:`wdfusb._dispatch`). The
        buffer stays referenced until the transfer is back.
        """
        x = self._enter()
        if x is None:
            return _WU_ERR_NO_DEVICE
        self._pinned = buf
        ptr = _NULL if buf is None else buf
        if tag:
            rc = lib.wu_xfer_submit_async(x, ep, ep_type, ptr, length, flags, timeout_us, tag)
        else:
            rc = lib.wu_xfer_submit(x, ep, ep_type, ptr, length, flags, timeout_us)
        self._leave()
        if rc != WU_OK:
            self._pinned = None
        return int(rc)

    def wait(self, slice_us: int = SLICE_US) -> tuple[int, int]:
        """Wait for a submitted transfer: ``(WU_PENDING, moved)`` while the slice runs out,
        else ``(status, actual)``. Run it in a loop so Ctrl-C is seen between slices."""
        x = self._enter(draining=True)
        if x is None:
            return _WU_ERR_NO_DEVICE, 0
        try:
            rc = _xfer_wait(x, slice_us, self._actual)
        finally:
            self._leave()
        if rc != WU_PENDING:
            self._pinned = None
        return int(rc), int(self._actual[0])

    def reap(self) -> tuple[int, int]:
        """Cancel (if in flight) and wait until the transfer is back, uninterruptibly."""
        x = self._enter(draining=True)
        if x is None:
            return _WU_ERR_NO_DEVICE, 0
        try:
            rc = _xfer_reap(x, self._actual)
        finally:
            self._leave()
        self._pinned = None
        return int(rc), int(self._actual[0])

    def dispatched(self) -> None:
        """The dispatcher ran this transfer's callback: drop the buffer, do a deferred free."""
        with self._lock:  # free() and _free_deferred() take it too: x stays valid here
            x = self._x if self._x is not None else self._deferred
            if x is not None and lib.wu_xfer_state(x) == lib.WU_XFER_IN_FLIGHT:
                return  # the routine sent it again
            self.dispatch_tag = 0
            self._pinned = None
        if self._free_requested:
            self._free_deferred()

    def retire(self) -> None:
        """Refuse every later submit (any thread): the first step of closing a device."""
        x = self._enter(draining=True)
        if x is not None:
            try:
                lib.wu_xfer_retire(x)
            finally:
                self._leave()

    def cancel(self) -> bool:
        """Cancel the transfer in flight, if any (any thread). True if one was."""
        with self._lock:
            if self._x is None:
                return False
            return bool(lib.wu_xfer_cancel(self._x) == WU_OK)

    def free(self) -> None:
        """Release the native transfer (reaping it first if it is still in flight).

        While another thread is inside a call on it, or the completion dispatcher still
        owes it a callback, the release is deferred until they are done: no completion is
        lost and C never sees a freed transfer.
        """
        with self._lock:
            x, self._x = self._x, None  # from here on, new callers see a freed transfer
            if x is None:
                return
            # publish the request before looking for users: one leaving after this sees it
            self._deferred, self._free_requested = x, True
            if self.dispatch_tag or self._busy:
                lib.wu_xfer_retire(x)  # and C refuses new submits (a ring loop may still be running)
                return
            self._deferred, self._free_requested = None, False
        self._release(x)

    def _free_deferred(self) -> None:
        with self._lock:
            # clear first, then look for callers: one that entered after this sees None
            x, self._deferred = self._deferred, None
            if x is None:
                return
            if self.dispatch_tag or self._busy:
                self._deferred = x
                return
            self._free_requested = False
        self._release(x)

    def _release(self, x: CData) -> None:
        if lib.wu_xfer_free(x) == lib.WU_ERR_IN_FLIGHT:
            lib.wu_xfer_reap(x, self._actual)
            lib.wu_xfer_free(x)
        self._pinned = None
        Transfer.live -= 1

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def bench_loop(
        self, ep: int, ep_type: int, buf: CData, length: int, count: int, timeout_us: int = 0
    ) -> tuple[int, float]:
        """The same transfer ``count`` times in a C loop (benchmark reference)."""
        x = self._x
        assert x is not None
        secs = ffi.new("double *")
        rc = lib.wu_bench_loop(x, ep, ep_type, buf, length, count, timeout_us, secs)
        return int(rc), float(secs[0])


def live_objects() -> int:
    """Native devices and transfers not yet freed."""
    return int(lib.wu_live_objects())


def crc32(data: Any, crc: int = 0) -> int:
    """zlib-compatible CRC-32, computed by the shim (checks the shim against zlib)."""
    view = pin(data)
    return int(lib.wu_crc32(crc, view, len(view)))


def iter_descriptors(blob: bytes) -> Iterator[tuple[int, bytes]]:
    """Split a configuration descriptor blob into (bDescriptorType, descriptor)."""
    i = 0
    while i + 2 <= len(blob):
        n = blob[i]
        if n < 2 or i + n > len(blob):
            return
        yield blob[i + 1], blob[i : i + n]
        i += n
