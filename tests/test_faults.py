"""The fault matrix on the virtual device (issue 7).

Every fault ends in a clear status or exception, every wait is bounded, no native object
outlives its test, and the bytes reported as written are exactly the bytes the device
received (count and CRC-32 of the prefix actually written).
"""

from __future__ import annotations

import gc
import random
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from background import in_thread, native_counts_unchanged, wait_until
from background import joined as bounded_join
from test_wdf_helpers import Rig, new_memory, new_request, open_rig

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import *

EP = 0x06
GONE = {STATUS_NO_SUCH_DEVICE, STATUS_DEVICE_NOT_CONNECTED, STATUS_DEVICE_REMOVED}
JOIN_S = 10  # every join and wait is bounded by this


def rand(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(autouse=True)
def counts() -> Iterator[None]:
    """Native transfers and native objects return to their starting values."""
    yield from native_counts_unchanged(JOIN_S)


def sink(speed: str | None) -> tuple[wdfusb.VirtualDevice, wdfusb.Device, wdfusb.Pipe]:
    v = wdfusb.VirtualDevice(speed=speed, loopback_capacity=0)
    dev = wdfusb.open(v)
    return v, dev, dev.pipe(EP)


def check_prefix(v: wdfusb.VirtualDevice, data: bytes, n: int) -> None:
    """The device received exactly the first ``n`` bytes of ``data``."""
    ep = v.endpoint(EP)
    assert ep.received_bytes == n
    assert ep.crc32 == zlib.crc32(data[:n])


def joined(t: threading.Thread) -> None:
    bounded_join(t, JOIN_S)


def wdf_write(r: Rig, data: Any, request: Any = None, options: Any = None) -> tuple[int, int]:
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, data, len(data))
    n = ULONG()
    return WdfUsbTargetPipeWriteSynchronously(r.pipes[EP], request, options, d, n), n.value


def reuse(req: WDFREQUEST) -> None:
    params = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    assert WdfRequestReuse(req, params) == STATUS_SUCCESS


def close_rig(r: Rig) -> None:
    if not r.device.value.is_deleted:
        WdfObjectDelete(r.device)
    r.vdev.close()


# ---- stall mid-stream ---------------------------------------------------------------------


def test_stall_mid_sync_write_reports_the_prefix_and_reset_clears_it() -> None:
    v, dev, pipe = sink("high")
    data = rand(4 << 20, 1)  # ~80 ms at high speed
    with v, dev:
        threading.Timer(0.02, v.endpoint(EP).stall).start()
        with pytest.raises(wdfusb.UsbStallError) as err:
            pipe.write(data, timeout=JOIN_S)
        n = err.value.bytes_transferred
        assert 0 < n < len(data) and int(err.value.usbd_status) == int(USBD_STATUS_STALL_PID)
        check_prefix(v, data, n)
        with pytest.raises(wdfusb.UsbStallError) as again:
            pipe.write(b"x" * 512, timeout=JOIN_S)
        assert again.value.bytes_transferred == 0
        pipe.reset()
        assert pipe.write(b"y" * 512, timeout=JOIN_S) == 512
        assert v.endpoint(EP).crc32 == zlib.crc32(data[:n] + b"y" * 512)


def test_stall_mid_wdf_write_is_not_success_with_the_count() -> None:
    r = open_rig("high")
    data = rand(4 << 20, 2)
    threading.Timer(0.02, r.vdev.endpoint(EP).stall).start()
    status, n = wdf_write(r, data)
    assert not NT_SUCCESS(status) and 0 < n < len(data)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == n and ep.crc32 == zlib.crc32(data[:n])
    assert WdfUsbTargetPipeResetSynchronously(r.pipes[EP], None, None) == STATUS_SUCCESS
    assert wdf_write(r, b"z" * 64) == (STATUS_SUCCESS, 64)
    close_rig(r)


def test_stall_mid_stream_writer() -> None:
    v, dev, pipe = sink("high")
    data = rand(1 << 20, 3)
    with v, dev:
        w = pipe.writer(depth=8, chunk=64 << 10)
        threading.Timer(0.05, v.endpoint(EP).stall).start()
        with pytest.raises(wdfusb.UsbStallError) as err:
            for _ in range(200):
                w.write(data)
            w.flush()
        n = err.value.bytes_transferred
        assert n == w.bytes_written == v.endpoint(EP).received_bytes > 0
        assert v.endpoint(EP).crc32 == zlib.crc32((data * (n // len(data) + 1))[:n])
        w.close()


# ---- NAK until time-out -------------------------------------------------------------------


@pytest.mark.parametrize("nak_after", [0.0, 0.03])
def test_nak_until_timeout_sync_write(nak_after: float) -> None:
    v, dev, pipe = sink("high")
    data = rand(8 << 20, 4)
    with v, dev:
        if nak_after:
            threading.Timer(nak_after, v.endpoint(EP).nak, (float("inf"),)).start()
        else:
            v.endpoint(EP).nak(float("inf"))
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            pipe.write(data, timeout=0.3)
        n = err.value.bytes_transferred
        assert err.value.status == STATUS_IO_TIMEOUT
        assert (n == 0) if not nak_after else (0 < n < len(data))
        check_prefix(v, data, n)
        assert dev._core.native.live_transfers() == 0  # cancelled and reaped before raising
        v.endpoint(EP).nak(0)


def test_nak_until_timeout_wdf_request_options() -> None:
    r = open_rig("high")
    r.vdev.endpoint(EP).nak(float("inf"))
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, WDF_REQUEST_SEND_OPTION_TIMEOUT)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(100))
    req = new_request(r.pipes[EP])
    assert wdf_write(r, rand(4096, 5), req, options) == (STATUS_IO_TIMEOUT, 0)
    assert WdfRequestGetStatus(req) == STATUS_IO_TIMEOUT
    assert r.vdev.endpoint(EP).received_bytes == 0
    r.vdev.endpoint(EP).nak(0)
    reuse(req)
    assert wdf_write(r, b"a" * 100, req, options) == (STATUS_SUCCESS, 100)
    WdfObjectDelete(req)
    close_rig(r)


def test_nak_until_timeout_stream_writer() -> None:
    v, dev, pipe = sink("high")
    with v, dev:
        v.endpoint(EP).nak(float("inf"))
        w = pipe.writer(depth=4, chunk=4096, timeout=0.1)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            w.write(rand(64 << 10, 6))
            w.flush()
        assert err.value.bytes_transferred == w.bytes_written == 0 == v.endpoint(EP).received_bytes
        w.close()


# ---- unplug -------------------------------------------------------------------------------


def test_unplug_during_a_sync_write() -> None:
    v, dev, pipe = sink("high")
    data = rand(8 << 20, 7)
    with v, dev:
        threading.Timer(0.03, v.unplug).start()
        with pytest.raises(wdfusb.DeviceGoneError) as err:
            pipe.write(data, timeout=JOIN_S)
        n = err.value.bytes_transferred
        assert 0 < n < len(data) and err.value.status in GONE
        check_prefix(v, data, n)
        with pytest.raises(wdfusb.DeviceGoneError):
            pipe.write(b"after", timeout=1)


def test_unplug_during_a_wdf_sync_write() -> None:
    r = open_rig("high")
    data = rand(8 << 20, 8)
    threading.Timer(0.03, r.vdev.unplug).start()
    status, n = wdf_write(r, data)
    assert status in GONE and 0 < n < len(data)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == n and ep.crc32 == zlib.crc32(data[:n])
    assert wdf_write(r, b"x")[0] in GONE
    close_rig(r)


def test_unplug_during_async_wdf_requests() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    chunks = [rand(1 << 20, 10 + i) for i in range(6)]
    done: dict[int, tuple[int, int]] = {}
    reqs = []
    for i, chunk in enumerate(chunks):
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(chunk), None) == STATUS_SUCCESS

        def routine(Request: Any, Target: Any, Params: Any, Context: int) -> None:
            done[Context] = (int(Params.IoStatus.Status), Params.Parameters.Usb.Completion.Parameters.PipeWrite.Length)

        WdfRequestSetCompletionRoutine(req, routine, i)
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
        reqs.append(req)
    threading.Timer(0.05, r.vdev.unplug).start()
    assert wait_for_completions(JOIN_S)
    assert sorted(done) == list(range(len(chunks)))
    statuses = [done[i][0] for i in range(len(chunks))]
    assert statuses[0] == STATUS_SUCCESS and statuses[-1] in GONE
    assert all(s == STATUS_SUCCESS or s in GONE for s in statuses)
    sent = b"".join(chunks[i][: done[i][1]] for i in range(len(chunks)))
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == len(sent) and ep.crc32 == zlib.crc32(sent)
    for req in reqs:
        WdfObjectDelete(req)
    close_rig(r)


def test_unplug_during_a_stream() -> None:
    v, dev, pipe = sink("high")
    data = rand(1 << 20, 9)
    with v, dev:
        w = pipe.writer(depth=8, chunk=64 << 10)
        threading.Timer(0.05, v.unplug).start()
        with pytest.raises(wdfusb.DeviceGoneError) as err:
            for _ in range(200):
                w.write(data)
            w.flush()
        n = err.value.bytes_transferred
        assert n == w.bytes_written == v.endpoint(EP).received_bytes > 0
        assert v.endpoint(EP).crc32 == zlib.crc32((data * (n // len(data) + 1))[:n])
        assert dev._core.native.live_transfers() == 0
        w.close()


# ---- 1,000 random cancels -----------------------------------------------------------------


def test_1000_random_engine_transfer_cancels() -> None:
    v, dev, _pipe = sink("high")
    rng = random.Random(11)
    data = rand(128 << 10, 12)  # ~2.5 ms at high speed
    view = _engine.pin(data)
    xfer = dev._core.new_transfer()
    crc, total, statuses = 0, 0, set()
    with v, dev:
        for _ in range(1000):
            t, out = in_thread(lambda: xfer.run(EP, _engine.EP_BULK, view, len(data), 0, 0))
            time.sleep(rng.random() * 0.003)
            xfer.cancel()
            joined(t)
            rc, actual = out[0]
            statuses.add(wdfusb.errors.error_for(rc).status if rc else STATUS_SUCCESS)
            assert 0 <= actual <= len(data) and (rc != 0 or actual == len(data))
            crc, total = zlib.crc32(data[:actual], crc), total + actual
        assert v.endpoint(EP).received_bytes == total and v.endpoint(EP).crc32 == crc
        assert STATUS_CANCELLED in statuses and statuses <= {STATUS_SUCCESS, STATUS_CANCELLED}
        xfer.free()


def test_1000_random_wdf_request_cancels() -> None:
    r = open_rig("high")
    pipe, target = r.pipes[EP], WdfUsbTargetPipeGetIoTarget(r.pipes[EP])
    rng = random.Random(13)
    data = rand(128 << 10, 14)
    mem, req = new_memory(data), new_request(pipe)
    got: list[tuple[int, int]] = []
    back = threading.Semaphore(0)

    def routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        got.append((int(Params.IoStatus.Status), Params.Parameters.Usb.Completion.Parameters.PipeWrite.Length))
        back.release()

    cancelled = 0
    for _ in range(1000):
        reuse(req)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, None)
        assert WdfRequestSend(req, target, None)
        canceller, _ = in_thread(lambda: time.sleep(rng.random() * 0.003) or WdfRequestCancelSentRequest(req))
        joined(canceller)
        cancelled += bool(_[0])
        assert back.acquire(timeout=JOIN_S)
    assert len(got) == 1000 and cancelled > 0
    assert {s for s, _n in got} <= {STATUS_SUCCESS, STATUS_CANCELLED} and STATUS_CANCELLED in {s for s, _ in got}
    assert all(n == len(data) for s, n in got if s == STATUS_SUCCESS)
    sent = b"".join(data[:n] for _s, n in got)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == len(sent) and ep.crc32 == zlib.crc32(sent)
    WdfObjectDelete(req)
    WdfObjectDelete(mem)
    close_rig(r)


def test_1000_random_stream_writer_cancels() -> None:
    v, dev, pipe = sink("super")
    rng = random.Random(15)
    data = rand(512 << 10, 16)
    crc, total = 0, 0
    with v, dev:
        for _ in range(1000):
            w = pipe.writer(depth=4, chunk=32 << 10)
            t, out = in_thread(lambda w=w: (w.write(data), w.flush()))  # type: ignore[misc]
            time.sleep(rng.random() * 0.0015)
            n = w.cancel()
            joined(t)
            assert n == w.bytes_written and 0 <= n <= len(data)
            if isinstance(out[0], BaseException):
                assert isinstance(out[0], wdfusb.UsbCancelledError) and out[0].bytes_transferred == n
            else:
                assert n == len(data)
            w.close()
            crc, total = zlib.crc32(data[:n], crc), total + n
            assert v.endpoint(EP).received_bytes == total
        assert v.endpoint(EP).crc32 == crc and 0 < total < 1000 * len(data)


# ---- close and delete while in flight -----------------------------------------------------


def test_close_the_device_during_a_sync_write() -> None:
    v, dev, pipe = sink("high")
    data = rand(8 << 20, 17)
    with v:
        t, out = in_thread(lambda: pipe.write(data, timeout=JOIN_S))
        wait_until(lambda: v.endpoint(EP).received_bytes > 0)
        dev.close()
        joined(t)
        assert isinstance(out[0], (wdfusb.UsbCancelledError, wdfusb.DeviceGoneError)), out
        n = out[0].bytes_transferred
        assert n < len(data)
        check_prefix(v, data, n)
        with pytest.raises(wdfusb.DeviceGoneError):
            pipe.write(b"x", timeout=1)


def test_close_the_device_during_a_stream() -> None:
    v, dev, pipe = sink("high")
    data = rand(4 << 20, 18)
    with v:
        w = pipe.writer(depth=8, chunk=64 << 10)
        t, out = in_thread(lambda: (w.write(data), w.flush()))
        wait_until(lambda: v.endpoint(EP).received_bytes > 0)
        dev.close()
        joined(t)
        assert isinstance(out[0], wdfusb.UsbError), out
        n = out[0].bytes_transferred
        assert n == w.bytes_written < len(data)
        check_prefix(v, data, n)
        w.close()


def test_close_the_virtual_device_during_a_sync_write() -> None:
    v, dev, pipe = sink("high")
    data = rand(8 << 20, 19)
    t, out = in_thread(lambda: pipe.write(data, timeout=JOIN_S))
    wait_until(lambda: v.endpoint(EP).received_bytes > 0)
    v.close()
    joined(t)
    assert isinstance(out[0], wdfusb.UsbError), out
    assert 0 < out[0].bytes_transferred < len(data)
    dev.close()


def test_delete_the_device_with_async_requests_in_flight() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    data = rand(1 << 20, 20)
    done: list[tuple[int, int]] = []
    for _ in range(4):
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(data), None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(
            req,
            lambda q, t, p, c: done.append(
                (int(p.IoStatus.Status), p.Parameters.Usb.Completion.Parameters.PipeWrite.Length)
            ),
        )
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
    wait_until(lambda: r.vdev.endpoint(EP).received_bytes > 0)
    WdfObjectDelete(r.device)
    assert wait_for_completions(JOIN_S)
    assert len(done) == 4 and not all(s == STATUS_SUCCESS for s, _ in done)
    sent = b"".join(data[:n] for _s, n in done)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == len(sent) and ep.crc32 == zlib.crc32(sent)
    r.vdev.close()


def test_delete_memory_while_its_request_is_in_flight_is_deferred() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    data = rand(2 << 20, 21)
    mem, req = new_memory(data), new_request(pipe)
    assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
    WdfObjectDelete(mem)  # the request references it: the buffer stays until the request lets go
    del mem
    gc.collect()
    assert wait_for_completions(JOIN_S)
    assert WdfRequestGetStatus(req) == STATUS_SUCCESS and WdfRequestGetInformation(req) == len(data)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == len(data) and ep.crc32 == zlib.crc32(data)
    WdfObjectDelete(req)
    close_rig(r)


def test_delete_a_request_in_flight_is_a_bug_check_and_nothing_breaks() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    data = rand(2 << 20, 22)
    req = new_request(pipe)
    assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(data), None) == STATUS_SUCCESS
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
    with pytest.raises(WdfBugCheck):
        WdfObjectDelete(req)
    assert WdfRequestCancelSentRequest(req)
    assert wait_for_completions(JOIN_S)
    n = WdfRequestGetInformation(req)
    assert WdfRequestGetStatus(req) in (STATUS_CANCELLED, STATUS_SUCCESS)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == n and ep.crc32 == zlib.crc32(data[:n])
    close_rig(r)


def test_drop_every_reference_to_a_sent_request_and_its_buffer() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    data = rand(1 << 20, 23)

    def send_and_forget() -> None:
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(data), None) == STATUS_SUCCESS
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)

    send_and_forget()
    gc.collect()
    assert wait_for_completions(JOIN_S)
    ep = r.vdev.endpoint(EP)
    assert ep.received_bytes == len(data) and ep.crc32 == zlib.crc32(data)
    close_rig(r)


# ---- exceptions in completion routines ----------------------------------------------------


def test_exception_in_one_completion_routine_does_not_stop_the_others() -> None:
    r = open_rig("high")
    pipe = r.pipes[EP]
    r.vdev.endpoint(EP).nak(float("inf"))  # hold every request until all are sent
    chunks = [rand(1000 + i, 30 + i) for i in range(20)]
    ran: list[int] = []

    def routine(Request: Any, Target: Any, Params: Any, Context: int) -> None:
        ran.append(Context)
        if Context % 5 == 2:
            raise RuntimeError(f"routine {Context} failed")

    reqs = []
    for i, chunk in enumerate(chunks):
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(chunk), None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, i)
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
        reqs.append(req)
    r.vdev.endpoint(EP).nak(0)
    raised: list[BaseException] = []
    deadline = time.monotonic() + JOIN_S
    while time.monotonic() < deadline:
        try:
            if wait_for_completions(JOIN_S):
                break
        except RuntimeError as e:
            raised.append(e)
    assert ran == list(range(20))
    assert [str(e) for e in raised] == [f"routine {i} failed" for i in (2, 7, 12, 17)]  # each once, in order
    assert all(WdfRequestGetStatus(q) == STATUS_SUCCESS for q in reqs)
    ep = r.vdev.endpoint(EP)
    assert ep.crc32 == zlib.crc32(b"".join(chunks))
    for q in reqs:
        WdfObjectDelete(q)
    close_rig(r)


# ---- two threads, one pipe ----------------------------------------------------------------


def tagged(thread: int, seq: int, size: int = 4096) -> bytes:
    head = bytes([thread]) + seq.to_bytes(4, "little")
    return head + bytes([(thread * 31 + seq) & 0xFF]) * (size - len(head))


@pytest.mark.parametrize("layer", ["pythonic", "wdf"])
def test_two_threads_share_one_pipe_whole_transfers_in_order(layer: str) -> None:
    v = wdfusb.VirtualDevice(speed="super", loopback_capacity=4 << 20)  # keeps all 3.2 MB read back
    per_thread = 400
    if layer == "pythonic":
        dev = wdfusb.open(v)
        out_pipe = dev.pipe(EP)

        def write(b: bytes) -> int:
            return out_pipe.write(b, timeout=JOIN_S)
    else:
        usb = WDFUSBDEVICE()
        assert WdfUsbTargetDeviceCreate(v, WDF_NO_OBJECT_ATTRIBUTES, usb) == STATUS_SUCCESS
        params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
        WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
        assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(usb, WDF_NO_OBJECT_ATTRIBUTES, params))
        wdf_pipe = WdfUsbInterfaceGetConfiguredPipe(WdfUsbTargetDeviceGetInterface(usb, 0), 0, None)

        def write(b: bytes) -> int:
            d = WDF_MEMORY_DESCRIPTOR()
            WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b, len(b))
            n = ULONG()
            assert WdfUsbTargetPipeWriteSynchronously(wdf_pipe, None, None, d, n) == STATUS_SUCCESS
            return n.value

    def worker(tid: int) -> int:
        return sum(write(tagged(tid, s)) for s in range(per_thread))

    threads = [in_thread(lambda tid=tid: worker(tid)) for tid in (1, 2)]  # type: ignore[misc]
    for t, _ in threads:
        joined(t)
    assert [out[0] for _, out in threads] == [per_thread * 4096] * 2
    ep = v.endpoint(EP)
    assert ep.received_bytes == 2 * per_thread * 4096 and ep.transfers == 2 * per_thread
    # read the loopback back: whole 4 KiB transfers, each thread's in its own order
    with wdfusb.open(v) as reader:
        back = bytearray(2 * per_thread * 4096)
        got = 0
        while got < len(back):
            got += reader.pipe(0x88).readinto(memoryview(back)[got : got + (64 << 10)], timeout=JOIN_S)
    seen: dict[int, list[int]] = {1: [], 2: []}
    for i in range(0, len(back), 4096):
        block = bytes(back[i : i + 4096])
        tid, seq = block[0], int.from_bytes(block[1:5], "little")
        assert block == tagged(tid, seq)
        seen[tid].append(seq)
    assert seen == {1: list(range(per_thread)), 2: list(range(per_thread))}
    assert zlib.crc32(bytes(back)) == ep.crc32
    if layer == "pythonic":
        dev.close()
    else:
        WdfObjectDelete(usb)
    v.close()
