"""The methods ``wdfusb bench`` compares: one runner class per method, writing to an OUT pipe
or reading from an IN pipe (``Runner.reading``: the endpoint's direction).

Each runner opens its own connection to the device (so a real device is claimed by
one method at a time), then for every cell of the sweep is given the data to send, or a
buffer of its size to read into (:meth:`Runner.prepare`), runs ``count`` transfers of it
(:meth:`Runner.run`, timed) and releases what the cell needed (:meth:`Runner.finish`). A
failure raises a :class:`~wdfusb.errors.UsbError` with the bytes that moved.

* ``c-loop`` — the same engine with the loop in C (:meth:`Transfer.bench_loop`): the reference.
* ``wdf`` — ``WdfUsbTargetPipeWrite/ReadSynchronously`` per transfer (the WDF layer).
* ``pythonic`` — ``Pipe.write(data)`` / ``Pipe.readinto(buffer)`` per transfer.
* ``streaming`` — ``Pipe.writer(depth=...)`` / ``Pipe.reader(depth=...)``: ``depth`` transfers
  in flight.
* ``pyusb`` / ``libusb1`` — the same transfers through pyusb and python-libusb1, for comparison
  (real libusb devices only: the virtual device lives inside wdfusb's engine).
* ``pyusb+wdfusb`` — the ``pyusb`` method's unchanged calls on wdfusb's pyusb backend
  (:mod:`wdfusb.pyusb`; it reaches the virtual device too).
"""

from __future__ import annotations

import array
import importlib.util
import time
from typing import Any, ClassVar

from . import _engine
from .device import Device, UsbDeviceInfo
from .device import open as open_device
from .errors import UsbError, UsbIOError, error_for, error_for_status
from .virtual import VirtualDevice

NOT_REACHABLE = "cannot reach the virtual device (it lives inside wdfusb's engine, not behind libusb)"


class Runner:
    """One way of moving data on a pipe. Subclasses set ``name`` and override the hooks."""

    name: ClassVar[str] = ""
    max_depth: ClassVar[int] = 1  # the deepest queue the method keeps (1: one transfer at a time)
    description: ClassVar[str] = ""

    def __init__(self, source: Any, endpoint: int, timeout: float | None) -> None:
        self.source = source
        self.endpoint = endpoint
        self.reading = bool(endpoint & 0x80)  # an IN pipe: every method reads
        self.timeout = timeout
        self.data: Any = None
        self.size = 0

    @classmethod
    def unavailable(cls, source: Any) -> str | None:
        """Why this method cannot run on ``source`` (None if it can)."""
        return None

    @property
    def timeout_ms(self) -> int:
        return 0 if self.timeout is None else max(1, round(self.timeout * 1000))

    def open(self) -> None:
        """Open the device for this method."""

    def prepare(self, data: bytes, depth: int) -> str | None:
        """Get ready to send ``data`` (reading: to read as many bytes into a buffer) with ``depth``
        requests in flight; a reason string skips the cell."""
        self.data, self.size = (bytearray(len(data)) if self.reading else data), len(data)
        return None

    def run(self, count: int) -> float:
        """Move the prepared data ``count`` times; returns the seconds it took."""
        raise NotImplementedError

    def finish(self) -> None:
        """Release what :meth:`prepare` set up."""
        self.data = None

    def close(self) -> None:
        """Close the device (idempotent)."""


class _WdfusbRunner(Runner):
    """A runner over a :class:`wdfusb.Device` opened on the source."""

    def __init__(self, source: Any, endpoint: int, timeout: float | None) -> None:
        super().__init__(source, endpoint, timeout)
        self.device: Device | None = None

    def open(self) -> None:
        self.device = open_device(self.source)
        self.pipe = self.device.pipe(self.endpoint)

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None


class CLoopRunner(_WdfusbRunner):
    """The same transfer ``count`` times in a C loop: what the engine can do with no Python per transfer."""

    name = "c-loop"
    description = "the same engine, loop in C (reference)"

    def prepare(self, data: bytes, depth: int) -> str | None:
        super().prepare(data, depth)
        assert self.device is not None
        self._xfer = self.device._core.new_transfer()
        self._pinned = _engine.pin(self.data, self.reading)
        return None

    def run(self, count: int) -> float:
        timeout_us = 0 if self.timeout is None else max(1, round(self.timeout * 1e6))
        rc, seconds = self._xfer.bench_loop(
            self.endpoint, self.pipe._core.type, self._pinned, self.size, count, timeout_us
        )
        if rc != 0:
            raise error_for(rc, 0, f"C loop on pipe 0x{self.endpoint:02X}")
        return seconds

    def finish(self) -> None:
        self._xfer.free()
        self._pinned = None
        super().finish()


class PythonicRunner(_WdfusbRunner):
    """``pipe.write(data)`` (or ``pipe.readinto(buffer)``) once per transfer, as a user's script would."""

    name = "pythonic"
    description = "Pipe.write() / readinto() per transfer"

    def run(self, count: int) -> float:
        write, data, timeout = (self.pipe.readinto if self.reading else self.pipe.write), self.data, self.timeout
        done = 0
        t0 = time.perf_counter()
        try:
            for _ in range(count):
                done += write(data, timeout)
        except UsbError as e:
            e.bytes_transferred += done
            raise
        return time.perf_counter() - t0


class StreamingRunner(_WdfusbRunner):
    """``pipe.writer(depth=d, chunk=size)`` or ``pipe.reader(...)``: ``d`` transfers in flight."""

    name = "streaming"
    max_depth = 64
    description = "Pipe.writer/reader(depth=N): N transfers in flight"

    @classmethod
    def unavailable(cls, source: Any) -> str | None:
        return streaming_unavailable()

    def prepare(self, data: bytes, depth: int) -> str | None:
        super().prepare(data, depth)
        maxp = self.pipe.max_packet
        if self.size % maxp:
            return f"chunk {self.size} is not a multiple of the max packet size {maxp}"
        make = self.pipe.reader if self.reading else self.pipe.writer
        self._writer: Any = make(depth=depth, chunk=self.size, timeout=self.timeout)
        return None

    def run(self, count: int) -> float:
        w, data = self._writer, self.data
        t0 = time.perf_counter()
        if self.reading:  # each call one read's worth: what came in flight meanwhile is kept
            for _ in range(count):
                w.readinto(data)
            return time.perf_counter() - t0
        for _ in range(count):
            w.write(data)
        w.flush()
        return time.perf_counter() - t0

    def finish(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
            self._writer = None
        super().finish()


def streaming_unavailable() -> str | None:
    """Why the streaming writer cannot be used (None when ``Pipe.writer`` exists).

    This is the hook for issue 5: ``StreamingRunner`` and ``wdfusb write --depth N``
    use :meth:`wdfusb.Pipe.writer` as soon as :mod:`wdfusb.stream` imports.
    """
    from .device import Pipe

    if not hasattr(Pipe, "writer"):
        return "the streaming writer (issue 5) is not part of this build"
    try:
        import wdfusb.stream  # noqa: F401
    except ImportError as exc:
        return f"the streaming writer (issue 5) does not import: {exc}"
    return None


class WdfRunner(Runner):
    """``WdfUsbTargetPipeWrite/ReadSynchronously`` per transfer, the pipe found as CONTRACT §3 shows."""

    name = "wdf"
    description = "WdfUsbTargetPipeWrite/ReadSynchronously per transfer"

    @classmethod
    def unavailable(cls, source: Any) -> str | None:
        try:
            import wdfusb.wdf  # noqa: F401
        except ImportError as exc:
            return f"wdfusb.wdf does not import yet: {exc}"
        return None

    def open(self) -> None:
        from . import wdf as wdf_layer

        W = self.W = wdf_layer
        self.usb_device: Any = W.WDFUSBDEVICE()
        self._check(W.WdfUsbTargetDeviceCreate(self.source, W.WDF_NO_OBJECT_ATTRIBUTES, self.usb_device), "create")
        params = W.WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
        W.WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(params)
        self._check(W.WdfUsbTargetDeviceSelectConfig(self.usb_device, W.WDF_NO_OBJECT_ATTRIBUTES, params), "select")
        info = W.WDF_USB_PIPE_INFORMATION()
        W.WDF_USB_PIPE_INFORMATION_INIT(info)
        self.pipe: Any = None
        for i in range(W.WdfUsbTargetDeviceGetNumInterfaces(self.usb_device)):
            iface = W.WdfUsbTargetDeviceGetInterface(self.usb_device, i)
            for k in range(W.WdfUsbInterfaceGetNumConfiguredPipes(iface)):
                pipe = W.WdfUsbInterfaceGetConfiguredPipe(iface, k, info)
                if info.EndpointAddress == self.endpoint:
                    self.pipe = pipe
        if self.pipe is None:
            self.close()
            raise KeyError(f"no pipe 0x{self.endpoint:02X}")
        self.options = W.WDF_REQUEST_SEND_OPTIONS()
        W.WDF_REQUEST_SEND_OPTIONS_INIT(self.options, W.WDF_REQUEST_SEND_OPTION_TIMEOUT if self.timeout else 0)
        if self.timeout:
            W.WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(self.options, W.WDF_REL_TIMEOUT_IN_MS(self.timeout_ms))

    def _check(self, status: int, what: str, moved: int = 0) -> None:
        if not self.W.NT_SUCCESS(status):
            raise error_for_status(status, 0, moved, f"WDF {what} (pipe 0x{self.endpoint:02X})")

    def prepare(self, data: bytes, depth: int) -> str | None:
        super().prepare(data, depth)
        self.descriptor = self.W.WDF_MEMORY_DESCRIPTOR()
        self.W.WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(self.descriptor, self.data, len(data))
        return None

    def run(self, count: int) -> float:
        W = self.W
        move = W.WdfUsbTargetPipeReadSynchronously if self.reading else W.WdfUsbTargetPipeWriteSynchronously
        pipe, options, desc = self.pipe, self.options, self.descriptor
        moved = W.ULONG()
        done = 0
        t0 = time.perf_counter()
        for _ in range(count):
            status = move(pipe, None, options, desc, moved)
            if status:
                self._check(status, "read" if self.reading else "write", done + moved.value)
            done += moved.value
        return time.perf_counter() - t0

    def close(self) -> None:
        device = getattr(self, "usb_device", None)
        if device is not None and device.value is not None:
            self.W.WdfObjectDelete(device)
        self.usb_device = None


class _ForeignRunner(Runner):
    """Base of the pyusb / python-libusb1 runners: real libusb devices only."""

    module = ""

    @classmethod
    def unavailable(cls, source: Any) -> str | None:
        if importlib.util.find_spec(cls.module) is None:
            return f"{cls.name} is not installed (pip install 'wdfusb[compare]')"
        if not isinstance(source, UsbDeviceInfo):
            return NOT_REACHABLE
        return None

    def _interface(self) -> int:
        """The interface number the endpoint belongs to (from the device's configuration)."""
        with open_device(self.source) as dev:
            return dev.pipe(self.endpoint).interface

    def run(self, count: int) -> float:
        send, data = self._send, self.data
        t0 = time.perf_counter()
        try:
            for _ in range(count):
                send(data)
        except Exception as exc:  # any library's error becomes one UsbIOError
            raise UsbIOError(f"{self.name}: {exc}") from exc
        return time.perf_counter() - t0

    def _send(self, data: bytes) -> None:
        raise NotImplementedError


class PyusbRunner(_ForeignRunner):
    """``usb.core.Device.write`` (or ``read`` into an array) per transfer (pyusb over the same libusb)."""

    name = "pyusb"
    module = "usb"
    description = "pyusb Device.write() / read() per transfer"

    def open(self) -> None:
        import usb.util

        self.iface = self._interface()
        self.dev = find_with_pyusb(self.source, self.name)
        usb.util.claim_interface(self.dev, self.iface)
        ep, dev, timeout = self.endpoint, self.dev, self.timeout_ms
        move = dev.read if self.reading else dev.write
        self._send = lambda data: move(ep, data, timeout)  # type: ignore[method-assign]

    def prepare(self, data: bytes, depth: int) -> str | None:
        super().prepare(data, depth)
        if self.reading:  # pyusb reads into an array.array (anything else is taken as a size)
            self.data = array.array("B", bytes(self.size))
        return None

    def close(self) -> None:
        import usb.util

        dev = getattr(self, "dev", None)
        if dev is not None:
            usb.util.release_interface(dev, self.iface)
            usb.util.dispose_resources(dev)
            self.dev = None


class PyusbWdfusbRunner(PyusbRunner):
    """The ``pyusb`` method's calls, on wdfusb's pyusb backend."""

    name = "pyusb+wdfusb"
    description = "pyusb Device.write() / read() per transfer, on wdfusb's backend"

    @classmethod
    def unavailable(cls, source: Any) -> str | None:
        if importlib.util.find_spec("usb") is None:
            return "pyusb is not installed (pip install 'wdfusb[pyusb]')"
        return None


def find_with_pyusb(source: Any, method: str) -> Any:
    """The pyusb device of ``source``: through pyusb's libusb1 backend (method ``pyusb``) or
    wdfusb's (``pyusb+wdfusb``, which also finds a virtual device: bus 0, its address)."""
    import usb.backend.libusb1
    import usb.core

    if method == "pyusb+wdfusb":
        from . import pyusb

        virtual = isinstance(source, VirtualDevice)
        backend = pyusb.get_backend(*([source] if virtual else []))
        bus, address = (0, source.address) if virtual else (source.bus, source.address)
    else:
        path = _engine.libusb_path() or None
        backend = usb.backend.libusb1.get_backend(find_library=(lambda _name: path) if path else None)
        bus, address = source.bus, source.address
    dev = usb.core.find(bus=bus, address=address, backend=backend)
    if dev is None:
        raise UsbIOError(f"{method} does not see bus {bus} address {address}")
    return dev


class Libusb1Runner(_ForeignRunner):
    """``USBDeviceHandle.bulkWrite`` (or ``bulkRead``) per transfer (python-libusb1 over the same libusb)."""

    name = "libusb1"
    module = "usb1"
    description = "python-libusb1 bulkWrite() / bulkRead() per transfer"

    def open(self) -> None:
        import usb1

        self.iface = self._interface()
        with open_device(self.source) as dev:  # before python-libusb1 claims the interface
            interrupt = dev.pipe(self.endpoint).type == "interrupt"
        # python-libusb1 loads the system's libusb itself (its loadLibrary() cannot be called
        # once its structures are defined, which importing it already did)
        self.ctx = usb1.USBContext()
        self.ctx.open()
        self.handle = None
        for d in self.ctx.getDeviceIterator(skip_on_error=True):
            if d.getBusNumber() == self.source.bus and d.getDeviceAddress() == self.source.address:
                self.handle = d.open()
                break
        if self.handle is None:
            self.close()
            raise UsbIOError(f"python-libusb1 does not see bus {self.source.bus} address {self.source.address}")
        self.handle.claimInterface(self.iface)
        ep, handle, timeout = self.endpoint, self.handle, self.timeout_ms
        if self.reading:  # python-libusb1 reads a length into a buffer of its own
            read = handle.interruptRead if interrupt else handle.bulkRead
            self._send = lambda data: read(ep, len(data), timeout)  # type: ignore[method-assign]
            return
        send = handle.interruptWrite if interrupt else handle.bulkWrite
        self._send = lambda data: send(ep, data, timeout)  # type: ignore[method-assign]

    def close(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None:
            handle.releaseInterface(self.iface)
            handle.close()
            self.handle = None
        ctx = getattr(self, "ctx", None)
        if ctx is not None:
            ctx.close()
            self.ctx = None


RUNNERS: dict[str, type[Runner]] = {
    r.name: r
    for r in (CLoopRunner, WdfRunner, PythonicRunner, StreamingRunner, PyusbRunner, Libusb1Runner, PyusbWdfusbRunner)
}
METHODS = tuple(RUNNERS)


def is_virtual(source: Any) -> bool:
    return isinstance(source, VirtualDevice)
