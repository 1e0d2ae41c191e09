"""wdfusb's libusb backend against the real Linux USB stack (dummy_hcd + configfs gadgets).

Data to the SourceSink gadget follows its pattern=1 rule, so the gadget itself checks
every byte and halts its OUT endpoint on the first wrong one.
"""

from __future__ import annotations

import array
import mmap
import threading
import time
import zlib

import gadget
import numpy as np
import pytest
from sigint import interrupt_child
from unplug import FIRST_ERRORS, assert_gone_soon, unplug_after

import wdfusb
from wdfusb import _engine

SS_VID, SS_PID = 0x0525, 0xA4A0
SIZES = [0, 1, 511, 512, 513, 64 << 10, 1 << 20, 16 << 20]


def open_sourcesink() -> wdfusb.Device:
    return wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL)


def test_enumeration_and_pipe_information(sourcesink: gadget.SourceSink, bulk_maxp: int, rig_speed: str) -> None:
    found = wdfusb.find_device(vid=SS_VID, pid=SS_PID)
    assert (found.bus, found.address) == (sourcesink.busnum, sourcesink.devnum)
    assert found.speed == rig_speed
    assert found.serial == gadget.SERIAL
    listed = [d for d in wdfusb.list_devices() if (d.vid, d.pid) == (SS_VID, SS_PID)]
    assert len(listed) == 1
    with open_sourcesink() as dev:
        pipes = {p.address: p for p in dev.pipes}
        assert set(pipes) == {0x02, 0x81}
        assert pipes[0x02].type == "bulk" and pipes[0x02].is_out and pipes[0x02].max_packet == bulk_maxp
        assert pipes[0x81].type == "bulk" and pipes[0x81].is_in and pipes[0x81].max_packet == bulk_maxp


def test_unknown_device_lists_what_is_attached(sourcesink: gadget.SourceSink) -> None:
    with pytest.raises(wdfusb.DeviceNotFoundError) as err:
        wdfusb.find_device(vid=0xDEAD, pid=0xBEEF)
    assert "0525:a4a0" in str(err.value)


@pytest.mark.parametrize("size", SIZES)
def test_pythonic_write_sizes_verified_by_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int, size: int) -> None:
    data = gadget.mod63(size, bulk_maxp)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        assert p.write(data, timeout=30) == size
        assert p.write(gadget.mod63(bulk_maxp, bulk_maxp), timeout=5) == bulk_maxp  # still not halted


def make_buffer(kind: str, data: bytes) -> object:
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    if kind == "numpy":
        return np.frombuffer(data, dtype=np.uint8).copy()
    if kind == "array":
        return array.array("B", data)
    m = mmap.mmap(-1, len(data))
    m.write(data)
    return m


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "numpy", "mmap", "array"])
def test_every_buffer_type(sourcesink: gadget.SourceSink, bulk_maxp: int, kind: str) -> None:
    data = gadget.mod63(3 * bulk_maxp + 17, bulk_maxp)
    with open_sourcesink() as dev:
        assert dev.pipe(0x02).write(make_buffer(kind, data), timeout=5) == len(data)


def write_until_stall(p: wdfusb.Pipe, good: bytes, tries: int = 64) -> wdfusb.UsbStallError:
    """The gadget checks data when its request buffer fills, so the stall shows on a later write."""
    for _ in range(tries):
        try:
            p.write(good, timeout=5)
        except wdfusb.UsbStallError as e:
            return e
    raise AssertionError(f"no stall after {tries} more writes")


def test_wrong_byte_stalls_then_reset_recovers(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    bad = bytearray(gadget.mod63(4 * bulk_maxp, bulk_maxp))
    bad[bulk_maxp + 3] ^= 0xFF
    good = gadget.mod63(4 * bulk_maxp, bulk_maxp)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        try:
            p.write(bad, timeout=5)
            err = write_until_stall(p, good)
        except wdfusb.UsbStallError as e:
            err = e
        assert err.usbd_status == 0xC0000004
        assert "stall" in str(err)
        assert int(err.status) & 0x80000000  # not NT_SUCCESS
        p.reset()
        assert p.write(gadget.mod63(64 << 10, bulk_maxp), timeout=5) == 64 << 10


def test_read_bulk_in_source(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    with open_sourcesink() as dev:
        data = dev.pipe(0x81).read(64 << 10, timeout=5)
        assert len(data) > 0
        assert data == gadget.mod63(len(data), bulk_maxp)  # the source sends the same pattern


def test_two_threads_writing_at_once(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    chunk = gadget.mod63(32 * bulk_maxp, bulk_maxp)
    totals: list[int] = []
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)

        def writer() -> None:
            totals.append(sum(p.write(chunk, timeout=10) for _ in range(50)))

        ts = [threading.Thread(target=writer) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert totals == [50 * len(chunk)] * 2


def test_unplug_during_streaming_writes(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = gadget.mod63(1 << 20, bulk_maxp)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        unplug_after(sourcesink, 0.5)
        deadline = time.monotonic() + 30
        with pytest.raises(FIRST_ERRORS) as err:
            while time.monotonic() < deadline:
                p.write(data, timeout=10)
        assert 0 <= err.value.bytes_transferred < len(data)
        assert_gone_soon(p)
    assert dev.closed


def test_interrupt_out_to_hid(hid_gadget: gadget.HidGadget) -> None:
    with wdfusb.open(vid=hid_gadget.vid, pid=hid_gadget.pid) as dev:
        out = next(p for p in dev.pipes if p.type == "interrupt" and p.is_out)
        reports = [bytes([i]) * hid_gadget.report_length for i in range(10)]
        for r in reports:
            assert out.write(r, timeout=5) == len(r)
        assert hid_gadget.received.wait_bytes(10 * hid_gadget.report_length, 10) == 10 * hid_gadget.report_length
        assert hid_gadget.received.crc32 == zlib.crc32(b"".join(reports))


@pytest.mark.parametrize("ffs_gadget", ["count"], indirect=True)
def test_timeout_on_a_nak_ing_endpoint_then_still_usable(ffs_gadget: gadget.FfsGadget) -> None:
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        p = dev.pipe(ffs_gadget.ep_out)
        assert p.write(bytes(1000), timeout=5) == 1000
        ffs_gadget.set_mode("stop")  # the function stops reading: the host sees NAKs
        time.sleep(0.2)
        t0 = time.monotonic()
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            p.write(bytes(256 << 10), timeout=0.5)
        elapsed = time.monotonic() - t0
        assert 0.45 < elapsed < 1.5, elapsed
        assert err.value.status == 0xC00000B5
        moved = err.value.bytes_transferred
        assert 0 <= moved < 256 << 10
        # the function starts reading again: the same pipe works
        ffs_gadget.set_mode("count")
        assert p.write(bytes(1000), timeout=5) == 1000


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_cancel_from_another_thread_on_a_nak_ing_endpoint(ffs_gadget: gadget.FfsGadget) -> None:
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        pipe = dev.pipe(ffs_gadget.ep_out)
        x = dev._core.new_transfer()
        threading.Timer(0.3, x.cancel).start()
        buf = _engine.pin(bytes(4096))
        rc, _ = pipe._core.transfer(buf, 4096, 0, 0, x)
        assert rc == _engine.lib.WU_ERR_CANCELLED
        assert not x.in_flight


CTRL_C_CHILD = """
import sys, time, wdfusb
dev = wdfusb.open(vid=0x1D6B, pid=0x0105)
print("blocked", flush=True)
try:
    dev.pipe(int(sys.argv[1])).write(bytes(65536))
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), dev._core.native.live_transfers(), flush=True)
dev.close()
"""


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_ctrl_c_during_a_blocked_libusb_write(ffs_gadget: gadget.FfsGadget) -> None:
    latency, (in_flight,) = interrupt_child(CTRL_C_CHILD, str(ffs_gadget.ep_out), settle=0.5)
    assert latency < 0.2
    assert in_flight == "0"


def test_libusb_abi_round_trip(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """The shim's own libusb declarations against the real library: version, then a transfer."""
    _engine.ensure_libusb()
    assert _engine.libusb_version().startswith("1.0.")
    rc, native = _engine.NativeDevice.open_libusb(sourcesink.busnum, sourcesink.devnum)
    assert rc == 0 and native is not None
    try:
        assert native.claim_interface(0) == 0
        x = _engine.Transfer(native)
        data = gadget.mod63(5 * bulk_maxp + 1, bulk_maxp)
        assert x.run(0x02, _engine.EP_BULK, _engine.pin(data), len(data), 0, 5_000_000) == (0, len(data))
        buf = bytearray(bulk_maxp * 4)
        rc, got = x.run(0x81, _engine.EP_BULK, _engine.pin(buf, True), len(buf), 0, 5_000_000)
        assert rc == 0 and got > 0 and bytes(buf[:got]) == gadget.mod63(got, bulk_maxp)
        x.free()
    finally:
        native.close()
