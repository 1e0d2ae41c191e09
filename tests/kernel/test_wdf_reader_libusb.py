"""The WDF read side on the real Linux USB stack: the continuous reader against Gadget Zero's
source (start, stop, restart, a halt the host sets, the cable pulled), and queues that present
reads and device-control requests forwarded to the gadget's bulk IN pipe and its EP0.

Every byte a reader delivers is checked against f_sourcesink's pattern=1 stream (byte j of each
packet is j % 63), so a lost, doubled or misplaced packet fails the test.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

import gadget
import numpy as np
from test_wdf_libusb import open_pipes
from unplug import GONE

from wdfusb import patterns
from wdfusb.wdf import *

SS_VID, SS_PID, SRC = 0x0525, 0xA4A0, 0x81
IOCTL_STORE, IOCTL_FETCH = 0x222004, 0x222008  # a driver's two codes: EP0 vendor OUT 0x5b, IN 0x5c


class Reads:
    """EvtUsbTargetPipeReadComplete and EvtUsbTargetPipeReadersFailed, keeping what came."""

    def __init__(self, maxp: int, length: int, restart: bool = True) -> None:
        self.maxp, self.length, self.restart = maxp, length, restart
        self.lock = threading.Lock()
        self.sizes: list[int] = []
        self.bad: list[int] = []
        self.failed: list[tuple[int, int]] = []

    def read_complete(self, Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
        data = WdfMemoryGetBuffer(Buffer)[:NumBytesTransferred]
        bad = patterns.first_mismatch(data, "mod63", 0, self.maxp)  # each read starts on a packet
        with self.lock:
            self.sizes.append(NumBytesTransferred)
            if bad is not None:
                self.bad.append(bad)

    def readers_failed(self, Pipe: Any, Status: int, UsbdStatus: int) -> bool:
        with self.lock:
            self.failed.append((int(Status), int(UsbdStatus)))
        return self.restart

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.sizes)

    def wait(self, what: Any, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not what():
            assert time.monotonic() < deadline, f"gave up: {self.total} bytes, failures {self.failed}"
            time.sleep(0.01)


def start_readers(pipe: Any, reads: Reads, pending: int = 4) -> Any:
    config = WDF_USB_CONTINUOUS_READER_CONFIG()
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, reads.read_complete, None, reads.length)
    config.NumPendingReads = pending
    config.EvtUsbTargetPipeReadersFailed = reads.readers_failed
    assert WdfUsbTargetPipeConfigContinuousReader(pipe, config) == STATUS_SUCCESS
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    assert WdfIoTargetStart(target) == STATUS_SUCCESS
    return target


def halt_by_the_host(device: WDFUSBDEVICE, endpoint: int) -> None:
    """SET_FEATURE(ENDPOINT_HALT) through the WDF control path: the endpoint stalls its I/O."""
    setup = WDF_USB_CONTROL_SETUP_PACKET()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE(setup, BmRequestToEndpoint, USB_FEATURE_ENDPOINT_STALL, endpoint, True)
    assert WdfUsbTargetDeviceSendControlTransferSynchronously(device, None, None, setup, None, None) == 0


def endpoint_halted(device: WDFUSBDEVICE, endpoint: int) -> int:
    """GET_STATUS of an endpoint through the WDF control path: bit 0 is its halt feature."""
    setup = WDF_USB_CONTROL_SETUP_PACKET()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS(setup, BmRequestToEndpoint, endpoint)
    status = bytearray(2)
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, status, 2)
    assert WdfUsbTargetDeviceSendControlTransferSynchronously(device, None, None, setup, desc, None) == 0
    return status[0] & 1


def test_readers_stop_and_start_against_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)
    reads = Reads(bulk_maxp, 16 * bulk_maxp)
    target = start_readers(pipes[SRC], reads)
    reads.wait(lambda: reads.total >= 4 << 20)
    WdfIoTargetStop(target, WdfIoTargetWaitForSentIoToComplete)  # cancels (KMDF converts it): none after
    assert WdfIoTargetGetState(target) == WdfIoTargetStopped
    stopped = reads.total
    time.sleep(0.2)
    assert reads.total == stopped  # none was sent again
    assert WdfIoTargetStart(target) == STATUS_SUCCESS
    reads.wait(lambda: reads.total >= stopped + (2 << 20))
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)  # cancelled mid-read: what came still counts
    assert not reads.bad and not reads.failed
    assert all(n == reads.length for n in reads.sizes)  # the source sends whole reads
    WdfObjectDelete(device)


def test_a_halt_set_by_the_host_fails_the_readers_and_true_restarts_them(
    sourcesink: gadget.SourceSink, bulk_maxp: int
) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)
    reads = Reads(bulk_maxp, 8 * bulk_maxp)
    target = start_readers(pipes[SRC], reads, pending=3)
    reads.wait(lambda: reads.total >= 1 << 20)
    halt_by_the_host(device, SRC)
    reads.wait(lambda: bool(reads.failed))
    assert reads.failed[0][1] == USBD_STATUS_STALL_PID
    before = reads.total
    reads.wait(lambda: reads.total >= before + (1 << 20))  # the pipe was reset, the readers resent
    assert endpoint_halted(device, SRC) == 0 and len(reads.failed) == 1 and not reads.bad
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    WdfObjectDelete(device)


def test_readers_failed_false_leaves_the_endpoint_halted(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)
    reads = Reads(bulk_maxp, 8 * bulk_maxp, restart=False)
    target = start_readers(pipes[SRC], reads, pending=2)
    reads.wait(lambda: reads.total >= 256 << 10)
    halt_by_the_host(device, SRC)
    reads.wait(lambda: bool(reads.failed))
    time.sleep(0.2)
    stopped = reads.total
    time.sleep(0.2)
    assert reads.total == stopped and endpoint_halted(device, SRC) == 1  # nobody reset it
    assert WdfUsbTargetPipeResetSynchronously(pipes[SRC]) == STATUS_SUCCESS
    WdfIoTargetStart(target)
    reads.wait(lambda: reads.total >= stopped + (256 << 10))
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    assert not reads.bad
    WdfObjectDelete(device)


def test_the_cable_pulled_under_the_readers(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)
    reads = Reads(bulk_maxp, 16 * bulk_maxp)  # asks for a restart: KMDF asks the port first
    target = start_readers(pipes[SRC], reads)
    reads.wait(lambda: reads.total >= 1 << 20)
    assert WdfUsbTargetDeviceIsConnectedSynchronous(device) == STATUS_SUCCESS
    sourcesink.unplug(wait=10)
    reads.wait(lambda: bool(reads.failed))
    reads.wait(lambda: WdfUsbTargetDeviceIsConnectedSynchronous(device) == STATUS_DEVICE_DOES_NOT_EXIST)
    time.sleep(0.3)
    total = reads.total
    time.sleep(0.2)
    assert reads.total == total and len(reads.failed) == 1, reads.failed  # no restart against a gone device
    assert reads.failed[0][0] in GONE or reads.failed[0][0] == STATUS_IO_DEVICE_ERROR  # (a bus error first)
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)  # returns: nothing is out
    assert not reads.bad
    WdfObjectDelete(device)


def make_queue(device: WDFUSBDEVICE, **callbacks: Any) -> WDFQUEUE:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(config, WdfIoQueueDispatchParallel)
    for name, fn in callbacks.items():
        setattr(config, name, fn)
    queue = WDFQUEUE()
    assert WdfIoQueueCreate(device, config, WDF_NO_OBJECT_ATTRIBUTES, queue) == STATUS_SUCCESS
    return queue


def test_reads_posted_to_a_queue_are_forwarded_to_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(SS_VID, SS_PID)

    def EvtIoRead(Queue: Any, Request: Any, Length: int) -> None:
        memory = WDFMEMORY()
        status = WdfRequestRetrieveOutputMemory(Request, memory)
        got = ULONG()
        if NT_SUCCESS(status):
            desc = WDF_MEMORY_DESCRIPTOR()
            WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, None)
            status = WdfUsbTargetPipeReadSynchronously(pipes[SRC], Request, None, desc, got)
        WdfRequestCompleteWithInformation(Request, status, got.value)

    make_queue(device, EvtIoRead=EvtIoRead)
    buffers = [np.zeros(bulk_maxp * (1 + i % 7) * 8, np.uint8) for i in range(24)]
    ops = [post_read(device, buf) for buf in buffers]  # in parallel: several reads reach the pipe
    assert [op.wait(60) for op in ops] == [(STATUS_SUCCESS, len(b)) for b in buffers]
    for buf in buffers:
        assert patterns.first_mismatch(buf, "mod63", 0, bulk_maxp) is None
    WdfObjectDelete(device)


def test_device_control_requests_reach_ep0(sourcesink: gadget.SourceSink) -> None:
    """A driver's IOCTLs as the FX2 sample's: STORE sends its input with f_sourcesink's vendor
    OUT 0x5b, FETCH reads the gadget's buffer back into the output with vendor IN 0x5c."""
    device, _, _ = open_pipes(SS_VID, SS_PID)

    def EvtIoDeviceControl(
        Queue: Any, Request: Any, OutputBufferLength: int, InputBufferLength: int, Code: int
    ) -> None:
        setup = WDF_USB_CONTROL_SETUP_PACKET()
        memory = WDFMEMORY()
        if Code == IOCTL_STORE:
            WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(setup, BmRequestHostToDevice, BmRequestToDevice, 0x5B, 0, 0)
            status = WdfRequestRetrieveInputMemory(Request, memory)
        elif Code == IOCTL_FETCH:
            WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(setup, BmRequestDeviceToHost, BmRequestToDevice, 0x5C, 0, 0)
            status = WdfRequestRetrieveOutputMemory(Request, memory)
        else:
            status = STATUS_INVALID_DEVICE_REQUEST
        moved = ULONG()
        if NT_SUCCESS(status):
            desc = WDF_MEMORY_DESCRIPTOR()
            WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, None)
            status = WdfUsbTargetDeviceSendControlTransferSynchronously(device, Request, None, setup, desc, moved)
        WdfRequestCompleteWithInformation(Request, status, moved.value)

    make_queue(device, EvtIoDeviceControl=EvtIoDeviceControl)
    data = bytes(range(256)) * 4 + b"wdfusb"
    assert post_device_control(device, IOCTL_STORE, data, None).wait(30) == (STATUS_SUCCESS, len(data))
    out = bytearray(len(data))
    assert post_device_control(device, IOCTL_FETCH, None, out).wait(30) == (STATUS_SUCCESS, len(data))
    assert zlib.crc32(out) == zlib.crc32(data)
    assert post_device_control(device, 0x1234, None, None).wait(30) == (STATUS_INVALID_DEVICE_REQUEST, 0)
    WdfObjectDelete(device)
