"""A read that ends early keeps its bytes (contract §7): the error's ``.data`` holds exactly
the first bytes the device sent (``bytes_transferred`` their count), ``readinto`` leaves them in
the caller's buffer, and nothing is lost: the next read returns the rest of the stream."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator

import pytest
from background import in_thread, joined, native_counts_unchanged, wait_until

import wdfusb

EP_OUT, EP_IN = 0x06, 0x88
JOIN_S = 10


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(autouse=True)
def counts() -> Iterator[None]:
    yield from native_counts_unchanged(JOIN_S)


def loaded(speed: str, data: bytes) -> tuple[wdfusb.VirtualDevice, wdfusb.Device]:
    """A device whose loopback holds ``data`` (written to 0x06 first)."""
    v = wdfusb.VirtualDevice(speed=speed)
    dev = wdfusb.open(v)
    assert dev.pipe(EP_OUT).write(data, timeout=JOIN_S) == len(data)
    return v, dev


def check_prefix(err: wdfusb.UsbError, data: bytes) -> int:
    """``err.data`` is exactly the first ``bytes_transferred`` bytes of ``data``; returns the count."""
    n = err.bytes_transferred
    assert isinstance(err.data, bytes) and len(err.data) == n
    assert zlib.crc32(err.data) == zlib.crc32(data[:n]) and err.data == data[:n]
    return n


def test_read_that_times_out_keeps_what_arrived_and_loses_nothing() -> None:
    """The reported case: 10 KiB queued, read(8192, timeout=100 us) at high speed."""
    data = rand(10 << 10, 1)
    v, dev = loaded("high", data)
    with v, dev:
        pipe = dev.pipe(EP_IN)
        try:
            got = pipe.read(8192, timeout=0.0001)
        except wdfusb.UsbTimeoutError as e:
            got = e.data[: check_prefix(e, data)]
        rest = b""
        while len(got) + len(rest) < len(data):
            chunk = pipe.read(len(data), timeout=JOIN_S)
            assert chunk
            rest += chunk
        assert got + rest == data  # every byte once, in order: nothing was thrown away


def test_read_timeout_data_is_exactly_the_prefix() -> None:
    data = rand(256 << 10, 2)  # ~210 ms at full speed: a 50 ms read stops part-way
    v, dev = loaded("full", data)
    with v, dev:
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(EP_IN).read(len(data), timeout=0.05)
        n = check_prefix(err.value, data)
        assert 0 < n < len(data) and err.value.status == 0xC00000B5
        assert dev.pipe(EP_IN).read(len(data), timeout=JOIN_S) == data[n:]


def test_readinto_timeout_leaves_the_bytes_in_the_buffer() -> None:
    data = rand(256 << 10, 3)
    v, dev = loaded("full", data)
    with v, dev:
        buf = bytearray(len(data))
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(EP_IN).readinto(buf, timeout=0.05)
        n = check_prefix(err.value, data)
        assert 0 < n < len(data) and bytes(buf[:n]) == data[:n] and not any(buf[n:])


FAULTS: dict[str, tuple[type[wdfusb.UsbError], Callable[[wdfusb.VirtualDevice, wdfusb.Device], None]]] = {
    "stall": (wdfusb.UsbStallError, lambda v, d: v.endpoint(EP_IN).stall()),
    "unplug": (wdfusb.DeviceGoneError, lambda v, d: v.unplug()),
    "abort": (wdfusb.UsbCancelledError, lambda v, d: d.pipe(EP_IN).abort()),
    "close": (wdfusb.UsbCancelledError, lambda v, d: d.close()),
}


@pytest.mark.parametrize("how", ["read", "readinto"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_mid_read_keeps_what_arrived(fault: str, how: str) -> None:
    data = rand(256 << 10, 4)
    v, dev = loaded("full", data)
    cls, inject = FAULTS[fault]
    buf = bytearray(len(data))
    with v, dev:
        pipe = dev.pipe(EP_IN)
        call = (lambda: pipe.read(len(data), timeout=JOIN_S)) if how == "read" else lambda: pipe.readinto(buf, JOIN_S)
        t, out = in_thread(call)
        wait_until(lambda: v.endpoint(EP_IN).sent_bytes > 0, JOIN_S)
        inject(v, dev)
        joined(t, JOIN_S)
        err = out[0]
        assert isinstance(err, cls), err
        n = check_prefix(err, data)
        assert 0 < n < len(data)
        if how == "readinto":
            assert bytes(buf[:n]) == data[:n]


def test_data_is_empty_when_nothing_arrived() -> None:
    v = wdfusb.VirtualDevice(speed=None)
    with v, wdfusb.open(v) as dev:
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(EP_IN).read(512, timeout=0.01)
        assert err.value.data == b"" and err.value.bytes_transferred == 0
        v.endpoint(EP_OUT).stall()
        with pytest.raises(wdfusb.UsbStallError) as werr:
            dev.pipe(EP_OUT).write(b"x" * 10, timeout=1)
        assert werr.value.data == b""  # a write's bytes are the caller's: none are carried back
    assert wdfusb.UsbError("no transfer").data == b""
