"""The virtual device's IN sources, overflow (babble) and the loopback's capacity (CONTRACT §7)."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import wdfusb
from wdfusb import patterns

MIB = 1 << 20


def mod63(n: int, maxp: int) -> bytes:
    packet = bytes(j % 63 for j in range(maxp))
    return (packet * (n // maxp + 1))[:n]


def counter(offset: int, n: int) -> bytes:
    words = np.arange(offset // 4, (offset + n) // 4 + 2, dtype="<u4").tobytes()
    return words[offset % 4 : offset % 4 + n]


@pytest.mark.parametrize(("speed", "maxp"), [("high", 512), ("super", 1024), (None, 512)])
def test_each_pattern_across_transfers(speed: str | None, maxp: int) -> None:
    with wdfusb.VirtualDevice(speed=speed) as v, wdfusb.open(v) as d:
        pipe = d.pipe(0x88)
        assert pipe.max_packet == maxp
        for name in ("zeros", "mod63", "counter"):
            v.endpoint(0x88).source(name)
            assert v.endpoint(0x88).source_pattern == name
            got = b"".join(pipe.read(n, timeout=5) for n in (maxp, 8 * maxp, 3 * maxp, 64 * maxp))
            want = {"zeros": bytes(len(got)), "mod63": mod63(len(got), maxp), "counter": counter(0, len(got))}[name]
            assert got == want, name
            assert patterns.first_mismatch(got, name, 0, maxp) is None
        v.endpoint(0x88).source("counter")  # a new source starts its stream afresh
        assert pipe.read(4 * maxp, timeout=5) == counter(0, 4 * maxp)


def test_a_source_through_the_reader_is_exact_across_reads() -> None:
    with wdfusb.VirtualDevice(speed=None) as v, wdfusb.open(v) as d:
        v.endpoint(0x88).source("counter")
        with d.pipe(0x88).reader(depth=4, chunk=8192) as r:
            out = np.empty(1_000_000, np.uint32)
            r.readinto(out)
            assert np.array_equal(out, np.arange(1_000_000, dtype=np.uint32))
            assert r.read(12) == counter(4_000_000, 12)


def test_a_source_runs_at_the_bus_rate() -> None:
    n = 4 * MIB
    with wdfusb.VirtualDevice(speed="high") as v, wdfusb.open(v) as d:
        v.endpoint(0x88).source("zeros")
        t0 = time.monotonic()
        with d.pipe(0x88).reader(depth=8, chunk=65536) as r:
            r.readinto(bytearray(n))
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.98 * n / 53.248e6  # the model's time at least (the bus cannot be beaten)


def test_an_interrupt_source_sends_a_packet_per_interval() -> None:
    with wdfusb.VirtualDevice(speed="high") as v, wdfusb.open(v) as d:
        v.endpoint(0x81).source("mod63")
        t0 = time.monotonic()
        assert d.pipe(0x81).read(16, timeout=5) == bytes(16)  # max packet 1: byte 0 of each packet
        assert time.monotonic() - t0 >= 15 * 125e-6 * 0.98
        v.endpoint(0x81).source(None)  # the switch again: reports the state once
        assert v.endpoint(0x81).source_pattern is None


def test_a_source_overflows_a_read_that_ends_inside_a_packet() -> None:
    with wdfusb.VirtualDevice(speed="high") as v, wdfusb.open(v) as d:
        v.endpoint(0x88).source("mod63")
        with pytest.raises(wdfusb.UsbOverflowError) as err:
            d.pipe(0x88).read(1000, timeout=5)
        assert err.value.bytes_transferred == 1000 and err.value.data == mod63(1000, 512)
        assert v.endpoint(0x88).sent_bytes == 1024  # the whole packet went on the bus
        assert d.pipe(0x88).read(512, timeout=5) == mod63(512, 512)  # the next packet, from its start


def test_source_none_returns_the_endpoint_to_the_loopback() -> None:
    with wdfusb.VirtualDevice(speed=None) as v, wdfusb.open(v) as d:
        d.pipe(0x06).write(b"loop" * 100)
        v.endpoint(0x88).source("zeros")
        assert d.pipe(0x88).read(512) == bytes(512)
        v.endpoint(0x88).source(None)
        assert d.pipe(0x88).read(512) == b"loop" * 100


@pytest.mark.parametrize("fault", ["stall", "unplug", "cancel"])
def test_a_fault_ends_a_source_read_with_exact_counts(fault: str) -> None:
    with wdfusb.VirtualDevice(speed="high") as v, wdfusb.open(v) as d:
        v.endpoint(0x88).source("counter")
        out = bytearray(8 * MIB)  # 160 ms at the bus rate
        act = {"stall": v.endpoint(0x88).stall, "unplug": v.unplug, "cancel": d.pipe(0x88).abort}[fault]
        threading.Timer(0.03, act).start()
        expected = {"stall": wdfusb.UsbStallError, "unplug": wdfusb.DeviceGoneError, "cancel": wdfusb.UsbCancelledError}
        with pytest.raises(expected[fault]) as err:
            d.pipe(0x88).readinto(out, timeout=5)
        n = err.value.bytes_transferred
        assert 0 < n < len(out) and n % 512 == 0
        assert out[:n] == counter(0, n) and v.endpoint(0x88).sent_bytes == n


def test_sources_refuse_what_they_cannot_be() -> None:
    with wdfusb.VirtualDevice(speed=None) as v:
        with pytest.raises(ValueError, match="cannot be a source"):
            v.endpoint(0x06).source("zeros")
        with pytest.raises(ValueError, match="pattern"):
            v.endpoint(0x88).source("sine")
        with pytest.raises(ValueError, match="cannot be a source"):
            v.endpoint(0x03).source("zeros")  # isochronous
        assert v._native.source(0x80, 1) == -2 and v._native.source(0x83, 9) == -2  # EP0; no such pattern
        assert v.endpoint(0x88).source_pattern is None


def test_the_loopback_keeps_its_capacity_and_costs_nothing_until_fed() -> None:
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    gc.collect()
    before = rss()
    devices = [wdfusb.VirtualDevice(speed=None) for _ in range(32)]
    assert rss() - before < 8 * MIB  # 16 MiB each would be 512 MiB; unfed loopbacks hold nothing
    for v in devices:
        v.close()
    with wdfusb.VirtualDevice(speed=None) as v, wdfusb.open(v) as d:  # the default: 1 MiB
        d.pipe(0x06).write(bytes(MIB + 4096))
        assert v.endpoint(0x06).loopback_dropped == 4096
    with wdfusb.VirtualDevice(speed=None, loopback_capacity=4096) as v, wdfusb.open(v) as d:
        d.pipe(0x06).write(b"a" * 4096 + b"b" * 4096)
        assert v.endpoint(0x06).loopback_dropped == 4096 and d.pipe(0x88).read(8192) == b"b" * 4096
    with pytest.raises(ValueError, match="loopback_capacity"):
        wdfusb.VirtualDevice(loopback_capacity=-1)
