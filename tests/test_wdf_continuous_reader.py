"""WDF's continuous reader (CONTRACT §7): readers between WdfIoTargetStart and WdfIoTargetStop,
their buffers, their completions in order, the failure callback and its restart decision."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from test_wdf_helpers import Rig, open_rig

from wdfusb.wdf import *

SRC = 0x88


def counter(offset: int, n: int) -> bytes:
    words = np.arange(offset // 4, (offset + n) // 4 + 2, dtype="<u4").tobytes()
    return words[offset % 4 : offset % 4 + n]


@pytest.fixture
def src() -> Iterator[Rig]:
    r = open_rig("high")
    r.vdev.endpoint(SRC).source("counter")
    yield r
    if not r.device.value.is_deleted:
        WdfObjectDelete(r.device)
    assert wait_for_completions(10)
    r.vdev.close()


class Collector:
    """An EvtUsbTargetPipeReadComplete that keeps what each read brought (after the header)."""

    def __init__(self, header: int = 0, trailer: int = 0) -> None:
        self.header, self.trailer = header, trailer
        self.data = bytearray()
        self.reads = 0
        self.lock = threading.Lock()
        self.frames: list[bytes] = []
        self.failed: list[tuple[int, int]] = []
        self.restart = True

    def read_complete(self, Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
        assert Context is self and in_completion_routine()
        whole = WdfMemoryGetBuffer(Buffer).tobytes()
        assert len(whole) == self.header + 4096 + self.trailer
        assert whole[: self.header] == bytes(self.header)  # the header is the driver's, untouched
        with self.lock:
            self.data += whole[self.header : self.header + NumBytesTransferred]
            self.reads += 1

    def readers_failed(self, Pipe: Any, Status: int, UsbdStatus: int) -> bool:
        assert not in_completion_routine()  # passive level
        self.failed.append((int(Status), int(UsbdStatus)))
        return self.restart

    def wait_for(self, n: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while len(self.data) < n:
            assert time.monotonic() < deadline, f"only {len(self.data)} of {n} bytes arrived"
            time.sleep(0.005)


def wait_until(what: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.005)


def start_with(r: Rig, on_read: Any, length: int) -> Any:
    """Readers of ``length`` bytes calling ``on_read``, started; their pipe's I/O target."""
    config = WDF_USB_CONTINUOUS_READER_CONFIG()
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, on_read, None, length)
    assert WdfUsbTargetPipeConfigContinuousReader(r.pipes[SRC], config) == STATUS_SUCCESS
    target = WdfUsbTargetPipeGetIoTarget(r.pipes[SRC])
    WdfIoTargetStart(target)
    return target


def configure(r: Rig, c: Collector, pending: int = 3) -> Any:
    config = WDF_USB_CONTINUOUS_READER_CONFIG()
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, c.read_complete, c, 4096)
    config.HeaderLength, config.TrailerLength, config.NumPendingReads = c.header, c.trailer, pending
    config.EvtUsbTargetPipeReadersFailed = c.readers_failed
    assert WdfUsbTargetPipeConfigContinuousReader(r.pipes[SRC], config) == STATUS_SUCCESS
    return WdfUsbTargetPipeGetIoTarget(r.pipes[SRC])


def test_readers_deliver_the_stream_in_order_between_start_and_stop(src: Rig) -> None:
    c = Collector(header=16, trailer=8)
    target = configure(src, c)
    time.sleep(0.05)
    assert c.reads == 0  # nothing is read before the target is started
    assert WdfIoTargetGetState(target) == WdfIoTargetStarted
    assert WdfIoTargetStart(target) == STATUS_SUCCESS
    c.wait_for(256 * 1024)
    WdfIoTargetStop(target, WdfIoTargetWaitForSentIoToComplete)  # cancels (KMDF converts the action)
    assert WdfIoTargetGetState(target) == WdfIoTargetStopped
    got, sent = len(c.data), src.vdev.endpoint(SRC).sent_bytes
    assert bytes(c.data) == counter(0, got) and got % 4096 == 0
    assert 0 <= sent - got < 4096  # only the read in progress was cut short, and not delivered
    time.sleep(0.05)
    assert len(c.data) == got and src.vdev.endpoint(SRC).sent_bytes == sent
    assert WdfIoTargetStart(target) == STATUS_SUCCESS  # restarted: the stream goes on where it was
    c.wait_for(got + 64 * 1024)
    WdfIoTargetStop(target, WdfIoTargetLeaveSentIoPending)  # also cancels and waits
    after = len(c.data)
    assert bytes(c.data[got:]) == counter(sent, after - got)
    time.sleep(0.05)
    assert len(c.data) == after


@pytest.mark.parametrize("action", [WdfIoTargetWaitForSentIoToComplete, WdfIoTargetLeaveSentIoPending])
def test_a_stop_returns_on_an_idle_pipe_whatever_the_action(src: Rig, action: int) -> None:
    """Readers on a pipe that never sends: waiting for them would wait for ever, so every
    action cancels them (KMDF's FxUsbPipe::GotoStopState)."""
    src.vdev.endpoint(SRC).source(None)  # the loopback, empty
    target = configure(src, Collector())
    WdfIoTargetStart(target)
    time.sleep(0.05)
    done = threading.Event()
    t = threading.Thread(target=lambda: (WdfIoTargetStop(target, action), done.set()), daemon=True)
    t.start()
    assert done.wait(10), "WdfIoTargetStop never returned"
    assert src.vdev.endpoint(SRC).sent_bytes == 0


def test_readers_failed_may_delete_the_device_but_not_stop_the_target(src: Rig) -> None:
    caught: list[BaseException] = []
    deleted = threading.Event()

    def readers_failed(Pipe: Any, Status: int, UsbdStatus: int) -> bool:
        try:
            WdfIoTargetStop(WdfUsbTargetPipeGetIoTarget(Pipe), WdfIoTargetCancelSentIo)
        except WdfBugCheck as e:  # it would wait for this very callback
            caught.append(e)
        WdfObjectDelete(src.device)  # cancels and waits for the readers, not for this callback
        deleted.set()
        return True

    c = Collector()
    c.readers_failed = readers_failed  # type: ignore[method-assign]
    target = configure(src, c, pending=3)
    WdfIoTargetStart(target)
    c.wait_for(16 * 1024)
    src.vdev.endpoint(SRC).stall()
    assert deleted.wait(10)
    assert caught and "EvtUsbTargetPipeReadersFailed" in str(caught[0])
    assert wait_for_completions(10)


def test_a_stall_calls_readers_failed_and_true_restarts_them(src: Rig) -> None:
    c = Collector()
    target = configure(src, c, pending=2)
    WdfIoTargetStart(target)
    c.wait_for(64 * 1024)
    src.vdev.endpoint(SRC).stall()
    wait_until(lambda: bool(c.failed))
    status, usbd = c.failed[0]
    assert status == STATUS_UNSUCCESSFUL or NTSTATUS(status).name != "STATUS_SUCCESS"
    assert usbd == USBD_STATUS_STALL_PID
    before = len(c.data)
    c.wait_for(before + 64 * 1024)  # the pipe was reset and the readers restarted
    assert len(c.failed) == 1
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)


def test_readers_failed_false_leaves_them_stopped_until_the_next_start(src: Rig) -> None:
    c = Collector()
    c.restart = False
    target = configure(src, c, pending=2)
    WdfIoTargetStart(target)
    c.wait_for(16 * 1024)
    src.vdev.endpoint(SRC).stall()
    wait_until(lambda: bool(c.failed))
    time.sleep(0.05)
    stopped_at = len(c.data)
    time.sleep(0.05)
    assert len(c.data) == stopped_at
    assert WdfUsbTargetPipeResetSynchronously(src.pipes[SRC]) == STATUS_SUCCESS
    WdfIoTargetStart(target)
    c.wait_for(stopped_at + 16 * 1024)
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)


def test_a_referenced_buffer_outlives_its_read(src: Rig) -> None:
    kept: list[Any] = []

    def keep(Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
        if not kept:
            WdfObjectReference(Buffer)
            kept.append((Buffer, NumBytesTransferred))

    target = start_with(src, keep, 1024)
    wait_until(lambda: bool(kept))
    time.sleep(0.02)  # later reads use buffers of their own
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    buffer, n = kept[0]
    assert n == 1024 and WdfMemoryGetBuffer(buffer).tobytes() == counter(0, 1024)
    WdfObjectDereference(buffer)


def test_the_configuration_is_checked_as_kmdf_checks_it(src: Rig) -> None:
    c = Collector()
    config = WDF_USB_CONTINUOUS_READER_CONFIG()
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, c.read_complete, c, 4096)
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[0x06], config) == STATUS_INVALID_DEVICE_REQUEST  # OUT
    config.Size = 64
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_INFO_LENGTH_MISMATCH
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, c.read_complete, c, 0)
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_INVALID_PARAMETER
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, c.read_complete, c, 1000)
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_INVALID_BUFFER_SIZE
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, None, c, 4096)
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_INVALID_DEVICE_REQUEST
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(config, c.read_complete, c, 4096)
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_SUCCESS
    assert WdfUsbTargetPipeConfigContinuousReader(src.pipes[SRC], config) == STATUS_INVALID_DEVICE_STATE
    with pytest.raises(WdfBugCheck):
        WdfIoTargetStop(WdfUsbTargetPipeGetIoTarget(src.pipes[SRC]), 7)


def test_stopping_from_a_completion_routine_is_a_bug_check(src: Rig) -> None:
    seen: list[BaseException] = []

    def stop_inside(Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
        try:
            WdfIoTargetStop(WdfUsbTargetPipeGetIoTarget(Pipe), WdfIoTargetCancelSentIo)
        except WdfBugCheck as e:
            seen.append(e)

    target = start_with(src, stop_inside, 512)
    wait_until(lambda: bool(seen))
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)


def test_deleting_the_device_under_running_readers_ends_them(src: Rig) -> None:
    c = Collector()
    target = configure(src, c)
    WdfIoTargetStart(target)
    c.wait_for(16 * 1024)
    WdfObjectDelete(src.device)
    assert wait_for_completions(10)
    n = len(c.data)
    time.sleep(0.05)
    assert len(c.data) == n and bytes(c.data) == counter(0, n)
    with pytest.raises(WdfBugCheck):  # the pipe went with its device
        WdfIoTargetStart(target)


def test_a_device_unplugged_under_the_readers_is_not_restarted(src: Rig) -> None:
    """KMDF asks the port first: readers whose device is gone stay stopped, even when
    EvtUsbTargetPipeReadersFailed asks for a restart (no loop against a gone device)."""
    c = Collector()
    target = configure(src, c)
    WdfIoTargetStart(target)
    c.wait_for(16 * 1024)
    assert WdfUsbTargetDeviceIsConnectedSynchronous(src.device) == STATUS_SUCCESS
    src.vdev.unplug()
    wait_until(lambda: bool(c.failed))
    time.sleep(0.1)
    assert len(c.failed) == 1 and c.failed[0][0] == STATUS_DEVICE_NOT_CONNECTED
    assert WdfUsbTargetDeviceIsConnectedSynchronous(src.device) == STATUS_DEVICE_DOES_NOT_EXIST
    n = len(c.data)
    assert bytes(c.data) == counter(0, n) and n % 4096 == 0
    assert 0 <= src.vdev.endpoint(SRC).sent_bytes - n < 4096  # the failed read's part is not delivered (KMDF)
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)


def test_is_connected_is_a_passive_level_question(src: Rig) -> None:
    answers: list[int] = []

    def ask(Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
        if not answers:
            answers.append(WdfUsbTargetDeviceIsConnectedSynchronous(src.device))

    target = start_with(src, ask, 512)
    wait_until(lambda: bool(answers))
    WdfIoTargetStop(target, WdfIoTargetCancelSentIo)
    assert answers == [STATUS_INVALID_DEVICE_REQUEST]
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetDeviceIsConnectedSynchronous(src.pipes[SRC])  # a pipe is not a WDFUSBDEVICE


def test_a_storm_of_stops_and_starts_keeps_each_run_whole(src: Rig) -> None:
    """Random stops (any action) and starts while readers resend: nothing is delivered after a
    stop returns, each run between a start and a stop is one unbroken stretch of the stream,
    and the only bytes missing are those of the read each stop cut short."""
    import random

    rng = random.Random(13)
    c = Collector()
    target = configure(src, c, pending=rng.randint(2, 6))
    actions = [WdfIoTargetCancelSentIo, WdfIoTargetWaitForSentIoToComplete, WdfIoTargetLeaveSentIoPending]
    end = sent = 0  # the stream offset after the last delivered byte; the bytes the device sent
    for _ in range(40):
        before = len(c.data)
        WdfIoTargetStart(target)
        time.sleep(rng.choice([0, 0.0005, 0.002, 0.01]))
        WdfIoTargetStop(target, rng.choice(actions))
        run = bytes(c.data[before:])
        assert len(run) % 4096 == 0
        if run:
            first = int.from_bytes(run[:4], "little") * 4
            assert first >= end and run == counter(first, len(run)), "a gap inside one run"
            end = first + len(run)
        sent, sent_before = src.vdev.endpoint(SRC).sent_bytes, sent
        assert 0 <= sent - sent_before - len(run) < 4096  # at most the read this stop cut short
        assert len(c.data) == before + len(run)
    time.sleep(0.02)
    assert src.vdev.endpoint(SRC).sent_bytes == sent  # stopped means stopped
