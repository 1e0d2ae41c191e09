"""The Pythonic layer: open, pipes, every buffer type without copying, clear errors."""

from __future__ import annotations

import array
import errno
import math
import mmap
import time
import zlib
from typing import Any

import numpy as np
import pytest

import wdfusb
from wdfusb.device import timeout_us
from wdfusb.errors import error_for


def buffers(data: bytes) -> dict[str, object]:
    m = mmap.mmap(-1, len(data))
    m.write(data)
    return {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(bytearray(data)),
        "numpy": np.frombuffer(data, dtype=np.uint8).copy(),
        "numpy-u32": np.frombuffer(data, dtype=np.uint32).copy(),
        "mmap": m,
        "array": array.array("B", data),
    }


@pytest.mark.parametrize("kind", list(buffers(bytes(8))))
def test_write_every_buffer_type(kind: str, dev: wdfusb.Device, vdev: wdfusb.VirtualDevice) -> None:
    data = bytes(range(256)) * 16
    assert dev.pipe(0x06).write(buffers(data)[kind]) == len(data)
    assert vdev.endpoint(0x06).crc32 == zlib.crc32(data)


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "numpy", "numpy-u32", "mmap", "array"])
def test_read_into_every_writable_buffer_without_copying(kind: str, dev: wdfusb.Device) -> None:
    data = bytes(range(256)) * 16
    dev.pipe(0x06).write(data)
    target = buffers(bytes(len(data)))[kind]
    assert dev.pipe(0x88).read(target, timeout=1) == len(data)
    assert bytes(memoryview(target).cast("B")) == data  # the caller's own buffer was filled


def test_read_size_returns_bytes(dev: wdfusb.Device) -> None:
    dev.pipe(0x06).write(b"hello loopback")
    assert dev.pipe(0x88).read(100, timeout=1) == b"hello loopback"


def test_read_into_read_only_buffer_is_a_type_error(dev: wdfusb.Device) -> None:
    with pytest.raises(TypeError, match="read-only"):
        dev.pipe(0x88).read(b"immutable", timeout=0.1)
    ro = np.zeros(16, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        dev.pipe(0x88).readinto(ro)


def test_non_contiguous_array_is_a_value_error(dev: wdfusb.Device) -> None:
    strided = np.zeros(64, np.uint8)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        dev.pipe(0x06).write(strided)
    with pytest.raises(ValueError, match="contiguous"):
        dev.pipe(0x88).readinto(strided)


def test_not_a_buffer_is_a_type_error(dev: wdfusb.Device) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        dev.pipe(0x06).write("text is not bytes")


def test_direction_and_type_are_checked(dev: wdfusb.Device) -> None:
    with pytest.raises(ValueError, match="IN pipe"):
        dev.pipe(0x88).write(b"x")
    with pytest.raises(ValueError, match="OUT pipe"):
        dev.pipe(0x06).read(1)
    with pytest.raises(ValueError, match="isochronous"):
        dev.pipe(0x03).write(b"x")


def test_timeout_zero_does_not_wait(vdev: wdfusb.VirtualDevice, dev: wdfusb.Device) -> None:
    vdev.endpoint(0x06).nak(float("inf"))
    with pytest.raises(wdfusb.UsbTimeoutError):
        dev.pipe(0x06).write(b"x", timeout=0)


def test_pipes_and_lookup(dev: wdfusb.Device) -> None:
    assert [p.address for p in dev.pipes] == [0x06, 0x88, 0x02, 0x81, 0x03]
    assert [p.type for p in dev] == ["bulk", "bulk", "interrupt", "interrupt", "isochronous"]
    assert dev.pipe(0x02).max_packet == 64 and dev.pipe(0x81).max_packet == 1
    with pytest.raises(KeyError, match="0x07"):
        dev.pipe(0x07)


def test_profiles_follow_speed() -> None:
    for speed, maxp in (("full", 64), ("high", 512), ("super", 1024)):
        v = wdfusb.VirtualDevice(speed=speed)
        with v, wdfusb.open(v) as d:
            assert d.pipe(0x06).max_packet == maxp and d.speed == speed


def test_custom_profile() -> None:
    from wdfusb.virtual import EndpointSpec

    v = wdfusb.VirtualDevice(
        speed=None,
        endpoints=[EndpointSpec(0x01, "bulk", 64), EndpointSpec(0x83, "interrupt", 8, 4)],
        vid=0x1234,
        pid=0x5678,
    )
    with v, wdfusb.open(v) as d:
        assert (d.vid, d.pid) == (0x1234, 0x5678)
        assert [(p.address, p.type, p.max_packet, p.interval) for p in d.pipes] == [
            (0x01, "bulk", 64, 0),
            (0x83, "interrupt", 8, 4),
        ]
        assert d.pipe(0x01).write(bytes(1000)) == 1000
    with pytest.raises(ValueError, match="role"):
        wdfusb.VirtualDevice(endpoints=[EndpointSpec(0x01, "bulk", 64, role="mystery")])


def test_open_by_string_and_close_is_idempotent() -> None:
    d = wdfusb.open("virtual:super")
    assert d.pipe(0x06).max_packet == 1024
    d.close()
    d.close()
    assert d.closed
    with pytest.raises(wdfusb.DeviceGoneError):
        d.pipe(0x06).write(b"x")
    with pytest.raises(ValueError, match="not a device"):
        wdfusb.open("nonsense")


def test_error_hierarchy_is_rooted_in_oserror() -> None:
    cases = {
        -7: (wdfusb.UsbTimeoutError, 0xC00000B5, errno.ETIMEDOUT),
        -9: (wdfusb.UsbStallError, 0xC0000001, errno.EPIPE),
        -4: (wdfusb.DeviceGoneError, 0xC000009D, errno.ENODEV),
        -100: (wdfusb.UsbCancelledError, 0xC0000120, errno.ECANCELED),
        -8: (wdfusb.UsbOverflowError, 0xC000009C, errno.EOVERFLOW),
        -3: (wdfusb.UsbAccessError, 0xC0000022, errno.EACCES),
        -6: (wdfusb.UsbBusyError, 0x80000011, errno.EBUSY),
    }
    for code, (cls, status, err) in cases.items():
        e = error_for(code, 42, "ctx")
        assert isinstance(e, cls) and isinstance(e, OSError)
        assert (e.status, e.bytes_transferred, e.errno) == (status, 42, err)
        assert "ctx" in str(e) and "42 bytes" in str(e)
    assert isinstance(error_for(-7), TimeoutError)
    assert isinstance(error_for(-3), PermissionError)


def test_find_device_without_a_match_lists_what_is_attached() -> None:
    with pytest.raises(wdfusb.DeviceNotFoundError, match="no USB device matches vid=0xdead"):
        wdfusb.find_device(vid=0xDEAD)


def test_device_repr_and_context(vdev: wdfusb.VirtualDevice) -> None:
    with wdfusb.open(vdev) as d:
        assert "1209:0001" in repr(d)
    assert "closed" in repr(d)


# ---- time-outs: None or math.inf wait for ever; NaN and negatives are refused -----------------


@pytest.mark.parametrize("bad", [-1, -0.5, -math.inf, math.nan])
def test_bad_timeouts_on_every_call(dev: wdfusb.Device, bad: float) -> None:
    calls = [
        lambda: dev.pipe(0x06).write(b"x", timeout=bad),
        lambda: dev.pipe(0x88).read(512, timeout=bad),
        lambda: dev.pipe(0x88).readinto(bytearray(512), timeout=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="timeout"):
            call()
    with pytest.raises(ValueError, match="timeout"):
        timeout_us(bad)


def test_infinite_timeout_waits_for_ever(vdev: wdfusb.VirtualDevice, dev: wdfusb.Device) -> None:
    assert timeout_us(math.inf) == timeout_us(None) == 0  # the engine's "no time-out"
    data = bytes(range(256)) * 8
    vdev.endpoint(0x06).nak(0.05)  # a finite wait would have to outlast this; for ever does
    assert dev.pipe(0x06).write(data, timeout=math.inf) == len(data)
    assert dev.pipe(0x88).read(len(data), timeout=math.inf) == data
    dev.pipe(0x06).write(data, timeout=float("inf"))
    buf = np.zeros(len(data), np.uint8)
    assert dev.pipe(0x88).readinto(buf, timeout=math.inf) == len(data) and buf.tobytes() == data
    with dev.pipe(0x06).writer(depth=2, chunk=512, timeout=math.inf) as w:
        w.write(data)
    assert vdev.endpoint(0x06).received_bytes == 3 * len(data)


def test_finite_timeouts_still_expire(vdev: wdfusb.VirtualDevice, dev: wdfusb.Device) -> None:
    assert timeout_us(1e300) == 2**63 - 1 and timeout_us(0) == 1 and timeout_us(0.25) == 250_000
    vdev.endpoint(0x06).nak(math.inf)
    with pytest.raises(wdfusb.UsbTimeoutError):
        dev.pipe(0x06).write(b"x", timeout=0.01)
    vdev.endpoint(0x06).nak(0)


def test_a_pipe_sees_each_new_timeout(vdev: wdfusb.VirtualDevice, dev: wdfusb.Device) -> None:
    pipe = dev.pipe(0x06)
    long_wait = 30.0
    assert pipe.write(b"x", timeout=long_wait) == 1  # the pipe keeps this conversion
    vdev.endpoint(0x06).nak(math.inf)
    t0 = time.monotonic()
    with pytest.raises(wdfusb.UsbTimeoutError):
        pipe.write(b"x", timeout=0.05)
    assert time.monotonic() - t0 < 10
    for bad in (-1.0, "1", math.nan):
        with pytest.raises((ValueError, TypeError), match="timeout"):
            pipe.write(b"x", timeout=bad)  # type: ignore[arg-type]
    vdev.endpoint(0x06).nak(0)
    assert pipe.write(b"y", timeout=long_wait) == 1 and pipe.write(b"z") == 1
    mutable = np.array(30.0)  # a 0-d array is a number that can change in place
    assert pipe.write(b"x", timeout=mutable) == 1
    mutable[()] = 0.05
    vdev.endpoint(0x06).nak(math.inf)
    t0 = time.monotonic()
    with pytest.raises(wdfusb.UsbTimeoutError):
        pipe.write(b"x", timeout=mutable)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 10
    vdev.endpoint(0x06).nak(0)


# ---- a closed device: every pipe call raises the error a write raises ------------------------


def gone_error(call: Any) -> wdfusb.UsbError:
    with pytest.raises(wdfusb.DeviceGoneError) as err:
        call()
    return err.value


def test_pipe_calls_after_close_raise_device_gone(vdev: wdfusb.VirtualDevice) -> None:
    dev = wdfusb.open(vdev)
    out, inp = dev.pipe(0x06), dev.pipe(0x88)
    dev.close()
    expected = gone_error(lambda: out.write(b"x"))
    assert expected.status == 0xC000009D and expected.errno == errno.ENODEV
    calls = [
        (inp, "read", lambda: inp.read(512, timeout=1)),
        (out, "writer", lambda: out.writer(depth=2, chunk=512)),
        *((p, name, getattr(p, name)) for p in (out, inp) for name in ("reset", "abort")),
    ]
    for pipe, name, call in calls:
        e = gone_error(call)
        assert (type(e), e.status, e.usbd_status) == (type(expected), expected.status, expected.usbd_status), name
        assert f"pipe 0x{pipe.address:02X}" in str(e), name
    assert vdev.endpoint(0x06).received_bytes == 0 and vdev.endpoint(0x06).transfers == 0  # nothing was sent


def test_writer_made_before_close_fails_after_it(vdev: wdfusb.VirtualDevice) -> None:
    dev = wdfusb.open(vdev)
    w = dev.pipe(0x06).writer(depth=2, chunk=512)
    dev.close()
    with pytest.raises(wdfusb.DeviceGoneError):
        w.write(bytes(4096))
        w.flush()
    w.close()
    assert vdev.endpoint(0x06).received_bytes == 0
