"""The USB/IP wire format (the Linux kernel's Documentation/usb/usbip_protocol.rst), version 1.1.1.

Every field is big-endian. A connection starts with one operation (``OP_REQ_DEVLIST``, after
which the server closes it, or ``OP_REQ_IMPORT``); an imported connection then carries URBs:
``CMD_SUBMIT`` / ``RET_SUBMIT`` and ``CMD_UNLINK`` / ``RET_UNLINK``, each a 48-byte header, the
OUT data after a submit and the IN data after its answer.

An isochronous URB carries one 16-byte descriptor per packet (``struct
usbip_iso_packet_descriptor``: offset, length, actual_length, status) after its data, in both
directions. A ``CMD_SUBMIT`` sends the whole OUT buffer (``transfer_buffer_length`` bytes, each
packet at its offset) and the descriptors as the client set them; a ``RET_SUBMIT`` sends each IN
packet's ``actual_length`` bytes end to end, without the gaps a short packet leaves (the client
moves them back to their offsets), then the descriptors with each packet's result, the
header's ``actual_length`` being their sum and ``error_count`` the packets whose status is not 0.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

VERSION = 0x0111
OP_HEADER = struct.Struct(">HHI")  # version, code, status
OP_REQ_DEVLIST, OP_REP_DEVLIST = 0x8005, 0x0005
OP_REQ_IMPORT, OP_REP_IMPORT = 0x8003, 0x0003
ST_OK, ST_NA, ST_DEV_BUSY, ST_DEV_ERR, ST_NODEV, ST_ERROR = 0, 1, 2, 3, 4, 5
BUSID = struct.Struct(">32s")
COUNT = struct.Struct(">I")
DEVICE = struct.Struct(">256s32sIIIHHHBBBBBB")  # struct usbip_usb_device: 312 bytes
INTERFACE = struct.Struct(">BBBx")

CMD_SUBMIT, CMD_UNLINK, RET_SUBMIT, RET_UNLINK = 1, 2, 3, 4
DIR_OUT, DIR_IN = 0, 1
HEADER_SIZE = 48
BASIC = struct.Struct(">IIIII")  # command, seqnum, devid, direction, ep
SUBMIT = struct.Struct(">IIIIIIiiii8s")  # + transfer_flags, length, start_frame, packets, interval, setup
RET_SUBMIT_HEADER = struct.Struct(">IIIIIiiiii8x")  # + status, actual_length, start_frame, packets, errors
UNLINK = struct.Struct(">IIIIII24x")  # + unlink_seqnum
RET_UNLINK_HEADER = struct.Struct(">IIIIIi24x")  # + status
ISO_DESCRIPTOR = struct.Struct(">IIIi")  # offset, length, actual_length, status
ISO_DESCRIPTOR_SIZE = ISO_DESCRIPTOR.size
MAX_ISO_PACKETS = 1024  # what the kernel's usbip takes in one URB (USBIP_MAX_ISO_PACKETS)

URB_SHORT_NOT_OK = 0x0001
URB_ZERO_PACKET = 0x0040
NOT_ISO = 0xFFFFFFFF  # number_of_packets of a non-isochronous URB from newer kernels (older send 0)

# enum usb_device_speed, as USB/IP carries it
SPEED_UNKNOWN, SPEED_LOW, SPEED_FULL, SPEED_HIGH, SPEED_SUPER, SPEED_SUPER_PLUS = 0, 1, 2, 3, 5, 6

# Negative errno values for an URB's status (what the kernel's host controllers report)
E_STALL = -errno.EPIPE
E_UNLINKED = -errno.ECONNRESET
E_GONE = -errno.ESHUTDOWN
E_TIMEOUT = -errno.ETIMEDOUT
E_OVERFLOW = -errno.EOVERFLOW
E_SHORT = -errno.EREMOTEIO
E_INVALID = -errno.EINVAL
E_PROTOCOL = -errno.EPROTO
E_NOT_DONE = -errno.EXDEV  # an isochronous packet the controller never got to (usb_submit_urb's preset)

for _s, _n in ((OP_HEADER, 8), (DEVICE, 312), (SUBMIT, 48), (RET_SUBMIT_HEADER, 48), (UNLINK, 48),
               (ISO_DESCRIPTOR, 16)):  # fmt: skip
    assert _s.size == _n, (_s.format, _s.size)
assert RET_UNLINK_HEADER.size == 48


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass
class ExportedDevice:
    """What a server says of a device it exports (``struct usbip_usb_device`` and its interfaces)."""

    busid: str
    path: str
    busnum: int
    devnum: int
    speed: int
    vid: int
    pid: int
    bcd_device: int
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    configuration: int = 0
    num_configurations: int = 1
    interfaces: list[tuple[int, int, int]] = field(default_factory=list)  # class, subclass, protocol

    @property
    def devid(self) -> int:
        return self.busnum << 16 | self.devnum

    def pack(self, with_interfaces: bool) -> bytes:
        head = DEVICE.pack(
            self.path.encode(),
            self.busid.encode(),
            self.busnum,
            self.devnum,
            self.speed,
            self.vid,
            self.pid,
            self.bcd_device,
            self.device_class,
            self.device_subclass,
            self.device_protocol,
            self.configuration,
            self.num_configurations,
            len(self.interfaces),
        )
        if not with_interfaces:
            return head
        return head + b"".join(INTERFACE.pack(*i) for i in self.interfaces)

    @classmethod
    def unpack(cls, raw: bytes) -> tuple[ExportedDevice, int]:
        """The device, and how many interface records follow it in a device list."""
        (path, busid, busnum, devnum, speed, vid, pid, bcd, dcls, dsub, dproto, conf, nconf, n) = DEVICE.unpack(
            raw[: DEVICE.size]
        )
        dev = cls(_text(busid), _text(path), busnum, devnum, speed, vid, pid, bcd, dcls, dsub, dproto, conf, nconf)
        return dev, n


class Submit(NamedTuple):
    """A ``CMD_SUBMIT`` header."""

    seqnum: int
    devid: int
    direction: int
    ep: int
    transfer_flags: int
    length: int
    start_frame: int
    number_of_packets: int
    interval: int
    setup: bytes

    @property
    def iso_packets(self) -> int:
        """Isochronous packet descriptors that follow the data (0 for other transfers)."""
        n = self.number_of_packets
        return 0 if n in (0, NOT_ISO) or n < 0 else n

    def pack(self) -> bytes:
        return SUBMIT.pack(CMD_SUBMIT, *self[:4], *self[4:])


class IsoDescriptor(NamedTuple):
    """One isochronous packet: where it sits in the URB's buffer, its length and, in an answer,
    what it moved and its status (0 or a negative errno)."""

    offset: int
    length: int
    actual: int = 0
    status: int = 0


def parse_iso(raw: bytes) -> list[IsoDescriptor]:
    """The packet descriptors that follow a submit's (or an answer's) data."""
    return [IsoDescriptor(*d) for d in ISO_DESCRIPTOR.iter_unpack(raw)]


def pack_iso(packets: Sequence[IsoDescriptor]) -> bytes:
    return b"".join(ISO_DESCRIPTOR.pack(*d) for d in packets)


def parse_submit(header: bytes) -> Submit:
    return Submit(*SUBMIT.unpack(header)[1:])


def parse_unlink(header: bytes) -> tuple[int, int]:
    """``(seqnum, unlink_seqnum)`` of a ``CMD_UNLINK`` header."""
    _cmd, seqnum, _devid, _dir, _ep, victim = UNLINK.unpack(header)
    return seqnum, victim


def command_of(header: bytes) -> int:
    return int(BASIC.unpack_from(header)[0])


def ret_submit(cmd: Submit, status: int, actual: int, iso: Sequence[IsoDescriptor] | None = None) -> bytes:
    """The answer's header (the IN data, ``actual`` bytes, follows it; then, for an isochronous
    URB, the ``iso`` descriptors: their count and the failed packets' count are in the header)."""
    packets = len(iso) if iso is not None else 0
    errors = sum(1 for d in iso if d.status != 0) if iso is not None else 0
    return RET_SUBMIT_HEADER.pack(
        RET_SUBMIT, cmd.seqnum, cmd.devid, cmd.direction, cmd.ep, status, actual, cmd.start_frame, packets, errors
    )


def ret_unlink(seqnum: int, devid: int, status: int) -> bytes:
    return RET_UNLINK_HEADER.pack(RET_UNLINK, seqnum, devid, 0, 0, status)


def op(code: int, status: int = ST_OK) -> bytes:
    return OP_HEADER.pack(VERSION, code, status)
