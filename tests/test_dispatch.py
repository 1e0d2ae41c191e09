"""Completion routines: the dispatcher thread, its context rules, and errors that are never lost."""

from __future__ import annotations

import os
import threading
import zlib

import pytest

import wdfusb
from wdfusb import _dispatch, _engine
from wdfusb.errors import error_for


def test_many_async_writes_complete_in_order_with_crc(dev: wdfusb.Device, vdev: wdfusb.VirtualDevice) -> None:
    pipe = dev.pipe(0x06)._core
    chunks = [os.urandom(1 + i % 700) for i in range(2000)]
    order: list[int] = []
    xs = [dev._core.new_transfer() for _ in range(8)]
    sem = threading.Semaphore(8)
    slots = list(range(8))
    lock = threading.Lock()

    def done(i: int, slot: int) -> _dispatch.Callback:
        def cb(status: int, actual: int) -> None:
            assert status == 0 and actual == len(chunks[i])
            order.append(i)
            with lock:
                slots.append(slot)
            sem.release()

        return cb

    for i, c in enumerate(chunks):
        sem.acquire()
        with lock:
            slot = slots.pop()
        assert _dispatch.submit(xs[slot], pipe.address, pipe.type, _engine.pin(c), len(c), 0, 0, done(i, slot)) == 0
    assert _dispatch.wait_idle(10)
    assert order == list(range(len(chunks)))
    assert vdev.endpoint(0x06).crc32 == zlib.crc32(b"".join(chunks))
    for x in xs:
        x.free()


def test_sync_send_from_a_completion_routine_is_refused(dev: wdfusb.Device) -> None:
    seen: list[object] = []
    x = dev._core.new_transfer()

    def cb(status: int, actual: int) -> None:
        seen.append(_dispatch.in_completion_routine())
        try:
            dev.pipe(0x06).write(b"from a completion routine")
        except wdfusb.UsbError as e:
            seen.append(e.status)

    p = dev.pipe(0x06)._core
    assert _dispatch.submit(x, p.address, p.type, _engine.pin(b"abc"), 3, 0, 0, cb) == 0
    assert _dispatch.wait_idle(5)
    assert seen == [True, 0xC0000010]  # STATUS_INVALID_DEVICE_REQUEST, never a deadlock
    assert not _dispatch.in_completion_routine()
    x.free()


def test_exception_in_a_completion_routine_is_reraised_not_lost(dev: wdfusb.Device) -> None:
    x = dev._core.new_transfer()

    def cb(status: int, actual: int) -> None:
        raise RuntimeError(f"routine failed after {actual} bytes")

    p = dev.pipe(0x06)._core
    _dispatch.submit(x, p.address, p.type, _engine.pin(b"12345"), 5, 0, 0, cb)
    assert _dispatch.wait_idle(5)
    with pytest.raises(RuntimeError, match="after 5 bytes"):
        _dispatch.raise_pending()
    _dispatch.raise_pending()  # kept once, not twice
    x.free()


def test_resubmit_from_the_completion_routine(dev: wdfusb.Device, vdev: wdfusb.VirtualDevice) -> None:
    x = dev._core.new_transfer()
    p = dev.pipe(0x06)._core
    left = [100]
    payload = _engine.pin(b"0123456789")

    def cb(status: int, actual: int) -> None:
        assert status == 0
        left[0] -= 1
        if left[0]:
            assert _dispatch.submit(x, p.address, p.type, payload, 10, 0, 0, cb) == 0

    _dispatch.submit(x, p.address, p.type, payload, 10, 0, 0, cb)
    assert _dispatch.wait_idle(10)
    assert left == [0] and vdev.endpoint(0x06).received_bytes == 1000
    x.free()


def test_async_timeout_and_cancel_complete_with_status() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    with v, wdfusb.open(v) as dev:
        v.endpoint(0x06).nak(float("inf"))
        p = dev.pipe(0x06)._core
        results: list[tuple[int, int]] = []
        a, b = dev._core.new_transfer(), dev._core.new_transfer()
        _dispatch.submit(
            a, p.address, p.type, _engine.pin(bytes(64)), 64, 0, 100_000, lambda s, n: results.append((s, n))
        )
        _dispatch.submit(b, p.address, p.type, _engine.pin(bytes(64)), 64, 0, 0, lambda s, n: results.append((s, n)))
        assert not _dispatch.wait_idle(0.3)  # b waits for ever
        assert results == [(_engine.lib.WU_ERR_TIMEOUT, 0)]
        assert b.cancel()
        assert _dispatch.wait_idle(5)
        assert results[1] == (_engine.lib.WU_ERR_CANCELLED, 0)
        assert isinstance(error_for(results[1][0]), wdfusb.UsbCancelledError)
        a.free()
        b.free()


def test_close_with_async_transfers_in_flight_completes_them() -> None:
    v = wdfusb.VirtualDevice(speed="high")
    dev = wdfusb.open(v)
    v.endpoint(0x06).nak(float("inf"))
    p = dev.pipe(0x06)._core
    results: list[int] = []
    xs = [dev._core.new_transfer() for _ in range(4)]
    for x in xs:
        _dispatch.submit(x, p.address, p.type, _engine.pin(bytes(10)), 10, 0, 0, lambda s, n: results.append(s))
    dev.close()
    assert _dispatch.wait_idle(5)
    assert results == [_engine.lib.WU_ERR_CANCELLED] * 4
    assert all(not x.in_flight for x in xs)
    v.close()
