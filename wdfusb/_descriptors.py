"""USB standard descriptors: parsing what a device reports, building what the virtual device reports."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT = 1, 2, 3, 4, 5
TYPE_NAMES = {0: "control", 1: "isochronous", 2: "bulk", 3: "interrupt"}
TYPE_CODES = {v: k for k, v in TYPE_NAMES.items()}


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint descriptor."""

    address: int
    type: int  # USB transfer type: 0 control, 1 isochronous, 2 bulk, 3 interrupt
    max_packet: int  # wMaxPacketSize bits 0..10
    interval: int
    mult: int = 1  # high-bandwidth transactions per (micro)frame (bits 11..12 + 1)

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]


@dataclass
class SettingInfo:
    """One alternate setting of an interface."""

    alternate: int
    interface_class: int = 0xFF
    interface_subclass: int = 0
    interface_protocol: int = 0
    i_interface: int = 0
    endpoints: list[EndpointInfo] = field(default_factory=list)


@dataclass
class InterfaceInfo:
    number: int
    settings: list[SettingInfo] = field(default_factory=list)

    def setting(self, alternate: int) -> SettingInfo | None:
        return next((s for s in self.settings if s.alternate == alternate), None)


@dataclass
class ConfigInfo:
    value: int = 1
    attributes: int = 0x80
    max_power_ma: int = 100
    interfaces: list[InterfaceInfo] = field(default_factory=list)

    def interface(self, number: int) -> InterfaceInfo | None:
        return next((i for i in self.interfaces if i.number == number), None)


def parse_config(blob: bytes) -> ConfigInfo:
    """Parse a full configuration descriptor (as GET_DESCRIPTOR(CONFIGURATION) returns it)."""
    cfg = ConfigInfo()
    setting: SettingInfo | None = None
    i = 0
    while i + 2 <= len(blob):
        n, dtype = blob[i], blob[i + 1]
        if n < 2 or i + n > len(blob):
            break
        d = blob[i : i + n]
        if dtype == DT_CONFIG and n >= 9:
            cfg.value, cfg.attributes, cfg.max_power_ma = d[5], d[7], d[8] * 2
        elif dtype == DT_INTERFACE and n >= 9:
            iface = cfg.interface(d[2])
            if iface is None:
                iface = InterfaceInfo(d[2])
                cfg.interfaces.append(iface)
            setting = SettingInfo(d[3], d[5], d[6], d[7], d[8])
            iface.settings.append(setting)
        elif dtype == DT_ENDPOINT and n >= 7 and setting is not None:
            wmax = d[4] | (d[5] << 8)
            setting.endpoints.append(EndpointInfo(d[2], d[3] & 3, wmax & 0x7FF, d[6], ((wmax >> 11) & 3) + 1))
        i += n
    return cfg


@dataclass(frozen=True)
class DeviceDescriptor:
    bcd_usb: int
    device_class: int
    device_subclass: int
    device_protocol: int
    max_packet0: int
    vid: int
    pid: int
    bcd_device: int
    i_manufacturer: int
    i_product: int
    i_serial: int
    num_configurations: int

    @classmethod
    def parse(cls, blob: bytes) -> DeviceDescriptor:
        return cls(*struct.unpack_from("<2xHBBBBHHHBBBB", blob))


def build_device(vid: int, pid: int, bcd_usb: int, max_packet0: int = 64, bcd_device: int = 0x0100) -> bytes:
    return struct.pack(
        "<BBHBBBBHHHBBBB", 18, DT_DEVICE, bcd_usb, 0, 0, 0, max_packet0, vid, pid, bcd_device, 1, 2, 3, 1
    )


def build_config(
    settings: list[list[EndpointInfo]], interface_class: int = 0xFF, attributes: int = 0x80, max_power: int = 50
) -> bytes:
    """One configuration with interface 0, whose alternate setting ``n`` has ``settings[n]``'s
    endpoints (``max_power`` in 2 mA units, as bMaxPower)."""
    body = b""
    for alt, endpoints in enumerate(settings):
        body += struct.pack("<BBBBBBBBB", 9, DT_INTERFACE, 0, alt, len(endpoints), interface_class, 0, 0, 0)
        for ep in endpoints:
            wmax = ep.max_packet | ((ep.mult - 1) << 11)
            body += struct.pack("<BBBBHB", 7, DT_ENDPOINT, ep.address, ep.type, wmax, ep.interval)
    return struct.pack("<BBHBBBBB", 9, DT_CONFIG, 9 + len(body), 1, 1, 0, attributes, max_power) + body


def build_string(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return bytes([2 + len(data), DT_STRING]) + data


def records(items: list[tuple[int, int, bytes]]) -> bytes:
    """The virtual device's descriptor table: (type, index, bytes) records."""
    return b"".join(struct.pack("<BBH", t, i, len(d)) + d for t, i, d in items)
