"""Every integer parameter and field of ``wdfusb.wdf`` takes an ``int`` or a numpy integer and
nothing else: a float, a bool, a string or None is refused — with STATUS_INVALID_PARAMETER where
the call returns an NTSTATUS (STATUS_INFO_LENGTH_MISMATCH for a ``Size`` field), else with
``TypeError`` — never truncated and used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_wdf_helpers import Rig, new_request

from wdfusb.wdf import *

NOT_INTEGERS: list[Any] = [1.5, 2.0, np.float64(3.0), True, False, np.True_, "8", None, 1 + 0j]
INTEGERS: list[Any] = [np.int64(1), np.uint32(1), np.int8(1)]
EP_OUT, EP_IN = 0x06, 0x88


def memory(size: int = 8, fill: bytes | None = None) -> WDFMEMORY:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, size, mem, None) == STATUS_SUCCESS
    if fill is not None:
        WdfMemoryGetBuffer(mem, None)[:] = np.frombuffer(fill, np.uint8)
    return mem


def transfer(r: Rig, desc: WDF_MEMORY_DESCRIPTOR, read: bool = False, options: Any = None) -> NTSTATUS:
    fn = WdfUsbTargetPipeReadSynchronously if read else WdfUsbTargetPipeWriteSynchronously
    n = ULONG(7)
    status = fn(r.pipes[EP_IN if read else EP_OUT], None, options, desc, n)
    if not NT_SUCCESS(status):
        assert n.value == 0
    return status


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_descriptors_refuse_non_integer_offsets_and_lengths(rig: Rig, bad: Any) -> None:
    mem = memory(512)
    for read in (False, True):
        for offsets in (WDFMEMORY_OFFSET(bad, 0), WDFMEMORY_OFFSET(0, bad), WDFMEMORY_OFFSET(bad, bad)):
            d = WDF_MEMORY_DESCRIPTOR()
            WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, offsets)
            assert transfer(rig, d, read) == STATUS_INVALID_PARAMETER, offsets
        d = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, bytearray(512), bad)
        assert transfer(rig, d, read) == STATUS_INVALID_PARAMETER
        d = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, MDL(bytearray(512)), bad)
        assert transfer(rig, d, read) == STATUS_INVALID_PARAMETER
    mdl = MDL(bytearray(512))
    mdl.ByteCount = bad
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, 4)
    assert transfer(rig, d) == STATUS_INVALID_PARAMETER
    req = new_request(rig.pipes[EP_OUT])
    for fmt in (WdfUsbTargetPipeFormatRequestForWrite, WdfUsbTargetPipeFormatRequestForRead):
        pipe = rig.pipes[EP_OUT if fmt is WdfUsbTargetPipeFormatRequestForWrite else EP_IN]
        assert fmt(pipe, req, mem, WDFMEMORY_OFFSET(bad, 0)) == STATUS_INVALID_PARAMETER
        assert fmt(pipe, req, mem, WDFMEMORY_OFFSET(0, bad)) == STATUS_INVALID_PARAMETER
    assert rig.vdev.endpoint(EP_OUT).transfers == 0  # nothing reached the device
    WdfObjectDelete(req)
    WdfObjectDelete(mem)


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_memory_calls_refuse_non_integer_sizes_counts_and_offsets(bad: Any) -> None:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, bad, mem, None) == STATUS_INVALID_PARAMETER
    assert mem.value is None
    assert WdfMemoryCreatePreallocated(None, bytearray(16), bad, mem) == STATUS_INVALID_PARAMETER
    assert mem.value is None
    target = memory(8, b"01234567")
    assert WdfMemoryCopyFromBuffer(target, bad, b"ab", 2) == STATUS_INVALID_PARAMETER
    assert WdfMemoryCopyFromBuffer(target, 0, b"ab", bad) == STATUS_INVALID_PARAMETER
    out = bytearray(4)
    assert WdfMemoryCopyToBuffer(target, bad, out, 2) == STATUS_INVALID_PARAMETER
    assert WdfMemoryCopyToBuffer(target, 0, out, bad) == STATUS_INVALID_PARAMETER
    assert bytes(WdfMemoryGetBuffer(target, None)) == b"01234567" and out == bytearray(4)
    with pytest.raises(TypeError):
        MDL(bytearray(8), bad)
    if bad is not None:  # None is the default length: the rest of the buffer
        with pytest.raises(TypeError):
            MDL(bytearray(8), 0, bad)
    assert IoAllocateMdl(bytearray(8), bad) is None
    assert IoAllocateIrp(bad) is None
    WdfObjectDelete(target)


@pytest.mark.parametrize("good", INTEGERS, ids=repr)
def test_numpy_integers_are_integers(rig: Rig, good: Any) -> None:
    mem = memory(8, b"abcdefgh")
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(good, good * 3))
    assert transfer(rig, d) == STATUS_SUCCESS
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b"xyz", good)
    assert transfer(rig, d) == STATUS_SUCCESS
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, MDL(bytearray(b"q"), 0, good), good)
    assert transfer(rig, d) == STATUS_SUCCESS
    ep = rig.vdev.endpoint(EP_OUT)
    assert ep.received_bytes == 5 and ep.transfers == 3
    sized = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, good * 4, sized, None) == STATUS_SUCCESS
    assert WdfMemoryGetBuffer(sized, None).size == 4
    assert WdfMemoryCopyFromBuffer(sized, good, b"zz", good * 2) == STATUS_SUCCESS
    assert bytes(WdfMemoryGetBuffer(sized, None)) == b"\x00zz\x00"
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, good * 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_SEC(good))
    assert options.Timeout == -10_000_000
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b"xyz", 3)
    assert transfer(rig, d, options=options) == STATUS_SUCCESS
    assert WdfUsbTargetDeviceGetInterface(rig.device, good * 0) is not None
    for m in (mem, sized):
        WdfObjectDelete(m)


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_time_outs_flags_and_sizes_refuse_non_integers(rig: Rig, bad: Any) -> None:
    for macro in (
        WDF_REL_TIMEOUT_IN_SEC,
        WDF_REL_TIMEOUT_IN_MS,
        WDF_REL_TIMEOUT_IN_US,
        WDF_ABS_TIMEOUT_IN_SEC,
        WDF_ABS_TIMEOUT_IN_MS,
        WDF_ABS_TIMEOUT_IN_US,
    ):
        with pytest.raises(TypeError):
            macro(bad)
    options = WDF_REQUEST_SEND_OPTIONS()
    with pytest.raises(TypeError):
        WDF_REQUEST_SEND_OPTIONS_INIT(options, bad)
    WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
    with pytest.raises(TypeError):
        WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, bad)
    with pytest.raises(TypeError):
        WDF_REQUEST_REUSE_PARAMS_INIT(WDF_REQUEST_REUSE_PARAMS(), bad, STATUS_SUCCESS)
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b"abc", 3)
    for field, status in (("Size", STATUS_INFO_LENGTH_MISMATCH), ("Flags", STATUS_INVALID_PARAMETER)):
        o = WDF_REQUEST_SEND_OPTIONS()
        WDF_REQUEST_SEND_OPTIONS_INIT(o, WDF_REQUEST_SEND_OPTION_TIMEOUT)
        setattr(o, field, bad)
        assert transfer(rig, d, options=o) == status, field
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_SEC(1))
    o.Timeout = bad
    assert transfer(rig, d, options=o) == STATUS_INVALID_PARAMETER
    req = new_request(rig.pipes[EP_OUT])
    assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[EP_OUT], req, None, None) == STATUS_SUCCESS
    assert not WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(rig.pipes[EP_OUT]), o)
    assert WdfRequestGetStatus(req) == STATUS_INVALID_PARAMETER
    attrs = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(attrs)
    attrs.Size = bad
    assert WdfMemoryCreate(attrs, NonPagedPool, 0, 8, WDFMEMORY(), None) == STATUS_INFO_LENGTH_MISMATCH
    assert rig.vdev.endpoint(EP_OUT).transfers == 0
    WdfObjectDelete(req)


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_indexes_refuse_non_integers(rig: Rig, bad: Any) -> None:
    iface = WdfUsbTargetDeviceGetInterface(rig.device, 0)
    for call in (
        lambda: WdfUsbTargetDeviceGetInterface(rig.device, bad),
        lambda: WdfUsbInterfaceGetConfiguredPipe(iface, bad, None),
        lambda: WdfUsbInterfaceGetNumEndpoints(iface, bad),
    ):
        with pytest.raises(TypeError):
            call()
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    params.Type = bad
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, params) in (
        STATUS_INVALID_PARAMETER,
        STATUS_INFO_LENGTH_MISMATCH,
    )
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    params.Size = bad
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, params) == STATUS_INFO_LENGTH_MISMATCH


@pytest.mark.parametrize("bad", NOT_INTEGERS, ids=repr)
def test_queue_parameters_refuse_non_integers(rig: Rig, bad: Any) -> None:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchParallel)
    config.EvtIoWrite = lambda q, r, n: WdfRequestCompleteWithInformation(r, STATUS_SUCCESS, n)
    config.Settings.Parallel.NumberOfPresentedRequests = bad
    assert WdfIoQueueCreate(rig.device, config, None, WDFQUEUE()) == STATUS_INVALID_PARAMETER
    config.Settings.Parallel.NumberOfPresentedRequests = 1
    config.DispatchType = bad
    assert WdfIoQueueCreate(rig.device, config, None, WDFQUEUE()) == STATUS_INVALID_PARAMETER
    config.DispatchType = WdfIoQueueDispatchManual
    config.Size = bad
    assert WdfIoQueueCreate(rig.device, config, None, WDFQUEUE()) == STATUS_INFO_LENGTH_MISMATCH
    config.Size = WDF_IO_QUEUE_CONFIG.SIZEOF
    queue = WDFQUEUE()
    assert WdfIoQueueCreate(rig.device, config, None, queue) == STATUS_SUCCESS
    calls = [lambda: WriteSplitter(rig.pipes[EP_OUT], bad), lambda: WriteSplitter(rig.pipes[EP_OUT], 512, bad)]
    if bad is not None:  # None is the default: all of the data, the device's stack size + 1
        calls += [lambda: post_write(queue, b"abcd", length=bad), lambda: post_write(queue, b"abcd", stack_size=bad)]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    op = post_write(queue, b"abcd")
    got = WDFREQUEST()
    assert WdfIoQueueRetrieveNextRequest(queue, got) == STATUS_SUCCESS
    box = WDFMEMORY()
    assert WdfRequestRetrieveInputBuffer(got, bad, box, None) == STATUS_INVALID_PARAMETER
    for call in (
        lambda: WdfRequestSetInformation(got, bad),
        lambda: WdfRequestCompleteWithInformation(got, STATUS_SUCCESS, bad),
        lambda: WdfRequestCompleteWithInformation(got, bad, 0),
    ):
        with pytest.raises(TypeError):
            call()
    WdfRequestCompleteWithInformation(got, STATUS_SUCCESS, 4)
    assert op.wait(10) == (STATUS_SUCCESS, 4)
