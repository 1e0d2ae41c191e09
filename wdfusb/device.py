"""The Pythonic layer: find a device, open it, write and read its pipes.

``wdfusb.open(...)`` returns a :class:`Device` (a context manager) whose pipes are
:class:`Pipe` objects. Every method names the WDF function it corresponds to; all
of them run on the same engine as :mod:`wdfusb.wdf`. Timeouts are in seconds on a
monotonic clock (``None`` or ``math.inf`` = wait for ever, ``0`` = do not wait), as in pyserial.
A read that fails after some bytes arrived raises with those bytes in ``.data``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from . import _aio, _engine, iso
from ._core import CONTROL_MAX, SETUP_SIZE, CoreDevice, CorePipe, fill_control_buffer
from ._descriptors import DT_STRING, TYPE_NAMES, DeviceDescriptor
from ._engine import WU_ERR_NO_DEVICE, IsoPackets
from ._engine import ZLP as _ZLP
from ._lookup import SPEED_LABELS, UsbDeviceInfo, find_device, list_devices
from ._timeout import seconds, timeout_us
from .errors import UsbError, error_for
from .hotplug import reconnect_target
from .iso import IsoResult
from .virtual import VirtualDevice

if TYPE_CHECKING:
    from .reader import StreamReader
    from .stream import StreamWriter, ZlpPolicy


class Pipe:
    """One configured endpoint of an open :class:`Device` (a WDFUSBPIPE)."""

    def __init__(self, device: Device, core: CorePipe) -> None:
        self.device = device
        self._bind(core)

    def _bind(self, core: CorePipe) -> None:
        """Run on ``core`` (at open, and again when :meth:`Device.reconnect` found the device)."""
        self._core = core
        self.address = core.address
        self.type = TYPE_NAMES[core.type]
        self.max_packet = core.max_packet
        self.interval = core.interval
        self.interface = core.interface_number
        self.is_in = core.is_in
        self.is_out = not core.is_in
        supported = core.type in (_engine.EP_BULK, _engine.EP_INTERRUPT)
        self._can_write = supported and self.is_out
        self._can_read = supported and self.is_in
        self._last_timeout: tuple[Any, int] = (None, 0)  # (seconds as given, engine microseconds)

    def _timeout_us(self, timeout: float | None) -> int:
        """``timeout`` in the engine's microseconds; a script passes the same object call after
        call, so the last conversion of a ``float`` or ``int`` (immutable: the same object is the
        same value) is kept, in one tuple so threads never pair it wrongly."""
        last = self._last_timeout
        if timeout is last[0]:
            return last[1]
        us = timeout_us(timeout)
        if type(timeout) is float or type(timeout) is int:
            self._last_timeout = (timeout, us)
        return us

    def _refuse(self, want_in: bool, verb: str) -> None:
        if self.is_in != want_in:
            raise ValueError(f"cannot {verb} pipe 0x{self.address:02X}: it is an {'IN' if self.is_in else 'OUT'} pipe")
        if self._core.type == _engine.EP_ISOCHRONOUS:
            iso_verb = "read_iso" if want_in else "write_iso"  # (by direction: "stream to" is a write)
            raise ValueError(f"cannot {verb} pipe 0x{self.address:02X} by bytes: it is isochronous (use {iso_verb})")
        if self._core.type not in (_engine.EP_BULK, _engine.EP_INTERRUPT):
            raise ValueError(f"cannot {verb} pipe 0x{self.address:02X}: {self.type} pipes are not supported")

    def write(self, data: Any, timeout: float | None = None, *, zlp: bool = False) -> int:
        """Write all of ``data`` (any buffer: bytes, bytearray, memoryview, numpy, mmap, array).

        No copy is made. Returns the bytes written; on failure raises a :class:`UsbError`
        whose ``bytes_transferred`` says how many arrived. ``zlp=True`` ends a transfer
        whose length is a multiple of the packet size with a zero-length packet.
        Mirrors ``WdfUsbTargetPipeWriteSynchronously``.
        """
        if not self._can_write:
            self._refuse(False, "write to")
        kind = type(data)  # a closed device is the engine's to refuse (device gone)
        # bytes go to C as they are (cffi passes their own storage); other buffers are pinned
        buf = data if kind is bytes else _pin(data) if kind is bytearray else _as_buffer(data, writable=False)
        last = self._last_timeout  # _timeout_us(), inlined: every write runs it
        us = last[1] if timeout is last[0] else self._timeout_us(timeout)
        rc, actual = self._core.transfer(buf, len(buf), us, _ZLP if zlp else 0)
        if rc != 0:
            raise error_for(rc, actual, f"write to pipe 0x{self.address:02X}")
        return actual

    @overload
    def read(self, size_or_buffer: int, timeout: float | None = None) -> bytes: ...
    @overload
    def read(self, size_or_buffer: Any, timeout: float | None = None) -> int: ...

    def read(self, size_or_buffer: Any, timeout: float | None = None) -> bytes | int:
        """Read up to ``size`` bytes (returns ``bytes``) or into a writable buffer (returns the count).

        A read that fails after some bytes arrived (time-out, cancel, stall, removal) raises a
        :class:`UsbError` whose ``.data`` holds them. Mirrors ``WdfUsbTargetPipeReadSynchronously``;
        see also :meth:`readinto`.
        """
        if isinstance(size_or_buffer, int):
            if size_or_buffer < 0:
                raise ValueError("size must be >= 0")
            out = bytearray(size_or_buffer)
            n = self.readinto(out, timeout)
            return bytes(out[:n])
        return self.readinto(size_or_buffer, timeout)

    def readinto(self, buffer: Any, timeout: float | None = None) -> int:
        """Read into a writable, contiguous buffer without copying; returns the bytes read.

        On failure the bytes that arrived are at the start of ``buffer`` (and in the error's
        ``.data``; ``bytes_transferred`` counts them).
        """
        if not self._can_read:
            self._refuse(True, "read from")
        buf = _as_buffer(buffer, writable=True)
        rc, actual = self._core.transfer(buf, len(buf), self._timeout_us(timeout))
        if rc != 0:
            data = _engine.copy_out(buf, actual)
            raise error_for(rc, actual, f"read from pipe 0x{self.address:02X}", data)
        return actual

    # ---- isochronous pipes (see wdfusb.iso) --------------------------------------------------

    def write_iso(self, data: Any, packet_size: int | None = None, timeout: float | None = None) -> IsoResult:
        """Send ``data`` on this isochronous OUT pipe as packets of ``packet_size`` bytes (the max
        packet size unless given; the last one may be shorter), one per service interval. Returns
        each packet's result; a packet that fails does not raise, a time-out or removal does."""
        buf, packets = self._iso_write(data, packet_size)
        context = f"write to pipe 0x{self.address:02X}"
        return iso.run(self._core, buf, packets, self._timeout_us(timeout), context, False)

    def read_iso(self, packets: int, packet_size: int | None = None, timeout: float | None = None) -> IsoResult:
        """Read ``packets`` packets of up to ``packet_size`` bytes (the max packet size unless given)
        from this isochronous IN pipe; the result holds each packet's length and status, and their
        data end to end."""
        buf, iso_packets = self._iso_read(packets, packet_size)
        context = f"read from pipe 0x{self.address:02X}"
        return iso.run(self._core, buf, iso_packets, self._timeout_us(timeout), context, True)

    async def write_iso_async(
        self, data: Any, packet_size: int | None = None, timeout: float | None = None
    ) -> IsoResult:
        """:meth:`write_iso`, awaited (cancelling as :meth:`write_async`)."""
        buf, packets = self._iso_write(data, packet_size)
        context = f"write to pipe 0x{self.address:02X}"
        return await iso.run_async(self._core, buf, packets, self._timeout_us(timeout), context, False)

    async def read_iso_async(
        self, packets: int, packet_size: int | None = None, timeout: float | None = None
    ) -> IsoResult:
        """:meth:`read_iso`, awaited (a cancelled task's ``CancelledError`` has ``data`` too)."""
        buf, iso_packets = self._iso_read(packets, packet_size)
        context = f"read from pipe 0x{self.address:02X}"
        return await iso.run_async(self._core, buf, iso_packets, self._timeout_us(timeout), context, True)

    def _iso_write(self, data: Any, packet_size: int | None) -> tuple[Any, IsoPackets]:
        self._refuse_iso(False, "write to")
        buf = _as_buffer(data, writable=False)
        if not len(buf):
            raise ValueError("nothing to send: an isochronous write takes at least one byte")
        return buf, IsoPackets(iso.packet_lengths(len(buf), self._packet_size(packet_size)))

    def _iso_read(self, packets: int, packet_size: int | None) -> tuple[Any, IsoPackets]:
        self._refuse_iso(True, "read from")
        if type(packets) is not int or packets <= 0:
            raise ValueError("packets must be an int > 0")
        size = self._packet_size(packet_size)
        return _pin(bytearray(packets * size), True), IsoPackets([size] * packets)

    def _packet_size(self, packet_size: int | None) -> int:
        if packet_size is None:
            return self.max_packet
        if type(packet_size) is not int or not 0 < packet_size <= self.max_packet:
            raise ValueError(f"packet_size must be 1..{self.max_packet} (the pipe's max packet size)")
        return packet_size

    def _refuse_iso(self, want_in: bool, verb: str) -> None:
        if self._core.type != _engine.EP_ISOCHRONOUS:
            raise ValueError(f"cannot {verb} pipe 0x{self.address:02X} by packets: it is a {self.type} pipe")
        if self.is_in != want_in:
            raise ValueError(f"cannot {verb} pipe 0x{self.address:02X}: it is an {'IN' if self.is_in else 'OUT'} pipe")

    # ---- asyncio (CONTRACT §8): the same transfers, awaited -------------------------------

    async def write_async(self, data: Any, timeout: float | None = None, *, zlp: bool = False) -> int:
        """:meth:`write`, awaited: the loop runs while the transfer is on the bus. Cancelling the
        task cancels the transfer and waits until it is back; the ``CancelledError`` carries
        ``bytes_transferred``."""
        if not self._can_write:
            self._refuse(False, "write to")
        buf = _as_buffer(data, writable=False)
        context = f"write to pipe 0x{self.address:02X}"
        return await _aio.transfer(self._core, buf, len(buf), _ZLP if zlp else 0, self._timeout_us(timeout), context)

    async def readinto_async(self, buffer: Any, timeout: float | None = None) -> int:
        """:meth:`readinto`, awaited (cancelling as :meth:`write_async`)."""
        if not self._can_read:
            self._refuse(True, "read from")
        buf = _as_buffer(buffer, writable=True)
        context = f"read from pipe 0x{self.address:02X}"
        return await _aio.transfer(self._core, buf, len(buf), 0, self._timeout_us(timeout), context, data_at=0)

    async def read_async(self, size: int, timeout: float | None = None) -> bytes:
        """:meth:`read` of ``size`` bytes, awaited (cancelling as :meth:`write_async`)."""
        if size < 0:
            raise ValueError("size must be >= 0")
        out = bytearray(size)
        n = await self.readinto_async(out, timeout)
        return bytes(out[:n])

    def writer(
        self, *, depth: int = 8, chunk: int = 65536, timeout: float | None = None, zlp: ZlpPolicy = "never"
    ) -> StreamWriter:
        """A :class:`~wdfusb.stream.StreamWriter` keeping ``depth`` requests of ``chunk`` bytes in
        flight on this OUT pipe (``timeout`` per request; ``zlp``: ``"never"``, ``"end"``,
        ``"always"``). Use it as a context manager; see :mod:`wdfusb.stream`."""
        from .stream import StreamWriter

        return StreamWriter(self, depth=depth, chunk=chunk, timeout=seconds(timeout), zlp=zlp)

    def reader(self, depth: int = 8, chunk: int = 65536, timeout: float | None = None) -> StreamReader:
        """A :class:`~wdfusb.reader.StreamReader` keeping ``depth`` reads of ``chunk`` bytes in
        flight on this IN pipe (``timeout`` per read, counted while a caller waits). Use it as a
        context manager; see :mod:`wdfusb.reader`."""
        from .reader import StreamReader

        return StreamReader(self, depth=depth, chunk=chunk, timeout=seconds(timeout))

    def reset(self) -> None:
        """Clear a stall (``WdfUsbTargetPipeResetSynchronously``)."""
        rc = self._core.reset()
        if rc != 0:
            raise error_for(rc, 0, f"reset pipe 0x{self.address:02X}")

    def abort(self) -> None:
        """Cancel every transfer in flight on the pipe (``WdfUsbTargetPipeAbortSynchronously``)."""
        rc = self._core.abort()
        if rc != 0:
            raise error_for(rc, 0, f"abort pipe 0x{self.address:02X}")

    def __repr__(self) -> str:
        return f"<Pipe 0x{self.address:02X} {self.type} {'IN' if self.is_in else 'OUT'} max_packet={self.max_packet}>"


_pin = _engine.pin
REQ_GET_DESCRIPTOR = 0x06


def _setup_ok(request_type: Any, request: Any, value: Any, index: Any, length: Any) -> bool:
    """Every field an int in its range (the common case, checked in one expression)."""
    return (
        type(request_type) is type(request) is type(value) is type(index) is type(length) is int
        and 0 <= request_type <= 0xFF
        and 0 <= request <= 0xFF
        and 0 <= value <= 0xFFFF
        and 0 <= index <= 0xFFFF
        and 0 <= length <= CONTROL_MAX
    )


def _setup_fields(
    request_type: int, request: int, value: int, index: int, length: int, device_to_host: bool
) -> tuple[int, int, int, int]:
    """The setup packet's fields checked (ValueError names the one out of range)."""
    fields = (
        ("request_type", request_type, 0xFF),
        ("request", request, 0xFF),
        ("value", value, 0xFFFF),
        ("index", index, 0xFFFF),
        ("length", length, CONTROL_MAX),
    )
    for name, v, top in fields:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            raise ValueError(f"{name} must be an int in 0..{top:#x}, not {v!r}")
    if bool(request_type & 0x80) != device_to_host:
        way, use = ("device-to-host", "control_read") if request_type & 0x80 else ("host-to-device", "control_write")
        raise ValueError(f"request_type {request_type:#04x} is {way}: use {use}")
    return request_type, request, value, index


def _control_context(request_type: int, request: int) -> str:
    return f"control request {request_type:#04x}/{request:#04x}"


def _as_buffer(obj: Any, writable: bool) -> Any:
    """A zero-copy view of ``obj`` for the engine, with clear errors for what cannot be used."""
    _engine.byte_view(obj, writable)
    return _engine.pin(obj, writable)


class Device:
    """An open USB device (a WDFUSBDEVICE with its configuration selected). Use as a context manager."""

    def __init__(self, core: CoreDevice, source: Any) -> None:
        self.pipes: list[Pipe] = []
        self._swap = threading.Lock()  # close() against reconnect()'s taking of the new attachment
        self._attach(core, source)

    def _attach(self, core: CoreDevice, source: Any) -> None:
        """Take ``core`` as the device (at open and at :meth:`reconnect`): the pipes of endpoints
        it still has keep their :class:`Pipe` objects."""
        self._core = core
        self.source = source
        desc = DeviceDescriptor.parse(core.device_descriptor)
        self.vid, self.pid = desc.vid, desc.pid
        self.descriptor = desc
        self.speed = SPEED_LABELS.get(core.speed, "unknown") if core.speed else "unpaced"
        self._langid: int | None = None  # the first language (string descriptor 0), once read
        old = {p.address: p for p in self.pipes}
        self.pipes = []
        for c in core.all_pipes():
            pipe = old.pop(c.address, None)
            if pipe is None:
                pipe = Pipe(self, c)
            else:
                pipe._bind(c)
            self.pipes.append(pipe)
        info = core.attachment
        self.port_path: str | None = info.port_path if info is not None else None
        self._attachment_key = info.key if info is not None else None
        cached = info._strings.get("serial") if info is not None else None
        self._serial = cached or self._descriptor_string(desc.i_serial)  # what reconnect() looks for

    # ---- control transfers and strings (EP0) ---------------------------------------------

    def control_read(
        self,
        request_type: int,
        request: int,
        value: int = 0,
        index: int = 0,
        length: int = 0,
        timeout: float | None = None,
    ) -> bytes:
        """A device-to-host control transfer (``request_type`` has bit 7 set, e.g. ``0xC0`` for a
        vendor request to the device): returns the data stage, up to ``length`` (at most 4096)
        bytes. A stall raises :class:`~wdfusb.UsbStallError` (EP0 takes the next request); a
        failure after some bytes arrived carries them in ``.data``. Mirrors
        ``WdfUsbTargetDeviceSendControlTransferSynchronously``."""
        if not (_setup_ok(request_type, request, value, index, length) and request_type & 0x80):
            _setup_fields(request_type, request, value, index, length, device_to_host=True)  # says which
        rc, actual, buf = self._core.control_pipe.control(
            request_type, request, value, index, None, length, timeout_us(timeout)
        )
        data = bytes(buf[SETUP_SIZE : SETUP_SIZE + actual])
        if rc != 0:
            raise error_for(rc, actual, _control_context(request_type, request), data)
        return data

    def control_write(
        self,
        request_type: int,
        request: int,
        value: int = 0,
        index: int = 0,
        data: Any = b"",
        timeout: float | None = None,
    ) -> int:
        """A host-to-device control transfer (``request_type`` has bit 7 clear, e.g. ``0x40``) with
        ``data`` (any buffer, at most 4096 bytes) as its data stage; returns the bytes sent."""
        view = data if type(data) is bytes else _engine.byte_view(data, flat=True)
        n = len(view)
        if not (_setup_ok(request_type, request, value, index, n) and not request_type & 0x80):
            _setup_fields(request_type, request, value, index, n, device_to_host=False)  # says which
        rc, actual, _ = self._core.control_pipe.control(
            request_type, request, value, index, view, n, timeout_us(timeout)
        )
        if rc != 0:
            raise error_for(rc, actual, _control_context(request_type, request))
        return actual

    async def control_read_async(
        self,
        request_type: int,
        request: int,
        value: int = 0,
        index: int = 0,
        length: int = 0,
        timeout: float | None = None,
    ) -> bytes:
        """:meth:`control_read`, awaited (cancelling as :meth:`Pipe.write_async`)."""
        _setup_fields(request_type, request, value, index, length, device_to_host=True)
        out = bytearray(SETUP_SIZE + length)
        n = await self._control_async(out, request_type, request, value, index, None, length, timeout)
        return bytes(out[SETUP_SIZE : SETUP_SIZE + n])

    async def control_write_async(
        self,
        request_type: int,
        request: int,
        value: int = 0,
        index: int = 0,
        data: Any = b"",
        timeout: float | None = None,
    ) -> int:
        """:meth:`control_write`, awaited (cancelling as :meth:`Pipe.write_async`)."""
        view = _engine.byte_view(data, flat=True)
        _setup_fields(request_type, request, value, index, len(view), device_to_host=False)
        out = bytearray(SETUP_SIZE + len(view))
        return await self._control_async(out, request_type, request, value, index, view, len(view), timeout)

    async def _control_async(
        self, out: bytearray, request_type: int, request: int, value: int, index: int, data: Any, length: int,
        timeout: float | None,
    ) -> int:  # fmt: skip
        fill_control_buffer(out, request_type, request, value, index, data, length)
        context = _control_context(request_type, request)
        reading = SETUP_SIZE if request_type & 0x80 else None
        pinned = _engine.pin(out, True)
        return await _aio.transfer(
            self._core.control_pipe, pinned, len(out), 0, timeout_us(timeout), context, data_at=reading
        )

    @property
    def langids(self) -> list[int]:
        """The languages of the device's strings (string descriptor 0), e.g. ``[0x0409]``."""
        blob = self.control_read(0x80, REQ_GET_DESCRIPTOR, DT_STRING << 8, 0, 255)
        return [int.from_bytes(blob[i : i + 2], "little") for i in range(2, min(len(blob), blob[0] if blob else 0), 2)]

    def get_string(self, index: int, langid: int | None = None) -> str:
        """String descriptor ``index`` (1-255) in ``langid`` (``None``: the device's first
        language). An index the device does not have raises the device's error (a stall on
        most devices)."""
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 255:
            raise ValueError(f"string index must be 1..255 (0 is the language table: see langids), not {index!r}")
        if langid is None:
            if self._langid is None:
                langs = self.langids
                if not langs:
                    raise ValueError("the device has no string languages (string descriptor 0 is empty)")
                self._langid = langs[0]
            langid = self._langid
        blob = self.control_read(0x80, REQ_GET_DESCRIPTOR, DT_STRING << 8 | index, langid, 255)
        if len(blob) < 2 or blob[1] != DT_STRING:
            raise UsbError(f"string descriptor {index}: the device answered with no string descriptor", 0xC0000001)
        return blob[2 : blob[0]].decode("utf-16-le", errors="replace")

    def _descriptor_string(self, index: int) -> str | None:
        if not index:
            return None
        try:
            return self.get_string(index)
        except (UsbError, ValueError):
            return None

    @property
    def manufacturer(self) -> str | None:
        """iManufacturer's string (None when the device has none or it cannot be read)."""
        return self._descriptor_string(self.descriptor.i_manufacturer)

    @property
    def product(self) -> str | None:
        """iProduct's string (None when the device has none or it cannot be read)."""
        return self._descriptor_string(self.descriptor.i_product)

    @property
    def serial_number(self) -> str | None:
        """iSerialNumber's string (None when the device has none or it cannot be read)."""
        return self._descriptor_string(self.descriptor.i_serial)

    def set_alt_setting(self, interface: int, alt: int) -> None:
        """Select alternate setting ``alt`` of ``interface`` (``WdfUsbInterfaceSelectSetting``):
        :attr:`pipes` are then the new setting's; the old setting's pipes refuse transfers
        (their endpoints are not in the device's configuration any more)."""
        rc = self._core.select_setting(interface, alt)
        if rc != 0:
            raise error_for(rc, 0, f"select alternate setting {alt} of interface {interface}")
        self.pipes = [Pipe(self, p) for p in self._core.all_pipes()]

    def reconnect(self, timeout: float | None = None) -> None:
        """Find the device again after it re-enumerated (a firmware load, a REENUMERATE request, a
        port reset that :meth:`reset` reports as :class:`DeviceGoneError`): wait until the old
        attachment has left (when it has not yet), then for the same device to arrive — the same
        serial number, else the same port path — open it, select its configuration and the
        alternate settings that were selected. This :class:`Device` and its :class:`Pipe` objects
        stay valid (a pipe whose endpoint the new descriptors lack stays gone).
        :class:`UsbTimeoutError` after ``timeout`` seconds (``None``: wait for ever); the device is
        then as it was."""
        if self.closed:
            raise error_for(WU_ERR_NO_DEVICE, 0, "reconnect: the device is closed")
        settings = dict(self._core.alt_settings)
        target, core = reconnect_target(self, settings, timeout)
        with self._swap:
            if self.closed:  # close() from another thread while it waited: it stays closed
                core.close()
                raise error_for(WU_ERR_NO_DEVICE, 0, "reconnect: the device was closed")
            self._core.close()  # its attachment is gone: this only lets go of it
            self._attach(core, target)

    def reset(self) -> None:
        """Reset the device's port (``WdfUsbTargetDeviceResetPortSynchronously``): every transfer in
        flight is cancelled first (its caller gets the error with the bytes that moved); halts and
        data toggles are cleared; the configuration and the pipes stay."""
        rc = self._core.reset_port()
        if rc != 0:
            raise error_for(rc, 0, "reset the port")

    def cycle_port(self, timeout: float | None = None) -> None:
        """Unplug and replug the device through its port (``WdfUsbTargetDeviceCyclePortSynchronously``),
        then :meth:`reconnect` to it: every transfer in flight is cancelled first (its caller gets
        the error with the bytes that moved), the device re-enumerates with a new address, and
        this :class:`Device`, its pipes and alternate settings are back when the call returns.
        On libusb the port's power is switched where the operating system lets a program do it
        (Linux: sysfs, as root or with a udev rule; :class:`UsbAccessError` otherwise), else a
        :class:`UsbError` with ``STATUS_NOT_SUPPORTED``; a virtual device re-enumerates.
        ``timeout`` as in :meth:`reconnect`."""
        rc = self._core.cycle_port()
        if rc != 0:
            raise error_for(rc, 0, "cycle the port")
        self.reconnect(timeout)

    # ---- pipes -----------------------------------------------------------------------------

    def pipe(self, address: int) -> Pipe:
        """The pipe of endpoint ``address`` (e.g. ``0x06``)."""
        for p in self.pipes:
            if p.address == address:
                return p
        have = ", ".join(f"0x{p.address:02X}" for p in self.pipes)
        raise KeyError(f"no pipe 0x{address:02X} (configured pipes: {have})")

    def __iter__(self) -> Iterator[Pipe]:
        return iter(self.pipes)

    @property
    def closed(self) -> bool:
        return self._core.closed

    def close(self) -> None:
        """Cancel and drain every transfer, release the interfaces and the device. Idempotent."""
        with self._swap:
            self._core.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.pipes)} pipes"
        return f"<Device {self.vid:04x}:{self.pid:04x} {self.speed} {state}>"


PORT_PATH = re.compile(r"\d+-\d+(\.\d+)*")


def parse_virtual(text: str, profile: str = "default") -> VirtualDevice | None:
    """``virtual[:full|high|super|none]`` -> a new virtual device of ``profile``; None for other text."""
    if text != "virtual" and not text.startswith("virtual:"):
        return None
    speed = text.partition(":")[2] or "high"
    return VirtualDevice(None if speed in ("none", "unpaced") else speed, profile=profile)


def parse_target(text: str) -> Any:
    """``virtual[:full|high|super|none]``, ``VID:PID[:SERIAL]`` (hex), ``BUS/ADDR`` or a port path
    ``BUS-PORT[.PORT...]`` -> a source."""
    virtual = parse_virtual(text)
    if virtual is not None:
        return virtual
    if "/" in text:
        bus, _, addr = text.partition("/")
        return find_device(bus=int(bus), address=int(addr))
    if PORT_PATH.fullmatch(text):
        return find_device(port=text)
    parts = text.split(":")
    if len(parts) in (2, 3):
        return find_device(int(parts[0], 16), int(parts[1], 16), parts[2] if len(parts) == 3 else None)
    raise ValueError(f"not a device: {text!r} (use VID:PID[:SERIAL], BUS/ADDR, BUS-PORT[.PORT...] or virtual[:speed])")


def open(
    target: Any = None,
    *,
    vid: int | None = None,
    pid: int | None = None,
    serial: str | None = None,
    bus: int | None = None,
    address: int | None = None,
    port: str | None = None,
    interfaces: dict[int, int] | None = None,
) -> Device:
    """Open a device and select its configuration; returns a :class:`Device`.

    ``target`` is a :class:`VirtualDevice`, a :class:`UsbDeviceInfo`, or a string
    (``"virtual:high"``, ``"0525:a4a0"``, ``"1/4"``, ``"1-1.2"``); otherwise the keyword criteria
    go to :func:`find_device` (``port``: the port path). ``interfaces`` maps interface number to
    alternate setting (default: every interface, setting 0), as ``WdfUsbTargetDeviceSelectConfig``.
    """
    if target is None:
        target = find_device(vid, pid, serial, bus, address, port)
    elif isinstance(target, str):
        target = parse_target(target)
    rc, core = CoreDevice.open(target)
    if core is None:
        raise error_for(rc, 0, f"open {target}")
    try:
        settings = interfaces if interfaces is not None else {i.number: 0 for i in core.config.interfaces}
        rc = core.select_configuration(settings)
        if rc != 0:
            raise error_for(rc, 0, f"select the configuration of {target}")
    except BaseException:
        core.close()
        raise
    return Device(core, target)


__all__ = ["Device", "Pipe", "UsbDeviceInfo", "UsbError", "find_device", "list_devices", "open", "parse_target"]
