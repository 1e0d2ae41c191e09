"""Surprise removal on the virtual device, as KMDF handles it: the device's power-managed queues are
purged, the request the driver forwarded ends with the device-gone status and the bytes that moved,
and a queue that is not power-managed keeps its requests until the device is deleted."""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np
from test_wdf_queue import input_desc

from wdfusb import VirtualDevice
from wdfusb.virtual import EndpointSpec
from wdfusb.wdf import *

WAIT = 30.0  # a bound on hangs, never a timing assertion
SINK = [EndpointSpec(0x02, "bulk", 512, 0, "sink")]


def open_sink(vdev: VirtualDevice) -> tuple[WDFUSBDEVICE, Any]:
    device = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(vdev, WDF_NO_OBJECT_ATTRIBUTES, device) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(device, WDF_NO_OBJECT_ATTRIBUTES, params))
    info = WDF_USB_PIPE_INFORMATION()
    WDF_USB_PIPE_INFORMATION_INIT(info)
    return device, WdfUsbInterfaceGetConfiguredPipe(WdfUsbTargetDeviceGetInterface(device, 0), 0, info)


def queue_on(device: WDFUSBDEVICE, pipe: Any, power_managed: int = WdfUseDefault) -> WDFQUEUE:
    """A sequential queue whose EvtIoWrite forwards each write to ``pipe`` (the seed's path)."""

    def evt_io_write(queue: Any, request: Any, length: int) -> None:
        _, desc = input_desc(request)
        written = ULONG()
        status = WdfUsbTargetPipeWriteSynchronously(pipe, request, None, desc, written)
        WdfRequestCompleteWithInformation(request, status, written.value)

    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, WdfIoQueueDispatchSequential)
    config.EvtIoWrite = evt_io_write
    config.PowerManaged = power_managed
    queue = WDFQUEUE()
    assert WdfIoQueueCreate(device, config, WDF_NO_OBJECT_ATTRIBUTES, queue) == STATUS_SUCCESS
    return queue


def waiting(queue: WDFQUEUE) -> int:
    n = ULONG()
    WdfIoQueueGetState(queue, n, None)
    return n.value


def wait_purged(queue: WDFQUEUE) -> None:
    """The removal's purge runs on the watch's thread: wait until the queue refuses requests."""
    deadline = time.monotonic() + WAIT
    while WdfIoQueueGetState(queue, None, None) & WdfIoQueueAcceptRequests:
        assert time.monotonic() < deadline, "the queue was never purged"
        time.sleep(0.001)


def test_removal_purges_the_queue_and_counts_the_forwarded_bytes() -> None:
    vdev = VirtualDevice("full", endpoints=[EndpointSpec(0x02, "bulk", 64, 0, "sink")])
    device, pipe = open_sink(vdev)
    queue = queue_on(device, pipe)
    data = np.random.default_rng(5).integers(0, 256, 8 << 20, dtype=np.uint8)  # ~7 s at full speed: still moving
    first = post_write(queue, data)
    behind = [post_write(queue, bytes(4096)) for _ in range(3)]
    deadline = time.monotonic() + WAIT
    while vdev.endpoint(0x02).received_bytes == 0:  # the first one is on the bus
        assert time.monotonic() < deadline
        time.sleep(0.001)
    old = vdev._native
    vdev.unplug()
    status, moved = first.wait(WAIT)
    assert status in (STATUS_NO_SUCH_DEVICE, STATUS_DEVICE_NOT_CONNECTED, STATUS_DEVICE_REMOVED), status
    assert 0 < moved < len(data) and moved == old.ep_stats(0x02)["received_bytes"]  # every byte that moved
    assert vdev.endpoint(0x02).crc32 == zlib.crc32(data[:moved])
    for op in behind:  # purged, or (dispatched before the purge) refused by the gone device: none moved a byte
        assert op.wait(WAIT) in [(STATUS_CANCELLED, 0), (STATUS_DEVICE_NOT_CONNECTED, 0)]
    assert vdev.endpoint(0x02).received_bytes == moved
    wait_purged(queue)
    assert post_write(queue, b"late").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)  # refused
    WdfObjectDelete(device)
    vdev.close()


def test_a_queue_that_is_not_power_managed_keeps_its_requests() -> None:
    vdev = VirtualDevice("high", endpoints=SINK)
    device, pipe = open_sink(vdev)
    managed, kept = queue_on(device, pipe), queue_on(device, pipe, power_managed=WdfFalse)
    WdfIoQueueStop(managed, None, None)
    WdfIoQueueStop(kept, None, None)  # both hold what is posted to them
    a, b = post_write(managed, b"a" * 512), post_write(kept, b"b" * 512)
    vdev.unplug()
    assert a.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert not b.done and waiting(kept) == 1  # KMDF purges it when the device goes (the delete)
    WdfObjectDelete(device)
    assert b.wait(WAIT) == (STATUS_CANCELLED, 0)
    vdev.close()


def test_a_queue_made_after_the_device_left_is_purged_at_once() -> None:
    vdev = VirtualDevice("high", endpoints=SINK)
    device, pipe = open_sink(vdev)
    vdev.unplug()
    queue = queue_on(device, pipe)
    assert post_write(queue, b"x").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)
    WdfObjectDelete(device)
    vdev.close()


def test_a_re_enumeration_purges_the_queues_of_the_old_attachment_only() -> None:
    vdev = VirtualDevice("high", endpoints=SINK)
    device, pipe = open_sink(vdev)
    queue = queue_on(device, pipe)
    WdfIoQueueStop(queue, None, None)
    held = post_write(queue, b"h" * 512)
    vdev.reenumerate()
    assert held.wait(WAIT) == (STATUS_CANCELLED, 0)
    again, pipe2 = open_sink(vdev)  # the driver's new target on the new attachment
    fresh = queue_on(again, pipe2)
    assert post_write(fresh, b"n" * 512).wait(WAIT) == (STATUS_SUCCESS, 512)
    assert vdev.endpoint(0x02).received_bytes == 512
    WdfObjectDelete(device)
    WdfObjectDelete(again)
    vdev.close()
