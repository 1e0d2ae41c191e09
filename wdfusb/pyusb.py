"""A pyusb backend over wdfusb's engine: change one line of a pyusb script, keep the rest.

    import usb.core, wdfusb.pyusb
    dev = usb.core.find(idVendor=0x0525, idProduct=0xA4A0, backend=wdfusb.pyusb.get_backend())

or ``wdfusb.pyusb.install()`` once, and ``usb.core.find()`` / the legacy ``usb.busses()`` use it
without being told. What changes under the script: every transfer runs on wdfusb's C engine
(Ctrl-C cancels it and waits until it is back, time-outs are exact, a write or read of any size
works on a stock Linux kernel), and :class:`~wdfusb.VirtualDevice` objects passed to
:func:`get_backend` are devices pyusb finds (bus 0, addresses from 1 in the order given).

Errors are pyusb's: ``usb.core.USBError`` with ``errno`` and ``backend_error_code`` (libusb's
error numbers, as pyusb's libusb1 backend gives them), ``usb.core.USBTimeoutError`` for a
time-out. Time-outs are in milliseconds, 0 waiting for ever (libusb's rule). Isochronous
transfers are split into packets as pyusb's libusb1 backend splits them (the endpoint's largest
packet, the last one shorter) and return the bytes of every packet added up.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.backend.libusb1
import usb.core

from . import _engine
from ._core import CONTROL_MAX, CoreDevice, CorePipe
from ._descriptors import DT_CONFIG, DT_ENDPOINT, DT_INTERFACE, EndpointInfo
from ._engine import EP_BULK, EP_INTERRUPT, EP_ISOCHRONOUS, IsoPackets
from ._timeout import US_MAX
from .device import UsbDeviceInfo, list_devices
from .errors import UsbError
from .iso import packet_lengths
from .virtual import VirtualDevice

# libusb's error numbers -> (errno, libusb's text); the engine's own results are given the
# number libusb's synchronous API reports for them (a cancelled transfer: an I/O error)
_AS_LIBUSB = {
    _engine.WU_ERR_CANCELLED: -1,
    _engine.WU_ERR_IN_FLIGHT: -6,
    _engine.WU_ERR_FORKED: -4,
    _engine.WU_ERR_WRONG_CONTEXT: -99,
}
_ERRORS: dict[int, tuple[int | None, str]] = {
    -1: (errno.EIO, "Input/Output Error"),
    -2: (errno.EINVAL, "Invalid parameter"),
    -3: (errno.EACCES, "Access denied (insufficient permissions)"),
    -4: (errno.ENODEV, "No such device (it may have been disconnected)"),
    -5: (errno.ENOENT, "Entity not found"),
    -6: (errno.EBUSY, "Resource busy"),
    -7: (errno.ETIMEDOUT, "Operation timed out"),
    -8: (errno.EOVERFLOW, "Overflow"),
    -9: (errno.EPIPE, "Pipe error"),
    -10: (errno.EINTR, "System call interrupted (perhaps due to signal)"),
    -11: (errno.ENOMEM, "Insufficient memory"),
    -12: (errno.ENOSYS, "Operation not supported or unimplemented on this platform"),
}
_OTHER = (None, "Other error")


def _check(code: int, actual: int = 0) -> int:
    """``actual`` if the engine succeeded, else pyusb's exception for ``code``."""
    if code == 0:
        return actual
    code = _AS_LIBUSB.get(code, code if code in _ERRORS else -99)
    number, text = _ERRORS.get(code, _OTHER)
    if code == _engine.WU_ERR_TIMEOUT:
        raise usb.core.USBTimeoutError(text, code, number)
    raise usb.core.USBError(text, code, number)


# ---- descriptors, as pyusb reads their fields -----------------------------------------------


class _Descriptor(SimpleNamespace):
    """A descriptor's fields by their USB names, and the bytes of class or vendor descriptors
    that follow it (``extra_descriptors``, as libusb's ``extra``)."""

    def __init__(self, fields: dict[str, int]) -> None:
        super().__init__(**fields)
        self.extra_descriptors: list[int] = []


_FIELDS = {
    DT_CONFIG: ("<BBHBBBBB", "bLength bDescriptorType wTotalLength bNumInterfaces bConfigurationValue "
                "iConfiguration bmAttributes bMaxPower"),
    DT_INTERFACE: ("<BBBBBBBBB", "bLength bDescriptorType bInterfaceNumber bAlternateSetting bNumEndpoints "
                   "bInterfaceClass bInterfaceSubClass bInterfaceProtocol iInterface"),
    DT_ENDPOINT: ("<BBBBHB", "bLength bDescriptorType bEndpointAddress bmAttributes wMaxPacketSize bInterval"),
}  # fmt: skip


def _unpack(dtype: int, raw: bytes) -> _Descriptor:
    fmt, names = _FIELDS[dtype]
    need = struct.calcsize(fmt)
    values = struct.unpack_from(fmt, raw.ljust(need, b"\0"))
    d = _Descriptor(dict(zip(names.split(), values, strict=True)))
    if dtype == DT_ENDPOINT:  # audio endpoints are 9 bytes long
        d.bRefresh = raw[7] if len(raw) > 7 else 0
        d.bSynchAddress = raw[8] if len(raw) > 8 else 0
    return d


@dataclass
class _Config:
    """One configuration descriptor, parsed: interfaces[number][alternate] -> (descriptor, endpoints)."""

    descriptor: _Descriptor
    interfaces: list[list[tuple[_Descriptor, list[_Descriptor]]]] = field(default_factory=list)

    @classmethod
    def parse(cls, blob: bytes) -> _Config:
        config = cls(_unpack(DT_CONFIG, blob[:9]))
        last = config.descriptor
        by_number: dict[int, list[tuple[_Descriptor, list[_Descriptor]]]] = {}
        endpoints: list[_Descriptor] | None = None
        i = blob[0] if blob else 0
        while i + 2 <= len(blob):
            n, dtype = blob[i], blob[i + 1]
            if n < 2 or i + n > len(blob):
                break
            raw = blob[i : i + n]
            if dtype == DT_INTERFACE and n >= 9:
                last = _unpack(DT_INTERFACE, raw)
                endpoints = []  # the endpoints that follow belong to this setting
                by_number.setdefault(raw[2], []).append((last, endpoints))
            elif dtype == DT_ENDPOINT and n >= 7 and endpoints is not None:
                last = _unpack(DT_ENDPOINT, raw)
                endpoints.append(last)
            else:
                last.extra_descriptors.extend(raw)
            i += n
        config.interfaces = list(by_number.values())  # in the order they first appear (as libusb)
        return config

    def setting(self, intf: int, alt: int) -> tuple[_Descriptor, list[_Descriptor]]:
        for settings in self.interfaces:
            if settings[0][0].bInterfaceNumber == intf:
                return settings[alt]
        raise IndexError(f"interface {intf} is not in configuration {self.descriptor.bConfigurationValue}")


class _Device:
    """What the backend gives pyusb for a device (``usb.core.Device._ctx.dev``): where it is,
    its device descriptor, and its configuration descriptors once read."""

    def __init__(self, source: UsbDeviceInfo | VirtualDevice, bus: int, address: int,
                 ports: tuple[int, ...], speed: int, device_descriptor: bytes) -> None:  # fmt: skip
        self.source = source
        names = ("bLength bDescriptorType bcdUSB bDeviceClass bDeviceSubClass bDeviceProtocol bMaxPacketSize0 "
                 "idVendor idProduct bcdDevice iManufacturer iProduct iSerialNumber bNumConfigurations")  # fmt: skip
        values = struct.unpack_from("<BBHBBBBHHHBBBB", device_descriptor)
        self.descriptor = _Descriptor(dict(zip(names.split(), values, strict=True)))
        d = self.descriptor
        d.bus, d.address, d.speed = bus, address, speed
        d.port_number = ports[-1] if ports else None
        d.port_numbers = ports or None
        self._configs: dict[int, _Config] = {}

    def config(self, index: int) -> _Config:
        """Configuration ``index``, read from the device the first time (it is opened briefly)."""
        if index not in self._configs:
            if not 0 <= index < self.descriptor.bNumConfigurations:
                raise IndexError(f"configuration index {index} out of range")
            rc, native, owned = self.source._open_native()
            if native is None:
                _check(rc)
            assert native is not None
            try:
                rc, head = native.get_descriptor(DT_CONFIG, index, 0, 9)
                total = int.from_bytes(head[2:4], "little") if rc == 0 and len(head) >= 4 else 0
                if rc == 0:
                    rc, blob = native.get_descriptor(DT_CONFIG, index, 0, max(total, 9))
                _check(rc)
            finally:
                if owned:
                    native.close()
            self._configs[index] = _Config.parse(bytes(blob))
        return self._configs[index]


class _Handle:
    """An open device (``usb.core.Device._ctx.handle``): wdfusb's core device, the interfaces
    claimed, and one engine pipe per endpoint and transfer type used."""

    def __init__(self, dev: _Device, core: CoreDevice) -> None:
        self.dev, self.core = dev, core
        self.claimed: set[int] = set()
        self.pipes: dict[int, CorePipe] = {}  # by ep_type << 8 | ep: one int key, looked up per call
        self.alts: dict[int, int] = {}  # the alternate setting pyusb last set, by interface

    def iso_packet_size(self, intf: int, ep: int) -> int:
        """The largest packet of isochronous endpoint ``ep`` in ``intf``'s current setting (its
        max packet size times its transactions per microframe, as libusb_get_max_iso_packet_size)."""
        iface = self.core.config.interface(intf) if self.core.config is not None else None
        setting = iface.setting(self.alts.get(intf, 0)) if iface is not None else None
        for e in setting.endpoints if setting is not None else ():
            if e.address == ep and e.type == EP_ISOCHRONOUS:
                return e.max_packet * e.mult
        return _check(_engine.WU_ERR_NOT_FOUND)  # (no such endpoint in the setting)

    def pipe(self, ep: int, intf: int, ep_type: int) -> CorePipe:
        pipe = self.pipes.get(ep_type << 8 | ep)
        if pipe is None:
            pipe = self.pipes[ep_type << 8 | ep] = CorePipe(self.core, intf, 0, EndpointInfo(ep, ep_type, 0, 0))
        return pipe


def _ms(timeout: int) -> int:
    """pyusb's milliseconds as the engine's microseconds (0: for ever, both; a fraction of a
    millisecond is not 0; beyond the engine's range is for ever)."""
    if timeout < 0:
        raise ValueError("timeout must be >= 0 milliseconds")
    us = timeout * 1000
    return 0 if us >= US_MAX else max(1, round(us)) if timeout else 0


_US_OF: dict[Any, int] = {}  # _ms() of the time-outs seen (a script uses a few): one lookup per call
_US_OF_MAX = 64
_U8_ARRAY = _engine.ffi.typeof("uint8_t[]")
_from_buffer = _engine.ffi.from_buffer


def _us_of(timeout: int) -> int:
    us = _ms(timeout)
    if len(_US_OF) < _US_OF_MAX and type(timeout) is int:
        _US_OF[timeout] = us
    return us


class WdfusbBackend(usb.backend.IBackend):
    """pyusb's ``IBackend`` on wdfusb's engine (see the module's docstring)."""

    def __init__(self, virtual_devices: tuple[VirtualDevice, ...] = ()) -> None:
        super().__init__()
        self.virtual_devices = virtual_devices

    def __repr__(self) -> str:
        return f"<wdfusb pyusb backend, {len(self.virtual_devices)} virtual device(s)>"

    # ---- devices and descriptors --------------------------------------------------------

    def enumerate_devices(self) -> Iterator[_Device]:
        try:
            real = list_devices(virtual=False)
        except UsbError:  # no libusb, or no USB here: the virtual devices still are
            real = []
        for d in real:
            speed = {"low": 1, "full": 2, "high": 3, "super": 4, "super_plus": 5}.get(d.speed, 0)
            assert d.descriptor is not None
            yield _Device(d, d.bus, d.address, d.ports, speed, _descriptor_bytes(d))
        for v in self.virtual_devices:
            info = UsbDeviceInfo.of_virtual(v)  # bus 0, its port and address, as wdfusb lists it
            if info is not None:
                yield _Device(v, info.bus, info.address, info.ports, v._native.speed(), _descriptor_bytes(info))

    def get_parent(self, dev: _Device) -> None:
        return None

    def get_device_descriptor(self, dev: _Device) -> _Descriptor:
        return dev.descriptor

    def get_configuration_descriptor(self, dev: _Device, config: int) -> _Descriptor:
        return dev.config(config).descriptor

    def get_interface_descriptor(self, dev: _Device, intf: int, alt: int, config: int) -> _Descriptor:
        return dev.config(config).interfaces[intf][alt][0]

    def get_endpoint_descriptor(self, dev: _Device, ep: int, intf: int, alt: int, config: int) -> _Descriptor:
        return dev.config(config).interfaces[intf][alt][1][ep]

    # ---- opening, configurations, interfaces --------------------------------------------

    def open_device(self, dev: _Device) -> _Handle:
        rc, core = CoreDevice.open(dev.source)
        if core is None:
            _check(rc or -99)
        assert core is not None
        return _Handle(dev, core)

    def close_device(self, dev_handle: _Handle) -> None:
        for number in sorted(dev_handle.claimed):
            dev_handle.core.native.release_interface(number)
        dev_handle.claimed.clear()
        dev_handle.core.close()  # cancels and drains whatever is still in flight

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        _check(dev_handle.core.native.set_configuration(config_value))
        dev_handle.alts.clear()  # every interface is back at setting 0

    def get_configuration(self, dev_handle: _Handle) -> int:
        rc, value = dev_handle.core.native.get_configuration()
        return _check(rc, value)

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        _check(dev_handle.core.native.set_altsetting(intf, altsetting))
        dev_handle.alts[intf] = altsetting

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        _check(dev_handle.core.native.claim_interface(intf))
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.claimed.discard(intf)
        _check(dev_handle.core.native.release_interface(intf))

    # ---- transfers: one engine path for every kind ---------------------------------------

    def _move(self, dev_handle: _Handle, ep: int, intf: int, ep_type: int, buffer: Any, timeout: int) -> int:
        # every bulk and interrupt call: the pipe, the buffer pinned in place (no copy; its length
        # in bytes is the cdata's), the time-out converted once per value, the thread's transfer
        pipe = dev_handle.pipes.get(ep_type << 8 | ep) or dev_handle.pipe(ep, intf, ep_type)
        buf = _from_buffer(_U8_ARRAY, buffer, ep >= 0x80)
        us = _US_OF.get(timeout)
        if us is None:
            us = _us_of(timeout)
        xfer = pipe._local.xfer
        if xfer is None:  # this thread's first transfer on the pipe
            code, actual = pipe.transfer(buf, len(buf), us)
        else:
            code, actual = xfer.run(ep, ep_type, buf, len(buf), 0, us)
        return actual if code == 0 else _check(code, actual)

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        return self._move(dev_handle, ep, intf, EP_BULK, data, timeout)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return self._move(dev_handle, ep, intf, EP_BULK, buff, timeout)

    def intr_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        return self._move(dev_handle, ep, intf, EP_INTERRUPT, data, timeout)

    def intr_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return self._move(dev_handle, ep, intf, EP_INTERRUPT, buff, timeout)

    def _iso(self, dev_handle: _Handle, ep: int, intf: int, buffer: Any, timeout: int) -> int:
        # pyusb's libusb1 backend's way: packets of the endpoint's largest size, the last one
        # shorter; the bytes of every packet added up (a read's short packets leave their gaps)
        pipe = dev_handle.pipe(ep, intf, EP_ISOCHRONOUS)
        buf = _from_buffer(_U8_ARRAY, buffer, ep >= 0x80)
        packets = IsoPackets(packet_lengths(len(buf), dev_handle.iso_packet_size(intf, ep)))
        code, actual = pipe.iso_transfer(buf, packets, _ms(timeout))
        return actual if code == 0 else _check(code, actual)

    def iso_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        return self._iso(dev_handle, ep, intf, data, timeout)

    def iso_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return self._iso(dev_handle, ep, intf, buff, timeout)

    def ctrl_transfer(self, dev_handle: _Handle, bmRequestType: int, bRequest: int, wValue: int, wIndex: int,
                      data: Any, timeout: int) -> int:  # fmt: skip
        try:
            length = len(data) * data.itemsize  # pyusb's array.array
        except AttributeError:
            data = memoryview(data).cast("B")
            length = data.nbytes
        if length > CONTROL_MAX:
            _check(-2)
        pipe = dev_handle.core.control_pipe  # the fields are libusb's uint8/uint16 (masked, as ctypes does)
        us = _US_OF.get(timeout)
        if us is None:
            us = _us_of(timeout)
        code, actual, _ = pipe.control(
            bmRequestType & 0xFF, bRequest & 0xFF, wValue & 0xFFFF, wIndex & 0xFFFF, data, length, us, None, data
        )
        return actual if code == 0 else _check(code, actual)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        _check(dev_handle.core.native.clear_halt(ep))

    def reset_device(self, dev_handle: _Handle) -> None:
        _check(dev_handle.core.reset_port())

    # ---- kernel drivers (wdfusb also detaches one itself when it claims an interface) --------

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        rc = dev_handle.core.native.kernel_driver_active(intf)
        return bool(_check(rc if rc < 0 else 0, rc))

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        _check(dev_handle.core.native.detach_kernel_driver(intf))

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        _check(dev_handle.core.native.attach_kernel_driver(intf))


def _descriptor_bytes(d: UsbDeviceInfo) -> bytes:
    x = d.descriptor
    assert x is not None
    return struct.pack("<BBHBBBBHHHBBBB", 18, 1, x.bcd_usb, x.device_class, x.device_subclass, x.device_protocol,
                       x.max_packet0, x.vid, x.pid, x.bcd_device, x.i_manufacturer, x.i_product, x.i_serial,
                       x.num_configurations)  # fmt: skip


def get_backend(*virtual_devices: VirtualDevice) -> WdfusbBackend:
    """A pyusb backend over wdfusb: the devices libusb sees, and ``virtual_devices``."""
    for v in virtual_devices:
        if not isinstance(v, VirtualDevice):
            raise TypeError(f"get_backend() takes VirtualDevice objects, not {type(v).__name__}")
    return WdfusbBackend(tuple(virtual_devices))


_libusb1_get_backend = usb.backend.libusb1.get_backend


def install(*virtual_devices: VirtualDevice) -> WdfusbBackend:
    """Make wdfusb pyusb's default backend (the one ``usb.core.find()`` and ``usb.busses()`` use
    when given none) until :func:`uninstall`; returns it."""
    backend = get_backend(*virtual_devices)
    usb.backend.libusb1.get_backend = lambda find_library=None: backend
    return backend


def uninstall() -> None:
    """Give pyusb back its own default backend."""
    usb.backend.libusb1.get_backend = _libusb1_get_backend


__all__ = ["WdfusbBackend", "get_backend", "install", "uninstall"]
