"""wdfusb.wdf on the real Linux USB stack: the seed's functions against Gadget Zero and FunctionFS."""

from __future__ import annotations

import threading
import time
from typing import Any

import gadget
import numpy as np
import pytest

import wdfusb
from wdfusb.wdf import *

SIZES = [0, 1, 511, 512, 513, 64 << 10, 1 << 20, 16 << 20]


def open_pipes(vid: int, pid: int) -> tuple[WDFUSBDEVICE, dict[int, Any], dict[int, WDF_USB_PIPE_INFORMATION]]:
    device = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(wdfusb.find_device(vid=vid, pid=pid), WDF_NO_OBJECT_ATTRIBUTES, device) == 0
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(device, WDF_NO_OBJECT_ATTRIBUTES, params))
    iface = WdfUsbTargetDeviceGetInterface(device, 0)
    pipes, infos = {}, {}
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        info = WDF_USB_PIPE_INFORMATION()
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
        pipes[info.EndpointAddress], infos[info.EndpointAddress] = pipe, info
    return device, pipes, infos


def buffer_desc(data: Any, length: int) -> WDF_MEMORY_DESCRIPTOR:
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, data, length)
    return desc


def test_pipe_information_matches_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, infos = open_pipes(0x0525, 0xA4A0)
    assert set(infos) == {0x02, 0x81}
    for addr, info in infos.items():
        assert info.PipeType == WdfUsbPipeTypeBulk
        assert info.MaximumPacketSize == bulk_maxp
        assert WdfUsbTargetPipeIsOutEndpoint(pipes[addr]) == (addr == 0x02)
        assert WdfUsbTargetPipeIsInEndpoint(pipes[addr]) == (addr == 0x81)
    WdfObjectDelete(device)


@pytest.mark.parametrize("size", SIZES)
def test_write_synchronously_every_size(sourcesink: gadget.SourceSink, bulk_maxp: int, size: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    data = gadget.mod63(size, bulk_maxp)
    written = ULONG(12345)
    desc = buffer_desc(data, size) if size else None
    status = WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written)
    assert status == STATUS_SUCCESS and written.value == size
    WdfObjectDelete(device)


def test_write_with_every_descriptor_kind(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    data = gadget.mod63(8 * bulk_maxp, bulk_maxp)
    written = ULONG()
    # a WDFMEMORY with and without an offset window (the window starts on a packet boundary)
    mem = WDFMEMORY()
    assert WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, len(data), mem, None) == 0
    WdfMemoryGetBuffer(mem, None)[:] = np.frombuffer(data, np.uint8)
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, mem, None)
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written) == 0
    assert written.value == len(data)
    offsets = WDFMEMORY_OFFSET()
    offsets.BufferOffset, offsets.BufferLength = bulk_maxp, 2 * bulk_maxp
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, mem, offsets)
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written) == 0
    assert written.value == 2 * bulk_maxp
    # an MDL, and a chain of two MDLs each one packet long
    buf = bytearray(data)
    mdl = IoAllocateMdl(buf, len(buf))
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(desc, mdl, len(buf))
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written) == 0
    assert written.value == len(buf)
    first, second = (
        IoAllocateMdl(bytearray(data[:bulk_maxp]), bulk_maxp),
        IoAllocateMdl(bytearray(data[:bulk_maxp]), bulk_maxp),
    )
    first.Next = second
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(desc, first, 2 * bulk_maxp)
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written) == 0
    assert written.value == 2 * bulk_maxp
    WdfObjectDelete(device)


def test_stall_then_reset_synchronously(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    bad = bytearray(gadget.mod63(2 * bulk_maxp, bulk_maxp))
    bad[5] ^= 0x55
    good = gadget.mod63(4 * bulk_maxp, bulk_maxp)
    written = ULONG()
    req = WDFREQUEST()
    assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, WdfUsbTargetPipeGetIoTarget(pipes[0x02]), req) == 0
    reuse = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    status = WdfUsbTargetPipeWriteSynchronously(pipes[0x02], req, None, buffer_desc(bad, len(bad)), written)
    for _ in range(64):  # the gadget checks when its request buffer fills: a later write sees the stall
        if not NT_SUCCESS(status):
            break
        assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS
        status = WdfUsbTargetPipeWriteSynchronously(pipes[0x02], req, None, buffer_desc(good, len(good)), written)
    assert not NT_SUCCESS(status)
    params = WDF_REQUEST_COMPLETION_PARAMS()
    WDF_REQUEST_COMPLETION_PARAMS_INIT(params)
    WdfRequestGetCompletionParams(req, params)
    assert params.Parameters.Usb.Completion.UsbdStatus == USBD_STATUS_STALL_PID
    assert WdfUsbTargetPipeResetSynchronously(pipes[0x02], None, None) == STATUS_SUCCESS
    data = gadget.mod63(64 << 10, bulk_maxp)
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, buffer_desc(data, len(data)), written) == 0
    assert written.value == 64 << 10
    WdfObjectDelete(device)


def test_read_synchronously_from_the_source(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    buf = bytearray(16 * bulk_maxp)
    read = ULONG()
    assert WdfUsbTargetPipeReadSynchronously(pipes[0x81], None, None, buffer_desc(buf, len(buf)), read) == 0
    assert read.value > 0 and bytes(buf[: read.value]) == gadget.mod63(read.value, bulk_maxp)
    WdfObjectDelete(device)


def test_unplug_gives_a_device_gone_status(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    data = gadget.mod63(4 << 20, bulk_maxp)
    threading.Timer(0.3, sourcesink.unplug, kwargs={"wait": None}).start()
    written = ULONG()
    gone = (STATUS_NO_SUCH_DEVICE, STATUS_DEVICE_NOT_CONNECTED, STATUS_DEVICE_REMOVED)
    seen = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            status = WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, buffer_desc(data, len(data)), written)
            if not NT_SUCCESS(status):
                seen.append(status)
                if status in gone:
                    break
                time.sleep(0.05)
        # the URB in flight at the disconnect may die as a bus error; the device is gone after it
        assert seen and seen[-1] in gone, seen
        assert set(seen[:-1]) <= {STATUS_IO_DEVICE_ERROR}, seen
    finally:
        WdfObjectDelete(device)


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_timeout_and_cancel_on_a_nak_ing_endpoint(ffs_gadget: gadget.FfsGadget) -> None:
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(300))
    written = ULONG(7)
    data = bytes(4096)
    t0 = time.monotonic()
    status = WdfUsbTargetPipeWriteSynchronously(
        pipes[ffs_gadget.ep_out], None, options, buffer_desc(data, len(data)), written
    )
    assert status == STATUS_IO_TIMEOUT and 0.25 < time.monotonic() - t0 < 1.5
    assert written.value == 0
    req = WDFREQUEST()
    assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, WdfUsbTargetPipeGetIoTarget(pipes[ffs_gadget.ep_out]), req) == 0
    threading.Timer(0.3, WdfRequestCancelSentRequest, args=(req,)).start()
    status = WdfUsbTargetPipeWriteSynchronously(
        pipes[ffs_gadget.ep_out], req, None, buffer_desc(data, len(data)), written
    )
    assert status == STATUS_CANCELLED
    WdfObjectDelete(device)


def open_out_pipe(bulk_maxp: int) -> tuple[WDFUSBDEVICE, Any, Any, WDFMEMORY, bytes]:
    """The SourceSink's OUT pipe, its target, and a WDFMEMORY of 64 KiB the gadget checks."""
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    data = gadget.mod63(64 << 10, bulk_maxp)
    mem = WDFMEMORY()
    assert WdfMemoryCreatePreallocated(WDF_NO_OBJECT_ATTRIBUTES, data, len(data), mem) == 0
    return device, pipes[0x02], WdfUsbTargetPipeGetIoTarget(pipes[0x02]), mem, data


def send_writes(pipe: Any, target: Any, mem: WDFMEMORY, count: int) -> list[tuple[int, int]]:
    """``count`` requests writing ``mem`` sent to ``target``; each completion appends (its number, its bytes)."""
    done: list[tuple[int, int]] = []
    for i in range(count):
        req = WDFREQUEST()
        assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, target, req) == 0
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == 0
        WdfRequestSetCompletionRoutine(req, lambda r, t, p, c: done.append((c, p.IoStatus.Information)), i)
        assert WdfRequestSend(req, target, None)
    return done


def test_asynchronous_requests_on_the_real_stack(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipe, target, mem, _data = open_out_pipe(bulk_maxp)
    done = send_writes(pipe, target, mem, 8)
    assert wait_for_completions(30)
    assert done == [(i, 64 << 10) for i in range(8)]
    WdfObjectDelete(device)


def test_a_stopped_pipe_target_pends_until_started(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """WdfIoTargetStop on the real stack: sends wait (nothing reaches the gadget, a synchronous
    write times out), WdfIoTargetStart sends them in order."""
    device, pipe, target, mem, data = open_out_pipe(bulk_maxp)
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    opts = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(opts, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(opts, WDF_REL_TIMEOUT_IN_MS(300))
    n = ULONG(7)
    assert WdfUsbTargetPipeWriteSynchronously(pipe, None, opts, buffer_desc(data, len(data)), n) == STATUS_IO_TIMEOUT
    assert n.value == 0
    done = send_writes(pipe, target, mem, 4)
    time.sleep(0.5)
    assert done == []
    assert WdfIoTargetStart(target) == STATUS_SUCCESS
    assert wait_for_completions(30)
    assert done == [(i, 64 << 10) for i in range(4)]
    WdfObjectDelete(device)
