"""The device and pipe model both layers share: an open device, its configuration, its pipes.

``CoreDevice`` opens a source (a :class:`~wdfusb.virtual.VirtualDevice` or a
:class:`~wdfusb.device.UsbDeviceInfo`), parses its configuration and, once a
configuration is selected, owns one ``CorePipe`` per configured endpoint. The WDF
layer (``wdfusb.wdf``) and the Pythonic layer (``wdfusb.Device``) are both thin
validators over ``CorePipe.transfer``: one engine, one place per concept.
"""

from __future__ import annotations

import itertools
import struct
import threading
from typing import Any, Protocol

from ._descriptors import DT_CONFIG, DT_DEVICE, ConfigInfo, EndpointInfo, parse_config
from ._engine import (
    EP_CONTROL,
    EP_ISOCHRONOUS,
    WU_ERR_INVALID_PARAM,
    WU_ERR_NO_DEVICE,
    WU_ERR_NOT_FOUND,
    EngineError,
    IsoPackets,
    NativeDevice,
    NativeRing,
    Transfer,
    ffi,
    pin,
)

MAX_TRANSFER_SIZE = 0xFFFFFFFF  # the engine moves any ULONG length in one request
SETUP_SIZE = 8  # a control transfer's buffer: the setup packet, then the data stage
CONNECTED_TIMEOUT_US = 1_000_000  # a GET_STATUS answers within 500 ms (USB 2.0 9.2.6.4)
CONTROL_MAX = 4096  # the longest data stage (Linux usbfs refuses more; every backend refuses it)
SETUP_PACKET = struct.Struct("<BBHHH")  # bmRequestType, bRequest, wValue, wIndex, wLength
_memmove = ffi.memmove
_owners = itertools.count(1)  # each open CoreDevice owns its transfers in C by this number


def fill_control_buffer(
    buf: bytearray, request_type: int, request: int, value: int, index: int, data: Any, length: int
) -> bytearray:
    """A control transfer's buffer as the engine takes it: the setup packet, then the data stage
    (``data``, for a host-to-device request)."""
    SETUP_PACKET.pack_into(buf, 0, request_type, request, value, index, length)
    if length and not request_type & 0x80:
        buf[SETUP_SIZE : SETUP_SIZE + length] = data
    return buf


class Source(Protocol):
    """Anything a device can be opened from."""

    def _open_native(self) -> tuple[int, NativeDevice | None, bool]:
        """Returns (engine_code, device, owned): owned devices are closed with the CoreDevice."""
        ...

    def _port_cycled(self, native: NativeDevice) -> None:
        """The engine took ``native`` off the bus for a port cycle: a virtual device is plugged
        in again here (a real device re-enumerates by itself)."""
        ...


class _Internal(threading.local):
    """A thread's internal transfer on one pipe (None until its first transfer), and on the
    control pipe its pinned setup + data buffer (a synchronous control transfer is back, or
    reaped, before the thread can start the next one)."""

    xfer: Transfer | None = None
    scratch: tuple[bytearray, Any] | None = None


class CorePipe:
    """One configured endpoint of an open device."""

    def __init__(self, device: CoreDevice, interface_number: int, setting_index: int, ep: EndpointInfo) -> None:
        self.device = device
        self.interface_number = interface_number
        self.setting_index = setting_index
        self.endpoint = ep
        self.address = ep.address
        self.type = ep.type
        self.max_packet = ep.max_packet
        self.interval = ep.interval
        self.is_in = ep.is_in
        self.maximum_transfer_size = MAX_TRANSFER_SIZE
        self._local = _Internal()  # each thread's internal transfer

    def new_transfer(self) -> Transfer:
        """A native transfer on this pipe's device (for a request object)."""
        return self.device.new_transfer()

    def new_ring(self, depth: int, chunk: int, timeout_us: int) -> NativeRing:
        """A streaming ring on this (OUT) pipe; raises EngineError (e.g. the device is closed)."""
        return self.device.new_ring(self.address, self.type, depth, chunk, timeout_us)

    def transfer(
        self, buf: Any, length: int, timeout_us: int = 0, flags: int = 0, xfer: Transfer | None = None
    ) -> tuple[int, int]:
        """Move ``length`` bytes of ``buf`` (a pinned cdata, or None for a ZLP). Returns (code, actual).

        With ``xfer=None`` the calling thread's internal transfer is used (it cannot be
        cancelled by the caller, like WDF's internal request object). A closed device is
        C's to refuse (its transfers are retired).
        """
        if xfer is None:
            xfer = self._local.xfer
            if xfer is None:
                try:
                    xfer = self.internal_transfer()
                except EngineError as exc:
                    return exc.code, 0
        return xfer.run(self.address, self.type, buf, length, flags, timeout_us)

    def iso_transfer(
        self, buf: Any, packets: IsoPackets, timeout_us: int = 0, xfer: Transfer | None = None
    ) -> tuple[int, int]:
        """An isochronous transfer of ``packets`` (their bytes end to end in ``buf``, pinned):
        ``(code, actual)``, each packet's own result in ``packets`` once it is back."""
        if xfer is None:
            try:
                xfer = self.internal_transfer()
            except EngineError as exc:
                return exc.code, 0
        rc = xfer.set_iso(packets)
        if rc != 0:
            return rc, 0
        return xfer.run(self.address, EP_ISOCHRONOUS, buf, packets.total, 0, timeout_us)

    def internal_transfer(self) -> Transfer:
        """The calling thread's internal transfer on this pipe (made on first use); raises
        EngineError once the device is closed."""
        xfer = self._local.xfer
        if xfer is None:
            xfer = self._local.xfer = self.device.new_transfer()
        return xfer

    def control(
        self,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: Any,
        length: int,
        timeout_us: int = 0,
        xfer: Transfer | None = None,
        into: Any = None,
    ) -> tuple[int, int, bytearray]:
        """One control transfer on this (default control) pipe: the setup packet is built from the
        fields, then ``length`` bytes of data stage (``data`` for host-to-device, else read, and
        copied to ``into`` when given: a writable buffer of at least ``length`` bytes).

        Returns ``(code, actual, buffer)``: the data stage's byte count, and the transfer's buffer
        (the data stage from offset 8; this thread's, valid until its next control transfer). The
        fields are the caller's to check; a data stage over ``CONTROL_MAX`` is refused
        (WU_ERR_INVALID_PARAM) before it reaches the bus.
        """
        if not 0 <= length <= CONTROL_MAX:
            return WU_ERR_INVALID_PARAM, 0, bytearray()
        local = self._local
        scratch = local.scratch
        if scratch is None:
            buf = bytearray(SETUP_SIZE + CONTROL_MAX)
            scratch = local.scratch = (buf, pin(buf, True))
        buf = fill_control_buffer(scratch[0], request_type, request, value, index, data, length)
        code, actual = self.transfer(scratch[1], SETUP_SIZE + length, timeout_us, 0, xfer)
        if into is not None and actual and request_type & 0x80:
            _memmove(into, scratch[1] + SETUP_SIZE, actual)  # (actual <= length: the engine's)
        return code, actual, buf

    def _check(self, rc: int) -> int:
        return WU_ERR_NO_DEVICE if self.device.closed else rc

    def reset(self) -> int:
        """Clear a halt (stall) on the endpoint and its data toggle."""
        return self._check(self.device.native.clear_halt(self.address))

    def abort(self) -> int:
        """Cancel every transfer in flight on this pipe and wait until they are back."""
        return self._check(self.device.native.abort(self.address))


class CoreDevice:
    """An open device: descriptors, configuration, claimed interfaces and pipes."""

    def __init__(self, native: NativeDevice, owned: bool, source: Source) -> None:
        from ._lookup import attachment_of  # (it lists devices, which opens them through here)

        self.native = native
        self.source = source
        self.attachment = attachment_of(source)  # what it was opened from: the key of this attachment
        self._owned = owned
        self._lock = threading.Lock()
        self._pipes: dict[int, list[CorePipe]] = {}
        self.alt_settings: dict[int, int] = {}  # claimed interface -> its selected alternate setting
        self.owner = next(_owners)
        self.closed = False
        self.stack_size = 1 if native.is_virtual else 2
        rc, self.device_descriptor = native.get_descriptor(DT_DEVICE, 0, 0, 18)
        rc2, head = native.get_descriptor(DT_CONFIG, 0, 0, 9)
        total = int.from_bytes(head[2:4], "little") if rc2 == 0 and len(head) >= 4 else 0
        rc3, blob = native.get_descriptor(DT_CONFIG, 0, 0, max(total, 9)) if total else (rc2, b"")
        self.open_status = rc if rc != 0 else (rc3 if rc3 != 0 else 0)
        self.config_descriptor = bytes(blob)  # the whole configuration descriptor, as read at open
        self.config: ConfigInfo = parse_config(blob)
        self.speed = native.speed()
        ep0 = self.device_descriptor[7] if len(self.device_descriptor) >= 8 else 64
        if len(self.device_descriptor) >= 8 and self.device_descriptor[3] >= 3:
            ep0 = 1 << min(ep0, 9)  # USB 3: bMaxPacketSize0 is an exponent
        self.control_pipe = CorePipe(self, -1, 0, EndpointInfo(0x00, EP_CONTROL, ep0, 0))  # EP0, always there

    @classmethod
    def open(cls, source: Source) -> tuple[int, CoreDevice | None]:
        rc, native, owned = source._open_native()
        if native is None:
            return rc, None
        dev = cls(native, owned, source)
        if dev.open_status != 0:
            dev.close()
            return dev.open_status, None
        return 0, dev

    def new_transfer(self) -> Transfer:
        """A native transfer of this device; raises EngineError once it is closed."""
        with self._lock:  # against close(): a transfer made before it is retired by it
            if self.closed:
                raise EngineError(WU_ERR_NO_DEVICE, "creating a transfer")
            return Transfer(self.native, self.owner)

    def new_ring(self, ep: int, ep_type: int, depth: int, chunk: int, timeout_us: int) -> NativeRing:
        with self._lock:
            if self.closed:
                raise EngineError(WU_ERR_NO_DEVICE, "creating a stream ring")
            return NativeRing(self.native, self.owner, ep, ep_type, depth, chunk, timeout_us)

    def select_configuration(self, settings: dict[int, int]) -> int:
        """Select the configuration with interface number -> alternate setting; create the pipes."""
        if self.closed:
            return WU_ERR_NO_DEVICE
        rc, current = self.native.get_configuration()
        if rc == 0 and current != self.config.value:
            rc = self.native.set_configuration(self.config.value)
        if rc != 0:
            return rc
        for number, alt in settings.items():
            iface = self.config.interface(number)
            setting = iface.setting(alt) if iface else None
            if setting is None:
                return WU_ERR_NOT_FOUND
            rc = self.native.claim_interface(number)
            if rc == 0 and (alt != 0 or len(iface.settings) > 1 if iface else False):
                rc = self.native.set_altsetting(number, alt)
            if rc != 0:
                return rc
            self._pipes[number] = [CorePipe(self, number, alt, ep) for ep in setting.endpoints]
            self.alt_settings[number] = alt
        return 0

    def select_setting(self, number: int, alt: int) -> int:
        """Select alternate setting ``alt`` of claimed interface ``number``: its pipes replace the
        old setting's (whose transfers the device cancels)."""
        iface = self.config.interface(number)
        setting = iface.setting(alt) if iface is not None else None
        if self.closed:
            return WU_ERR_NO_DEVICE
        if setting is None or number not in self._pipes:
            return WU_ERR_NOT_FOUND
        rc = self.native.set_altsetting(number, alt)
        if rc != 0:
            return rc
        for pipe in self._pipes[number]:
            pipe._local = _Internal()  # their threads' transfers go with them
        self._pipes[number] = [CorePipe(self, number, alt, ep) for ep in setting.endpoints]
        self.alt_settings[number] = alt
        return 0

    def connected(self) -> int:
        """Whether the device is still there: 0 when it answers GET_STATUS (every device does, in
        every state), else the engine's reason (``WU_ERR_NO_DEVICE`` once it is gone)."""
        if self.closed:
            return WU_ERR_NO_DEVICE
        return self.control_pipe.control(0x80, 0x00, 0, 0, None, 2, CONNECTED_TIMEOUT_US)[0]

    def reset_port(self) -> int:
        """Reset the port (every transfer of the device is cancelled and drained first)."""
        return WU_ERR_NO_DEVICE if self.closed else self.native.reset_port()

    def cycle_port(self) -> int:
        """Take the device off the bus and back, as an unplug and replug (every transfer is
        cancelled and drained first): it re-enumerates as a new attachment, and this one is gone."""
        if self.closed:
            return WU_ERR_NO_DEVICE
        rc = self.native.cycle_port()
        if rc == 0:
            self.source._port_cycled(self.native)
        return rc

    def interfaces_claimed(self) -> list[int]:
        return sorted(self._pipes)

    def pipes(self, interface_number: int) -> list[CorePipe]:
        return list(self._pipes.get(interface_number, []))

    def all_pipes(self) -> list[CorePipe]:
        return [p for n in sorted(self._pipes) for p in self._pipes[n]]

    def close(self) -> None:
        """Cancel (newest first) and drain every transfer of this device, refuse their later
        submits, release the interfaces; idempotent, any thread."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.native.cancel(-1, self.owner, retire=True)  # C: every transfer and ring of ours
        for pipe in [self.control_pipe, *self.all_pipes()]:
            pipe._local = _Internal()  # every thread's transfer goes (a running call keeps its own)
        for number in list(self._pipes):
            self.native.release_interface(number)
        self._pipes.clear()
        if self._owned:
            self.native.close()
