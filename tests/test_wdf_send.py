"""WdfUsbTargetPipeWrite/ReadSynchronously: every row of CONTRACT §4's table, cancel, reuse, faults."""

from __future__ import annotations

import threading
import time
import zlib

import numpy as np
import pytest
from test_wdf_helpers import Rig, buffer_desc, open_rig

from wdfusb import _engine
from wdfusb.wdf import *
from wdfusb.wdf import _memory


def write(r: Rig, data: object, request: object = None, options: object = None, ep: int = 0x06) -> tuple[int, int]:
    n = ULONG(12345)
    st = WdfUsbTargetPipeWriteSynchronously(r.pipes[ep], request, options, buffer_desc(data), n)
    return st, n.value


def timeout_options(ms: int) -> WDF_REQUEST_SEND_OPTIONS:
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_MS(ms))
    return o


def test_write_then_read_back_with_crc(rig: Rig) -> None:
    data = bytes(range(256)) * 8
    assert write(rig, data) == (STATUS_SUCCESS, 2048)
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(data)
    back = bytearray(2048)
    n = ULONG()
    assert WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, buffer_desc(back), n) == STATUS_SUCCESS
    assert n.value == 2048 and bytes(back) == data


def test_bytes_written_is_optional_and_zero_length_packet(rig: Rig) -> None:
    before = rig.vdev.endpoint(0x06).transfers
    n = ULONG(7)
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, None, n) == STATUS_SUCCESS
    assert n.value == 0 and rig.vdev.endpoint(0x06).transfers == before + 1
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, buffer_desc(b"abc"), None) == 0
    assert rig.vdev.endpoint(0x06).received_bytes == 3


# ---- the return table, in WDF's order -----------------------------------------------------------


def test_options_size_wrong_is_info_length_mismatch(rig: Rig) -> None:
    o = WDF_REQUEST_SEND_OPTIONS()  # Size 0
    n = ULONG(99)
    assert (
        WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, o, buffer_desc(b"x"), n)
        == STATUS_INFO_LENGTH_MISMATCH
    )
    assert n.value == 0  # zeroed before anything else
    WDF_REQUEST_SEND_OPTIONS_INIT(o, 0)
    o.Size = 24
    assert write(rig, b"x", options=o)[0] == STATUS_INFO_LENGTH_MISMATCH
    assert rig.vdev.endpoint(0x06).received_bytes == 0


@pytest.mark.parametrize("flags", [0x10, 0x80000000, WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET | 1])
def test_unknown_flags_are_invalid_parameter(rig: Rig, flags: int) -> None:
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, flags)
    assert write(rig, b"x", options=o)[0] == STATUS_INVALID_PARAMETER


def test_known_flags_are_accepted(rig: Rig) -> None:
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, WDF_REQUEST_SEND_OPTION_SYNCHRONOUS | WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE)
    assert write(rig, b"xy", options=o) == (STATUS_SUCCESS, 2)


def test_null_buffer_handle_mdl_with_length_are_invalid_parameter(rig: Rig) -> None:
    pipe = rig.pipes[0x06]
    for init, arg in ((WDF_MEMORY_DESCRIPTOR_INIT_BUFFER, 10), (WDF_MEMORY_DESCRIPTOR_INIT_MDL, 10)):
        d = WDF_MEMORY_DESCRIPTOR()
        init(d, None, arg)
        assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, d, None) == STATUS_INVALID_PARAMETER
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, None, None)
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, d, None) == STATUS_INVALID_PARAMETER


def test_bad_descriptor_type_is_invalid_parameter(rig: Rig) -> None:
    d = WDF_MEMORY_DESCRIPTOR()  # Type Invalid (0)
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, d, None) == STATUS_INVALID_PARAMETER
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b"abc", 3)
    d.Type = 7
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, d, None) == STATUS_INVALID_PARAMETER
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, 12345, 3)  # not a buffer
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, d, None) == STATUS_INVALID_PARAMETER


def test_write_to_in_pipe_and_read_from_out_pipe(rig: Rig) -> None:
    assert write(rig, b"abc", ep=0x88)[0] == STATUS_INVALID_DEVICE_REQUEST
    buf = bytearray(512)
    assert (
        WdfUsbTargetPipeReadSynchronously(rig.pipes[0x06], None, None, buffer_desc(buf), None)
        == STATUS_INVALID_DEVICE_REQUEST
    )


def test_isochronous_pipe_is_refused(rig: Rig) -> None:
    assert write(rig, b"abc", ep=0x03)[0] == STATUS_INVALID_DEVICE_REQUEST
    assert rig.vdev.endpoint(0x03).received_bytes == 0


def test_descriptor_longer_than_its_buffer(rig: Rig) -> None:
    assert write(rig, bytearray(10), options=None)[0] == STATUS_SUCCESS
    n = ULONG()
    assert (
        WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, buffer_desc(b"abc", 4), n)
        == STATUS_INVALID_DEVICE_REQUEST
    )
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 16, mem, None) == STATUS_SUCCESS
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(10, 7))
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, d, n) == STATUS_INVALID_DEVICE_REQUEST
    mdl = MDL(bytearray(8))
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, 9)
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, d, n) == STATUS_INVALID_DEVICE_REQUEST


def test_request_already_pending(rig: Rig) -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, rig.pipes[0x06], req) == STATUS_SUCCESS
    rig.vdev.endpoint(0x06).nak(float("inf"))
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.update(s=write(rig, b"first", request=req)[0]))
    t.start()
    deadline = time.monotonic() + 2
    while not req.value.pending and time.monotonic() < deadline:
        time.sleep(0.001)
    assert write(rig, b"second", request=req)[0] == STATUS_INVALID_DEVICE_REQUEST
    assert WdfRequestCancelSentRequest(req) is True
    t.join(5)
    assert result["s"] == STATUS_CANCELLED
    rig.vdev.endpoint(0x06).nak(0)


def test_completion_routine_and_event_thread_are_refused(rig: Rig) -> None:
    with completion_routine_context():
        assert write(rig, b"abc")[0] == STATUS_INVALID_DEVICE_REQUEST
        assert WdfUsbTargetPipeResetSynchronously(rig.pipes[0x06], None, None) == STATUS_INVALID_DEVICE_REQUEST
    assert write(rig, b"abc") == (STATUS_SUCCESS, 3)
    mark_event_thread()
    try:
        assert write(rig, b"abc")[0] == STATUS_INVALID_DEVICE_REQUEST
    finally:
        mark_event_thread(on=False)
    assert rig.vdev.endpoint(0x06).received_bytes == 3


@pytest.mark.parametrize("ms", [200])
def test_timeout_cancels_then_io_timeout_within_20ms(rig: Rig, ms: int) -> None:
    rig.vdev.endpoint(0x06).nak(float("inf"))
    t0 = time.monotonic()
    st, n = write(rig, b"z" * 100, options=timeout_options(ms))
    elapsed = time.monotonic() - t0
    assert st == STATUS_IO_TIMEOUT and n == 0
    assert abs(elapsed - ms / 1000) < 0.020, elapsed
    rig.vdev.endpoint(0x06).nak(0)
    assert write(rig, b"ok") == (STATUS_SUCCESS, 2)  # nothing left in flight


def test_absolute_timeout(rig: Rig) -> None:
    rig.vdev.endpoint(0x06).nak(float("inf"))
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, KeQuerySystemTime() + WDF_ABS_TIMEOUT_IN_MS(150))
    t0 = time.monotonic()
    assert write(rig, b"z", options=o)[0] == STATUS_IO_TIMEOUT
    assert 0.12 < time.monotonic() - t0 < 0.18
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, KeQuerySystemTime() - WDF_ABS_TIMEOUT_IN_SEC(1))  # already past
    t0 = time.monotonic()
    assert write(rig, b"z", options=o)[0] == STATUS_IO_TIMEOUT
    assert time.monotonic() - t0 < 0.05


def test_timeout_zero_means_no_timeout(rig: Rig) -> None:
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, WDF_REQUEST_SEND_OPTION_TIMEOUT)  # Timeout 0: wait for ever
    rig.vdev.endpoint(0x06).nak(0.15)
    t0 = time.monotonic()
    assert write(rig, b"abc", options=o) == (STATUS_SUCCESS, 3)
    assert time.monotonic() - t0 >= 0.14


def test_stack_depth_not_accepted(rig: Rig) -> None:
    # The framework's own IRP grows; a driver-owned IRP that is too shallow cannot.
    req = WDFREQUEST()
    assert WdfRequestCreateFromIrp(None, IoAllocateIrp(0), False, req) == STATUS_SUCCESS
    st, n = write(rig, b"abc", request=req)
    assert st == STATUS_REQUEST_NOT_ACCEPTED and n == 0
    owned = WDFREQUEST()
    assert WdfRequestCreateFromIrp(None, IoAllocateIrp(0), True, owned) == STATUS_SUCCESS
    assert write(rig, b"abc", request=owned) == (STATUS_SUCCESS, 3)
    # WdfRequestReuse with a new (driver) IRP makes the request driver-owned
    params = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    WDF_REQUEST_REUSE_PARAMS_SET_NEW_IRP(params, IoAllocateIrp(0))
    assert WdfRequestReuse(owned, params) == STATUS_SUCCESS
    assert write(rig, b"abc", request=owned)[0] == STATUS_REQUEST_NOT_ACCEPTED
    WDF_REQUEST_REUSE_PARAMS_SET_NEW_IRP(params, IoAllocateIrp(1))
    assert WdfRequestReuse(owned, params) == STATUS_SUCCESS
    assert write(rig, b"abc", request=owned) == (STATUS_SUCCESS, 3)
    assert rig.vdev.endpoint(0x06).received_bytes == 6


def test_allocation_failure_is_insufficient_resources(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import wdfusb.wdf._transfer as tr

    def fail(*a: object, **k: object) -> object:
        raise MemoryError

    monkeypatch.setattr(tr, "pin", fail)
    n = ULONG(5)
    assert (
        WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, buffer_desc(bytearray(b"abc")), n)
        == STATUS_INSUFFICIENT_RESOURCES  # a bytearray is pinned (bytes go to C as they are)
    )
    assert n.value == 0
    monkeypatch.undo()
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    monkeypatch.setattr(type(rig.pipes[0x06]), "new_transfer", fail)
    assert write(rig, b"abc", request=req)[0] == STATUS_INSUFFICIENT_RESOURCES

    def no_memory(*a: object, **k: object) -> object:  # what the engine says when calloc fails
        raise _engine.EngineError(_engine.WU_ERR_NO_MEM, "creating a transfer")

    monkeypatch.setattr(type(rig.pipes[0x06]), "new_transfer", no_memory)
    req2 = WDFREQUEST()
    assert WdfRequestCreate(None, None, req2) == STATUS_SUCCESS
    assert write(rig, b"abc", request=req2)[0] == STATUS_INSUFFICIENT_RESOURCES
    assert WdfMemoryCreate(None, NonPagedPool, 0, 1 << 62, WDFMEMORY(), None) == STATUS_INSUFFICIENT_RESOURCES


def test_cancel_from_another_thread(rig: Rig) -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, rig.pipes[0x06], req) == STATUS_SUCCESS
    assert WdfRequestCancelSentRequest(req) is False  # not sent
    reuse = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS  # clears the cancel mark, as in WDF
    rig.vdev.endpoint(0x06).nak(float("inf"))
    result: dict[str, tuple[int, int]] = {}
    t = threading.Thread(target=lambda: result.update(r=write(rig, b"q" * 64, request=req)))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()
    t0 = time.monotonic()
    assert WdfRequestCancelSentRequest(req) is True
    t.join(5)
    assert time.monotonic() - t0 < 0.5
    assert result["r"] == (STATUS_CANCELLED, 0)
    assert WdfRequestGetStatus(req) == STATUS_CANCELLED
    rig.vdev.endpoint(0x06).nak(0)
    # without WdfRequestReuse the request stays cancelled (WDF's m_Canceled)
    assert write(rig, b"a", request=req)[0] == STATUS_CANCELLED
    assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS
    assert write(rig, b"a", request=req) == (STATUS_SUCCESS, 1)


def test_reuse_one_request_10000_times(rig: Rig) -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, rig.pipes[0x06], req) == STATUS_SUCCESS
    reuse = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    data = np.arange(64, dtype=np.uint8)
    desc = buffer_desc(data)
    n = ULONG()
    crc = 0
    for i in range(10_000):
        data[0] = i & 0xFF
        assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS
        st = WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], req, None, desc, n)
        assert st == STATUS_SUCCESS and n.value == 64
        crc = zlib.crc32(data.tobytes(), crc)
    assert rig.vdev.endpoint(0x06).crc32 == crc
    assert rig.vdev.endpoint(0x06).received_bytes == 640_000


def test_reuse_parameter_checks(rig: Rig) -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    p = WDF_REQUEST_REUSE_PARAMS()
    assert WdfRequestReuse(req, p) == STATUS_INVALID_PARAMETER  # Size 0
    WDF_REQUEST_REUSE_PARAMS_INIT(p, 0x4, STATUS_SUCCESS)
    assert WdfRequestReuse(req, p) == STATUS_INVALID_PARAMETER
    WDF_REQUEST_REUSE_PARAMS_INIT(p, 0, STATUS_UNSUCCESSFUL)
    assert WdfRequestReuse(req, p) == STATUS_SUCCESS and WdfRequestGetStatus(req) == STATUS_UNSUCCESSFUL


def test_stall_then_reset_then_success(rig: Rig) -> None:
    rig.vdev.endpoint(0x06).stall()
    st, n = write(rig, b"abc")
    assert not NT_SUCCESS(st) and n == 0
    assert st == STATUS_UNSUCCESSFUL
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    assert write(rig, b"abc", request=req)[0] == st
    cp = WDF_REQUEST_COMPLETION_PARAMS()
    WDF_REQUEST_COMPLETION_PARAMS_INIT(cp)
    WdfRequestGetCompletionParams(req, cp)
    assert cp.Parameters.Usb.Completion.UsbdStatus == USBD_STATUS_STALL_PID
    assert WdfUsbTargetPipeResetSynchronously(rig.pipes[0x06], None, None) == STATUS_SUCCESS
    assert write(rig, b"abc") == (STATUS_SUCCESS, 3)


def test_reset_and_abort_with_a_request(rig: Rig) -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    assert WdfUsbTargetPipeResetSynchronously(rig.pipes[0x88], req, None) == STATUS_SUCCESS
    assert WdfUsbTargetPipeAbortSynchronously(rig.pipes[0x88], req, None) == STATUS_SUCCESS
    o = WDF_REQUEST_SEND_OPTIONS()
    assert WdfUsbTargetPipeAbortSynchronously(rig.pipes[0x88], None, o) == STATUS_INFO_LENGTH_MISMATCH


def test_abort_cancels_a_blocked_write(rig: Rig) -> None:
    rig.vdev.endpoint(0x06).nak(float("inf"))
    result: dict[str, tuple[int, int]] = {}
    t = threading.Thread(target=lambda: result.update(r=write(rig, b"x" * 10)))
    t.start()
    time.sleep(0.1)
    assert WdfUsbTargetPipeAbortSynchronously(rig.pipes[0x06], None, None) == STATUS_SUCCESS
    t.join(5)
    assert result["r"][0] == STATUS_CANCELLED


def test_unplug_gives_device_gone() -> None:
    r = open_rig()
    assert write(r, b"abc") == (STATUS_SUCCESS, 3)
    r.vdev.unplug()
    st, n = write(r, b"abc")
    assert st in (STATUS_NO_SUCH_DEVICE, STATUS_DEVICE_NOT_CONNECTED, STATUS_DEVICE_REMOVED)
    assert n == 0
    WdfObjectDelete(r.device)


def test_pipe_of_a_closed_device_is_device_gone() -> None:
    """A pipe kept by a reference outlives its deleted (closed) device: every call on it says the
    device is gone, as a write does; once the last reference goes, the handle is a bug check."""
    r = open_rig()
    pipe = r.pipes[0x06]
    WdfObjectReference(pipe)
    WdfObjectDelete(r.device)
    gone = WdfUsbTargetPipeWriteSynchronously(pipe, None, None, None, None)
    assert gone in (STATUS_NO_SUCH_DEVICE, STATUS_DEVICE_NOT_CONNECTED, STATUS_DEVICE_REMOVED)
    assert WdfUsbTargetPipeResetSynchronously(pipe, None, None) == gone
    assert WdfUsbTargetPipeAbortSynchronously(pipe, None, None) == gone
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    with_request = WdfUsbTargetPipeWriteSynchronously(pipe, req, None, None, None)
    assert not NT_SUCCESS(with_request)
    for fn in (WdfUsbTargetPipeResetSynchronously, WdfUsbTargetPipeAbortSynchronously):
        assert fn(pipe, req, None) == with_request
    assert r.vdev.endpoint(0x06).transfers == 0
    WdfObjectDelete(req)
    WdfObjectDereference(pipe)
    for fn in (WdfUsbTargetPipeResetSynchronously, WdfUsbTargetPipeAbortSynchronously):
        with pytest.raises(WdfBugCheck) as info:
            fn(pipe, None, None)
        assert info.value.subcode == WDF_INVALID_HANDLE
    r.vdev.close()


def test_pipe_calls_after_deleting_the_device_bug_check() -> None:
    r = open_rig()
    WdfObjectDelete(r.device)
    for fn in (WdfUsbTargetPipeResetSynchronously, WdfUsbTargetPipeAbortSynchronously):
        for ep in (0x06, 0x88):
            with pytest.raises(WdfBugCheck) as info:
                fn(r.pipes[ep], None, None)
            assert info.value.subcode == WDF_INVALID_HANDLE
    r.vdev.close()


def test_read_packet_size_check_and_its_switch(rig: Rig) -> None:
    buf = bytearray(100)
    n = ULONG()
    assert (
        WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, buffer_desc(buf), n)
        == STATUS_INVALID_BUFFER_SIZE
    )
    assert write(rig, b"hello") == (STATUS_SUCCESS, 5)
    WdfUsbTargetPipeSetNoMaximumPacketSizeCheck(rig.pipes[0x88])
    assert WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, buffer_desc(buf), n) == STATUS_SUCCESS
    assert n.value == 5 and bytes(buf[:5]) == b"hello"


def test_read_into_read_only_buffer_is_refused(rig: Rig) -> None:
    assert (
        WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, buffer_desc(bytes(512)), None)
        == STATUS_INVALID_DEVICE_REQUEST
    )


def test_interrupt_pipes(rig: Rig) -> None:
    assert write(rig, b"i" * 64, ep=0x02) == (STATUS_SUCCESS, 64)
    assert rig.vdev.endpoint(0x02).crc32 == zlib.crc32(b"i" * 64)
    buf = bytearray(1)
    n = ULONG()
    st = WdfUsbTargetPipeReadSynchronously(rig.pipes[0x81], None, timeout_options(100), buffer_desc(buf), n)
    assert st in (STATUS_SUCCESS, STATUS_IO_TIMEOUT)


def test_completion_params_after_a_request_send(rig: Rig) -> None:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 100, mem, None) == STATUS_SUCCESS
    WdfMemoryGetBuffer(mem, None)[:] = 7
    req = WDFREQUEST()
    assert WdfRequestCreate(None, rig.pipes[0x06], req) == STATUS_SUCCESS
    assert WdfRequestGetIoTarget(req) is rig.pipes[0x06]
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(10, 50))
    n = ULONG()
    assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], req, None, d, n) == STATUS_SUCCESS
    assert n.value == 50
    assert WdfRequestGetStatus(req) == STATUS_SUCCESS and WdfRequestGetInformation(req) == 50
    cp = WDF_REQUEST_COMPLETION_PARAMS()
    WDF_REQUEST_COMPLETION_PARAMS_INIT(cp)
    WdfRequestGetCompletionParams(req, cp)
    assert cp.Type == WdfRequestTypeUsb and cp.IoStatus.Status == STATUS_SUCCESS and cp.IoStatus.Information == 50
    usb = cp.Parameters.Usb.Completion
    assert usb.Type == WdfUsbRequestTypePipeWrite and usb.UsbdStatus == USBD_STATUS_SUCCESS
    assert usb.Parameters.PipeWrite.Buffer is mem.value
    assert (usb.Parameters.PipeWrite.Length, usb.Parameters.PipeWrite.Offset) == (50, 10)
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(bytes([7]) * 50)


def test_request_on_a_second_device_gets_a_new_transfer() -> None:
    a, b = open_rig(), open_rig()
    req = WDFREQUEST()
    assert WdfRequestCreate(None, a.pipes[0x06], req) == STATUS_SUCCESS
    assert write(a, b"one", request=req) == (STATUS_SUCCESS, 3)
    assert write(b, b"two!", request=req) == (STATUS_SUCCESS, 4)
    assert b.vdev.endpoint(0x06).crc32 == zlib.crc32(b"two!")
    WdfObjectDelete(req)
    WdfObjectDelete(a.device)
    WdfObjectDelete(b.device)


def test_delete_device_while_a_write_is_blocked() -> None:
    r = open_rig()
    r.vdev.endpoint(0x06).nak(float("inf"))
    result: dict[str, tuple[int, int]] = {}
    t = threading.Thread(target=lambda: result.update(r=write(r, b"x")))
    t.start()
    time.sleep(0.1)
    WdfObjectDelete(r.device)  # cancels and drains
    t.join(5)
    assert not t.is_alive() and not NT_SUCCESS(result["r"][0])


def test_helper_module_is_importable() -> None:
    assert _memory.WdfMemoryDescriptorTypeMdl == 2


# ---- what the hot path keeps between calls (the descriptor's and the options' last result) ----


def test_a_descriptor_changed_between_sends_is_seen(rig: Rig) -> None:
    desc = buffer_desc(b"abcdef")
    n = ULONG()
    pipe = rig.pipes[0x06]
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 6
    desc.u.BufferType.Length = 2
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 2
    desc.u.BufferType.Buffer = b"wxyz"
    desc.u.BufferType.Length = 4
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 4
    desc.u.BufferType.Length = 5  # longer than the bytes
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_INVALID_DEVICE_REQUEST
    desc.u.BufferType.Length = 4.0  # not an integer
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_INVALID_PARAMETER
    desc.u.BufferType.Length = 4
    desc.u.BufferType.Buffer = bytearray(b"1234")
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 4
    desc.u.BufferType.Buffer = b"wxyz"
    desc.u.BufferType.Length = count = _Count(3)  # an integer that can change in place
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 3
    count.n = 1
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 1
    ep = rig.vdev.endpoint(0x06)
    assert ep.received_bytes == 20 and ep.crc32 == zlib.crc32(b"abcdefab" + b"wxyz" + b"1234" + b"wxy" + b"w")


class _Count:
    def __init__(self, n: int) -> None:
        self.n = n

    def __index__(self) -> int:
        return self.n


def test_options_changed_between_sends_are_seen(rig: Rig) -> None:
    o = timeout_options(5000)
    assert write(rig, b"ab", options=o) == (STATUS_SUCCESS, 2)
    o.Flags = 0x10  # unknown
    assert write(rig, b"ab", options=o)[0] == STATUS_INVALID_PARAMETER
    o.Flags = True  # equal to the TIMEOUT flag (1) but not an integer field
    assert write(rig, b"ab", options=o)[0] == STATUS_INVALID_PARAMETER
    o.Flags = WDF_REQUEST_SEND_OPTION_TIMEOUT
    o.Size = 16.0
    assert write(rig, b"ab", options=o)[0] == STATUS_INFO_LENGTH_MISMATCH
    o.Size = WDF_REQUEST_SEND_OPTIONS.SIZEOF
    assert write(rig, b"ab", options=o) == (STATUS_SUCCESS, 2)
    rig.vdev.endpoint(0x06).nak(float("inf"))
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_MS(50))  # was 5 s
    t0 = time.monotonic()
    assert write(rig, b"ab", options=o) == (STATUS_IO_TIMEOUT, 0)
    assert time.monotonic() - t0 < 2.5
    rig.vdev.endpoint(0x06).nak(0)
