"""The fault matrix on the real Linux USB stack (dummy_hcd + configfs gadgets), libusb backend.

Gadget Zero's SourceSink (pattern=1) checks every byte and halts on a wrong one; the
FunctionFS gadget counts and CRCs every byte it reads (or stops reading, so the host sees
NAKs); ``unplug`` (the UDC drops its pull-up) is a surprise removal. Every wait is bounded; nothing is left alive.
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import gadget
import pytest
from background import in_thread, native_counts_unchanged
from background import joined as bounded_join
from test_wdf_libusb import open_pipes
from unplug import FIRST_ERRORS, assert_gone_soon, unplug_after

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import *

SS_VID, SS_PID = 0x0525, 0xA4A0
JOIN_S = 30


@pytest.fixture(autouse=True)
def counts() -> Iterator[None]:
    """Native devices and transfers return to their starting values."""
    yield from native_counts_unchanged(JOIN_S)


def joined(t: threading.Thread) -> None:
    bounded_join(t, JOIN_S)


def open_ss() -> wdfusb.Device:
    return wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL)


# ---- stall mid-stream ---------------------------------------------------------------------


def test_stall_mid_stream_shows_on_a_later_write_then_reset(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    good = gadget.mod63(16 * bulk_maxp, bulk_maxp)
    bad = bytearray(good)
    bad[5 * bulk_maxp + 7] ^= 0xFF
    with open_ss() as dev:
        p = dev.pipe(0x02)
        w = p.writer(depth=4, chunk=len(good))
        submitted = 0
        with pytest.raises(wdfusb.UsbStallError) as err:
            for i in range(400):  # the gadget checks when its 4 KiB request fills: a later write stalls
                w.write(bad if i == 3 else good)
                submitted += len(good)
            w.flush()
        assert err.value.usbd_status == USBD_STATUS_STALL_PID and not NT_SUCCESS(err.value.status)
        assert err.value.bytes_transferred == w.bytes_written < submitted
        assert w.bytes_written >= 3 * len(good)  # what went before the wrong byte was taken
        with pytest.raises(wdfusb.UsbStallError):
            p.write(good, timeout=5)  # still halted
        w.close()
        p.reset()
        assert p.write(good, timeout=5) == len(good)


# ---- NAK until time-out (FunctionFS gadget that never reads) ------------------------------


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_nak_until_timeout_sync_wdf_and_stream(ffs_gadget: gadget.FfsGadget) -> None:
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        p = dev.pipe(ffs_gadget.ep_out)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            p.write(bytes(64 << 10), timeout=0.3)
        assert err.value.status == STATUS_IO_TIMEOUT and err.value.bytes_transferred == 0
        w = p.writer(depth=4, chunk=16 << 10, timeout=0.3)
        with pytest.raises(wdfusb.UsbTimeoutError) as serr:
            w.write(bytes(128 << 10))
            w.flush()
        assert serr.value.bytes_transferred == w.bytes_written == 0
        w.close()
        assert dev._core.native.live_transfers() == 0
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, WDF_REQUEST_SEND_OPTION_TIMEOUT)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(300))
    desc, n = WDF_MEMORY_DESCRIPTOR(), ULONG(7)
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, bytes(4096), 4096)
    assert WdfUsbTargetPipeWriteSynchronously(pipes[ffs_gadget.ep_out], None, options, desc, n) == STATUS_IO_TIMEOUT
    assert n.value == 0
    WdfObjectDelete(device)
    assert ffs_gadget.received.bytes == 0


# ---- unplug -------------------------------------------------------------------------------


def test_unplug_during_a_sync_write(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = gadget.mod63(16 << 20, bulk_maxp)
    with open_ss() as dev:
        p = dev.pipe(0x02)
        unplug_after(sourcesink, 0.3)
        with pytest.raises(wdfusb.UsbError) as err:
            for _ in range(100):
                p.write(data, timeout=JOIN_S)
        assert isinstance(err.value, FIRST_ERRORS), err.value
        assert 0 <= err.value.bytes_transferred < len(data)
        assert err.value.bytes_transferred % bulk_maxp == 0
        assert_gone_soon(p, JOIN_S)


def test_unplug_during_async_wdf_requests(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)
    pipe, target = pipes[0x02], WdfUsbTargetPipeGetIoTarget(pipes[0x02])
    data = gadget.mod63(1 << 20, bulk_maxp)
    done: list[tuple[int, int]] = []
    free = threading.Semaphore(4)

    def routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        done.append((int(Params.IoStatus.Status), Params.Parameters.Usb.Completion.Parameters.PipeWrite.Length))
        free.release()

    reqs = []
    for _ in range(4):
        req, mem = WDFREQUEST(), WDFMEMORY()
        assert WdfRequestCreate(None, target, req) == STATUS_SUCCESS
        assert WdfMemoryCreatePreallocated(None, data, len(data), mem) == STATUS_SUCCESS
        reqs.append((req, mem))
    unplug_after(sourcesink, 0.3)
    reuse = WDF_REQUEST_REUSE_PARAMS()
    sent, refused = 0, False
    deadline = time.monotonic() + JOIN_S
    while all(s == STATUS_SUCCESS for s, _ in done) and time.monotonic() < deadline:
        assert free.acquire(timeout=JOIN_S)
        req, mem = reqs[sent % 4]
        WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, None)
        if not WdfRequestSend(req, target, None):
            assert not NT_SUCCESS(WdfRequestGetStatus(req))  # the device is gone: refused at once
            refused = True
            free.release()
            break
        sent += 1
    try:
        assert wait_for_completions(JOIN_S)
        failed = [NTSTATUS(s) for s, _ in done if s != STATUS_SUCCESS]
        assert failed or refused, "no request saw the unplug"
        # the first failures may be bus errors (the URBs die with the port); then the device is gone
        assert all(not NT_SUCCESS(s) for s in failed), failed
        assert all(n == len(data) for s, n in done if s == STATUS_SUCCESS)
    finally:
        for req, mem in reqs:
            WdfObjectDelete(req)
            WdfObjectDelete(mem)
        WdfObjectDelete(device)


def test_unplug_during_a_stream(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = gadget.mod63(1 << 20, bulk_maxp)
    with open_ss() as dev:
        w = dev.pipe(0x02).writer(depth=8, chunk=64 << 10)
        unplug_after(sourcesink, 0.3)
        with pytest.raises(FIRST_ERRORS) as err:
            for _ in range(1000):
                w.write(data)
            w.flush()
        assert err.value.bytes_transferred == w.bytes_written
        assert w.bytes_written % bulk_maxp == 0  # whole packets only
        assert dev._core.native.live_transfers() == 0
        w.close()
        assert_gone_soon(dev.pipe(0x02), JOIN_S)


# ---- random cancels, counted by the FunctionFS gadget --------------------------------------


@pytest.mark.parametrize("ffs_gadget", [{"mode": "count", "read_size": 1 << 20}], indirect=True)
def test_random_cancels_move_exactly_the_bytes_reported(ffs_gadget: gadget.FfsGadget) -> None:
    rng = random.Random(5)
    data = rng.randbytes(256 << 10)
    crc, total, cancelled = 0, 0, 0
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        pipe = dev.pipe(ffs_gadget.ep_out)
        xfer = dev._core.new_transfer()
        view = _engine.pin(data)
        for _ in range(200):
            t, out = in_thread(lambda: pipe._core.transfer(view, len(data), 0, 0, xfer))
            time.sleep(rng.random() * 0.01)
            xfer.cancel()
            joined(t)
            rc, actual = out[0]
            assert rc in (0, _engine.lib.WU_ERR_CANCELLED) and (rc != 0 or actual == len(data))
            cancelled += rc != 0
            crc, total = zlib.crc32(data[:actual], crc), total + actual
        # a short packet ends the gadget's pending read, so it counts everything
        assert pipe.write(b"!", timeout=5) == 1
        crc, total = zlib.crc32(b"!", crc), total + 1
        assert ffs_gadget.received.wait_bytes(total, JOIN_S) == total
        assert ffs_gadget.received.crc32 == crc
        assert cancelled > 0
        xfer.free()


# read_size: a 1 MiB gadget read spans many cancelled streams; 40 KiB reads end inside
# the writer's 32 KiB transfers, so many cancels cut a transfer short
@pytest.mark.parametrize(
    "ffs_gadget", [{"mode": "count", "read_size": 1 << 20}, {"mode": "count", "read_size": 40 << 10}], indirect=True
)
def test_random_stream_cancels_move_exactly_the_bytes_reported(ffs_gadget: gadget.FfsGadget) -> None:
    rng = random.Random(6)
    data = rng.randbytes(512 << 10)
    crc, total = 0, 0
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        pipe = dev.pipe(ffs_gadget.ep_out)
        for _ in range(50):
            w = pipe.writer(depth=4, chunk=32 << 10)
            t, out = in_thread(lambda w=w: (w.write(data), w.flush()))  # type: ignore[misc]
            time.sleep(rng.random() * 0.02)
            n = w.cancel()
            joined(t)
            assert n == w.bytes_written <= len(data)
            if isinstance(out[0], BaseException):
                assert isinstance(out[0], wdfusb.UsbCancelledError) and out[0].bytes_transferred == n
            w.close()
            crc, total = zlib.crc32(data[:n], crc), total + n
        assert pipe.write(b"!", timeout=5) == 1
        crc, total = zlib.crc32(b"!", crc), total + 1
        assert ffs_gadget.received.wait_bytes(total, JOIN_S) == total
        assert ffs_gadget.received.crc32 == crc


# ---- close while in flight ----------------------------------------------------------------


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_close_while_a_write_and_a_stream_are_blocked(ffs_gadget: gadget.FfsGadget) -> None:
    dev = wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid)
    p = dev.pipe(ffs_gadget.ep_out)
    w = p.writer(depth=4, chunk=16 << 10)
    t1, out1 = in_thread(lambda: p.write(bytes(64 << 10)))  # no time-out: only the close ends it
    t2, out2 = in_thread(lambda: (w.write(bytes(256 << 10)), w.flush()))
    time.sleep(0.5)
    assert t1.is_alive() and t2.is_alive()
    dev.close()
    joined(t1)
    joined(t2)
    assert isinstance(out1[0], wdfusb.UsbError) and out1[0].bytes_transferred == 0, out1
    assert isinstance(out2[0], wdfusb.UsbError) and out2[0].bytes_transferred == 0, out2
    w.close()
    assert ffs_gadget.received.bytes == 0


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_delete_the_wdf_device_with_requests_in_flight(ffs_gadget: gadget.FfsGadget) -> None:
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    pipe = pipes[ffs_gadget.ep_out]
    done: list[int] = []
    for _ in range(4):
        req, mem = WDFREQUEST(), WDFMEMORY()
        assert WdfRequestCreate(None, WdfUsbTargetPipeGetIoTarget(pipe), req) == STATUS_SUCCESS
        assert WdfMemoryCreate(None, NonPagedPool, 0, 4096, mem, None) == STATUS_SUCCESS
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, lambda q, t, prm, c: done.append(int(prm.IoStatus.Status)))
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
    time.sleep(0.3)
    assert not done
    WdfObjectDelete(device)
    assert wait_for_completions(JOIN_S)
    assert len(done) == 4 and all(not NT_SUCCESS(s) for s in done), done
