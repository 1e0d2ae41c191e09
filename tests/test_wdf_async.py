"""The WDF asynchronous path: FormatRequestForWrite/Read + WdfRequestSend + completion routines."""

from __future__ import annotations

import math
import os
import threading
import zlib
from typing import Any

import pytest
from test_wdf_helpers import new_memory, new_request, open_rig

from wdfusb import _engine
from wdfusb.wdf import *


def test_10000_queued_requests_complete_in_order_with_crc() -> None:
    rig = open_rig(None)
    pipe, target = rig.pipes[0x06], WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06])
    depth, total = 16, 10_000
    chunks = [os.urandom(1 + (i * 7919) % 600) for i in range(total)]
    order: list[tuple[int, int, int]] = []
    free = threading.Semaphore(depth)
    reqs = [new_request(pipe) for _ in range(depth)]
    mems = [WDFMEMORY() for _ in range(depth)]
    for m in mems:
        assert WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, 600, m, None) == 0

    def routine(Request: WDFREQUEST, Target: WDFIOTARGET, Params: WDF_REQUEST_COMPLETION_PARAMS, Context: int) -> None:
        usb = Params.Parameters.Usb.Completion
        order.append((Context, Params.IoStatus.Status, usb.Parameters.PipeWrite.Length))
        free.release()

    for i, chunk in enumerate(chunks):
        assert free.acquire(timeout=10)
        slot = i % depth
        req, mem = reqs[slot], mems[slot]
        params = WDF_REQUEST_REUSE_PARAMS()
        WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        assert WdfRequestReuse(req, params) == STATUS_SUCCESS
        WdfMemoryGetBuffer(mem, None)[: len(chunk)] = memoryview(chunk)
        offset = WDFMEMORY_OFFSET()
        offset.BufferOffset, offset.BufferLength = 0, len(chunk)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, offset) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, i)
        assert WdfRequestSend(req, target, None)
    assert wait_for_completions(30)
    assert [o[0] for o in order] == list(range(total))
    assert all(status == STATUS_SUCCESS and n == len(chunks[i]) for i, status, n in order)
    ep = rig.vdev.endpoint(0x06)
    assert ep.received_bytes == sum(map(len, chunks))
    assert ep.crc32 == zlib.crc32(b"".join(chunks))
    WdfObjectDelete(rig.device)


def test_read_request_fills_the_memory_and_reports_the_length() -> None:
    rig = open_rig(None)
    data = os.urandom(1024)
    bw = ULONG()
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, data, len(data))
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, desc, bw) == 0
    req, mem = new_request(rig.pipes[0x88]), new_memory(bytes(1024))
    assert WdfUsbTargetPipeFormatRequestForRead(rig.pipes[0x88], req, mem, None) == STATUS_SUCCESS
    got: list[int] = []
    WdfRequestSetCompletionRoutine(
        req, lambda r, t, p, c: got.append(p.Parameters.Usb.Completion.Parameters.PipeRead.Length)
    )
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x88]), None)
    assert wait_for_completions(5)
    assert got == [1024] and bytes(WdfMemoryGetBuffer(mem, None)) == data
    assert WdfRequestGetInformation(req) == 1024
    WdfObjectDelete(rig.device)


def test_reuse_and_resend_from_inside_the_completion_routine() -> None:
    rig = open_rig("high")
    pipe = rig.pipes[0x06]
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    req, mem = new_request(pipe), new_memory(bytes(range(256)) * 256)
    left = [50]

    def routine(Request: WDFREQUEST, Target: WDFIOTARGET, Params: Any, Context: Any) -> None:
        assert NT_SUCCESS(Params.IoStatus.Status)
        left[0] -= 1
        if left[0]:
            params = WDF_REQUEST_REUSE_PARAMS()
            WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
            assert WdfRequestReuse(Request, params) == STATUS_SUCCESS
            assert WdfUsbTargetPipeFormatRequestForWrite(pipe, Request, mem, None) == STATUS_SUCCESS
            assert WdfRequestSend(Request, Target, None)

    assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
    WdfRequestSetCompletionRoutine(req, routine, None)
    assert WdfRequestSend(req, target, None)
    assert wait_for_completions(20)
    assert left == [0]
    assert rig.vdev.endpoint(0x06).received_bytes == 50 * 65536
    WdfObjectDelete(rig.device)


def test_synchronous_send_inside_a_completion_routine_is_refused() -> None:
    rig = open_rig(None)
    seen: list[int] = []

    def routine(Request: WDFREQUEST, Target: WDFIOTARGET, Params: Any, Context: Any) -> None:
        desc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, b"x", 1)
        seen.append(WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, desc, None))

    req = new_request(rig.pipes[0x06])
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], req, new_memory(b"abc"), None) == 0
    WdfRequestSetCompletionRoutine(req, routine, None)
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06]), None)
    assert wait_for_completions(5)
    assert seen == [STATUS_INVALID_DEVICE_REQUEST]
    WdfObjectDelete(rig.device)


def test_exception_in_a_completion_routine_is_reraised() -> None:
    rig = open_rig(None)
    req = new_request(rig.pipes[0x06])
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], req, new_memory(b"abc"), None) == 0

    def routine(*args: Any) -> None:
        raise ValueError("driver bug in the completion routine")

    WdfRequestSetCompletionRoutine(req, routine, None)
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06]), None)
    with pytest.raises(ValueError, match="driver bug"):
        wait_for_completions(5)
    assert WdfRequestGetStatus(req) == STATUS_SUCCESS  # the transfer itself succeeded
    WdfObjectDelete(rig.device)


def test_cancel_a_full_queue_and_time_out_per_request() -> None:
    rig = open_rig("high")
    pipe = rig.pipes[0x06]
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    rig.vdev.endpoint(0x06).nak(float("inf"))
    results: dict[int, int] = {}
    reqs = []
    for i in range(8):
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(bytes(512)), None) == 0
        WdfRequestSetCompletionRoutine(req, lambda r, t, p, c: results.__setitem__(c, int(p.IoStatus.Status)), i)
        options = None
        if i == 7:
            options = WDF_REQUEST_SEND_OPTIONS()
            WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
            WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(100))
        assert WdfRequestSend(req, target, options)
        reqs.append(req)
    assert not wait_for_completions(0.4)
    assert results == {7: STATUS_IO_TIMEOUT}
    for req in reversed(reqs[:7]):
        assert WdfRequestCancelSentRequest(req)
    assert wait_for_completions(5)
    assert all(results[i] == STATUS_CANCELLED for i in range(7))
    assert rig.vdev.endpoint(0x06).received_bytes == 0
    WdfObjectDelete(rig.device)


def test_unplug_mid_stream_completes_every_request_with_device_gone() -> None:
    rig = open_rig("full")
    pipe = rig.pipes[0x06]
    results: list[int] = []
    for _ in range(4):
        req = new_request(pipe)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, new_memory(bytes(64 << 10)), None) == 0
        WdfRequestSetCompletionRoutine(req, lambda r, t, p, c: results.append(int(p.IoStatus.Status)), None)
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
    threading.Timer(0.05, rig.vdev.unplug).start()
    assert wait_for_completions(10)
    assert len(results) == 4 and STATUS_DEVICE_NOT_CONNECTED in results
    assert all(s in (STATUS_SUCCESS, STATUS_DEVICE_NOT_CONNECTED) for s in results)
    WdfObjectDelete(rig.device)


def test_send_errors_leave_the_reason_in_the_request_status() -> None:
    rig = open_rig(None)
    req = new_request(rig.pipes[0x06])
    target = WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06])
    assert not WdfRequestSend(req, target, None)  # never formatted
    assert WdfRequestGetStatus(req) == STATUS_INVALID_DEVICE_REQUEST
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x88], req, None, None) == STATUS_INVALID_DEVICE_REQUEST
    assert WdfUsbTargetPipeFormatRequestForRead(rig.pipes[0x06], req, None, None) == STATUS_INVALID_DEVICE_REQUEST
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], req, None, None) == STATUS_SUCCESS
    bad = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(bad, 0)
    bad.Size = 12
    assert not WdfRequestSend(req, target, bad)
    assert WdfRequestGetStatus(req) == STATUS_INFO_LENGTH_MISMATCH
    assert not WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x02]), None)  # formatted for another pipe
    sync = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(sync, WDF_REQUEST_SEND_OPTION_SYNCHRONOUS)
    assert WdfRequestSend(req, target, sync)  # a zero-length packet, sent and waited for
    assert rig.vdev.endpoint(0x06).transfers == 1
    with pytest.raises(WdfBugCheck):
        WdfRequestSend(WDFREQUEST(), target, None)
    WdfObjectDelete(rig.device)


def test_nothing_alive_after_the_device_is_deleted() -> None:
    before = _engine.Transfer.live
    rig = open_rig(None)
    for _ in range(4):
        req = new_request(rig.pipes[0x06])
        assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], req, new_memory(b"abc"), None) == 0
        assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06]), None)
        assert wait_for_completions(5)
        WdfObjectDelete(req)
    WdfObjectDelete(rig.device)
    rig.vdev.close()
    assert _engine.Transfer.live == before


def test_the_helpers_waits_take_inf_as_for_ever() -> None:
    rig = open_rig(None)
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(config, WdfIoQueueDispatchSequential)
    config.EvtIoWrite = lambda q, r, n: WdfRequestCompleteWithInformation(r, STATUS_SUCCESS, n)
    assert WdfIoQueueCreate(rig.device, config, None, WDFQUEUE()) == STATUS_SUCCESS
    assert post_write(rig.device, b"abc").wait(math.inf) == (STATUS_SUCCESS, 3)
    req = new_request(rig.pipes[0x06])
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], req, new_memory(b"xyz"), None) == STATUS_SUCCESS
    assert WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06]), None)
    assert wait_for_completions(math.inf) and wait_for_completions(float("inf"))
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError, match="timeout"):
            wait_for_completions(bad)
        with pytest.raises(ValueError, match="timeout"):
            post_write(rig.device, b"x").wait(bad)
    assert rig.vdev.endpoint(0x06).received_bytes == 3
    WdfObjectDelete(req)
    WdfObjectDelete(rig.device)
