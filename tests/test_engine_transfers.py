"""The transfer engine on the virtual device: sizes, CRC, time-outs, cancel, faults, pacing, Ctrl-C."""

from __future__ import annotations

import os
import threading
import time
import zlib

import pytest
from sigint import interrupt_child

import wdfusb
from wdfusb import _engine

SIZES = [0, 1, 511, 512, 513, 64 << 10, 64 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_out_then_in_roundtrip_with_crc(size: int) -> None:
    data = os.urandom(size)
    v = wdfusb.VirtualDevice(speed=None, loopback_capacity=max(size, 1))
    with v, wdfusb.open(v) as dev:
        assert dev.pipe(0x06).write(data) == size
        ep = v.endpoint(0x06)
        assert ep.received_bytes == size
        assert ep.crc32 == zlib.crc32(data)
        assert ep.transfers == 1
        back = bytearray(size)
        if size:
            assert dev.pipe(0x88).readinto(back, timeout=1) == size
        assert bytes(back) == data
        assert v.endpoint(0x88).sent_bytes == size


def test_in_returns_loopback_in_order_across_reads(dev: wdfusb.Device) -> None:
    chunks = [os.urandom(n) for n in (100, 512, 3000)]
    for c in chunks:
        dev.pipe(0x06).write(c)
    got = b""
    while len(got) < sum(map(len, chunks)):
        got += dev.pipe(0x88).read(1024, timeout=1)  # whole packets: a short one ends a read
    assert got == b"".join(chunks)


def test_a_read_ending_inside_a_packet_is_an_overflow(dev: wdfusb.Device) -> None:
    """Room for 700 bytes, packets of 512: the second packet does not fit. The host gets what
    fits, the rest of that packet is lost (babble), and the next read starts at the next one."""
    data = os.urandom(3000)
    dev.pipe(0x06).write(data)
    with pytest.raises(wdfusb.UsbOverflowError) as err:
        dev.pipe(0x88).read(700, timeout=1)
    assert err.value.bytes_transferred == 700 and err.value.data == data[:700]
    assert err.value.usbd_status.name == "USBD_STATUS_BABBLE_DETECTED"
    assert dev.pipe(0x88).read(4096, timeout=1) == data[1024:]
    assert dev.source.endpoint(0x88).sent_bytes == 3000  # the lost bytes went on the bus


def test_in_with_no_data_times_out(dev: wdfusb.Device) -> None:
    with pytest.raises(wdfusb.UsbTimeoutError) as err:
        dev.pipe(0x88).read(64, timeout=0.05)
    assert err.value.bytes_transferred == 0


def test_zlp_flag_adds_a_packet_on_exact_multiples() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        p = dev.pipe(0x06)
        assert p.write(bytes(512), zlp=True) == 512
        assert p.write(bytes(513), zlp=True) == 513
        assert v.endpoint(0x06).received_bytes == 1025


@pytest.mark.parametrize("timeout", [0.05, 0.2, 0.5])
def test_timeout_accuracy(timeout: float) -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        v.endpoint(0x06).nak(float("inf"))
        t0 = time.monotonic()
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(0x06).write(bytes(4096), timeout=timeout)
        elapsed = time.monotonic() - t0
        assert abs(elapsed - timeout) <= 0.020, elapsed
        assert err.value.status == 0xC00000B5
        assert err.value.bytes_transferred == 0


def test_timeout_reports_partial_bytes_exactly() -> None:
    v = wdfusb.VirtualDevice(speed="full")  # 19 x 64 B per ms = 1.216 MB/s
    with v, wdfusb.open(v) as dev:
        data = os.urandom(1 << 20)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(0x06).write(data, timeout=0.1)
        moved = err.value.bytes_transferred
        assert 0 < moved < len(data) and moved % 64 == 0
        assert abs(moved - 121_600) < 20_000
        ep = v.endpoint(0x06)
        assert ep.received_bytes == moved
        assert ep.crc32 == zlib.crc32(data[:moved])


def test_cancel_from_another_thread() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        v.endpoint(0x06).nak(float("inf"))
        x = dev._core.new_transfer()
        buf = _engine.pin(bytes(1000))
        threading.Timer(0.1, x.cancel).start()
        t0 = time.monotonic()
        rc, actual = dev.pipe(0x06)._core.transfer(buf, 1000, 0, 0, x)
        assert rc == _engine.lib.WU_ERR_CANCELLED and actual == 0
        assert 0.09 < time.monotonic() - t0 < 0.3
        assert not x.in_flight


def test_stall_until_reset() -> None:
    v = wdfusb.VirtualDevice(speed=None)
    with v, wdfusb.open(v) as dev:
        p = dev.pipe(0x06)
        v.endpoint(0x06).stall()
        assert v.endpoint(0x06).halted
        for _ in range(2):
            with pytest.raises(wdfusb.UsbStallError) as err:
                p.write(b"abc")
            assert err.value.usbd_status == 0xC0000004
        p.reset()
        assert not v.endpoint(0x06).halted
        assert p.write(b"abc") == 3


def test_stall_mid_transfer_keeps_partial_count() -> None:
    v = wdfusb.VirtualDevice(speed="full")
    with v, wdfusb.open(v) as dev:
        data = os.urandom(256 << 10)
        threading.Timer(0.05, v.endpoint(0x06).stall).start()
        with pytest.raises(wdfusb.UsbStallError) as err:
            dev.pipe(0x06).write(data, timeout=5)
        moved = err.value.bytes_transferred
        assert 0 < moved < len(data)
        assert v.endpoint(0x06).crc32 == zlib.crc32(data[:moved])


def test_nak_for_a_while_then_completes() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        v.endpoint(0x06).nak(0.15)
        t0 = time.monotonic()
        assert dev.pipe(0x06).write(bytes(512), timeout=2) == 512
        assert 0.14 < time.monotonic() - t0 < 0.3


def test_unplug_during_a_blocked_write() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        v.endpoint(0x06).nak(float("inf"))
        threading.Timer(0.1, v.unplug).start()
        with pytest.raises(wdfusb.DeviceGoneError) as err:
            dev.pipe(0x06).write(bytes(100), timeout=5)
        assert err.value.status in (0xC000000E, 0xC000009D, 0xC00002B6)
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.pipe(0x06).write(b"x")


def test_close_cancels_and_drains_a_blocked_write() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    dev = wdfusb.open(v)
    v.endpoint(0x06).nak(float("inf"))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            dev.pipe(0x06).write(bytes(100))
        except wdfusb.UsbError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.1)
    dev.close()
    t.join(2)
    assert not t.is_alive()
    assert isinstance(errors[0], wdfusb.UsbCancelledError)
    assert v._native.live_transfers() == 0
    v.close()


def test_threads_on_different_pipes_at_once() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        bulk, intr = os.urandom(2 << 20), os.urandom(64 * 40)
        results: dict[str, int] = {}

        def w(name: str, addr: int, data: bytes, chunk: int) -> None:
            results[name] = sum(dev.pipe(addr).write(data[i : i + chunk]) for i in range(0, len(data), chunk))

        ts = [
            threading.Thread(target=w, args=("bulk", 0x06, bulk, 65536)),
            threading.Thread(target=w, args=("int", 0x02, intr, 64)),
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert results == {"bulk": len(bulk), "int": len(intr)}
        assert v.endpoint(0x06).crc32 == zlib.crc32(bulk)
        assert v.endpoint(0x02).crc32 == zlib.crc32(intr)


def test_switch_interrupt_in_reports_changes() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        p = dev.pipe(0x81)
        assert p.read(1, timeout=1) == b"\x00"
        with pytest.raises(wdfusb.UsbTimeoutError):
            p.read(1, timeout=0.05)
        v.set_switch(0x5A)
        assert p.read(1, timeout=1) == b"\x5a"


@pytest.mark.parametrize("speed,rate", [("full", 19 * 64 * 1000), ("high", 53_248_000)])
def test_pacing_matches_the_bus_model(speed: str, rate: int) -> None:
    v = wdfusb.VirtualDevice(speed=speed)
    size = 4 << 20 if speed == "high" else 256 << 10
    data = bytes(size)
    with v, wdfusb.open(v) as dev:
        best = 0.0
        for _ in range(3):  # the best of three: a descheduled thread only ever looks slower
            t0 = time.perf_counter()
            dev.pipe(0x06).write(data)
            best = max(best, size / (time.perf_counter() - t0))
        assert abs(best - rate) / rate < 0.02, best


CTRL_C_CHILD = """
import sys, time, wdfusb
v = wdfusb.VirtualDevice(speed="high")
dev = wdfusb.open(v)
v.endpoint(0x06).nak(float("inf"))
print("blocked", flush=True)
try:
    dev.pipe(0x06).write(bytes(4096))
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), v._native.live_transfers(), flush=True)
"""


def test_ctrl_c_cancels_and_reaps_within_200ms() -> None:
    latency, (in_flight,) = interrupt_child(CTRL_C_CHILD)
    assert latency < 0.2
    assert in_flight == "0"  # nothing left in flight


def test_a_queued_transfer_starts_when_a_timed_out_one_gives_up_the_bus() -> None:
    from wdfusb import _dispatch

    v = wdfusb.VirtualDevice(speed="full")  # 19 x 64 B per ms
    with v, wdfusb.open(v) as dev:
        p = dev.pipe(0x06)._core
        done: dict[str, tuple[int, int]] = {}
        a, b = dev._core.new_transfer(), dev._core.new_transfer()
        data = _engine.pin(bytes(1 << 20))
        _dispatch.submit(a, p.address, p.type, data, 1 << 20, 0, 100_000, lambda s, n: done.__setitem__("a", (s, n)))
        _dispatch.submit(b, p.address, p.type, data, 1 << 20, 0, 200_000, lambda s, n: done.__setitem__("b", (s, n)))
        assert _dispatch.wait_idle(5)
        per_100ms = 19 * 64 * 100
        assert done["a"][0] == done["b"][0] == _engine.lib.WU_ERR_TIMEOUT
        assert abs(done["a"][1] - per_100ms) < 20_000
        assert abs(done["b"][1] - per_100ms) < 20_000  # not 200 ms worth: b waited for the bus
        assert v.endpoint(0x06).received_bytes == done["a"][1] + done["b"][1]
        a.free()
        b.free()
