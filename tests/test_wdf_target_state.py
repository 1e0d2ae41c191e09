"""A stopped WDFIOTARGET: sends wait (pended in order, or the synchronous caller waits) until
WdfIoTargetStart, unless WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE; WdfIoTargetStop's three
actions on the requests sent and not back; a pended request cancelled or its target deleted."""

from __future__ import annotations

import random
import threading
import time
import zlib
from typing import Any

from test_wdf_helpers import Rig, buffer_desc, new_memory, new_request

from wdfusb.wdf import *

OUT = 0x06


def options(flags: int = 0, timeout_ms: int = 0) -> WDF_REQUEST_SEND_OPTIONS:
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, flags)
    if timeout_ms:
        WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_MS(timeout_ms))
    return o


IGNORE = options(WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE)


def write(r: Rig, data: bytes, opts: Any = None, request: Any = None) -> tuple[int, int]:
    n = ULONG(99)
    return WdfUsbTargetPipeWriteSynchronously(r.pipes[OUT], request, opts, buffer_desc(data), n), n.value


class Sent:
    """Asynchronous writes on one pipe: each request's completion, in the order they came."""

    def __init__(self, r: Rig) -> None:
        self.r = r
        self.pipe = r.pipes[OUT]
        self.target = WdfUsbTargetPipeGetIoTarget(self.pipe)
        self.done: list[tuple[int, int, int]] = []  # (context, status, length)
        self.lock = threading.Condition()

    def send(self, data: bytes, context: int, opts: Any = None) -> Any:
        req, mem = new_request(self.pipe), new_memory(data)
        assert WdfUsbTargetPipeFormatRequestForWrite(self.pipe, req, mem, None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, self._routine, context)
        assert WdfRequestSend(req, self.target, opts)
        return req

    def _routine(self, Request: Any, Target: Any, Params: Any, Context: int) -> None:
        with self.lock:
            self.done.append(
                (Context, Params.IoStatus.Status, Params.Parameters.Usb.Completion.Parameters.PipeWrite.Length)
            )
            self.lock.notify_all()

    def wait(self, n: int, timeout: float = 10, idle: bool = True) -> list[tuple[int, int, int]]:
        """The first ``n`` completions; with ``idle``, once every sent request's routine (and the
        dispatcher with it) is done."""
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.done) >= n, timeout), self.done
            done = list(self.done)
        assert not idle or wait_for_completions(timeout)
        return done


def test_a_synchronous_write_to_a_stopped_pipe_waits_for_the_start(rig: Rig) -> None:
    target = WdfUsbTargetPipeGetIoTarget(rig.pipes[OUT])
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    assert WdfIoTargetGetState(target) == WdfIoTargetStopped
    t0 = time.monotonic()
    assert write(rig, b"late", options(timeout_ms=200)) == (STATUS_IO_TIMEOUT, 0)  # its time-out, spent waiting
    assert time.monotonic() - t0 >= 0.19 and rig.vdev.endpoint(OUT).received_bytes == 0
    got: list[tuple[int, int]] = []
    writer = threading.Thread(target=lambda: got.append(write(rig, b"after the start")))
    writer.start()
    time.sleep(0.2)
    assert not got and rig.vdev.endpoint(OUT).received_bytes == 0
    started = time.monotonic()
    assert WdfIoTargetStart(target) == STATUS_SUCCESS
    writer.join(10)
    assert got == [(STATUS_SUCCESS, 15)] and time.monotonic() >= started
    assert rig.vdev.endpoint(OUT).crc32 == zlib.crc32(b"after the start")


def test_ignore_target_state_goes_through_a_stopped_target(rig: Rig) -> None:
    target = WdfUsbTargetPipeGetIoTarget(rig.pipes[OUT])
    WdfIoTargetStop(target, WdfIoTargetLeaveSentIoPending)
    assert write(rig, b"now", IGNORE) == (STATUS_SUCCESS, 3)
    o = options(WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE, timeout_ms=1000)
    assert WdfUsbTargetPipeResetSynchronously(rig.pipes[OUT], None, o) == STATUS_SUCCESS
    assert WdfUsbTargetPipeResetSynchronously(rig.pipes[OUT], None, options(timeout_ms=100)) == STATUS_IO_TIMEOUT
    WdfIoTargetStart(target)
    assert rig.vdev.endpoint(OUT).received_bytes == 3


def test_requests_sent_to_a_stopped_pipe_are_pended_and_sent_in_order_at_the_start(rig: Rig) -> None:
    s = Sent(rig)
    WdfIoTargetStop(s.target, WdfIoTargetCancelSentIo)
    chunks = [bytes([i]) * (100 + i) for i in range(6)]
    reqs = [s.send(c, i) for i, c in enumerate(chunks)]
    time.sleep(0.2)
    assert s.done == [] and rig.vdev.endpoint(OUT).received_bytes == 0
    assert WdfRequestCancelSentRequest(reqs[2])  # a pended one cancelled: done at once, nothing moved
    assert s.wait(1) == [(2, STATUS_CANCELLED, 0)]
    WdfIoTargetStart(s.target)
    done = s.wait(6)
    assert [d[0] for d in done[1:]] == [0, 1, 3, 4, 5] and all(d[1] == STATUS_SUCCESS for d in done[1:])
    sent = b"".join(c for i, c in enumerate(chunks) if i != 2)
    assert rig.vdev.endpoint(OUT).received_bytes == len(sent) and rig.vdev.endpoint(OUT).crc32 == zlib.crc32(sent)


def test_a_pended_request_times_out_from_its_send_not_from_the_start(rig: Rig) -> None:
    """KMDF starts a request's timer when it is pended: it completes with STATUS_IO_TIMEOUT while
    the target stays stopped, and a start before that sends it with the time-out it has left."""
    s = Sent(rig)
    ep = rig.vdev.endpoint(OUT)
    WdfIoTargetStop(s.target, WdfIoTargetCancelSentIo)
    t0 = time.monotonic()
    timed_out = s.send(b"never", 0, options(timeout_ms=150))
    s.send(b"no time-out", 1)
    assert s.wait(1, idle=False) == [(0, STATUS_IO_TIMEOUT, 0)]
    assert 0.14 <= time.monotonic() - t0 < 5 and ep.received_bytes == 0
    assert not WdfRequestSend(timed_out, s.target, None)  # cancelled by its timer, as WDF's is
    assert WdfRequestGetStatus(timed_out) == STATUS_CANCELLED
    ep.nak(float("inf"))  # the device takes nothing: the start sends it, its time-out ends it
    t0 = time.monotonic()
    s.send(b"x" * 512, 2, options(timeout_ms=2000))
    time.sleep(1.5)
    WdfIoTargetStart(s.target)
    done = s.wait(2, idle=False)  # (1, sent first, waits for the device with no time-out)
    took = time.monotonic() - t0
    # 2 s from the send; counted from the start it would be 3.5 s
    assert done[1] == (2, STATUS_IO_TIMEOUT, 0) and 1.99 <= took < 3.0, (done, took)
    ep.nak(0)
    assert s.wait(3)[2] == (1, STATUS_SUCCESS, 11)
    assert ep.crc32 == zlib.crc32(b"no time-out")


def test_a_start_and_a_pended_time_out_racing_complete_each_request_once(rig: Rig) -> None:
    s = Sent(rig)
    rng = random.Random(7)
    sent = 0
    for round_ in range(25):
        WdfIoTargetStop(s.target, WdfIoTargetWaitForSentIoToComplete)
        for i in range(4):
            s.send(bytes([i]) * 64, round_ * 4 + i, options(timeout_ms=rng.choice((1, 2, 3, 5))))
        time.sleep(rng.choice((0.0, 0.001, 0.002, 0.004)))
        WdfIoTargetStart(s.target)
        sent += 4
    done = s.wait(sent)
    assert sorted(d[0] for d in done) == list(range(sent))  # each exactly once
    assert all(d[1] in (STATUS_SUCCESS, STATUS_IO_TIMEOUT) for d in done), done
    moved = sum(d[2] for d in done)
    assert rig.vdev.endpoint(OUT).received_bytes == moved and moved == 64 * sum(d[1] == STATUS_SUCCESS for d in done)


def test_stop_cancel_sent_io_cancels_what_is_out_and_waits(rig: Rig) -> None:
    s = Sent(rig)
    rig.vdev.endpoint(OUT).nak(float("inf"))
    for i in range(4):
        s.send(b"x" * 512, i)
    kept = s.send(b"y" * 512, 99, IGNORE)  # sent ignoring the state: not on the sent list
    time.sleep(0.1)
    WdfIoTargetStop(s.target, WdfIoTargetCancelSentIo)
    done = s.wait(4, idle=False)  # back before Stop returned (the fifth is still out)
    assert sorted(d[0] for d in done) == [0, 1, 2, 3] and all(d[1] == STATUS_CANCELLED for d in done)
    time.sleep(0.1)
    assert len(s.done) == 4  # the one that ignores the state is still out
    rig.vdev.endpoint(OUT).nak(0)
    assert s.wait(5)[4] == (99, STATUS_SUCCESS, 512)
    assert WdfRequestGetStatus(kept) == STATUS_SUCCESS
    WdfIoTargetStart(s.target)


def test_stop_wait_for_sent_io_waits_and_leave_sent_io_pending_does_not(rig: Rig) -> None:
    s = Sent(rig)
    rig.vdev.endpoint(OUT).nak(0.3)
    s.send(b"a" * 512, 0)
    t0 = time.monotonic()
    WdfIoTargetStop(s.target, WdfIoTargetLeaveSentIoPending)
    assert time.monotonic() - t0 < 0.1 and s.done == []
    WdfIoTargetStart(s.target)
    WdfIoTargetStop(s.target, WdfIoTargetWaitForSentIoToComplete)
    assert time.monotonic() - t0 >= 0.25  # back, and not cancelled: it completed
    assert s.wait(1) == [(0, STATUS_SUCCESS, 512)]
    WdfIoTargetStart(s.target)


def test_deleting_the_device_fails_what_waits_at_its_stopped_targets(rig: Rig) -> None:
    s = Sent(rig)
    WdfIoTargetStop(s.target, WdfIoTargetCancelSentIo)
    s.send(b"pended", 0)
    got: list[tuple[int, int]] = []
    waiter = threading.Thread(target=lambda: got.append(write(rig, b"waiting")))
    waiter.start()
    time.sleep(0.1)
    WdfObjectDelete(rig.device)
    assert s.wait(1) == [(0, STATUS_INVALID_DEVICE_STATE, 0)]
    waiter.join(10)
    assert got == [(STATUS_INVALID_DEVICE_STATE, 0)]
    assert rig.vdev.endpoint(OUT).received_bytes == 0


def test_a_control_transfer_to_a_stopped_device_target_waits(rig: Rig) -> None:
    target = WdfUsbTargetDeviceGetIoTarget(rig.device)
    packet = WDF_USB_CONTROL_SETUP_PACKET()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS(packet, BmRequestToDevice, 0)
    status = bytearray(2)
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    send = WdfUsbTargetDeviceSendControlTransferSynchronously
    assert send(rig.device, None, options(timeout_ms=100), packet, buffer_desc(status), None) == STATUS_IO_TIMEOUT
    assert send(rig.device, None, IGNORE, packet, buffer_desc(status), None) == STATUS_SUCCESS
    WdfIoTargetStart(target)
    assert send(rig.device, None, None, packet, buffer_desc(status), None) == STATUS_SUCCESS


def test_stop_and_start_racing_synchronous_writers_lose_no_byte(rig: Rig) -> None:
    """Four writers and a thread stopping (each action at random) and starting the pipe: every
    write ends (nothing hangs at a started target), and the bytes the writers were told moved
    are the bytes the endpoint took."""
    target = WdfUsbTargetPipeGetIoTarget(rig.pipes[OUT])
    moved = [0] * 4
    statuses: set[int] = set()
    stop = threading.Event()

    def writer(k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            st, n = write(rig, bytes(rng.choice([1, 512, 4096, 65536])), options(timeout_ms=2000))
            moved[k] += n
            statuses.add(st)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    actions = [WdfIoTargetCancelSentIo, WdfIoTargetWaitForSentIoToComplete, WdfIoTargetLeaveSentIoPending]
    for _ in range(60):
        WdfIoTargetStop(target, rng.choice(actions))
        time.sleep(rng.random() * 0.005)
        WdfIoTargetStart(target)
        time.sleep(rng.random() * 0.005)
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert statuses <= {STATUS_SUCCESS, STATUS_CANCELLED}
    assert STATUS_SUCCESS in statuses
    assert sum(moved) == rig.vdev.endpoint(OUT).received_bytes
