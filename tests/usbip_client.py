"""A USB/IP client for tests: the kernel's vhci-hcd side of the protocol, in plain sockets.

It speaks to ``wdfusb.usbip.Server`` byte for byte as ``usbip attach`` and vhci-hcd do (the rig's
kernel lane attaches the real one); here every answer can be looked at.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from wdfusb.usbip import protocol as p

NOT_ISO = -1  # number_of_packets 0xffffffff: not isochronous (the field is signed in p.SUBMIT)


def _recv(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def devlist(port: int, host: str = "127.0.0.1") -> list[p.ExportedDevice]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(p.op(p.OP_REQ_DEVLIST))
        _version, code, status = p.OP_HEADER.unpack(_recv(sock, 8))
        assert (code, status) == (p.OP_REP_DEVLIST, p.ST_OK)
        (count,) = p.COUNT.unpack(_recv(sock, 4))
        found = []
        for _ in range(count):
            dev, nifs = p.ExportedDevice.unpack(_recv(sock, p.DEVICE.size))
            dev.interfaces = [p.INTERFACE.unpack(_recv(sock, 4)) for _ in range(nifs)]
            found.append(dev)
        assert sock.recv(1) == b""  # the server closes a listing connection
        return found


@dataclass
class Reply:
    command: int  # RET_SUBMIT or RET_UNLINK
    seqnum: int
    status: int
    actual: int = 0
    data: bytes = b""  # an isochronous IN URB's: each packet's bytes end to end, as on the wire
    iso: list[p.IsoDescriptor] = field(default_factory=list)  # an isochronous URB's packets
    error_count: int = 0
    start_frame: int = 0

    def padded(self, length: int) -> bytes:
        """An isochronous IN URB's buffer as vhci-hcd rebuilds it (usbip_pad_iso): each packet's
        bytes at its offset, zeros in the gaps."""
        out, at = bytearray(length), 0
        for d in self.iso:
            out[d.offset : d.offset + d.actual] = self.data[at : at + d.actual]
            at += d.actual
        return bytes(out)


class Client:
    """One imported device: ``submit`` sends a URB, ``reply`` reads the next answer."""

    def __init__(self, port: int, busid: str, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(p.op(p.OP_REQ_IMPORT) + p.BUSID.pack(busid.encode()))
        _version, code, self.status = p.OP_HEADER.unpack(_recv(self.sock, 8))
        assert code == p.OP_REP_IMPORT
        self.device = p.ExportedDevice.unpack(_recv(self.sock, p.DEVICE.size))[0] if self.status == p.ST_OK else None
        self.seqnum = 0
        self._urbs: dict[int, tuple[int, int | None]] = {}  # seqnum -> direction, isochronous packets

    def submit(self, ep: int, length: int = 0, data: bytes = b"", setup: bytes = bytes(8), flags: int = 0,
               direction: int | None = None, iso: Sequence[int] | None = None,
               offsets: Sequence[int] | None = None, start_frame: int = 0) -> int:  # fmt: skip
        """Send a URB to ``ep`` (an address: bit 7 is IN; EP0 takes ``direction`` from the setup
        packet); returns its seqnum. ``iso``: an isochronous URB of packets of these lengths, at
        ``offsets`` in its buffer (end to end unless given; the buffer is ``length`` bytes, or
        up to the last packet's end), as vhci-hcd sends one: the whole OUT buffer, then the
        descriptors (usbip_alloc_iso_desc_pdu)."""
        self.seqnum += 1
        if direction is None:
            direction = p.DIR_IN if (ep & 0x80 if ep & 0x7F else setup[0] & 0x80) else p.DIR_OUT
        if direction == p.DIR_OUT and data:
            length = len(data)
        descriptors = b""
        packets = NOT_ISO
        if iso is not None:
            at = [sum(iso[:i]) for i in range(len(iso))] if offsets is None else list(offsets)
            length = max(length, max((o + n for o, n in zip(at, iso, strict=True)), default=0))
            descriptors = p.pack_iso([p.IsoDescriptor(o, n, 0, 0) for o, n in zip(at, iso, strict=True)])
            packets = len(iso)
        devid = self.device.devid if self.device else 0
        cmd = p.Submit(self.seqnum, devid, direction, ep & 0x7F, flags, length, start_frame, packets, 0, setup)
        self.sock.sendall(cmd.pack() + (data if direction == p.DIR_OUT else b"") + descriptors)
        self._urbs[self.seqnum] = (direction, None if iso is None else len(iso))
        return self.seqnum

    def unlink(self, victim: int) -> int:
        self.seqnum += 1
        self.sock.sendall(p.UNLINK.pack(p.CMD_UNLINK, self.seqnum, 0, 0, 0, victim))
        return self.seqnum

    def reply(self) -> Reply:
        head = _recv(self.sock, p.HEADER_SIZE)
        command, seqnum, _devid, _direction, _ep = p.BASIC.unpack_from(head)
        if command == p.RET_UNLINK:
            return Reply(command, seqnum, p.RET_UNLINK_HEADER.unpack(head)[5])
        assert command == p.RET_SUBMIT, command
        status, actual, start, packets, errors = p.RET_SUBMIT_HEADER.unpack(head)[5:]
        direction, iso = self._urbs.pop(seqnum)
        data = _recv(self.sock, actual) if direction == p.DIR_IN and actual > 0 else b""
        if iso is None:
            assert packets == 0 and errors == 0
            return Reply(command, seqnum, status, actual, data)
        assert packets == iso  # vhci-hcd reads this many descriptors (usbip_recv_iso)
        descriptors = p.parse_iso(_recv(self.sock, packets * p.ISO_DESCRIPTOR_SIZE))
        assert sum(d.actual for d in descriptors) == actual  # ... and checks they add up
        return Reply(command, seqnum, status, actual, data, descriptors, errors, start)

    def transfer(self, ep: int, length: int = 0, data: bytes = b"", **kw: object) -> Reply:
        seq = self.submit(ep, length, data, **kw)  # type: ignore[arg-type]
        reply = self.reply()
        assert reply.seqnum == seq
        return reply

    def control(self, request_type: int, request: int, value: int = 0, index: int = 0, length: int = 0,
                data: bytes = b"") -> Reply:  # fmt: skip
        setup = struct.pack("<BBHHH", request_type, request, value, index, len(data) or length)
        return self.transfer(0, len(data) or length, data, setup=setup)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
