"""Adversarial isochronous tests: each one is an attack on the isochronous path that broke it,
and failed before its fix."""

from __future__ import annotations

import threading
import zlib

import pytest
from background import joined, wait_until

import wdfusb
from wdfusb import _engine

ISO_ALT, OUT, IN, MAXP = 2, 0x03, 0x83, 16  # the "pyusb-benchmark" device's isochronous pair


def opened(speed: str | None = "high") -> tuple[wdfusb.VirtualDevice, wdfusb.Device]:
    v = wdfusb.VirtualDevice(speed, profile="pyusb-benchmark")  # type: ignore[arg-type]
    dev = wdfusb.open(v)
    dev.set_alt_setting(0, ISO_ALT)
    return v, dev


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
        errors: list[BaseException] = []

        def write() -> None:
            try:
                dev.pipe(OUT).write_iso(bytes(MAXP * 500))
            except BaseException as e:  # noqa: BLE001 - handed to the test
                errors.append(e)

        th = threading.Thread(target=write)
        th.start()
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
    The check is under the lock now (main's 0b22841): each submit moves the packets it checked,
    or is refused."""
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
