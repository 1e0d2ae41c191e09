"""A USB/IP client for tests: the kernel's vhci-hcd side of the protocol, in plain sockets.

It speaks to ``wdfusb.usbip.Server`` byte for byte as ``usbip attach`` and vhci-hcd do (the rig's
kernel lane attaches the real one); here every answer can be looked at.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from wdfusb.usbip import protocol as p


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
    data: bytes = b""


class Client:
    """One imported device: ``submit`` sends a URB, ``reply`` reads the next answer."""

    def __init__(self, port: int, busid: str, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(p.op(p.OP_REQ_IMPORT) + p.BUSID.pack(busid.encode()))
        _version, code, self.status = p.OP_HEADER.unpack(_recv(self.sock, 8))
        assert code == p.OP_REP_IMPORT
        self.device = p.ExportedDevice.unpack(_recv(self.sock, p.DEVICE.size))[0] if self.status == p.ST_OK else None
        self.seqnum = 0
        self._dirs: dict[int, int] = {}

    def submit(self, ep: int, length: int = 0, data: bytes = b"", setup: bytes = bytes(8), flags: int = 0,
               direction: int | None = None, packets: int = 0) -> int:  # fmt: skip
        """Send a URB to ``ep`` (an address: bit 7 is IN; EP0 takes ``direction`` from the setup
        packet); returns its seqnum."""
        self.seqnum += 1
        if direction is None:
            direction = p.DIR_IN if (ep & 0x80 if ep & 0x7F else setup[0] & 0x80) else p.DIR_OUT
        if direction == p.DIR_OUT and data:
            length = len(data)
        devid = self.device.devid if self.device else 0
        cmd = p.Submit(self.seqnum, devid, direction, ep & 0x7F, flags, length, 0, packets, 0, setup)
        self.sock.sendall(cmd.pack() + (data if direction == p.DIR_OUT else b"") + bytes(16 * packets))
        self._dirs[self.seqnum] = direction
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
        status, actual, _start, packets, _errors = p.RET_SUBMIT_HEADER.unpack(head)[5:]
        assert packets == 0
        data = _recv(self.sock, actual) if self._dirs.pop(seqnum) == p.DIR_IN and actual > 0 else b""
        return Reply(command, seqnum, status, actual, data)

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
