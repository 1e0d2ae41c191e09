"""I/O queues and received requests: posting, dispatch, forwarding, the reference rule, cancel, splitting."""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from test_wdf_helpers import Rig

from wdfusb.wdf import *
from wdfusb.wdf import _queue

WAIT = 30.0  # generous: a bound on hangs, never a timing assertion


def make_queue(
    rig: Rig,
    evt_io_write: Callable[..., Any] | None,
    dispatch: int = WdfIoQueueDispatchSequential,
    presented: int | None = None,
    **callbacks: Any,
) -> WDFQUEUE:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, dispatch)
    config.EvtIoWrite = evt_io_write
    for name, fn in callbacks.items():
        setattr(config, name, fn)
    if presented is not None:
        config.Settings.Parallel.NumberOfPresentedRequests = presented
    queue = WDFQUEUE()
    assert WdfIoQueueCreate(rig.device, config, WDF_NO_OBJECT_ATTRIBUTES, queue) == STATUS_SUCCESS
    return queue


def input_desc(request: Any) -> tuple[WDFMEMORY, WDF_MEMORY_DESCRIPTOR]:
    memory = WDFMEMORY()
    assert WdfRequestRetrieveInputMemory(request, memory) == STATUS_SUCCESS
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, None)
    return memory, desc


def forward_write(rig: Rig) -> Callable[..., None]:
    """The seed's forwarding path: the received request itself, its input memory."""

    def evt_io_write(queue: Any, request: Any, length: int) -> None:
        _, desc = input_desc(request)
        written = ULONG()
        status = WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], request, None, desc, written)
        WdfRequestCompleteWithInformation(request, status, written.value)

    return evt_io_write


# ---- configuration and bad handles ------------------------------------------------------------


def test_queue_config_init_and_create_checks(rig: Rig) -> None:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(config, WdfIoQueueDispatchParallel)
    assert config.Size == 96 and config.DefaultQueue and config.PowerManaged == WdfUseDefault
    assert config.Settings.Parallel.NumberOfPresentedRequests == -1
    queue = WDFQUEUE()
    # no EvtIoWrite / EvtIoDefault on a dispatching queue
    assert WdfIoQueueCreate(rig.device, config, None, queue) == STATUS_INVALID_DEVICE_REQUEST
    assert queue.value is None
    config.EvtIoWrite = lambda q, r, n: WdfRequestComplete(r, STATUS_SUCCESS)
    config.Size = 80
    assert WdfIoQueueCreate(rig.device, config, None, queue) == STATUS_INFO_LENGTH_MISMATCH
    config.Size = 96
    config.DispatchType = 7
    assert WdfIoQueueCreate(rig.device, config, None, queue) == STATUS_INVALID_PARAMETER
    config.DispatchType = WdfIoQueueDispatchParallel
    assert WdfIoQueueCreate(rig.device, config, None, queue) == STATUS_SUCCESS
    assert WdfIoQueueGetDevice(queue) is rig.device.value
    # a second default queue is refused
    assert WdfIoQueueCreate(rig.device, config, None, WDFQUEUE()) == STATUS_INVALID_DEVICE_REQUEST
    # posting to the device goes to its default queue
    assert post_write(rig.device, b"abc").wait(WAIT) == (STATUS_SUCCESS, 0)


def test_bad_handles_bug_check(rig: Rig) -> None:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchSequential)
    config.EvtIoWrite = forward_write(rig)
    with pytest.raises(WdfBugCheck) as info:
        WdfIoQueueCreate(rig.pipes[0x06], config, None, WDFQUEUE())  # a pipe is not a device
    assert info.value.subcode == WDF_INVALID_HANDLE
    with pytest.raises(WdfBugCheck):
        post_write(WDFQUEUE(), b"x")  # NULL queue
    with pytest.raises(WdfBugCheck):
        post_write(rig.pipes[0x06], b"x")
    created = WDFREQUEST()
    assert WdfRequestCreate(None, None, created) == STATUS_SUCCESS
    for fn in (
        lambda: WdfRequestRetrieveInputMemory(created, WDFMEMORY()),
        lambda: WdfRequestRetrieveInputBuffer(created, 0, PVOID(), None),
        lambda: WdfRequestRetrieveInputWdmMdl(created, PMDL()),
        lambda: WdfRequestComplete(created, STATUS_SUCCESS),  # a driver-created request
        lambda: WdfRequestGetParameters(created, WDF_REQUEST_PARAMETERS()),
        lambda: WdfRequestComplete(rig.pipes[0x06], STATUS_SUCCESS),
        lambda: WdfRequestForwardToIoQueue(created, WDFQUEUE()),
    ):
        with pytest.raises(WdfBugCheck):
            fn()
    WdfObjectDelete(created)


# ---- the received request's buffer ----------------------------------------------------------


def test_retrieve_input_memory_buffer_mdl_and_parameters(rig: Rig) -> None:
    seen: dict[str, Any] = {}
    data = bytearray(os.urandom(700))

    def evt_io_write(queue: Any, request: Any, length: int) -> None:
        memory = WDFMEMORY()
        assert WdfRequestRetrieveInputMemory(request, memory) == STATUS_SUCCESS
        size = SIZE_T()
        seen["memory"] = bytes(WdfMemoryGetBuffer(memory, size))
        seen["memory_size"] = size.value
        buf, blen = PVOID(), SIZE_T()
        assert WdfRequestRetrieveInputBuffer(request, 701, buf, blen) == STATUS_BUFFER_TOO_SMALL
        assert buf.value is None and blen.value == 0
        assert WdfRequestRetrieveInputBuffer(request, 700, buf, blen) == STATUS_SUCCESS
        seen["buffer"], seen["blen"] = bytes(buf.value), blen.value
        buf.value[0] ^= 0xFF  # no copy: this is the producer's buffer
        mdl = PMDL()
        assert WdfRequestRetrieveInputWdmMdl(request, mdl) == STATUS_SUCCESS
        seen["mdl"] = bytes(MmGetSystemAddressForMdlSafe(mdl.value)), MmGetMdlByteCount(mdl.value)
        params = WDF_REQUEST_PARAMETERS()
        WDF_REQUEST_PARAMETERS_INIT(params)
        WdfRequestGetParameters(request, params)
        seen["params"] = (params.Type, params.Parameters.Write.Length, length)
        WdfRequestCompleteWithInformation(request, STATUS_SUCCESS, 123)

    queue = make_queue(rig, evt_io_write)
    original = bytes(data)
    op = post_write(queue, data)
    assert op.wait(WAIT) == (STATUS_SUCCESS, 123) and op.done
    assert seen["memory"] == original and seen["memory_size"] == 700
    assert seen["buffer"] == original and seen["blen"] == 700
    assert data[0] == original[0] ^ 0xFF and data[1:] == original[1:]
    assert seen["mdl"] == (bytes(data), 700)
    assert seen["params"] == (WdfRequestTypeWrite, 700, 700)


def test_zero_length_writes(rig: Rig) -> None:
    calls: list[int] = []
    queue = make_queue(rig, lambda q, r, n: (calls.append(n), WdfRequestComplete(r, STATUS_SUCCESS)))
    assert post_write(queue, b"").wait(WAIT) == (STATUS_SUCCESS, 0)
    assert calls == []  # AllowZeroLengthRequests FALSE: the framework completes it itself

    def evt(q: Any, r: Any, n: int) -> None:
        calls.append(n)
        assert WdfRequestRetrieveInputMemory(r, WDFMEMORY()) == STATUS_BUFFER_TOO_SMALL
        assert WdfRequestRetrieveInputWdmMdl(r, PMDL()) == STATUS_BUFFER_TOO_SMALL
        WdfRequestComplete(r, STATUS_SUCCESS)

    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchSequential)
    config.AllowZeroLengthRequests = True
    config.EvtIoWrite = evt
    q2 = WDFQUEUE()
    assert WdfIoQueueCreate(rig.device, config, None, q2) == STATUS_SUCCESS
    assert post_write(q2, b"").wait(WAIT) == (STATUS_SUCCESS, 0)
    assert calls == [0]


# ---- forwarding ---------------------------------------------------------------------------


def test_forward_received_request_with_its_input_memory(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    queue = make_queue(rig, forward_write(rig))
    frames = [os.urandom(100 + 37 * i) for i in range(20)]
    ops = [post_write(queue, f) for f in frames]
    results = [op.wait(WAIT) for op in ops]
    assert results == [(STATUS_SUCCESS, len(f)) for f in frames]
    assert ep.crc32 == zlib.crc32(b"".join(frames))
    assert not queue.value.driver_owned and not queue.value.pending


def test_received_request_irp_is_one_deeper_than_the_device_stack(rig: Rig) -> None:
    depth: list[int] = []

    def evt(q: Any, r: Any, n: int) -> None:
        depth.append(r.value.irp.StackSize)
        forward_write(rig)(q, r, n)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"x" * 10).wait(WAIT) == (STATUS_SUCCESS, 10)
    assert depth == [rig.device.value.stack_size + 1]
    # an IRP from a stack the target is not part of: too shallow, and not the framework's to replace
    before = rig.vdev.endpoint(0x06).received_bytes
    assert post_write(queue, b"y" * 10, stack_size=0).wait(WAIT) == (STATUS_REQUEST_NOT_ACCEPTED, 0)
    assert rig.vdev.endpoint(0x06).received_bytes == before


def test_received_request_cannot_be_reused(rig: Rig) -> None:
    got: list[NTSTATUS] = []

    def evt(q: Any, r: Any, n: int) -> None:
        params = WDF_REQUEST_REUSE_PARAMS()
        WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        got.append(WdfRequestReuse(r, params))
        WdfRequestComplete(r, STATUS_SUCCESS)

    queue = make_queue(rig, evt)
    post_write(queue, b"abc").wait(WAIT)
    assert got == [STATUS_INVALID_DEVICE_REQUEST]


def test_complete_set_information_and_double_complete(rig: Rig) -> None:
    errors: list[BaseException] = []

    def evt(q: Any, r: Any, n: int) -> None:
        WdfRequestSetInformation(r, n - 1)
        WdfRequestComplete(r, STATUS_UNSUCCESSFUL)
        try:
            WdfRequestComplete(r, STATUS_SUCCESS)
        except WdfBugCheck as exc:
            errors.append(exc)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"hello").wait(WAIT) == (STATUS_UNSUCCESSFUL, 4)
    assert len(errors) == 1 and errors[0].subcode == WDF_INVALID_HANDLE  # completed: the handle is gone


def test_callback_exception_reaches_the_producer(rig: Rig) -> None:
    def evt(q: Any, r: Any, n: int) -> None:
        raise RuntimeError("driver bug")

    queue = make_queue(rig, evt)
    op = post_write(queue, b"abc")
    with pytest.raises(RuntimeError, match="driver bug"):
        op.wait(WAIT)
    assert op.status == STATUS_UNSUCCESSFUL
    # the queue keeps working
    queue2 = make_queue(rig, forward_write(rig))
    assert post_write(queue2, b"abc").wait(WAIT) == (STATUS_SUCCESS, 3)


# ---- the seed's reference-count rule --------------------------------------------------------


def new_request(rig: Rig) -> WDFREQUEST:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, rig.pipes[0x06], req) == STATUS_SUCCESS
    return req


def test_complete_while_a_new_request_references_the_input_memory_bug_checks(rig: Rig) -> None:
    new = new_request(rig)
    caught: list[WdfBugCheck] = []

    def evt(q: Any, r: Any, n: int) -> None:
        _, desc = input_desc(r)
        written = ULONG()
        assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], new, None, desc, written) == STATUS_SUCCESS
        try:
            WdfRequestCompleteWithInformation(r, STATUS_SUCCESS, written.value)  # too early
        except WdfBugCheck as exc:
            caught.append(exc)
        else:
            return
        # the correct sequence: reuse the new request (drops its reference), then complete
        params = WDF_REQUEST_REUSE_PARAMS()
        WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        assert WdfRequestReuse(new, params) == STATUS_SUCCESS
        WdfRequestCompleteWithInformation(r, STATUS_SUCCESS, written.value)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"z" * 64).wait(WAIT) == (STATUS_SUCCESS, 64)
    assert len(caught) == 1
    assert caught[0].subcode == WDF_REQUEST_FATAL_ERROR
    assert caught[0].parameters[1] == _queue.FATAL_COMPLETE_WHILE_MEMORY_REFERENCED
    WdfObjectDelete(new)


@pytest.mark.parametrize("release", ["delete", "reformat"])
def test_complete_after_the_new_request_is_deleted_or_reformatted(rig: Rig, release: str) -> None:
    memories: list[Any] = []

    def evt(q: Any, r: Any, n: int) -> None:
        new = new_request(rig)
        memory, _ = input_desc(r)
        memories.append(memory.value)
        assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], new, memory, None) == STATUS_SUCCESS
        assert WdfRequestSend(new, rig.pipes[0x06], None)
        assert wait_for_completions(WAIT)
        assert NT_SUCCESS(WdfRequestGetStatus(new))
        with pytest.raises(WdfBugCheck):
            WdfRequestComplete(r, STATUS_SUCCESS)
        if release == "delete":
            WdfObjectDelete(new)
        else:
            assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[0x06], new, None, None) == STATUS_SUCCESS
        WdfRequestCompleteWithInformation(r, STATUS_SUCCESS, n)
        if release != "delete":
            WdfObjectDelete(new)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"q" * 99).wait(WAIT) == (STATUS_SUCCESS, 99)
    assert memories[0].is_deleted  # went with its request; no reference left behind


def test_complete_while_pending_or_cancelable_bug_checks(rig: Rig) -> None:
    caught: list[int] = []

    def evt(q: Any, r: Any, n: int) -> None:
        WdfRequestMarkCancelable(r, lambda req: None)
        try:
            WdfRequestComplete(r, STATUS_SUCCESS)
        except WdfBugCheck as exc:
            caught.append(exc.parameters[1])
        assert WdfRequestUnmarkCancelable(r) == STATUS_SUCCESS
        WdfRequestComplete(r, STATUS_SUCCESS)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"abc").wait(WAIT)[0] == STATUS_SUCCESS
    assert caught == [_queue.FATAL_COMPLETE_WHILE_CANCELABLE]


# ---- cancellation -----------------------------------------------------------------------------


def test_cancel_while_forwarded_reaches_the_producer(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    ep.nak(float("inf"))
    entered = threading.Event()
    received: list[Any] = []

    def evt(q: Any, r: Any, n: int) -> None:
        received.append(r.value)
        received.append(input_desc(r)[0].value)
        entered.set()
        forward_write(rig)(q, r, n)

    queue = make_queue(rig, evt)
    op = post_write(queue, b"c" * 4096)
    later = post_write(queue, b"d" * 10)  # waits behind it: a sequential queue
    assert entered.wait(WAIT)
    assert not op.done
    assert op.cancel()
    status, information = op.wait(WAIT)
    assert status == STATUS_CANCELLED and information == 0
    ep.nak(0)
    assert later.wait(WAIT) == (STATUS_SUCCESS, 10)
    request, memory = received[0], received[1]
    assert request.is_deleted and memory.is_deleted and memory._refs == 0
    assert not queue.value.driver_owned and not queue.value.pending
    assert not op.cancel()  # already completed


def test_cancel_while_still_queued(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    ep.nak(float("inf"))
    entered = threading.Event()

    def evt(q: Any, r: Any, n: int) -> None:
        entered.set()
        forward_write(rig)(q, r, n)

    queue = make_queue(rig, evt)
    first = post_write(queue, b"1" * 10)
    assert entered.wait(WAIT)
    second = post_write(queue, b"2" * 10)
    assert second.cancel()
    assert second.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert first.cancel()
    assert first.wait(WAIT)[0] == STATUS_CANCELLED
    ep.nak(0)
    assert ep.received_bytes == 0


def test_mark_cancelable_routine_runs_on_cancel(rig: Rig) -> None:
    entered = threading.Event()
    ran: list[str] = []

    def on_cancel(request: Any) -> None:
        ran.append("cancel")
        assert WdfRequestIsCanceled(request)
        WdfRequestComplete(request, STATUS_CANCELLED)

    def evt(q: Any, r: Any, n: int) -> None:
        assert not WdfRequestIsCanceled(r)
        WdfRequestMarkCancelable(r, on_cancel)
        entered.set()  # returns owning the request: completed by the cancel routine

    queue = make_queue(rig, evt)
    op = post_write(queue, b"abc")
    assert entered.wait(WAIT)
    assert not op.done
    assert op.cancel()
    assert op.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert ran == ["cancel"]
    assert not queue.value.driver_owned


def test_mark_cancelable_ex_on_a_cancelled_request(rig: Rig) -> None:
    results: list[NTSTATUS] = []
    entered, go = threading.Event(), threading.Event()

    def evt(q: Any, r: Any, n: int) -> None:
        entered.set()
        assert go.wait(WAIT)
        results.append(WdfRequestMarkCancelableEx(r, lambda req: None))
        results.append(WdfRequestUnmarkCancelable(r))
        WdfRequestComplete(r, STATUS_CANCELLED)

    queue = make_queue(rig, evt)
    op = post_write(queue, b"abc")
    assert entered.wait(WAIT)
    assert op.cancel()  # owned, not cancelable: only flagged
    go.set()
    assert op.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert results == [STATUS_CANCELLED, STATUS_CANCELLED]


# ---- dispatch types and forwarding between queues ------------------------------------------------


def test_sequential_presents_one_at_a_time_in_order(rig: Rig) -> None:
    lock = threading.Lock()
    active, peak, order = [0], [0], []

    def evt(q: Any, r: Any, n: int) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        buf = PVOID()
        assert WdfRequestRetrieveInputBuffer(r, 1, buf, None) == STATUS_SUCCESS
        order.append(bytes(buf.value))
        forward_write(rig)(q, r, n)  # completes r
        with lock:
            active[0] -= 1

    queue = make_queue(rig, evt)
    frames = [bytes([i]) * (i + 1) for i in range(50)]
    ops = [post_write(queue, f) for f in frames]
    assert all(op.wait(WAIT)[0] == STATUS_SUCCESS for op in ops)
    assert order == frames and peak[0] == 1
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(b"".join(frames))


def test_parallel_presents_several_at_once(rig: Rig) -> None:
    n = 4
    barrier = threading.Barrier(n, timeout=WAIT)
    seen: list[int] = []

    def evt(q: Any, r: Any, length: int) -> None:
        barrier.wait()  # only passes if n requests are presented concurrently
        seen.append(length)
        forward_write(rig)(q, r, length)

    queue = make_queue(rig, evt, WdfIoQueueDispatchParallel, presented=n)
    ops = [post_write(queue, b"p" * (10 + i)) for i in range(n)]
    assert [op.wait(WAIT) for op in ops] == [(STATUS_SUCCESS, 10 + i) for i in range(n)]
    assert sorted(seen) == [10 + i for i in range(n)]


def test_parallel_limit_of_one_holds_the_next_until_completed(rig: Rig) -> None:
    held: list[Any] = []
    first_in = threading.Event()

    def evt(q: Any, r: Any, n: int) -> None:
        held.append(r)
        first_in.set()  # returns without completing: the request stays driver-owned

    queue = make_queue(rig, evt, WdfIoQueueDispatchParallel, presented=1)
    a, b = post_write(queue, b"a"), post_write(queue, b"b")
    assert first_in.wait(WAIT)
    assert len(queue.value.pending) == 1 and not b.done  # not presented while a is owned
    WdfRequestComplete(held[0], STATUS_SUCCESS)
    assert a.wait(WAIT) == (STATUS_SUCCESS, 0)
    # now b is presented
    assert wait_until(lambda: len(held) == 2)
    WdfRequestComplete(held[1], STATUS_SUCCESS)
    assert b.wait(WAIT) == (STATUS_SUCCESS, 0)


def wait_until(cond: Callable[[], bool]) -> bool:
    event = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if cond():
            return True
        event.wait(0.01)
    return cond()


def test_forward_to_io_queue_and_manual_retrieve(rig: Rig) -> None:
    manual = WDFQUEUE()
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchManual)
    assert WdfIoQueueCreate(rig.device, config, None, manual) == STATUS_SUCCESS
    statuses: list[NTSTATUS] = []

    def evt(q: Any, r: Any, n: int) -> None:
        statuses.append(WdfRequestForwardToIoQueue(r, q))  # the same queue: refused
        statuses.append(WdfRequestForwardToIoQueue(r, manual))

    queue = make_queue(rig, evt)
    ops = [post_write(queue, bytes([65 + i]) * 8) for i in range(3)]
    # a sequential queue presents the next once the previous was forwarded
    assert wait_until(lambda: len(manual.value.pending) == 3)
    assert statuses == [STATUS_INVALID_DEVICE_REQUEST, STATUS_SUCCESS] * 3
    assert not any(op.done for op in ops)
    got = WDFREQUEST()
    for i in range(3):
        assert WdfIoQueueRetrieveNextRequest(manual, got) == STATUS_SUCCESS
        buf = PVOID()
        assert WdfRequestRetrieveInputBuffer(got, 8, buf, None) == STATUS_SUCCESS
        assert bytes(buf.value) == bytes([65 + i]) * 8  # FIFO
        forward_write(rig)(manual, got, 8)
    assert WdfIoQueueRetrieveNextRequest(manual, got) == STATUS_NO_MORE_ENTRIES and got.value is None
    assert WdfIoQueueRetrieveNextRequest(queue, got) == STATUS_INVALID_DEVICE_REQUEST
    assert [op.wait(WAIT) for op in ops] == [(STATUS_SUCCESS, 8)] * 3


def test_deleting_the_queue_cancels_queued_requests(rig: Rig) -> None:
    entered, go = threading.Event(), threading.Event()

    def evt(q: Any, r: Any, n: int) -> None:
        entered.set()
        assert go.wait(WAIT)
        WdfRequestComplete(r, STATUS_SUCCESS)

    queue = make_queue(rig, evt)
    first = post_write(queue, b"1")
    assert entered.wait(WAIT)
    second = post_write(queue, b"2")
    done = threading.Thread(target=WdfObjectDelete, args=(queue,))
    done.start()
    assert second.wait(WAIT) == (STATUS_CANCELLED, 0)
    go.set()
    done.join(WAIT)
    assert first.wait(WAIT) == (STATUS_SUCCESS, 0)
    with pytest.raises(WdfBugCheck):
        post_write(queue, b"3")


# ---- splitting -----------------------------------------------------------------------------------


def test_split_large_writes_into_reused_parts_with_crc(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    splitter = WriteSplitter(rig.pipes[0x06], limit=1000)
    part = splitter.requests[0].value
    queue = make_queue(rig, lambda q, r, n: splitter.forward(r))
    frames = [os.urandom(n) for n in (1, 999, 1000, 1001, 4321, 10_000)]
    transfers0 = ep.transfers
    ops = [post_write(queue, f) for f in frames]
    assert [op.wait(WAIT) for op in ops] == [(STATUS_SUCCESS, len(f)) for f in frames]
    assert ep.crc32 == zlib.crc32(b"".join(frames))
    assert ep.transfers - transfers0 == sum(-(-len(f) // 1000) for f in frames)
    assert splitter.requests[0].value is part and part.memory is None  # one request, reused, nothing referenced
    splitter.delete()
    assert part.is_deleted


def test_split_completes_with_the_first_error_and_bytes_so_far(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, WDF_REQUEST_SEND_OPTION_TIMEOUT)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(50))
    splitter = WriteSplitter(rig.pipes[0x06], limit=512, RequestOptions=options)
    parts: list[int] = []

    def evt(q: Any, r: Any, n: int) -> None:
        parts.append(n)
        splitter.forward(r)

    queue = make_queue(rig, evt)
    assert post_write(queue, b"a" * 1024).wait(WAIT) == (STATUS_SUCCESS, 1024)
    ep.nak(float("inf"))
    status, information = post_write(queue, b"b" * 1024).wait(WAIT)
    assert status == STATUS_IO_TIMEOUT and information == 0
    ep.nak(0)
    assert ep.received_bytes == 1024
    splitter.delete()


def test_split_cancel_stops_the_parts(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    splitter = WriteSplitter(rig.pipes[0x06], limit=256)
    entered = threading.Event()

    def evt(q: Any, r: Any, n: int) -> None:
        entered.set()
        splitter.forward(r)

    queue = make_queue(rig, evt)
    ep.nak(float("inf"))
    op = post_write(queue, os.urandom(2048))
    assert entered.wait(WAIT)
    assert op.cancel()
    status, information = op.wait(WAIT)
    assert status == STATUS_CANCELLED and information < 2048
    ep.nak(0)
    data = os.urandom(600)
    before = ep.crc32
    assert post_write(queue, data).wait(WAIT) == (STATUS_SUCCESS, 600)  # the part request is reusable
    assert ep.crc32 == zlib.crc32(data, before)
    assert splitter.requests[0].value.memory is None
    splitter.delete()


def test_forward_with_the_input_mdl_and_input_buffer(rig: Rig) -> None:
    ep = rig.vdev.endpoint(0x06)
    kinds = ["mdl", "buffer"]

    def evt(q: Any, r: Any, n: int) -> None:
        desc = WDF_MEMORY_DESCRIPTOR()
        if kinds.pop(0) == "mdl":
            mdl = PMDL()
            assert WdfRequestRetrieveInputWdmMdl(r, mdl) == STATUS_SUCCESS
            WDF_MEMORY_DESCRIPTOR_INIT_MDL(desc, mdl.value, n)
        else:
            buf = PVOID()
            assert WdfRequestRetrieveInputBuffer(r, n, buf, None) == STATUS_SUCCESS
            WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, buf.value, n)
        written = ULONG()
        status = WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], r, None, desc, written)
        WdfRequestCompleteWithInformation(r, status, written.value)

    queue = make_queue(rig, evt)
    frames = [os.urandom(777), os.urandom(1234)]
    assert [post_write(queue, f).wait(WAIT) for f in frames] == [(STATUS_SUCCESS, 777), (STATUS_SUCCESS, 1234)]
    assert ep.crc32 == zlib.crc32(b"".join(frames))
