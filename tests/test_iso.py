"""Isochronous transfers on the virtual device: packets looped OUT back to IN byte for byte, one
per service interval, each packet's own result; time-out, cancel, Ctrl-C and removal report
exactly what moved; bad input is refused before anything moves."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import zlib

import pytest
from background import in_thread, joined, wait_until
from sigint import interrupt_child

import wdfusb
from wdfusb import _engine
from wdfusb.iso import packet_lengths

ISO_ALT, OUT, IN, MAXP = 2, 0x03, 0x83, 16  # the "pyusb-benchmark" device's isochronous pair


def opened(speed: str | None = "high") -> tuple[wdfusb.VirtualDevice, wdfusb.Device]:
    v = wdfusb.VirtualDevice(speed, profile="pyusb-benchmark")  # type: ignore[arg-type]
    dev = wdfusb.open(v)
    dev.set_alt_setting(0, ISO_ALT)
    return v, dev


@pytest.mark.parametrize("speed", [None, "full", "high"])
def test_packets_loop_out_back_in_byte_for_byte(counts: None, speed: str | None) -> None:
    v, dev = opened(speed)
    rng = random.Random(5)
    with v, dev:
        data = rng.randbytes(MAXP * 20 + 5)  # the last packet short
        out = dev.pipe(OUT).write_iso(data)
        assert [p.length for p in out.packets] == [MAXP] * 20 + [5]
        assert all(p.ok and p.actual == p.length for p in out.packets) and out.bytes_transferred == len(data)
        assert v.endpoint(OUT).received_bytes == len(data) and v.endpoint(OUT).crc32 == zlib.crc32(data)
        back = dev.pipe(IN).read_iso(24)  # more packets than the loopback holds: the rest come back empty
        assert back.data == data and back.bytes_transferred == len(data)
        assert [p.actual for p in back.packets] == [MAXP] * 20 + [5, 0, 0, 0]
        assert all(p.ok and p.error is None for p in back.packets)
        assert v.endpoint(IN).sent_bytes == len(data)


def test_one_packet_per_service_interval() -> None:
    """bInterval 1: a microframe (125 us) per packet at high speed, a frame (1 ms) at full speed."""
    for speed, interval in (("high", 125e-6), ("full", 1e-3)):
        v, dev = opened(speed)
        with v, dev:
            t0 = time.monotonic()
            dev.pipe(OUT).write_iso(bytes(MAXP * 40))
            assert time.monotonic() - t0 >= 40 * interval * 0.99, speed


def test_a_time_out_reports_the_packets_that_went(counts: None) -> None:
    v, dev = opened("full")  # 1 ms per packet
    with v, dev:
        data = bytes(range(256)) * 4  # 64 packets: 64 ms
        with pytest.raises(wdfusb.UsbTimeoutError) as info:
            dev.pipe(OUT).write_iso(data, timeout=0.02)
        moved = info.value.bytes_transferred
        assert 0 < moved < len(data) and moved % MAXP == 0
        assert v.endpoint(OUT).received_bytes == moved and v.endpoint(OUT).crc32 == zlib.crc32(data[:moved])
        with pytest.raises(wdfusb.UsbTimeoutError) as back:
            dev.pipe(IN).read_iso(64, timeout=0.02)
        assert back.value.data == data[: back.value.bytes_transferred]  # what came, in order
        assert 0 < back.value.bytes_transferred <= moved


def test_cancel_mid_transfer_and_before_the_submit(counts: None) -> None:
    v, dev = opened("full")
    with v, dev:
        core = dev.pipe(OUT)._core
        xfer = core.new_transfer()
        packets = _engine.IsoPackets(packet_lengths(MAXP * 100, MAXP))
        buf = _engine.pin(bytes(MAXP * 100))
        th, got = in_thread(lambda: core.iso_transfer(buf, packets, 0, xfer))
        wait_until(lambda: v.endpoint(OUT).received_bytes >= 3 * MAXP)
        assert xfer.cancel()
        joined(th, 5)
        code, actual = got[0]
        results = packets.results()
        assert code == _engine.WU_ERR_CANCELLED and actual == v.endpoint(OUT).received_bytes
        assert sum(r[1] for r in results) == actual
        done = [r for r in results if r[2] == 0]
        assert len(done) == actual // MAXP and all(r[2] == _engine.WU_ERR_CANCELLED for r in results[len(done) :])
        assert not xfer.cancel()  # idle: the cancel sticks, and the next submit fails
        assert core.iso_transfer(buf, packets, 0, xfer) == (_engine.WU_ERR_CANCELLED, 0)
        assert v.endpoint(OUT).received_bytes == actual


def test_bad_input_is_refused_and_nothing_moves(counts: None) -> None:
    v, dev = opened(None)
    with v, dev:
        iso_out, iso_in = dev.pipe(OUT), dev.pipe(IN)
        with pytest.raises(ValueError, match="isochronous"):
            iso_out.write(b"x")
        with pytest.raises(ValueError, match="isochronous"):
            iso_in.read(16)
        with pytest.raises(ValueError, match="packet_size"):
            iso_out.write_iso(b"x" * 64, packet_size=MAXP + 1)
        with pytest.raises(ValueError, match="packets"):
            iso_in.read_iso(0)
        with pytest.raises(ValueError, match="packets"):
            iso_in.read_iso(True)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="nothing to send"):
            iso_out.write_iso(b"")
        with pytest.raises(ValueError, match="IN pipe"):
            iso_in.write_iso(b"x")
        dev.set_alt_setting(0, 0)
        with pytest.raises(ValueError, match="bulk"):
            dev.pipe(0x01).write_iso(b"x")
        core = dev.pipe(0x01)._core
        packets = _engine.IsoPackets([8, 8])
        buf = _engine.pin(bytes(16))
        assert core.iso_transfer(buf, packets, 0)[0] == _engine.WU_ERR_INVALID_PARAM  # a bulk endpoint
        xfer = core.new_transfer()
        assert xfer.set_iso(packets) == 0
        # the lengths must add up to the buffer's: the engine refuses a mismatch
        assert xfer.run(OUT, _engine.EP_ISOCHRONOUS, buf, 15) == (_engine.WU_ERR_INVALID_PARAM, 0)
        assert xfer.set_iso(None) == 0
        assert xfer.run(OUT, _engine.EP_ISOCHRONOUS, buf, 16) == (_engine.WU_ERR_INVALID_PARAM, 0)  # no packets
        assert v.endpoint(OUT).received_bytes == 0


def test_random_writes_and_reads_add_up(counts: None) -> None:
    v, dev = opened(None)
    rng = random.Random(11)
    sent = bytearray()
    got = bytearray()
    with v, dev:
        for _ in range(200):
            if rng.random() < 0.5:
                chunk = rng.randbytes(rng.randrange(1, MAXP * 9))
                size = rng.randrange(1, MAXP + 1)
                r = dev.pipe(OUT).write_iso(chunk, packet_size=size)
                assert r.bytes_transferred == len(chunk) and all(p.length <= size for p in r.packets)
                sent += chunk
            else:
                r = dev.pipe(IN).read_iso(rng.randrange(1, 12), packet_size=rng.randrange(1, MAXP + 1))
                got += r.data
        got += dev.pipe(IN).read_iso(len(sent) - len(got) + 1).data if len(sent) > len(got) else b""
    assert bytes(got) == bytes(sent)


def test_streaming_an_isochronous_pipe_names_the_call_of_its_direction() -> None:
    """A stream writer on the isochronous OUT pipe pointed at read_iso ("stream to" is no
    "write" verb): the hint follows the pipe's direction."""
    v, dev = opened(None)
    with v, dev:
        with pytest.raises(ValueError, match=r"isochronous \(use write_iso\)"):
            dev.pipe(OUT).writer(depth=2, chunk=MAXP)
        with pytest.raises(ValueError, match=r"isochronous \(use read_iso\)"):
            dev.pipe(IN).reader(depth=2, chunk=MAXP)


def test_cycle_port_comes_back_to_the_same_virtual_device_not_its_twin(counts: None) -> None:
    """Two virtual devices of one profile share a serial number: cycle_port on the second one
    reconnected to the first (already there, never gone), so the isochronous writes after it
    went to the other device. It comes back to its own, in its alternate setting."""
    twin = wdfusb.VirtualDevice(None, profile="pyusb-benchmark")
    v, dev = opened("full")
    with twin, v, dev:
        th, errors = in_thread(lambda: dev.pipe(OUT).write_iso(bytes(MAXP * 500)))
        wait_until(lambda: v.endpoint(OUT).received_bytes >= 3 * MAXP)
        dev.cycle_port(timeout=5)
        joined(th, 5)
        (error,) = errors
        assert isinstance(error, (wdfusb.UsbCancelledError, wdfusb.DeviceGoneError)), error
        assert error.bytes_transferred > 0
        data = bytes(range(40))
        assert dev.pipe(OUT).write_iso(data).bytes_transferred == len(data)
        assert v.endpoint(OUT).received_bytes == len(data) and v.endpoint(OUT).crc32 == zlib.crc32(data)
        assert twin.endpoint(OUT).received_bytes == 0
        assert dev.pipe(IN).read_iso(3).data == data


def test_packets_swapped_by_another_thread_at_the_submit_cannot_overrun_the_buffer(counts: None) -> None:
    """wu_xfer_submit checked the packets (their lengths add up to the buffer's) before it took
    the lock: a wu_xfer_set_iso from another thread in between handed the backend 4096 packets
    of 16 bytes for a 16-byte buffer (65536 bytes read past it; an IN transfer would write them).
    The check is under the lock: each submit moves the packets it checked, or is refused."""
    v, dev = opened(None)
    with v, dev:
        core = dev.pipe(OUT)._core
        xfer = core.new_transfer()
        backing = bytearray(1 << 20)  # the 16 bytes sit at its start: a read past them stays mapped
        buf = _engine.pin(memoryview(backing)[:16])
        small = _engine.IsoPackets([0] * 100_000 + [MAXP])  # a long check: a wide window before the lock
        big = _engine.IsoPackets([MAXP] * 4096)
        stop = threading.Event()

        def swap() -> None:
            while not stop.is_set():
                xfer.set_iso(big)

        th = threading.Thread(target=swap)
        th.start()
        moved = []
        try:
            for _ in range(300):
                xfer.set_iso(small)
                rc, actual = xfer.run(OUT, _engine.EP_ISOCHRONOUS, buf, MAXP)
                assert (rc, actual) in ((0, MAXP), (_engine.WU_ERR_INVALID_PARAM, 0)), (rc, actual)
                moved.append(actual)
        finally:
            stop.set()
            joined(th, 5)
        assert v.endpoint(OUT).received_bytes == sum(moved)
        xfer.free()


CTRL_C_CHILD = """
import time, wdfusb
v = wdfusb.VirtualDevice("full", profile="pyusb-benchmark")
dev = wdfusb.open(v)
dev.set_alt_setting(0, 2)
print("blocked", flush=True)
try:
    dev.pipe(0x03).write_iso(bytes(16 * 5000))
except KeyboardInterrupt as e:
    t = time.monotonic()
    print("interrupted", t, v._native.live_transfers(), e.bytes_transferred,
          v.endpoint(0x03).received_bytes, flush=True)
"""


def test_ctrl_c_cancels_an_isochronous_write_and_says_what_moved() -> None:
    latency, fields = interrupt_child(CTRL_C_CHILD)
    assert latency < 0.5
    in_flight, reported, received = map(int, fields)
    assert in_flight == 0 and reported == received > 0


def race_once(how: str, after_packets: int) -> None:
    v, dev = opened("full")
    with v:
        th, errors = in_thread(lambda: dev.pipe(OUT).write_iso(bytes(MAXP * 500)))
        wait_until(lambda: v.endpoint(OUT).received_bytes >= after_packets * MAXP)
        pipe = dev.pipe(OUT)
        if how == "close":
            dev.close()
        elif how == "unplug":
            v.unplug()
        elif how == "abort":
            pipe.abort()
        else:
            dev.set_alt_setting(0, 0)
        joined(th, 5)
        (error,) = errors
        assert isinstance(error, (wdfusb.DeviceGoneError, wdfusb.UsbCancelledError)), error
        assert error.bytes_transferred == v.endpoint(OUT).received_bytes > 0
        assert v._native.live_transfers() == 0
        dev.close()


@pytest.mark.parametrize("how", ["close", "unplug", "switch the setting", "abort"])
def test_close_unplug_switch_or_abort_race_a_transfer_in_flight(counts: None, how: str) -> None:
    """A thread in write_iso, another closing the device, unplugging it, leaving the alternate
    setting or aborting the pipe: the transfer comes back with the packets that went, counted
    exactly."""
    for after in range(1, 6):
        race_once(how, after)


def test_awaited_transfers_loop_and_a_cancelled_task_keeps_its_packets(counts: None) -> None:
    async def main() -> None:
        v, dev = opened("full")  # 1 ms per packet
        with v, dev:
            data = bytes(range(256)) * 2
            r = await dev.pipe(OUT).write_iso_async(data)
            assert r.bytes_transferred == len(data) and all(p.ok for p in r.packets)
            back = await dev.pipe(IN).read_iso_async(40)  # 32 full packets, 8 empty
            assert back.data == data and [p.actual for p in back.packets] == [MAXP] * 32 + [0] * 8
            await dev.pipe(OUT).write_iso_async(data)
            task = asyncio.ensure_future(dev.pipe(IN).read_iso_async(2000))
            while v.endpoint(IN).sent_bytes < len(data) + 5 * MAXP:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            got = info.value.data  # type: ignore[attr-defined]
            assert info.value.bytes_transferred == len(got) == v.endpoint(IN).sent_bytes - len(data)  # type: ignore[attr-defined]
            assert got == data[: len(got)] and v._native.live_transfers() == 0

    asyncio.run(main())
