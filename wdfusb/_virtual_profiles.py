"""The virtual device's profiles: who it says it is, its endpoints, and who answers its vendor
requests (``VirtualDevice(profile=...)``).

* ``"default"`` — wdfusb's own device (pid.codes 1209:0001): loopback bulk pair, interrupt
  sink, switch, isochronous sink; EP0 answers Gadget Zero's 0x5b/0x5c test requests itself.
* ``"pyusb-benchmark"`` — the device pyusb's own test suite expects (04D8:FA2E, "Travis
  Robinson" / "Benchmark Device", self powered, EP0 8 bytes): interface 0 with three alternate
  settings (bulk 0x01/0x81, interrupt 0x02/0x82, isochronous 0x03/0x83, 16-byte packets, each
  OUT looping back to its IN) and the vendor buffer requests (0x40/0x10 set, 0xC0/0x11 get).
* ``"osrfx2"`` — the OSR USB-FX2 learning kit Microsoft's ``kmdf_fx2`` sample drives
  (0547:1002): interrupt IN 0x81 (the switch pack, one byte, at start-up and on every change),
  bulk OUT 0x06 and bulk IN 0x88 (loopback), in that order; its vendor requests (device
  recipient, one byte each) are answered by :class:`OsrFx2`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._virtual_function import STALL, ControlRequest

if TYPE_CHECKING:
    from .virtual import VirtualDevice


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of a virtual device profile."""

    address: int
    type: str  # "bulk", "interrupt", "isochronous"
    max_packet: int
    interval: int = 0
    role: str = "sink"
    alt: int = 0  # the alternate setting of interface 0 it belongs to


BULK_PACKET = {None: 512, "low": 8, "full": 64, "high": 512, "super": 1024, "super_plus": 1024}


def default_endpoints(speed: str | None) -> list[EndpointSpec]:
    bulk = BULK_PACKET[speed]
    return [
        EndpointSpec(0x06, "bulk", bulk, 0, "loopback_out"),
        EndpointSpec(0x88, "bulk", bulk, 0, "loopback_in"),
        EndpointSpec(0x02, "interrupt", 64 if speed != "low" else 8, 1, "sink"),
        EndpointSpec(0x81, "interrupt", 1, 1, "switch"),
        EndpointSpec(0x03, "isochronous", 1024 if speed != "full" else 1023, 1, "sink"),
    ]


def osrfx2_endpoints(speed: str | None) -> list[EndpointSpec]:
    bulk = BULK_PACKET[speed]
    return [
        EndpointSpec(0x81, "interrupt", 1, 1, "switch"),
        EndpointSpec(0x06, "bulk", bulk, 0, "loopback_out"),
        EndpointSpec(0x88, "bulk", bulk, 0, "loopback_in"),
    ]


# the kit's vendor requests (osrusbfx2.h)
READ_7SEGMENT_DISPLAY, READ_SWITCHES, READ_BARGRAPH_DISPLAY = 0xD4, 0xD6, 0xD7
SET_BARGRAPH_DISPLAY, IS_HIGH_SPEED, REENUMERATE, SET_7SEGMENT_DISPLAY = 0xD8, 0xD9, 0xDA, 0xDB


def pyusb_benchmark_endpoints(speed: str | None) -> list[EndpointSpec]:
    """Interface 0 of pyusb's test device: bulk, interrupt and isochronous pairs, one per
    alternate setting, OUT first, 16-byte packets, each OUT looping back to its IN."""
    eps = []
    for alt, kind in enumerate(("bulk", "interrupt", "isochronous")):
        interval = 0 if kind == "bulk" else 1
        eps.append(EndpointSpec(0x01 + alt, kind, 16, interval, "loopback_out", alt))
        eps.append(EndpointSpec(0x81 + alt, kind, 16, interval, "loopback_in", alt))
    return eps


# pyusb's test firmware (tests/devinfo.py): the vendor buffer requests
PICFW_SET_VENDOR_BUFFER, PICFW_GET_VENDOR_BUFFER = 0x10, 0x11


class VendorBuffer:
    """pyusb's test device's vendor requests: 0x40/0x10 stores its data stage, 0xC0/0x11 returns it."""

    def __init__(self, device: VirtualDevice) -> None:
        self.buffer = b""

    def __call__(self, r: ControlRequest) -> Any:
        if (r.request_type, r.request) == (0x40, PICFW_SET_VENDOR_BUFFER):
            self.buffer = r.data
            return None
        if (r.request_type, r.request) == (0xC0, PICFW_GET_VENDOR_BUFFER):
            return self.buffer
        return STALL


class OsrFx2:
    """The OSR USB-FX2 board's vendor requests: the bar graph and 7-segment display store the raw
    byte they are set to and return it; the switches are the device's switch state
    (``VirtualDevice.set_switch``); IS_HIGH_SPEED answers 1 at high speed; REENUMERATE is answered, then the board
    re-enumerates (:meth:`VirtualDevice.reenumerate`; ``reenumerations`` counts them) and the
    host finds it again with :meth:`wdfusb.Device.reconnect`, as after the real board's."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.bar_graph = 0
        self.seven_segment = 0
        self.reenumerations = 0

    def __call__(self, r: ControlRequest) -> Any:
        if r.request_type == 0xC0:
            if r.request == READ_7SEGMENT_DISPLAY:
                return bytes([self.seven_segment])
            if r.request == READ_BARGRAPH_DISPLAY:
                return bytes([self.bar_graph])
            if r.request == READ_SWITCHES:
                return bytes([self.device.switch])
            if r.request == IS_HIGH_SPEED:
                return bytes([1 if self.device.speed == "high" else 0])
        elif r.request_type == 0x40:
            if r.request in (SET_BARGRAPH_DISPLAY, SET_7SEGMENT_DISPLAY) and r.length == 1:
                if r.request == SET_BARGRAPH_DISPLAY:
                    self.bar_graph = r.data[0]
                else:
                    self.seven_segment = r.data[0]
                return None
            if r.request == REENUMERATE and r.length == 0:
                self.reenumerations += 1
                self.device.reenumerate()  # after this answer, as the firmware does
                return None
        return STALL


@dataclass(frozen=True)
class Profile:
    vid: int
    pid: int
    manufacturer: str
    product: str
    serial: str
    endpoints: Callable[[str | None], list[EndpointSpec]]
    speeds: tuple[str | None, ...]
    function: Callable[[VirtualDevice], Callable[[ControlRequest], Any]] | None = None
    attributes: int = 0x80  # the configuration's bmAttributes (0x40: self powered, 0x20: remote wake-up)
    max_power: int = 50  # bMaxPower, in 2 mA units
    max_packet0: int = 64  # bMaxPacketSize0 (USB 2.0)
    bcd_device: int = 0x0100
    bcd_usb: int = 0  # 0: from the speed
    interface_class: int = 0xFF  # interface 0's bInterfaceClass (0xFF: vendor specific)


PROFILES: dict[str, Profile] = {
    "default": Profile(
        0x1209, 0x0001, "wdfusb", "wdfusb virtual device", "wdfusb-virtual", default_endpoints,
        (None, "low", "full", "high", "super", "super_plus"),
    ),
    "osrfx2": Profile(
        0x0547, 0x1002, "OSR", "OSR USB-FX2 Learning Kit", "wdfusb-osrfx2", osrfx2_endpoints,
        (None, "full", "high"), OsrFx2,
    ),
    "pyusb-benchmark": Profile(
        0x04D8, 0xFA2E, "Travis Robinson", "Benchmark Device", "wdfusb-benchmark", pyusb_benchmark_endpoints,
        (None, "full", "high"), VendorBuffer, attributes=0xC0, max_power=50, max_packet0=8, bcd_device=0x0001,
        bcd_usb=0x0200, interface_class=0x00,
    ),
}  # fmt: skip


__all__ = ["BULK_PACKET", "PROFILES", "EndpointSpec", "OsrFx2", "Profile", "default_endpoints", "osrfx2_endpoints"]
