"""Forwarding received requests to a real device: queues, the seed's forwarding path and splitting.

Data follows Gadget Zero's pattern=1 rule per transfer, so the gadget checks every forwarded byte.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

import gadget
import pytest
from test_wdf_libusb import open_pipes

from wdfusb.wdf import *

WAIT = 60.0


def make_queue(device: WDFUSBDEVICE, evt: Any, dispatch: int = WdfIoQueueDispatchSequential) -> WDFQUEUE:
    config = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT(config, dispatch)
    config.EvtIoWrite = evt
    queue = WDFQUEUE()
    assert WdfIoQueueCreate(device, config, WDF_NO_OBJECT_ATTRIBUTES, queue) == STATUS_SUCCESS
    return queue


def forward(pipe: Any) -> Any:
    """EvtIoWrite as the seed describes: the received request, its input memory, its byte count."""

    def evt(Queue: Any, Request: Any, Length: int) -> None:
        memory = WDFMEMORY()
        status = WdfRequestRetrieveInputMemory(Request, memory)
        written = ULONG()
        if NT_SUCCESS(status):
            desc = WDF_MEMORY_DESCRIPTOR()
            WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, None)
            status = WdfUsbTargetPipeWriteSynchronously(pipe, Request, None, desc, written)
        WdfRequestCompleteWithInformation(Request, status, written.value)

    return evt


def test_producers_forward_through_a_queue_to_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    queue = make_queue(device, forward(pipes[0x02]))
    results: list[tuple[int, int, int]] = []

    def producer(p: int) -> None:
        for n in range(20):
            frame = gadget.mod63(bulk_maxp * (1 + (n + p) % 5) + (n % 3) * 7, bulk_maxp)
            status, information = post_write(queue, frame).wait(WAIT)
            results.append((int(status), information, len(frame)))

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(results) == 60
    assert all(status == STATUS_SUCCESS and information == size for status, information, size in results)
    WdfObjectDelete(device)


def test_split_a_large_received_request(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    device, pipes, _ = open_pipes(0x0525, 0xA4A0)
    splitter = WriteSplitter(pipes[0x02], limit=16 * bulk_maxp)  # parts start on packet boundaries
    queue = make_queue(device, lambda q, r, n: splitter.forward(r))
    data = gadget.mod63(1 << 20, bulk_maxp)
    assert post_write(queue, data).wait(WAIT) == (STATUS_SUCCESS, len(data))
    splitter.delete()
    WdfObjectDelete(device)


# "stop" from the start: a gadget switched to it later may still have one read queued, which
# would take the forwarded write (it then completes instead of being cancelled)
@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_cancel_a_received_request_while_it_is_forwarded(ffs_gadget: gadget.FfsGadget) -> None:
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    entered = threading.Event()
    evt = forward(pipes[ffs_gadget.ep_out])

    def cancelable(Queue: Any, Request: Any, Length: int) -> None:
        entered.set()
        evt(Queue, Request, Length)

    queue = make_queue(device, cancelable)
    op = post_write(queue, bytes(64 << 10))
    assert entered.wait(WAIT)
    assert op.cancel()
    status, _ = op.wait(WAIT)
    assert status == STATUS_CANCELLED
    WdfObjectDelete(device)


def test_a_stopped_queue_holds_writes_until_started_then_drains(ffs_gadget: gadget.FfsGadget) -> None:
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    queue = make_queue(device, forward(pipes[ffs_gadget.ep_out]))
    WdfIoQueueStopSynchronously(queue)
    frames = [bytes([i]) * (1000 + 300 * i) for i in range(3)]
    ops = [post_write(queue, frame) for frame in frames]
    waiting = ULONG()
    WdfIoQueueGetState(queue, waiting, None)
    assert waiting.value == 3 and not any(op.done for op in ops)
    assert ffs_gadget.received.bytes == 0  # nothing reached the device while stopped
    WdfIoQueueStart(queue)
    assert [op.wait(WAIT) for op in ops] == [(STATUS_SUCCESS, len(f)) for f in frames]
    drained = threading.Event()
    WdfIoQueueDrain(queue, lambda q, c: drained.set(), None)
    assert drained.wait(WAIT) and WDF_IO_QUEUE_DRAINED(WdfIoQueueGetState(queue, None, None))
    assert post_write(queue, b"late").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)
    total = sum(len(f) for f in frames)
    # the frames are not packet multiples: each ended the gadget's read, in order
    assert ffs_gadget.received.wait_bytes(total, WAIT) == total
    assert ffs_gadget.received.crc32 == zlib.crc32(b"".join(frames))
    WdfObjectDelete(device)


@pytest.mark.parametrize("ffs_gadget", [{"mode": "slow", "read_size": 4096, "slow_delay": 0.01}], indirect=True)
def test_the_cable_pulled_under_a_forwarding_queue(ffs_gadget: gadget.FfsGadget, bulk_maxp: int) -> None:
    """Surprise removal as KMDF handles it: the forwarded request ends with the bytes that moved
    (whole packets; the gadget reads slowly, so it is still moving), the ones still queued are
    purged (or refused by the gone device, if dispatched first: none moves a byte), and the purged
    queue refuses new requests."""
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    queue = make_queue(device, forward(pipes[ffs_gadget.ep_out]))
    frames = [bytes(16 << 20)] + [bytes(4 * bulk_maxp) for _ in range(4)]  # ~40 s at the gadget's pace
    ops = [post_write(queue, f) for f in frames]
    threading.Timer(0.5, ffs_gadget.unplug, kwargs={"wait": None}).start()
    results = [op.wait(WAIT) for op in ops]
    status, moved = results[0]
    assert not NT_SUCCESS(status) and moved % bulk_maxp == 0 and moved < len(frames[0]), results[0]
    for st, n in results[1:]:
        assert n == 0 and st in (STATUS_CANCELLED, STATUS_DEVICE_NOT_CONNECTED, STATUS_NO_SUCH_DEVICE), (st, n)
    deadline = time.monotonic() + WAIT  # the purge runs on the removal watch's thread
    while WdfIoQueueGetState(queue, None, None) & WdfIoQueueAcceptRequests:
        assert time.monotonic() < deadline, "the queue was never purged"
        time.sleep(0.01)
    assert post_write(queue, b"late").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)
    WdfObjectDelete(device)
