"""Virtual devices served over USB/IP: any USB stack that speaks the protocol (the Linux kernel's
``vhci-hcd`` through ``usbip attach``, usbipd-win's client) sees a :class:`~wdfusb.VirtualDevice`
as a USB device of its own.

Each URB the client submits is one asynchronous transfer on the engine (the same path as
``Pipe.write_async``): a ``CMD_SUBMIT`` becomes a transfer on the endpoint it names (EP0: a
control transfer with the URB's setup packet, answered by the virtual device's EP0), its
completion becomes the ``RET_SUBMIT``, and a ``CMD_UNLINK`` cancels the transfer. An unlinked
URB that moved bytes is answered with a ``RET_SUBMIT`` carrying its exact count, then a
``RET_UNLINK`` with status 0 (the URB had completed); one that moved nothing gets only the
``RET_UNLINK`` with ``-ECONNRESET``. So a client's time-out or cancel reports every byte that
moved, which the kernel's own ``usbip-host`` cannot do (its ``RET_UNLINK`` has no byte count).

An isochronous URB is one isochronous transfer on the engine, on the same path: its packets
are the URB's packet descriptors (the client's offsets, normally end to end, are gathered to
the engine's layout), and its answer carries each packet's actual length and status as a
Linux host controller reports them (0; a packet's own error; ``-EXDEV`` for one the transfer
never got to, as when it was unlinked or timed out), the IN data packed without the gaps short
packets leave, and ``error_count``. An unlinked one follows the rules above by the bytes its
packets moved.

One client imports a device at a time (``ST_DEV_BUSY`` for a second). When the device leaves
(unplug, re-enumeration, port cycle), its session ends like an unplugged cable: the URBs in
flight are answered with ``-ESHUTDOWN`` and the connection is closed; the new attachment can be
imported again. A client that goes away (``usbip detach``) has its URBs cancelled and drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

from .. import _aio
from .._core import SETUP_SIZE, CoreDevice, CorePipe
from .._descriptors import EndpointInfo
from .._engine import (
    EP_ISOCHRONOUS,
    WU_ERR_CANCELLED,
    WU_ERR_INVALID_PARAM,
    WU_ERR_NO_DEVICE,
    WU_ERR_NOT_FOUND,
    WU_ERR_OVERFLOW,
    WU_ERR_PIPE,
    WU_ERR_TIMEOUT,
    WU_PENDING,
    ZLP,
    EngineError,
    IsoPackets,
    Transfer,
    pin,
)
from ..virtual import VirtualDevice
from . import protocol as p

log = logging.getLogger(__name__)
DEFAULT_PORT = 3240  # USB/IP's registered TCP port
MAX_URB = 64 << 20  # a longer transfer_buffer_length is a broken client (usbfs caps URBs at 16 MiB)
GONE_POLL_S = 0.2  # how often an idle session looks whether its device is still attached
SET_ADDRESS = bytes([0x00, 0x05])
USB_SPEEDS = {0: p.SPEED_UNKNOWN, 1: p.SPEED_LOW, 2: p.SPEED_FULL, 3: p.SPEED_HIGH, 4: p.SPEED_SUPER}
URB_STATUS = {  # engine result -> the URB status a Linux host controller reports for it
    0: 0,
    WU_ERR_PIPE: p.E_STALL,
    WU_ERR_CANCELLED: p.E_UNLINKED,
    WU_ERR_NO_DEVICE: p.E_GONE,
    WU_ERR_TIMEOUT: p.E_TIMEOUT,
    WU_ERR_OVERFLOW: p.E_OVERFLOW,
    WU_ERR_INVALID_PARAM: p.E_INVALID,
    WU_ERR_NOT_FOUND: -2,  # -ENOENT: no such endpoint in the current setting
}


NOT_REACHED = (WU_PENDING, WU_ERR_CANCELLED, WU_ERR_TIMEOUT, WU_ERR_NO_DEVICE)  # a packet's: never on the bus


def urb_status(code: int) -> int:
    return URB_STATUS.get(code, p.E_PROTOCOL)


def packet_status(code: int) -> int:
    """An isochronous packet's status as a Linux host controller leaves it: 0, the packet's own
    error, or ``-EXDEV`` (usb_submit_urb's preset) for one the transfer ended before."""
    return p.E_NOT_DONE if code in NOT_REACHED else urb_status(code)


class ProtocolError(Exception):
    """The client sent something that is not USB/IP: its connection is closed."""


class Export:
    """One exported virtual device: its bus id (``0-<port>``, wdfusb's port path for it) and the
    session of the client that imported it, if any."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.busid = f"0-{device.port}"
        self.session: _Session | None = None

    def describe(self, core: CoreDevice) -> p.ExportedDevice:
        d = core.device_descriptor
        config = core.config
        rc, current = core.native.get_configuration()
        interfaces = [(s.interface_class, s.interface_subclass, s.interface_protocol)
                      for i in config.interfaces for s in i.settings[:1]]  # fmt: skip
        return p.ExportedDevice(
            busid=self.busid,
            path=f"/sys/devices/wdfusb/virtual/{self.busid}",
            busnum=0,
            devnum=self.device.address & 0xFFFF,
            speed=USB_SPEEDS.get(core.speed, p.SPEED_UNKNOWN),
            vid=int.from_bytes(d[8:10], "little"),
            pid=int.from_bytes(d[10:12], "little"),
            bcd_device=int.from_bytes(d[12:14], "little"),
            device_class=d[4],
            device_subclass=d[5],
            device_protocol=d[6],
            configuration=current if rc == 0 else 0,
            num_configurations=d[17],
            interfaces=interfaces,
        )


class _Urb:
    __slots__ = ("answered", "cmd", "iso", "task", "unlinking", "xfer")

    def __init__(self, cmd: p.Submit, xfer: Transfer | None, iso: list[p.IsoDescriptor] | None) -> None:
        self.cmd = cmd
        self.xfer = xfer
        self.iso = iso  # an isochronous URB's packets, as the client sent them
        self.task: asyncio.Task[None] | None = None
        self.unlinking = False  # a CMD_UNLINK names it: a cancel that moved nothing goes unanswered
        self.answered = False  # its RET_SUBMIT is sent


class _Session:
    """An imported device: the URBs of one client connection."""

    def __init__(self, export: Export, core: CoreDevice, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:  # fmt: skip
        self.export = export
        self.core = core
        self.reader = reader
        self.writer = writer
        self.urbs: dict[int, _Urb] = {}
        self.alt = 0  # interface 0's setting, as the client's SET_INTERFACE chose it
        self._pipes: dict[tuple[int, int], CorePipe] = {}
        self._gone = asyncio.Event()
        self._draining = asyncio.Lock()
        self._unlinks: set[asyncio.Task[None]] = set()
        self.detached = False  # the client closed the connection: answers go nowhere

    async def run(self) -> None:
        reading = asyncio.ensure_future(self._read())
        gone = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait([reading, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, gone):
                task.cancel()
            self.core.close()  # C cancels and drains every transfer of this session
            pending = [u.task for u in self.urbs.values() if u.task is not None]
            await asyncio.gather(*pending, *self._unlinks, return_exceptions=True)
            await asyncio.gather(reading, gone, return_exceptions=True)
            self.writer.close()

    async def _read(self) -> None:
        read = self.reader.readexactly
        try:
            while True:
                header = await read(p.HEADER_SIZE)
                command = p.command_of(header)
                if command == p.CMD_SUBMIT:
                    cmd = p.parse_submit(header)
                    if not 0 <= cmd.length <= MAX_URB or cmd.iso_packets > p.MAX_ISO_PACKETS:
                        raise ProtocolError(f"URB {cmd.seqnum}: transfer_buffer_length {cmd.length}")
                    if cmd.seqnum in self.urbs:  # (vhci-hcd never reuses one in flight: no answer could say which)
                        raise ProtocolError(f"URB {cmd.seqnum}: its seqnum is in flight")
                    data = await read(cmd.length) if cmd.direction == p.DIR_OUT and cmd.length else b""
                    iso = p.parse_iso(await read(cmd.iso_packets * p.ISO_DESCRIPTOR_SIZE)) if cmd.iso_packets else None
                    self._start(cmd, data, iso)
                elif command == p.CMD_UNLINK:
                    seqnum, victim = p.parse_unlink(header)
                    unlink = asyncio.ensure_future(self._unlink(seqnum, p.BASIC.unpack_from(header)[2], victim))
                    self._unlinks.add(unlink)
                    unlink.add_done_callback(self._unlinks.discard)
                else:
                    raise ProtocolError(f"command {command:#x}")
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            self.detached = True  # the client detached (or spoke something else): the session ends

    async def _watch(self) -> None:
        """Ends when the device left (its URBs' answers, or a look every GONE_POLL_S)."""
        native = self.core.native
        while not self._gone.is_set():
            if native.status != 0 or self.export.device._native is not native:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._gone.wait(), GONE_POLL_S)

    def _start(self, cmd: p.Submit, data: bytes, iso: list[p.IsoDescriptor] | None) -> None:
        try:
            xfer: Transfer | None = self.core.new_transfer()
        except EngineError:  # closed under us: answered as a gone device
            xfer = None
        urb = self.urbs[cmd.seqnum] = _Urb(cmd, xfer, iso)
        urb.task = asyncio.ensure_future(self._complete(urb, data))

    async def _complete(self, urb: _Urb, data: bytes) -> None:
        """Run the URB and answer it (an unlinked one that moved nothing: the unlink answers)."""
        cmd = urb.cmd
        is_in = cmd.direction == p.DIR_IN
        packets: IsoPackets | None = None
        try:
            code, actual, raw, offset, packets = await self._execute(urb, data)
        except Exception:
            log.exception("USB/IP URB %d on %s", cmd.seqnum, self.export.busid)
            code, actual, raw, offset = WU_ERR_INVALID_PARAM, 0, b"", 0
        status = urb_status(code)
        short = is_in and actual < cmd.length and urb.iso is None  # (usbip-host masks the flag off iso URBs)
        if status == 0 and short and cmd.transfer_flags & p.URB_SHORT_NOT_OK:
            status = p.E_SHORT
        if code == WU_ERR_NO_DEVICE:
            self._gone.set()
        if not (urb.unlinking and code == WU_ERR_CANCELLED and actual == 0):
            if urb.iso is None:
                parts = [memoryview(raw)[offset : offset + actual]] if is_in and actual else []
                self._send(p.ret_submit(cmd, status, actual), parts)
            else:
                iso, parts = _iso_answer(urb.iso, packets, raw if is_in else None)
                actual = sum(d.actual for d in iso)
                self._send(p.ret_submit(cmd, status, actual, iso), [*parts, p.pack_iso(iso)])
            urb.answered = True
        del self.urbs[cmd.seqnum]
        await self._drain()

    async def _execute(self, urb: _Urb, data: bytes) -> tuple[int, int, Any, int, IsoPackets | None]:
        """``(engine result, bytes moved, the buffer, where its data stage starts, an isochronous
        URB's packets)``."""
        cmd = urb.cmd
        is_in = cmd.direction == p.DIR_IN
        if urb.xfer is None:
            return WU_ERR_NO_DEVICE, 0, b"", 0, None
        if cmd.ep == 0 and cmd.setup[:2] == SET_ADDRESS:
            return 0, 0, b"", 0, None  # the bus's business: the address is the server's to keep
        pipe = self._pipe(cmd.ep | (0x80 if is_in else 0))
        if pipe is None:
            return WU_ERR_NOT_FOUND, 0, b"", 0, None
        if (pipe.type == EP_ISOCHRONOUS) != (urb.iso is not None):  # no packets, or packets on another type
            return WU_ERR_INVALID_PARAM, 0, b"", 0, None
        raw: Any = data
        offset = 0
        length = cmd.length
        packets = None
        if urb.iso is not None:  # the packets end to end, as the engine takes them
            packets = IsoPackets([d.length for d in urb.iso])
            if not _iso_fits(urb.iso, cmd.length):
                return WU_ERR_INVALID_PARAM, 0, b"", 0, packets
            rc = urb.xfer.set_iso(packets)
            if rc != 0:
                return rc, 0, b"", 0, packets
            raw = bytearray(packets.total) if is_in else _gather(data, urb.iso)
            length = packets.total
        elif cmd.ep == 0:  # the setup packet, then the data stage
            raw = bytearray(SETUP_SIZE + cmd.length)
            raw[:SETUP_SIZE] = cmd.setup
            if not is_in:
                raw[SETUP_SIZE:] = data
            offset = SETUP_SIZE
        elif is_in:
            raw = bytearray(cmd.length)
        buf = pin(raw, True) if isinstance(raw, bytearray) else raw
        flags = ZLP if cmd.transfer_flags & p.URB_ZERO_PACKET and not is_in and packets is None else 0
        code, actual = await _aio.complete(pipe, urb.xfer, buf, offset + length, flags, 0)
        if code == 0 and cmd.ep == 0:
            self._track_setting(cmd.setup)
        return code, actual, raw, offset, packets

    async def _unlink(self, seqnum: int, devid: int, victim: int) -> None:
        urb = self.urbs.get(victim)
        if urb is not None and urb.task is not None:
            urb.unlinking = True
            if urb.xfer is not None:
                urb.xfer.cancel()  # before its submit too: the submit then fails as cancelled
            await asyncio.wait([urb.task])
        answered = urb is None or urb.answered  # its RET_SUBMIT went first (with what it moved)
        self._send(p.ret_unlink(seqnum, devid, 0 if answered else p.E_UNLINKED))
        await self._drain()

    def _send(self, head: bytes, parts: Sequence[Any] = ()) -> None:
        if self.detached:
            return  # nobody to answer: the client closed the connection
        if not parts:
            self.writer.write(head)
        else:
            self.writer.writelines([head, *parts])

    async def _drain(self) -> None:
        async with self._draining:  # one waiter at a time (Python 3.10's streams allow no more)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    def _pipe(self, address: int) -> CorePipe | None:
        """The pipe of ``address`` in interface 0's current setting (EP0: the control pipe)."""
        if address & 0x7F == 0:
            return self.core.control_pipe
        key = (self.alt, address)
        pipe = self._pipes.get(key)
        if pipe is None:
            iface = self.core.config.interface(0)
            setting = iface.setting(self.alt) if iface is not None else None
            ep: EndpointInfo | None = next((e for e in setting.endpoints if e.address == address), None) \
                if setting is not None else None  # fmt: skip
            if ep is None:
                return None
            pipe = self._pipes[key] = CorePipe(self.core, 0, self.alt, ep)
        return pipe

    def _track_setting(self, setup: bytes) -> None:
        """The device took a SET_CONFIGURATION or SET_INTERFACE: the pipes follow its setting."""
        request_type, request, value = setup[0], setup[1], int.from_bytes(setup[2:4], "little")
        if request_type == 0x00 and request == 0x09:
            self.alt = 0
        elif request_type == 0x01 and request == 0x0B:
            self.alt = value


def _iso_fits(iso: Sequence[p.IsoDescriptor], length: int) -> bool:
    """Each packet inside the URB's buffer, none over another (their offsets in order)."""
    end = 0
    for d in iso:
        if d.offset < end or d.offset + d.length > length:
            return False
        end = d.offset + d.length
    return True


def _gather(data: bytes, iso: Sequence[p.IsoDescriptor]) -> bytes:
    """An OUT URB's packets end to end (the client's buffer, without the gaps between them)."""
    starts = _starts([d.length for d in iso])
    if all(d.offset == at for d, at in zip(iso, starts, strict=True)):  # the usual layout: as it came
        end = starts[-1] + iso[-1].length
        return data if end == len(data) else data[:end]
    return b"".join(data[d.offset : d.offset + d.length] for d in iso)


def _starts(lengths: Sequence[int]) -> list[int]:
    """Where each packet starts when they lie end to end."""
    return list(accumulate(lengths[:-1], initial=0))


def _iso_answer(iso: Sequence[p.IsoDescriptor], packets: IsoPackets | None,
                raw: Any) -> tuple[list[p.IsoDescriptor], list[memoryview]]:  # fmt: skip
    """The answer's packet descriptors (the client's offsets and lengths, each packet's result)
    and, for an IN URB (``raw``: the engine's buffer), the bytes each packet brought."""
    results = packets.results() if packets is not None else [(d.length, 0, WU_PENDING) for d in iso]
    answer = [d._replace(actual=r[1], status=packet_status(r[2])) for d, r in zip(iso, results, strict=True)]
    if raw is None:
        return answer, []
    view = memoryview(raw)
    starts = _starts([r[0] for r in results])
    return answer, [view[at : at + r[1]] for at, r in zip(starts, results, strict=True) if r[1]]


class Server:
    """A USB/IP server for virtual devices.

    ``await server.serve_forever()`` runs it on the current loop; ``server.start()`` runs it on
    a thread of its own and returns once it listens (``server.port`` is the port it got, also
    for ``port=0``); ``close()`` (or leaving ``with``) ends every session and stops it::

        with wdfusb.usbip.Server([VirtualDevice("high")], port=0).start() as server:
            print(f"usbip attach -r HOST --tcp-port {server.port} -b {server.exports[0].busid}")
    """

    def __init__(self, devices: Sequence[VirtualDevice], host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        if not devices:
            raise ValueError("export at least one device")
        self.exports = [Export(d) for d in devices]
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()

    async def serve_forever(self, listening: Callable[[Server], None] | None = None) -> None:
        """Listen until cancelled (or :meth:`close`); every session ends with it. ``listening``
        is called once the server listens (``self.port`` is then the port it got)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening.set()
        if listening is not None:
            listening(self)
        try:
            await self._stop.wait()
        finally:
            self._server.close()
            for writer in list(self._connections.values()):
                writer.close()  # as a pulled cable: each session cancels and drains its URBs
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    def start(self) -> Server:
        """Serve on a daemon thread; returns once the server listens (raises what stopped it)."""
        failed: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve_forever())
            except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
                failed.append(exc)
                self._listening.set()

        self._thread = threading.Thread(target=run, name="wdfusb-usbip", daemon=True)
        self._thread.start()
        self._listening.wait()
        if failed:
            raise failed[0]
        return self

    def close(self) -> None:
        """Stop listening, end every session (their URBs cancelled and drained), and return
        when that is done."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            head = await reader.readexactly(p.OP_HEADER.size)
            _version, code, _status = p.OP_HEADER.unpack(head)
            if code == p.OP_REQ_DEVLIST:
                writer.write(self._devlist())
            elif code == p.OP_REQ_IMPORT:
                busid = p.BUSID.unpack(await reader.readexactly(p.BUSID.size))[0].split(b"\0", 1)[0].decode()
                await self._import(busid, reader, writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    def _devlist(self) -> bytes:
        found = []
        for export in self.exports:
            _rc, core = CoreDevice.open(export.device)
            if core is not None:
                try:
                    found.append(export.describe(core).pack(with_interfaces=True))
                finally:
                    core.close()
        return p.op(p.OP_REP_DEVLIST) + p.COUNT.pack(len(found)) + b"".join(found)

    async def _import(self, busid: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        export = next((e for e in self.exports if e.busid == busid), None)
        if export is None:
            writer.write(p.op(p.OP_REP_IMPORT, p.ST_NODEV))
            return
        if export.session is not None:
            writer.write(p.op(p.OP_REP_IMPORT, p.ST_DEV_BUSY))
            return
        _rc, core = CoreDevice.open(export.device)
        if core is None:
            writer.write(p.op(p.OP_REP_IMPORT, p.ST_NODEV))
            return
        session = export.session = _Session(export, core, reader, writer)
        try:
            writer.write(p.op(p.OP_REP_IMPORT) + export.describe(core).pack(with_interfaces=False))
            await session.run()
        finally:
            export.session = None
            core.close()


__all__ = ["DEFAULT_PORT", "Export", "Server"]
