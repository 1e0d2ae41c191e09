"""Finding devices: what is attached (:class:`UsbDeviceInfo`), by which criteria, at which port.

Real devices come from libusb's list; the open :class:`~wdfusb.VirtualDevice` objects of this
process are listed after them, on the virtual bus 0 (port path ``0-<port>``). A port path is
``BUS-PORT[.PORT...]`` as Linux and libusb name it (``1-1.2``); a root hub's is ``usbBUS``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from . import _engine
from ._descriptors import DT_DEVICE, DT_STRING, DeviceDescriptor
from ._engine import WU_ERR_NO_DEVICE, DevInfo, NativeDevice
from .errors import DeviceNotFoundError, MultipleDevicesError, UsbError
from .virtual import VirtualDevice, live_virtual_devices

SPEED_LABELS = {0: "unknown", 1: "low", 2: "full", 3: "high", 4: "super", 5: "super_plus"}
VIRTUAL_BUS = 0
# Host controller drivers whose devices are elsewhere: Linux's USB/IP client (usbip attach)
REMOTE_CONTROLLERS = frozenset({"vhci_hcd"})


def is_remote_bus(bus: int, sysfs: str = "/sys") -> bool:
    """Whether bus ``bus``'s devices are remote: its host controller is a USB/IP virtual one."""
    return _engine.controller_driver(bus, sysfs) in REMOTE_CONTROLLERS


def read_string(native: NativeDevice, index: int) -> str | None:
    """A string descriptor (first language), or None."""
    if not index:
        return None
    rc, langs = native.get_descriptor(DT_STRING, 0, 0, 255)
    lang = int.from_bytes(langs[2:4], "little") if rc == 0 and len(langs) >= 4 else 0x0409
    rc, blob = native.get_descriptor(DT_STRING, index, lang, 255)
    if rc != 0 or len(blob) < 2:
        return None
    return blob[2 : blob[0]].decode("utf-16-le", errors="replace")


def port_path(bus: int, ports: tuple[int, ...]) -> str:
    """``"1-1.2"`` for bus 1, ports (1, 2); ``"usb1"`` for bus 1's root hub."""
    return f"{bus}-{'.'.join(str(p) for p in ports)}" if ports else f"usb{bus}"


@dataclass
class UsbDeviceInfo:
    """An attached device (not opened): what :func:`find_device`, :func:`list_devices` and
    :func:`wdfusb.watch` give. ``virtual`` is the :class:`~wdfusb.VirtualDevice` for one of this
    process's virtual devices (bus 0), else None. An info does not keep a virtual device or its
    attachment alive (weak references): a watch that remembers what was attached holds nothing
    native. ``remote`` is True for a device attached over the network (USB/IP: its host controller
    is Linux's vhci_hcd), where each transfer is a round trip to the machine it is plugged into."""

    bus: int
    address: int
    vid: int
    pid: int
    speed: str
    ports: tuple[int, ...] = ()
    descriptor: DeviceDescriptor | None = None
    _virtual: weakref.ref[VirtualDevice] | None = field(default=None, repr=False, compare=False)
    _strings: dict[str, str | None] = field(default_factory=dict, repr=False)
    _attachment: weakref.ref[NativeDevice] | None = field(default=None, repr=False, compare=False)
    remote: bool = False

    @property
    def virtual(self) -> VirtualDevice | None:
        return self._virtual() if self._virtual is not None else None

    @classmethod
    def from_devinfo(cls, d: DevInfo) -> UsbDeviceInfo:
        desc = DeviceDescriptor.parse(d.device_descriptor)
        speed = SPEED_LABELS.get(d.speed, "unknown")
        remote = bool(d.ports) and is_remote_bus(d.bus)  # a vhci root hub itself is this machine's
        return cls(d.bus, d.address, desc.vid, desc.pid, speed, d.ports, desc, remote=remote)

    @classmethod
    def of_virtual(cls, v: VirtualDevice) -> UsbDeviceInfo | None:
        """The info of virtual device ``v``'s current attachment; None once it is unplugged or closed."""
        native, address = v._native, v.address
        rc, blob = native.get_descriptor(DT_DEVICE, 0, 0, 18)
        if rc != 0 or len(blob) < 18:
            return None
        desc = DeviceDescriptor.parse(bytes(blob))
        strings: dict[str, str | None] = {"manufacturer": v.manufacturer, "product": v.product, "serial": v.serial}
        speed = v.speed or "unknown"
        return cls(
            VIRTUAL_BUS,
            address,
            desc.vid,
            desc.pid,
            speed,
            (v.port,),
            desc,
            weakref.ref(v),
            strings,
            weakref.ref(native),
        )

    @property
    def port_path(self) -> str:
        return port_path(self.bus, self.ports)

    @property
    def key(self) -> tuple[Any, ...]:
        """One attachment: a device that re-enumerates comes back with another key."""
        return self.bus, self.address, self.port_path, self.descriptor

    def _open_native(self) -> tuple[int, NativeDevice | None, bool]:
        if self._attachment is not None:  # a virtual device: this attachment, not a later one
            native = self._attachment()
            rc = WU_ERR_NO_DEVICE if native is None else native.status
            return (rc, None, False) if native is None or rc != 0 else (0, native, False)
        rc, native = NativeDevice.open_libusb(self.bus, self.address)
        return rc, native, True

    def _port_cycled(self, native: NativeDevice) -> None:
        if self.virtual is not None:
            self.virtual._port_cycled(native)

    def strings(self) -> dict[str, str | None]:
        """Manufacturer, product and serial (opens the device briefly; None where unreadable)."""
        if not self._strings and self.descriptor is not None:
            _, native = NativeDevice.open_libusb(self.bus, self.address)
            names: dict[str, str | None] = {"manufacturer": None, "product": None, "serial": None}
            if native is not None:
                try:
                    d = self.descriptor
                    names = {
                        "manufacturer": read_string(native, d.i_manufacturer),
                        "product": read_string(native, d.i_product),
                        "serial": read_string(native, d.i_serial),
                    }
                finally:
                    native.close()
            self._strings = names
        return self._strings

    @property
    def serial(self) -> str | None:
        return self.strings()["serial"]

    def matches(
        self,
        vid: int | None = None,
        pid: int | None = None,
        serial: str | None = None,
        port: str | None = None,
        bus: int | None = None,
        address: int | None = None,
    ) -> bool:
        """Whether every criterion given fits (the serial is read only when asked for)."""
        return (
            (vid is None or self.vid == vid)
            and (pid is None or self.pid == pid)
            and (bus is None or self.bus == bus)
            and (address is None or self.address == address)
            and (port is None or self.port_path == port)
            and (serial is None or self.serial == serial)
        )

    def __str__(self) -> str:
        where = "virtual" if self.virtual is not None else f"bus {self.bus}"
        where += " (remote, usbip)" if self.remote else ""
        ids = f"{self.vid:04x}:{self.pid:04x}"
        return f"{ids} {where} port {self.port_path} address {self.address} ({self.speed} speed)"


def attachment_of(source: Any) -> UsbDeviceInfo | None:
    """The attachment a device is opened from (a virtual device: its current one); None for a
    source that is neither."""
    info = UsbDeviceInfo.of_virtual(source) if isinstance(source, VirtualDevice) else source
    return info if isinstance(info, UsbDeviceInfo) else None


def list_devices(virtual: bool = True) -> list[UsbDeviceInfo]:
    """Every USB device libusb sees, then (``virtual=True``) this process's open virtual devices.
    Raises :class:`LibusbNotFoundError` without libusb."""
    found = [UsbDeviceInfo.from_devinfo(d) for d in _engine.libusb_list()]
    return found + virtual_infos() if virtual else found


def virtual_infos() -> list[UsbDeviceInfo]:
    """This process's attached virtual devices, in the order they were made."""
    return [i for i in (UsbDeviceInfo.of_virtual(v) for v in live_virtual_devices()) if i is not None]


def attached() -> tuple[list[UsbDeviceInfo], UsbError | None]:
    """Real and virtual devices; without libusb (or USB) the virtual ones and why no real ones."""
    try:
        return list_devices(), None
    except UsbError as exc:
        return virtual_infos(), exc


def describe_criteria(**criteria: Any) -> str:
    return ", ".join(
        f"{k}={v:#06x}" if isinstance(v, int) and k in ("vid", "pid") else f"{k}={v!r}"
        for k, v in criteria.items()
        if v is not None
    )


def find_device(
    vid: int | None = None,
    pid: int | None = None,
    serial: str | None = None,
    bus: int | None = None,
    address: int | None = None,
    port: str | None = None,
) -> UsbDeviceInfo | VirtualDevice:
    """The one device matching every criterion given.

    Real devices and this process's open :class:`~wdfusb.VirtualDevice` objects are
    searched alike (by VID, PID, serial string, port path; bus 0 is the virtual bus). More than one
    match is :class:`MultipleDevicesError`, listing them; none is :class:`DeviceNotFoundError`,
    listing what is attached — unless the criteria fit the default virtual device (``wdfusb
    list``'s ``virtual``: 1209:0001, serial ``wdfusb-virtual``), which is then made."""
    devices, listing_failed = attached()
    matching = [d for d in devices if d.matches(vid, pid, serial, port, bus, address)]
    want = describe_criteria(vid=vid, pid=pid, serial=serial, bus=bus, address=address, port=port)
    if len(matching) > 1:
        listed = "\n".join(f"  {d}  serial {d.serial!r}" for d in matching)
        raise MultipleDevicesError(
            f"{len(matching)} devices match {want or 'anything'}: give serial= or port=\n{listed}", 0xC000000D
        )
    if matching:
        d = matching[0]
        v = d.virtual
        return v if v is not None and d._attachment is not None and d._attachment() is v._native else d
    if bus is None and address is None and port is None:
        default = VirtualDevice.make_default(vid, pid, serial)
        if default is not None:
            return default
    if listing_failed is not None:
        raise listing_failed
    listed = "\n".join(f"  {d}" for d in devices) or "  (none)"
    raise DeviceNotFoundError(f"no USB device matches {want or 'anything'}; attached:\n{listed}", 0xC000000E)


__all__ = [
    "REMOTE_CONTROLLERS",
    "SPEED_LABELS",
    "UsbDeviceInfo",
    "find_device",
    "is_remote_bus",
    "list_devices",
    "port_path",
    "read_string",
]
