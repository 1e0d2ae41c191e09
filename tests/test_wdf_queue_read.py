"""Queues that present reads and device-control requests (CONTRACT §7): post_read and
post_device_control, the output memory, the parameters, and dispatching per request type."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from test_wdf_helpers import Rig, open_rig

from wdfusb.wdf import *

IOCTL_REVERSE = 0x222004  # CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = open_rig(None)
    yield r
    if not r.device.value.is_deleted:
        WdfObjectDelete(r.device)
    r.vdev.close()


def queue(r: Rig, default: bool = True, **callbacks: Any) -> WDFQUEUE:
    config = WDF_IO_QUEUE_CONFIG()
    if default:
        WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(config, WdfIoQueueDispatchSequential)
    else:
        WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchSequential)
    for name, fn in callbacks.items():
        setattr(config, name, fn)
    q = WDFQUEUE()
    assert WdfIoQueueCreate(r.device, config, WDF_NO_OBJECT_ATTRIBUTES, q) == STATUS_SUCCESS
    return q


def test_a_read_is_presented_and_forwarded_to_the_pipe(rig: Rig) -> None:
    rig.vdev.endpoint(0x88).source("counter")
    seen: list[tuple[int, int]] = []

    def EvtIoRead(Queue: Any, Request: Any, Length: int) -> None:
        params = WDF_REQUEST_PARAMETERS()
        WDF_REQUEST_PARAMETERS_INIT(params)
        WdfRequestGetParameters(Request, params)
        seen.append((params.Type, params.Parameters.Read.Length))
        assert WdfRequestGetIoQueue(Request).value is Queue.value
        assert WdfRequestRetrieveInputMemory(Request, WDFMEMORY()) == STATUS_BUFFER_TOO_SMALL  # a read has none
        desc = WDF_MEMORY_DESCRIPTOR()
        memory = WDFMEMORY()
        assert WdfRequestRetrieveOutputMemory(Request, memory) == STATUS_SUCCESS
        WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, None)
        got = ULONG()
        status = WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], Request, None, desc, got)
        WdfRequestCompleteWithInformation(Request, status, got.value)

    queue(rig, EvtIoRead=EvtIoRead)
    out = np.zeros(4096, np.uint32)
    assert post_read(rig.device, out).wait(5) == (STATUS_SUCCESS, 16384)
    assert np.array_equal(out, np.arange(4096, dtype=np.uint32))  # landed in the caller's array
    assert seen == [(WdfRequestTypeRead, 16384)]
    assert post_read(rig.device, bytearray(0)).wait(5) == (STATUS_SUCCESS, 0)  # completed by the framework
    with pytest.raises(TypeError, match="read-only"):
        post_read(rig.device, b"immutable")


def test_a_device_control_request_gets_both_buffers_and_its_code(rig: Rig) -> None:
    def EvtIoDeviceControl(
        Queue: Any, Request: Any, OutputBufferLength: int, InputBufferLength: int, Code: int
    ) -> None:
        params = WDF_REQUEST_PARAMETERS()
        WDF_REQUEST_PARAMETERS_INIT(params)
        WdfRequestGetParameters(Request, params)
        control = params.Parameters.DeviceIoControl
        assert (params.Type, control.IoControlCode) == (WdfRequestTypeDeviceControl, Code)
        assert (control.InputBufferLength, control.OutputBufferLength) == (InputBufferLength, OutputBufferLength)
        if Code != IOCTL_REVERSE:
            WdfRequestComplete(Request, STATUS_INVALID_DEVICE_REQUEST)
            return
        inp, out, length = PVOID(), PVOID(), SIZE_T()
        assert WdfRequestRetrieveInputBuffer(Request, 1, inp, length) == STATUS_SUCCESS
        status = WdfRequestRetrieveOutputBuffer(Request, length.value, out)
        if not NT_SUCCESS(status):
            WdfRequestComplete(Request, status)
            return
        out.value[: length.value] = inp.value[::-1]
        mdl = PMDL()
        assert WdfRequestRetrieveOutputWdmMdl(Request, mdl) == STATUS_SUCCESS and mdl.value is not None
        WdfRequestCompleteWithInformation(Request, STATUS_SUCCESS, length.value)

    queue(rig, EvtIoDeviceControl=EvtIoDeviceControl)
    out = bytearray(8)
    assert post_device_control(rig.device, IOCTL_REVERSE, b"abcdef", out).wait(5) == (STATUS_SUCCESS, 6)
    assert out[:6] == b"fedcba"
    assert post_device_control(rig.device, 0x1234, None, None).wait(5)[0] == STATUS_INVALID_DEVICE_REQUEST
    small = bytearray(2)
    assert post_device_control(rig.device, IOCTL_REVERSE, b"abcdef", small).wait(5) == (STATUS_BUFFER_TOO_SMALL, 0)
    assert small == bytearray(2)


def test_a_queue_without_a_handler_for_the_type_refuses_it(rig: Rig) -> None:
    queue(rig, EvtIoWrite=lambda Queue, Request, Length: WdfRequestComplete(Request, STATUS_SUCCESS))
    assert post_read(rig.device, bytearray(64)).wait(5) == (STATUS_INVALID_DEVICE_REQUEST, 0)
    assert post_device_control(rig.device, 1, None, None).wait(5) == (STATUS_INVALID_DEVICE_REQUEST, 0)


def test_requests_are_dispatched_to_the_queue_configured_for_their_type(rig: Rig) -> None:
    where: list[str] = []
    lock = threading.Lock()

    def handler(name: str) -> Any:
        def EvtIoDefault(Queue: Any, Request: Any) -> None:
            with lock:
                where.append(name)
            WdfRequestCompleteWithInformation(Request, STATUS_SUCCESS, 1)

        return EvtIoDefault

    queue(rig, EvtIoDefault=handler("default"))
    reads = queue(rig, default=False, EvtIoDefault=handler("reads"))
    assert WdfDeviceConfigureRequestDispatching(rig.device, reads, WdfRequestTypeRead) == STATUS_SUCCESS
    assert WdfDeviceConfigureRequestDispatching(rig.device, reads, WdfRequestTypeRead) == STATUS_INVALID_DEVICE_REQUEST
    assert WdfDeviceConfigureRequestDispatching(rig.device, reads, 0x1B) == STATUS_INVALID_PARAMETER
    assert post_read(rig.device, bytearray(4)).wait(5) == (STATUS_SUCCESS, 1)
    assert post_write(rig.device, b"1234").wait(5) == (STATUS_SUCCESS, 1)
    assert post_device_control(rig.device, 7, b"x", None).wait(5) == (STATUS_SUCCESS, 1)
    assert where == ["reads", "default", "default"]


def test_a_wait_lock_is_had_by_one_thread_and_times_out_as_asked(rig: Rig) -> None:
    lock = WDFWAITLOCK()
    assert WdfWaitLockCreate(WDF_NO_OBJECT_ATTRIBUTES, lock) == STATUS_SUCCESS
    assert WdfWaitLockAcquire(lock, None) == STATUS_SUCCESS
    with pytest.raises(WdfBugCheck, match="not recursive"):
        WdfWaitLockAcquire(lock, None)
    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.extend([WdfWaitLockAcquire(lock, 0), WdfWaitLockAcquire(lock, -200_000)])
    )
    t.start()
    t.join(5)
    assert result == [STATUS_TIMEOUT, STATUS_TIMEOUT]  # tried, then 20 ms
    caught: list[BaseException] = []

    def release_elsewhere() -> None:
        try:
            WdfWaitLockRelease(lock)
        except WdfBugCheck as e:
            caught.append(e)

    t = threading.Thread(target=release_elsewhere)
    t.start()
    t.join(5)
    assert caught and "does not hold" in str(caught[0])
    WdfWaitLockRelease(lock)
    got: list[int] = []
    t = threading.Thread(target=lambda: (got.append(WdfWaitLockAcquire(lock, None)), WdfWaitLockRelease(lock)))
    t.start()
    t.join(5)
    assert got == [STATUS_SUCCESS]


def test_stop_acknowledge_requeues_or_keeps_the_request(rig: Rig) -> None:
    presented: list[int] = []

    def EvtIoRead(Queue: Any, Request: Any, Length: int) -> None:
        presented.append(Length)
        if len(presented) == 1:
            WdfRequestStopAcknowledge(Request, True)  # back to the queue: presented again
            return
        WdfRequestCompleteWithInformation(Request, STATUS_SUCCESS, Length)

    queue(rig, EvtIoRead=EvtIoRead)
    assert post_read(rig.device, bytearray(10)).wait(5) == (STATUS_SUCCESS, 10)
    assert presented == [10, 10]
