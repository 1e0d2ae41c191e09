"""The built-in virtual USB device: every path of wdfusb with no hardware.

It lives in-process behind the same C transfer engine as libusb. The default
profile (one configuration, interface 0, alternate setting 0):

========  ===============  ==========  =====================================
endpoint  type             max packet  role
========  ===============  ==========  =====================================
0x06      bulk OUT         512         sink; feeds the loopback
0x88      bulk IN          512         returns what 0x06 received, in order
0x02      interrupt OUT    64          sink
0x81      interrupt IN     1           switch state (reported on change)
0x03      isochronous OUT  1024        sink (WDF's pipe calls refuse it: their type check)
========  ===============  ==========  =====================================

The loopback keeps ``loopback_capacity`` bytes (1 MiB by default, allocated when first fed);
what does not fit is dropped and counted. Any IN endpoint can be made a *source* that always
has data, full packets at the bus rate (:meth:`VirtualEndpoint.source`: ``"zeros"``,
``"mod63"`` — Gadget Zero's pattern, byte j of each packet is j % 63 — or ``"counter"``, a
little-endian uint32 count across the stream). An IN transfer whose room ends inside a packet
the device sends gets what fits and fails with an overflow (babble), as on the bus.

EP0 answers the standard requests (GET_DESCRIPTOR for the device, configuration and
string descriptors, GET_STATUS, SET/CLEAR_FEATURE(ENDPOINT_HALT) on the endpoints' real
halt state, GET/SET_CONFIGURATION, GET/SET_INTERFACE) and Gadget Zero's control test
requests (vendor OUT 0x5b stores up to 4096 bytes, vendor IN 0x5c returns them; wValue and
wIndex 0), and stalls anything else. A control transfer takes a (micro)frame for SETUP, the
data packets' time, and a (micro)frame for STATUS.

Bulk packets are 64 B at full speed and 1024 B at super speed. ``speed`` paces
transfers like the bus (full: 19 x 64 B per 1 ms frame; high: 13 x 512 B per
125 us micro-frame = 53.248 MB/s; super: 60 x 1024 B per 125 us = 491.52 MB/s);
``speed=None`` moves data as fast as the engine can (pure software cost).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import weakref
from typing import Any

from . import _descriptors as desc
from ._engine import SPEED_NAMES, SPEEDS, NativeDevice, bump_generation
from ._virtual_function import STALL, ControlRequest, Function, Handler
from ._virtual_profiles import PROFILES, EndpointSpec, default_endpoints

ROLES = {"sink": 0, "loopback_out": 1, "loopback_in": 2, "switch": 3}
SOURCES = {"zeros": 1, "mod63": 2, "counter": 3}  # enum wu_vsource
DEFAULT_LOOPBACK = 1 << 20
_LIVE: weakref.WeakValueDictionary[int, VirtualDevice] = weakref.WeakValueDictionary()  # open ones, in order
_ORDER = itertools.count()
_ADDRESSES = itertools.count()


def _announce() -> None:
    """Tell watchers (wdfusb.hotplug) to list again: a new attachment is listed from now on."""
    bump_generation()


def _next_address() -> int:
    """Bus addresses 1..127, handed out in turn like a host controller's."""
    return next(_ADDRESSES) % 127 + 1


DEFAULT_VID, DEFAULT_PID = PROFILES["default"].vid, PROFILES["default"].pid  # pid.codes test VID:PID


def default_profile(speed: str | None = "high") -> list[EndpointSpec]:
    """The default profile's endpoints at ``speed``."""
    return default_endpoints(speed)


class VirtualEndpoint:
    """Live counters and fault injection for one endpoint of a :class:`VirtualDevice`."""

    def __init__(self, device: VirtualDevice, spec: EndpointSpec) -> None:
        self._device = device
        self.spec = spec
        self.address = spec.address

    def _stats(self) -> dict[str, int]:
        return self._device._native.ep_stats(self.address)

    @property
    def received_bytes(self) -> int:
        """Bytes this (OUT) endpoint took from the host."""
        return self._stats()["received_bytes"]

    @property
    def sent_bytes(self) -> int:
        """Bytes this (IN) endpoint gave the host."""
        return self._stats()["sent_bytes"]

    @property
    def transfers(self) -> int:
        """Transfers that completed successfully on this endpoint."""
        return self._stats()["transfers"]

    @property
    def crc32(self) -> int:
        """zlib CRC-32 of every byte received (compare with ``zlib.crc32`` of what was sent)."""
        return self._stats()["crc32"]

    @property
    def halted(self) -> bool:
        return bool(self._stats()["halted"])

    @property
    def zero_length_packets(self) -> int:
        """Zero-length packets this (OUT) endpoint received (a ZLP transfer, or one ending a
        max-packet multiple)."""
        return self._stats()["zero_length_packets"]

    @property
    def loopback_dropped(self) -> int:
        """Bytes the loopback dropped because nobody read them in time."""
        return self._stats()["loopback_dropped"]

    def stall(self) -> None:
        """Halt the endpoint: transfers fail with a stall until the pipe is reset."""
        self._device._check(self._device._native.stall(self.address))

    @property
    def source_pattern(self) -> str | None:
        """What :meth:`source` made this endpoint a source of, or None."""
        code = self._stats()["source"]
        return next((name for name, c in SOURCES.items() if c == code), None)

    def source(self, pattern: str | None) -> None:
        """Make this IN endpoint a source of ``pattern`` (``"zeros"``, ``"mod63"``, ``"counter"``):
        it always has data, full packets at the bus rate, the stream starting afresh; ``None``
        returns it to its role."""
        if pattern is not None and pattern not in SOURCES:
            raise ValueError(f"pattern must be None or one of {', '.join(SOURCES)}, not {pattern!r}")
        if not self.address & 0x80 or not self.address & 0x7F or self.spec.type not in ("bulk", "interrupt"):
            raise ValueError(f"endpoint 0x{self.address:02X} cannot be a source (only bulk and interrupt IN endpoints)")
        self._device._check(self._device._native.source(self.address, SOURCES.get(pattern or "", 0)))

    def nak(self, seconds: float) -> None:
        """NAK every token for ``seconds`` (``math.inf``: for ever; 0 ends it)."""
        if math.isnan(seconds) or seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._device._check(self._device._native.nak(self.address, min(seconds, 1e10)))

    def __repr__(self) -> str:
        return f"<VirtualEndpoint 0x{self.address:02X} {self.spec.type} {self.spec.role}>"


class VirtualDevice:
    """A USB device inside the process, driven by the same C engine as libusb.

    ``VirtualDevice(speed="high")`` (``"full"``, ``"super"``, or ``None`` for no pacing).
    ``profile``: ``"default"`` or ``"osrfx2"`` (the OSR USB-FX2 board, see
    :mod:`wdfusb._virtual_profiles`); ``endpoints`` replaces the profile's endpoints with other
    :class:`EndpointSpec` s, and ``vid``/``pid``/strings its identity. ``on_control``: a handler
    for the vendor and class requests (see :meth:`on_control`).
    """

    def __init__(
        self,
        speed: str | None = "high",
        *,
        profile: str = "default",
        endpoints: list[EndpointSpec] | None = None,
        vid: int | None = None,
        pid: int | None = None,
        manufacturer: str | None = None,
        product: str | None = None,
        serial: str | None = None,
        loopback_capacity: int = DEFAULT_LOOPBACK,
        on_control: Handler | None = None,
    ) -> None:
        if speed is not None and speed not in SPEEDS:
            raise ValueError(f"speed must be None or one of {sorted(k for k in SPEEDS if k != 'none')}")
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
        prof = PROFILES[profile]
        if speed not in prof.speeds:
            raise ValueError(f"the {profile} profile runs at {', '.join(str(x) for x in prof.speeds)}, not {speed!r}")
        if loopback_capacity < 0:
            raise ValueError("loopback_capacity must be >= 0")
        self.speed, self.profile = speed, profile
        self.vid = prof.vid if vid is None else vid
        self.pid = prof.pid if pid is None else pid
        self.manufacturer = prof.manufacturer if manufacturer is None else manufacturer
        self.product = prof.product if product is None else product
        self.serial = prof.serial if serial is None else serial
        manufacturer, product, serial, vid, pid = self.manufacturer, self.product, self.serial, self.vid, self.pid
        self.specs = list(endpoints) if endpoints is not None else prof.endpoints(speed)
        infos = []
        for s in self.specs:
            if s.type not in desc.TYPE_CODES or s.type == "control":
                raise ValueError(f"endpoint 0x{s.address:02X}: type must be bulk, interrupt or isochronous")
            if s.role not in ROLES:
                raise ValueError(f"endpoint 0x{s.address:02X}: role must be one of {sorted(ROLES)}")
            infos.append(desc.EndpointInfo(s.address, desc.TYPE_CODES[s.type], s.max_packet, s.interval))
        n_alts = 1 + max((s.alt for s in self.specs), default=0)
        settings = [[i for i, s in zip(infos, self.specs, strict=True) if s.alt == alt] for alt in range(n_alts)]
        bcd = prof.bcd_usb or {None: 0x0200, "low": 0x0110, "full": 0x0110, "high": 0x0200}.get(speed, 0x0320)
        ep0 = 9 if bcd >= 0x0300 else prof.max_packet0
        table = desc.records(
            [
                (desc.DT_DEVICE, 0, desc.build_device(vid, pid, bcd, ep0, prof.bcd_device)),
                (desc.DT_CONFIG, 0, desc.build_config(settings, prof.interface_class, prof.attributes, prof.max_power)),
                (desc.DT_STRING, 0, bytes([4, desc.DT_STRING, 0x09, 0x04])),
                (desc.DT_STRING, 1, desc.build_string(manufacturer)),
                (desc.DT_STRING, 2, desc.build_string(product)),
                (desc.DT_STRING, 3, desc.build_string(serial)),
            ]
        )
        eps = [
            (i.address, i.type, i.max_packet, i.interval, ROLES[s.role], s.alt)
            for i, s in zip(infos, self.specs, strict=True)
        ]
        self._create = functools.partial(
            NativeDevice.create_virtual, SPEEDS[speed or "none"], eps, loopback_capacity, table, n_alts
        )
        self._native = self._create()  # this attachment; re-enumeration makes the next one
        self._plug_lock = threading.RLock()  # re-enumeration, close and the handler's swap
        self._endpoints = {s.address: VirtualEndpoint(self, s) for s in self.specs}
        self._ep0 = VirtualEndpoint(self, EndpointSpec(0x00, "control", 512 if bcd >= 0x0300 else ep0, role="control"))
        self._key = next(_ORDER)
        self.port = self._key + 1  # its port on the virtual bus 0: port path "0-<port>"
        self.address = _next_address()  # a new one at every re-enumeration, as a bus assigns them
        self._function: Function | None = None
        self.function_errors: list[BaseException] = []  # what the control handler raised
        self.function: Any = None  # the profile's own answers to its vendor requests (OsrFx2 ...)
        if on_control is None and prof.function is not None:
            on_control = self.function = prof.function(self)
        if on_control is not None:
            self.on_control(on_control)
        _LIVE[self._key] = self  # wdfusb.open(vid=, pid=, serial=) finds it, as it finds a real device
        _announce()

    def _open_native(self) -> tuple[int, NativeDevice | None, bool]:
        """The engine device (shared by every open of this virtual device; not owned by them)."""
        rc = self._native.status
        if rc != 0:
            return rc, None, False
        return 0, self._native, False

    def _port_cycled(self, native: NativeDevice) -> None:
        self._plug_in_after(native)

    def _check(self, rc: int) -> None:
        if rc != 0:
            from .errors import error_for

            raise error_for(rc, context="virtual device")

    def endpoint(self, address: int) -> VirtualEndpoint:
        """Counters and faults of one endpoint. ``endpoint(0)`` is EP0, the control endpoint:
        ``stall()`` stalls the next control request (a protocol stall: the SETUP after it
        clears it), ``nak(seconds)`` holds every request's data and status stages."""
        if address == 0:
            return self._ep0
        try:
            return self._endpoints[address]
        except KeyError:
            raise KeyError(f"the virtual device has no endpoint 0x{address:02X}") from None

    @property
    def endpoints(self) -> list[VirtualEndpoint]:
        """The profile's endpoints (EP0 aside: see :meth:`endpoint`)."""
        return list(self._endpoints.values())

    def unplug(self) -> None:
        """Surprise removal: every transfer in flight ends with a device-gone status."""
        self._check(self._native.unplug())

    @property
    def switch(self) -> int:
        """The switch state interrupt IN reports (and the OSR FX2's READ_SWITCHES returns)."""
        rc, value = self._native.get_switch()
        self._check(rc)
        return value

    def set_switch(self, value: int) -> None:
        """Set the switch state that interrupt IN 0x81 reports (once per change)."""
        self._check(self._native.set_switch(value & 0xFF))

    def on_control(self, handler: Handler | None) -> Handler | None:
        """Answer the vendor and class control requests with ``handler(request)`` (a
        :class:`~wdfusb.virtual.ControlRequest`; see :mod:`wdfusb._virtual_function`), on the
        device's own thread; None goes back to stalling them. Usable as a decorator."""
        with self._plug_lock:
            self._stop_function(set_off=True)
            if handler is not None:
                self._function = Function(self._native, handler, self.function_errors, repr(self))
                self._check(self._native.set_function(True))
        return handler

    def _stop_function(self, set_off: bool) -> Handler | None:
        old, self._function = self._function, None
        if old is None:
            return None
        if set_off:
            self._check(self._native.set_function(False))
        old.stop()
        return old.handler

    def reenumerate(self) -> None:
        """Leave the bus and come back as a new attachment, as a device does after a firmware load
        or the OSR FX2's REENUMERATE request: transfers in flight end with the device-gone status
        and the bytes that moved, every open of the old attachment is gone, and the new one has a
        new address on the same port, fresh endpoint state and counters, the same identity and
        control handler. :meth:`wdfusb.Device.reconnect` finds it again; :func:`wdfusb.watch`
        reports ``"left"`` then ``"arrived"``. Called from the control handler, it happens once that
        request's status stage is over (the host sees the request succeed, as with firmware)."""
        function = self._function
        if function is not None and function.on_its_thread():
            function.after_answer(self._reenumerate_now)
        else:
            self._reenumerate_now()

    def _reenumerate_now(self) -> None:
        with self._plug_lock:
            old = self._native
            old.unplug()
            self._plug_in_after(old)

    def _plug_in_after(self, old: NativeDevice) -> None:
        """A new attachment in place of ``old``, which has left the bus (re-enumeration, or a port
        cycle: the engine took it off the bus; a real device comes back by itself)."""
        with self._plug_lock:
            if self._key not in _LIVE or self._native is not old:
                return  # closed, or plugged in again, meanwhile
            handler = self._stop_function(set_off=False)  # the old attachment's requests end with it
            self.address = _next_address()  # first: a listing never pairs the new attachment with the old address
            new = self._create()
            if handler is not None:  # answering before anyone can list it
                self._function = Function(new, handler, self.function_errors, repr(self))
                self._check(new.set_function(True))
            self._native = new
            _announce()
            old.close()

    def close(self) -> None:
        """Release the native device (cancels and drains anything in flight)."""
        with self._plug_lock:
            _LIVE.pop(self._key, None)
            self._native.close()  # also ends the function's wait
            if self._function is not None:
                self._function.stop()

    def __enter__(self) -> VirtualDevice:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VirtualDevice {self.vid:04x}:{self.pid:04x} speed={self.speed!r}>"

    @classmethod
    def make_default(
        cls, vid: int | None = None, pid: int | None = None, serial: str | None = None
    ) -> VirtualDevice | None:
        """A new default virtual device (the one ``wdfusb list`` shows as ``virtual``) when the
        criteria fit it and ask for something (None, None, None means a real device), else None."""
        if (vid, pid, serial) == (None, None, None):
            return None
        default = PROFILES["default"]
        if vid in (None, default.vid) and pid in (None, default.pid) and serial in (None, default.serial):
            return cls()
        return None

    @property
    def speed_name(self) -> str:
        return SPEED_NAMES[SPEEDS[self.speed or "none"]]


def live_virtual_devices() -> list[VirtualDevice]:
    """This process's open virtual devices, in the order they were made."""
    return list(_LIVE.values())


__all__ = ["STALL", "ControlRequest", "EndpointSpec", "VirtualDevice", "VirtualEndpoint", "default_profile"]
