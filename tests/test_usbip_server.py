"""wdfusb.usbip.Server against a USB/IP client that checks every answer (tests/usbip_client.py).

The kernel lane attaches the same server with the real vhci-hcd (tests/kernel/test_usbip_serve_libusb.py);
here each protocol rule is looked at byte for byte: the device list, the import, URBs on EP0 and on
bulk endpoints with CRCs, isochronous URBs with their packet descriptors, unlinks with exact counts,
stalls, a busy device, a device that leaves, a client that goes away, and garbage on the wire.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import usbip_client as uc

import wdfusb
from wdfusb import VirtualDevice
from wdfusb.usbip import Server
from wdfusb.usbip import protocol as p

OUT, IN = 0x06, 0x88  # the default profile's bulk loopback


@pytest.fixture
def served() -> Iterator[tuple[VirtualDevice, Server]]:
    vdev = VirtualDevice("high", loopback_capacity=8 << 20)
    try:
        with Server([vdev], port=0).start() as server:
            yield vdev, server
    finally:
        vdev.close()


def _wait_until(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def _stuck_urbs(vdev: VirtualDevice, server: Server, outs: int) -> tuple[uc.Client, Any]:
    """An imported device with ``outs`` OUT URBs stuck on a NAKing endpoint and one IN URB waiting."""
    c = _client(server)
    c.control(0x00, 0x09, 1)
    vdev.endpoint(OUT).nak(float("inf"))
    for _ in range(outs):
        c.submit(OUT, data=bytes(4096))
    c.submit(IN, 512)
    time.sleep(0.1)
    native = vdev._native
    assert native.live_transfers() >= outs + 1
    return c, native


def _client(server: Server, index: int = 0) -> uc.Client:
    client = uc.Client(server.port, server.exports[index].busid)
    assert client.status == p.ST_OK
    return client


def test_the_device_list_describes_each_export() -> None:
    a, b = VirtualDevice("high"), VirtualDevice("super")
    fx2 = VirtualDevice("high", profile="osrfx2")
    try:
        with Server([a, b, fx2], port=0).start() as server:
            found = uc.devlist(server.port)
    finally:
        for v in (a, b, fx2):
            v.close()
    assert [d.busid for d in found] == [f"0-{a.port}", f"0-{b.port}", f"0-{fx2.port}"]
    assert [d.speed for d in found] == [p.SPEED_HIGH, p.SPEED_SUPER, p.SPEED_HIGH]
    assert [(d.vid, d.pid) for d in found] == [(a.vid, a.pid), (b.vid, b.pid), (fx2.vid, fx2.pid)]
    assert [d.devnum for d in found] == [a.address, b.address, fx2.address]
    assert all(d.interfaces == [(0xFF, 0, 0)] and d.num_configurations == 1 for d in found)


def test_enumeration_through_ep0(served: tuple[VirtualDevice, Server]) -> None:
    vdev, server = served
    with _client(server) as c:
        assert c.device is not None and c.device.busid == server.exports[0].busid
        assert c.device.devid == vdev.address
        first = c.control(0x80, 0x06, 0x0100, 0, 64)  # as a host asks at address 0
        assert first.status == 0 and first.actual == 18 and first.data[:2] == b"\x12\x01"
        assert c.control(0x00, 0x05, 7).status == 0  # SET_ADDRESS: the server's to keep, answered
        head = c.control(0x80, 0x06, 0x0200, 0, 9)
        total = int.from_bytes(head.data[2:4], "little")
        config = c.control(0x80, 0x06, 0x0200, 0, total)
        assert config.actual == total and config.data[:9] == head.data
        serial = c.control(0x80, 0x06, 0x0303, 0x0409, 255)
        assert serial.data[2:].decode("utf-16-le") == vdev.serial
        assert c.control(0x80, 0x08, 0, 0, 1).data == b"\x00"  # not configured yet
        assert c.control(0x00, 0x09, 1).status == 0
        assert c.control(0x80, 0x08, 0, 0, 1).data == b"\x01"
        assert c.control(0xC0, 0x77, 0, 0, 4).status == p.E_STALL  # an unknown request stalls
        assert c.control(0x80, 0x00, 0, 0, 2).data == b"\x00\x00"  # ... and the next SETUP clears it


def test_bulk_data_round_trips_with_crcs(served: tuple[VirtualDevice, Server]) -> None:
    vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        data = os.urandom(3 << 20)
        sent = [c.submit(OUT, data=data[i : i + (256 << 10)]) for i in range(0, len(data), 256 << 10)]
        replies = [c.reply() for _ in sent]  # twelve in flight at once
        assert [r.seqnum for r in replies] == sent and all(r.status == 0 for r in replies)
        assert sum(r.actual for r in replies) == len(data)
        assert vdev.endpoint(OUT).received_bytes == len(data) and vdev.endpoint(OUT).crc32 == zlib.crc32(data)
        back = c.transfer(IN, 1 << 20)
        assert back.status == 0 and back.data == data[: 1 << 20]
        short = c.transfer(IN, 4096, flags=p.URB_SHORT_NOT_OK)  # 4 KiB of 2 MiB are there: whole
        assert short.status == 0 and short.data == data[1 << 20 : (1 << 20) + 4096]
        zlp = c.transfer(OUT, data=bytes(512), flags=p.URB_ZERO_PACKET)
        assert zlp.status == 0 and vdev.endpoint(OUT).zero_length_packets == 1


def test_a_short_read_fails_only_with_short_not_ok(served: tuple[VirtualDevice, Server]) -> None:
    _vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        c.transfer(OUT, data=b"a" * 100)  # (the loopback is a byte stream)
        ok = c.transfer(IN, 512)
        assert (ok.status, ok.data) == (0, b"a" * 100)
        c.transfer(OUT, data=b"b" * 100)
        short = c.transfer(IN, 512, flags=p.URB_SHORT_NOT_OK)
        assert (short.status, short.actual, short.data) == (p.E_SHORT, 100, b"b" * 100)
        c.transfer(OUT, data=b"c" * 600)
        whole = c.transfer(IN, 512, flags=p.URB_SHORT_NOT_OK)
        assert (whole.status, whole.data) == (0, b"c" * 512)


def test_an_unlinked_urb_reports_exactly_what_moved() -> None:
    """A URB unlinked mid-way (a client's time-out) is answered with the bytes the endpoint took,
    then RET_UNLINK status 0; one that moved nothing gets only RET_UNLINK -ECONNRESET. (A
    full-speed device: 4 MiB take seconds, so the unlink comes mid-way on any machine.)"""
    vdev = VirtualDevice("full")
    try:
        with Server([vdev], port=0).start() as server, _client(server) as c:
            c.control(0x00, 0x09, 1)
            data = os.urandom(4 << 20)
            seq = c.submit(OUT, data=data)
            _wait_until(lambda: vdev.endpoint(OUT).received_bytes >= 64 << 10, 30)
            vdev.endpoint(OUT).nak(float("inf"))  # held mid-way
            unlink = c.unlink(seq)
            answer, done = c.reply(), c.reply()
            moved = vdev.endpoint(OUT).received_bytes
            assert (answer.command, answer.seqnum, answer.status) == (p.RET_SUBMIT, seq, p.E_UNLINKED)
            assert 64 << 10 <= answer.actual == moved < len(data) and answer.actual % 64 == 0
            assert vdev.endpoint(OUT).crc32 == zlib.crc32(data[:moved])
            assert (done.command, done.seqnum, done.status) == (p.RET_UNLINK, unlink, 0)

            seq = c.submit(OUT, data=bytes(64))
            time.sleep(0.05)
            unlink = c.unlink(seq)
            only = c.reply()
            assert (only.command, only.seqnum, only.status) == (p.RET_UNLINK, unlink, p.E_UNLINKED)
            vdev.endpoint(OUT).nak(0)
            assert c.transfer(OUT, data=b"after").status == 0  # nothing was left over: the next is next
            assert vdev.endpoint(OUT).received_bytes == moved + 5

            late = c.unlink(999)  # no such URB (answered long ago): status 0
            assert c.reply() == uc.Reply(p.RET_UNLINK, late, 0)
    finally:
        vdev.close()


ISO_OUT, ISO_IN = 0x03, 0x83  # the pyusb benchmark device's isochronous loopback (alt 2, 16-byte packets)


def _iso_client(server: Server) -> uc.Client:
    c = _client(server)
    assert c.control(0x00, 0x09, 1).status == 0
    assert c.control(0x01, 0x0B, 2, 0).status == 0  # SET_INTERFACE: the isochronous setting
    return c


def _packets(r: uc.Reply) -> list[tuple[int, int]]:
    return [(d.actual, d.status) for d in r.iso]


def test_isochronous_urbs_loop_back_with_their_packets() -> None:
    """Isochronous OUT URBs, then IN URBs, on the pyusb benchmark device: each packet's
    descriptor comes back with its offset, length, actual length and status, the IN data packed
    without the gaps of short packets, error_count and actual_length adding up."""
    vdev = VirtualDevice(None, profile="pyusb-benchmark")
    try:
        with Server([vdev], port=0).start() as server, _iso_client(server) as c:
            lengths = [16, 5, 0, 16, 16, 1, 12] * 5
            data = os.urandom(sum(lengths))
            out = c.transfer(ISO_OUT, data=data, iso=lengths)
            offsets = [sum(lengths[:i]) for i in range(len(lengths))]
            assert (out.status, out.actual, out.error_count, out.data) == (0, len(data), 0, b"")
            assert out.iso == [p.IsoDescriptor(o, n, n, 0) for o, n in zip(offsets, lengths, strict=True)]
            assert vdev.endpoint(ISO_OUT).crc32 == zlib.crc32(data)

            # Packets with gaps between them (offsets from the client): only the packets go out
            gappy = bytearray(os.urandom(64))
            sent = gappy[0:10] + gappy[16:26] + gappy[40:56]
            spaced = c.transfer(ISO_OUT, data=bytes(gappy), iso=[10, 10, 16], offsets=[0, 16, 40])
            assert (spaced.status, spaced.actual) == (0, 36)
            assert [(d.offset, d.length, d.actual) for d in spaced.iso] == [(0, 10, 10), (16, 10, 10), (40, 16, 16)]
            everything = data + sent
            assert vdev.endpoint(ISO_OUT).crc32 == zlib.crc32(everything)

            back = c.transfer(ISO_IN, iso=[16] * (len(everything) // 16))
            assert (back.status, back.error_count) == (0, 0)
            whole = len(everything) // 16 * 16
            assert back.actual == len(back.data) == whole and zlib.crc32(back.data) == zlib.crc32(everything[:whole])
            assert all(d.actual == 16 and d.status == 0 for d in back.iso)
            rest = everything[back.actual :]  # what the loopback still holds (< one packet)

            # A short IN: fewer bytes looped back than asked for
            c.transfer(ISO_OUT, data=b"x" * 16 + b"y" * 16 + b"z" * 8, iso=[16, 16, 8])
            short = c.transfer(ISO_IN, iso=[16] * 6)
            looped = rest + b"x" * 16 + b"y" * 16 + b"z" * 8
            assert (short.status, short.error_count, short.actual) == (0, 0, len(looped))
            assert short.data == looped  # packed: no gaps on the wire
            got = [min(16, max(0, len(looped) - 16 * i)) for i in range(6)]
            assert _packets(short) == [(n, 0) for n in got]
            assert [d.offset for d in short.iso] == [16 * i for i in range(6)]
            assert short.padded(96) == b"".join(looped[16 * i : 16 * i + n].ljust(16, b"\0") for i, n in enumerate(got))
            empty = c.transfer(ISO_IN, iso=[16, 16])  # nothing there: two empty packets, not an error
            assert (empty.status, empty.actual, empty.error_count, _packets(empty)) == (0, 0, 0, [(0, 0), (0, 0)])

            # Refused: a packet longer than the endpoint's, a packet outside the buffer
            for bad in (c.transfer(ISO_OUT, data=bytes(34), iso=[17, 17]),
                        c.transfer(ISO_IN, 16, iso=[16, 16], offsets=[0, 8])):  # fmt: skip
                assert (bad.status, bad.actual, bad.error_count) == (p.E_INVALID, 0, 2)
                assert _packets(bad) == [(0, p.E_NOT_DONE)] * 2
            assert c.transfer(ISO_IN, iso=[16]).status == 0  # the session goes on
            assert vdev.endpoint(ISO_OUT).received_bytes == len(everything) + 40
    finally:
        vdev.close()


def test_an_unlinked_isochronous_urb_reports_each_packet() -> None:
    """Unlinked mid-way (a full-speed device: one packet a millisecond): the RET_SUBMIT has the
    packets that went, the rest -EXDEV and counted in error_count, then RET_UNLINK 0; an IN URB
    that moved no byte gets only RET_UNLINK -ECONNRESET."""
    vdev = VirtualDevice("full", profile="pyusb-benchmark")
    try:
        with Server([vdev], port=0).start() as server, _iso_client(server) as c:
            n = 1000
            data = os.urandom(16 * n)
            seq = c.submit(ISO_OUT, data=data, iso=[16] * n)
            _wait_until(lambda: vdev.endpoint(ISO_OUT).received_bytes >= 16 * 40, 30)
            unlink = c.unlink(seq)
            answer, done = c.reply(), c.reply()
            moved = vdev.endpoint(ISO_OUT).received_bytes
            k = moved // 16
            assert (answer.command, answer.seqnum, answer.status) == (p.RET_SUBMIT, seq, p.E_UNLINKED)
            assert 40 <= k < n and answer.actual == moved == 16 * k
            assert _packets(answer) == [(16, 0)] * k + [(0, p.E_NOT_DONE)] * (n - k)
            assert answer.error_count == n - k
            assert vdev.endpoint(ISO_OUT).crc32 == zlib.crc32(data[:moved])
            assert (done.command, done.seqnum, done.status) == (p.RET_UNLINK, unlink, 0)

            # IN: the looped packets come back, then empty ones, until the unlink
            seq = c.submit(ISO_IN, iso=[16] * n)
            _wait_until(lambda: vdev.endpoint(ISO_IN).sent_bytes >= moved, 30)
            time.sleep(0.02)  # a few empty packets more
            unlink = c.unlink(seq)
            answer, done = c.reply(), c.reply()
            assert (answer.seqnum, answer.status, answer.actual) == (seq, p.E_UNLINKED, moved)
            assert answer.data == data[:moved]
            reached = sum(1 for d in answer.iso if d.status == 0)
            assert k < reached < n and answer.error_count == n - reached
            assert _packets(answer) == [(16, 0)] * k + [(0, 0)] * (reached - k) + [(0, p.E_NOT_DONE)] * (n - reached)
            assert (done.command, done.seqnum, done.status) == (p.RET_UNLINK, unlink, 0)

            seq = c.submit(ISO_IN, iso=[16] * n)  # the loopback is empty: no byte will move
            time.sleep(0.02)
            unlink = c.unlink(seq)
            only = c.reply()
            assert (only.command, only.seqnum, only.status) == (p.RET_UNLINK, unlink, p.E_UNLINKED)
            assert c.transfer(ISO_OUT, data=b"after", iso=[5]).iso == [p.IsoDescriptor(0, 5, 5, 0)]
            assert vdev.endpoint(ISO_OUT).received_bytes == moved + 5
    finally:
        vdev.close()


def test_unlink_storm_keeps_every_count(served: tuple[VirtualDevice, Server]) -> None:
    """Many URBs, every other one unlinked at once: each is answered exactly once and the counts
    add up to what the endpoint received."""
    vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        data = os.urandom(64 << 10)
        urbs = [c.submit(OUT, data=data) for _ in range(40)]
        unlinks = {c.unlink(seq): seq for seq in urbs[::2]}
        submits: dict[int, int] = {}
        unlinked: dict[int, int] = {}
        while len(unlinked) < len(unlinks) or not set(urbs[1::2]) <= submits.keys():
            r = c.reply()
            if r.command == p.RET_SUBMIT:
                assert r.seqnum not in submits and r.status in (0, p.E_UNLINKED)
                submits[r.seqnum] = r.actual
            else:
                unlinked[unlinks[r.seqnum]] = r.status
                answered = unlinks[r.seqnum] in submits
                assert r.status == (0 if answered else p.E_UNLINKED)
        assert all(submits[s] == len(data) for s in urbs[1::2])
        assert sum(submits.values()) == vdev.endpoint(OUT).received_bytes


def test_a_stall_and_clear_feature(served: tuple[VirtualDevice, Server]) -> None:
    vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        vdev.endpoint(OUT).stall()
        assert c.transfer(OUT, data=b"x").status == p.E_STALL
        assert c.control(0x82, 0x00, 0, OUT, 2).data == b"\x01\x00"  # GET_STATUS: halted
        assert c.control(0x02, 0x01, 0, OUT).status == 0  # CLEAR_FEATURE(ENDPOINT_HALT)
        assert c.transfer(OUT, data=b"x").status == 0
        assert c.transfer(0x05, data=b"x").status == -2  # no such endpoint: -ENOENT
        iso = c.transfer(0x03, data=bytes(64), iso=[64])  # the isochronous sink takes it
        assert (iso.status, iso.actual, iso.iso) == (0, 64, [p.IsoDescriptor(0, 64, 64, 0)])
        assert c.transfer(0x03, data=bytes(64)).status == p.E_INVALID  # ... as packets only
        bulk = c.transfer(OUT, data=bytes(64), iso=[32, 32])  # packets on a bulk endpoint: refused
        assert (bulk.status, bulk.actual, bulk.error_count) == (p.E_INVALID, 0, 2)
        assert [d.status for d in bulk.iso] == [p.E_NOT_DONE] * 2


def test_one_importer_at_a_time(served: tuple[VirtualDevice, Server]) -> None:
    _vdev, server = served
    with _client(server) as c:
        with uc.Client(server.port, server.exports[0].busid) as second:
            assert second.status == p.ST_DEV_BUSY and second.device is None
        with uc.Client(server.port, "9-9") as wrong:
            assert wrong.status == p.ST_NODEV
        assert c.control(0x80, 0x00, 0, 0, 2).status == 0
    _wait_until(lambda: server.exports[0].session is None)
    with _client(server) as again:  # the first one went: it is free again
        assert again.control(0x80, 0x00, 0, 0, 2).status == 0


def test_a_client_that_goes_away_leaves_nothing_in_flight(served: tuple[VirtualDevice, Server]) -> None:
    vdev, server = served
    c, native = _stuck_urbs(vdev, server, 8)
    c.close()
    _wait_until(lambda: server.exports[0].session is None and not native.live_transfers())
    assert server.exports[0].session is None and native.live_transfers() == 0
    assert vdev.endpoint(OUT).received_bytes == 0


def test_a_device_that_leaves_ends_its_session(served: tuple[VirtualDevice, Server]) -> None:
    """Unplugged mid-transfer: the URB is answered with -ESHUTDOWN and the bytes that moved, and
    the connection closes as a pulled cable does; after a re-enumeration the new attachment
    can be imported again."""
    vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        seq = c.submit(OUT, data=os.urandom(16 << 20))
        _wait_until(lambda: vdev.endpoint(OUT).received_bytes > 0, 30)
        vdev.reenumerate()
        r = c.reply()
        assert (r.seqnum, r.status) == (seq, p.E_GONE) and 0 < r.actual < 16 << 20
        with pytest.raises((EOFError, ConnectionError)):
            c.reply()
    _wait_until(lambda: server.exports[0].session is None)
    with _client(server) as again:
        assert again.device is not None and again.device.devnum == vdev.address
        assert again.control(0x80, 0x00, 0, 0, 2).status == 0


def test_garbage_closes_the_connection_not_the_server(served: tuple[VirtualDevice, Server]) -> None:
    _vdev, server = served
    with _client(server) as c:
        c.sock.sendall(struct.pack(">I", 0x77) + bytes(44))
        with pytest.raises((EOFError, ConnectionError)):
            c.reply()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        raw.settimeout(5)
        assert raw.recv(100) == b""
    with _client(server) as huge:
        huge.sock.sendall(p.Submit(1, 0, p.DIR_OUT, 6, 0, 1 << 30, 0, 0, 0, bytes(8)).pack())
        with pytest.raises((EOFError, ConnectionError)):
            huge.reply()
    assert len(uc.devlist(server.port)) == 1


def test_the_osrfx2_profile_answers_its_vendor_requests() -> None:
    """The served FX2 board: its bar graph request (SET_BAR_GRAPH_DISPLAY 0xD8) and read-back
    (0xD7) go through EP0 to the profile's own handler."""
    fx2 = VirtualDevice("high", profile="osrfx2")
    try:
        with Server([fx2], port=0).start() as server, _client(server) as c:
            assert c.control(0x40, 0xD8, data=b"\x5a").status == 0
            assert c.control(0xC0, 0xD7, length=1).data == b"\x5a"
    finally:
        fx2.close()


def test_wdfusb_serve_on_the_command_line() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wdfusb", "serve", "virtual:none", "virtual:full", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
        assert all(line.startswith("serving 0-") for line in lines), lines
        port = int(lines[0].split("--tcp-port ")[1].split()[0])
        found = uc.devlist(port)
        assert [d.speed for d in found] == [p.SPEED_UNKNOWN, p.SPEED_FULL]
        with uc.Client(port, found[0].busid) as c:
            assert c.control(0x80, 0x06, 0x0100, 0, 18).actual == 18
            proc.send_signal(signal.SIGINT)
            with pytest.raises((EOFError, ConnectionError)):
                c.reply()
        assert proc.wait(10) == 0
        assert "stopped" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


def test_serve_refuses_what_it_cannot_serve() -> None:
    run = [sys.executable, "-m", "wdfusb", "serve"]
    res = subprocess.run([*run, "0525:a4a0"], capture_output=True, text=True)
    assert res.returncode == 2 and "only virtual devices" in res.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = subprocess.run([*run, "--port", str(taken.getsockname()[1])], capture_output=True, text=True)
    assert res.returncode == 2 and "cannot listen" in res.stderr


def test_pythonic_layer_and_server_share_a_virtual_device(served: tuple[VirtualDevice, Server]) -> None:
    """The process that serves a device can still use it: its own writes and the client's land
    on the same endpoint, each counted."""
    vdev, server = served
    with _client(server) as c, wdfusb.open(vdev) as dev:
        c.control(0x00, 0x09, 1)
        assert c.transfer(OUT, data=b"remote").actual == 6
        assert dev.pipe(OUT).write(b"local") == 5
        assert vdev.endpoint(OUT).received_bytes == 11


def test_server_close_with_urbs_in_flight_cancels_and_drains(served: tuple[VirtualDevice, Server]) -> None:
    vdev, server = served
    c, native = _stuck_urbs(vdev, server, 16)
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < 5
    assert native.live_transfers() == 0
    with pytest.raises((EOFError, ConnectionError)):
        c.reply()
    c.close()
    server.close()  # again: nothing left to do


def test_a_client_that_dies_inside_a_urb(served: tuple[VirtualDevice, Server]) -> None:
    """The header promised 1 MiB of OUT data and 100 bytes came: nothing is submitted."""
    vdev, server = served
    c = _client(server)
    c.sock.sendall(p.Submit(1, 0, p.DIR_OUT, OUT, 0, 1 << 20, 0, 0, 0, bytes(8)).pack() + bytes(100))
    c.close()
    _wait_until(lambda: server.exports[0].session is None)
    assert server.exports[0].session is None and vdev.endpoint(OUT).received_bytes == 0


def test_a_closed_device_is_no_longer_exported() -> None:
    vdev = VirtualDevice("high")
    with Server([vdev], port=0).start() as server:
        c = _client(server)
        c.control(0x00, 0x09, 1)
        vdev.close()
        assert c.transfer(OUT, data=b"x").status == p.E_GONE
        with pytest.raises((EOFError, ConnectionError)):
            c.reply()
        c.close()
        assert uc.devlist(server.port) == []
        with uc.Client(server.port, f"0-{vdev.port}") as late:
            assert late.status == p.ST_NODEV


@pytest.mark.parametrize("seed", range(6))
def test_random_submits_and_unlinks_keep_every_count(seed: int) -> None:
    """Random sizes, directions, unlink moments and NAK spells: every URB is answered once (or
    unlinked unanswered, having moved nothing), and what the answers say moved is what the
    endpoints moved, byte for byte."""
    import random

    rng = random.Random(seed)
    vdev = VirtualDevice("high", loopback_capacity=64 << 20)
    sent = bytearray()
    try:
        with Server([vdev], port=0).start() as server, _client(server) as c:
            c.control(0x00, 0x09, 1)
            outs: dict[int, bytes] = {}
            ins: set[int] = set()
            unlinks: dict[int, int] = {}
            for _ in range(60):
                roll = rng.random()
                if roll < 0.5:
                    data = rng.randbytes(rng.choice([1, 511, 512, 4096, 65536, 1 << 20]))
                    outs[c.submit(OUT, data=data)] = data
                elif roll < 0.7:
                    ins.add(c.submit(IN, rng.choice([512, 4096, 65536])))
                elif roll < 0.9 and (set(outs) | ins) - set(unlinks.values()):
                    victim = rng.choice(sorted((set(outs) | ins) - set(unlinks.values())))
                    unlinks[c.unlink(victim)] = victim
                else:
                    vdev.endpoint(OUT).nak(rng.choice([0.0, 0.01, 0.05]))
                if rng.random() < 0.3:
                    time.sleep(rng.random() * 0.01)
            vdev.endpoint(OUT).nak(0)
            filler = rng.randbytes(4 << 20)  # enough for every IN URB still waiting
            outs[c.submit(OUT, data=filler)] = filler
            answers: dict[int, uc.Reply] = {}
            unlinked: dict[int, int] = {}
            while len(unlinked) < len(unlinks) or not (set(outs) | ins) <= answers.keys() | {
                unlinks[u] for u, st in unlinked.items() if st == p.E_UNLINKED
            }:
                r = c.reply()
                if r.command == p.RET_SUBMIT:
                    assert r.seqnum not in answers
                    answers[r.seqnum] = r
                else:
                    assert r.seqnum not in unlinked
                    unlinked[r.seqnum] = r.status
            for u, status in unlinked.items():
                victim = unlinks[u]
                assert status == (0 if victim in answers else p.E_UNLINKED)
            for seq in sorted(outs):
                r = answers.get(seq)
                moved = 0 if r is None else r.actual
                if r is not None and r.status == 0:
                    assert moved == len(outs[seq])
                sent += outs[seq][:moved]
            got = b"".join(answers[s].data for s in sorted(ins) if s in answers)
            assert sum(a.actual for a in answers.values() if a.seqnum in ins) == len(got)
            ep = vdev.endpoint(OUT)
            assert ep.received_bytes == len(sent) and ep.crc32 == zlib.crc32(sent)
            rest = c.transfer(IN, 64 << 20)
            assert got + rest.data == bytes(sent)  # the loopback returned exactly what it took, in order
    finally:
        vdev.close()


def test_sigint_with_urbs_in_flight_stops_the_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wdfusb", "--virtual-fault", "nak:0x06", "--virtual-fault", "report", "serve",
         "virtual:high", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = int(line.split("--tcp-port ")[1].split()[0])
        with uc.Client(port, "0-" + line.split("serving 0-")[1].split()[0]) as c:
            c.control(0x00, 0x09, 1)
            for _ in range(8):
                c.submit(OUT, data=bytes(65536))
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            with pytest.raises((EOFError, ConnectionError)):
                c.reply()
        assert proc.wait(10) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "virtual: 0x06 received 0 bytes" in err
    finally:
        proc.kill()
        proc.wait()


def test_a_seqnum_in_flight_sent_again_closes_the_connection(served: tuple[VirtualDevice, Server]) -> None:
    """A second URB with the seqnum of one still in flight (an isochronous one on a bulk URB stuck
    behind NAKs) took its place: the first could no more be unlinked (its RET_UNLINK said 0 at
    once, the URB went on) and the two answers' bookkeeping raised KeyError in the server. No
    answer could say which URB it is for: the client is broken, its connection closes and C
    cancels both."""
    vdev, server = served
    with _client(server) as c:
        c.control(0x00, 0x09, 1)
        vdev.endpoint(OUT).nak(float("inf"))
        seq = c.submit(OUT, data=bytes(4096))
        c.seqnum -= 1
        assert c.submit(0x03, data=bytes(64), iso=[64]) == seq  # the isochronous sink, the same seqnum
        with pytest.raises((EOFError, ConnectionError)):
            c.reply()
    _wait_until(lambda: server.exports[0].session is None)
    assert vdev._native.live_transfers() == 0
    assert vdev.endpoint(OUT).received_bytes == 0 and vdev.endpoint(0x03).received_bytes == 0
    vdev.endpoint(OUT).nak(0)
    with _client(server) as again:  # the server goes on
        again.control(0x00, 0x09, 1)
        assert again.transfer(OUT, data=b"x" * 8).actual == 8
