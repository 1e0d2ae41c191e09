"""The streaming reader (``Pipe.reader``, CONTRACT §7) on the virtual device's loopback.

What the OUT pipe 0x06 takes, the IN pipe 0x88 gives back in order; a read that finds the
loopback short ends short (a short packet), so these tests see short reads close up behind
the ones before them. Every test compares the bytes delivered with the bytes written.
"""

from __future__ import annotations

import _thread
import gc
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wdfusb
from wdfusb import _engine

OUT, IN = 0x06, 0x88
MIB = 1 << 20


@pytest.fixture
def loop() -> Iterator[wdfusb.Device]:
    """An unpaced device whose loopback keeps 16 MiB."""
    with wdfusb.VirtualDevice(speed=None, loopback_capacity=16 * MIB) as v, wdfusb.open(v) as d:
        yield d


@pytest.fixture
def paced() -> Iterator[wdfusb.Device]:
    with wdfusb.VirtualDevice(speed="high", loopback_capacity=16 * MIB) as v, wdfusb.open(v) as d:
        yield d


def test_readinto_a_numpy_array_gets_the_stream_in_order(loop: wdfusb.Device) -> None:
    data = os.urandom(3 * MIB + 1000)
    loop.pipe(OUT).write(data)
    samples = np.zeros((3 * MIB + 1000) // 4, dtype=np.uint32)
    with loop.pipe(IN).reader(depth=8, chunk=65536) as r:
        assert r.readinto(samples) == samples.nbytes
        assert samples.tobytes() == data[: samples.nbytes]
        assert r.bytes_read == samples.nbytes
        assert r.peak_in_flight >= 2
        assert r.read(len(data) - samples.nbytes) == data[samples.nbytes :]


def test_iteration_yields_each_read_as_it_completed(loop: wdfusb.Device) -> None:
    a, b, c = (os.urandom(n) for n in (5000, 512, 20000))
    with loop.pipe(IN).reader(depth=2, chunk=16384, timeout=0.5) as r:
        got = []
        for piece in (a, b, c):  # one write at a time: the read waiting finds just that
            loop.pipe(OUT).write(piece)
            view = next(r)
            assert view.readonly
            got.append(bytes(view))
        got.append(bytes(next(r)))
        assert got == [a, b, c[:16384], c[16384:]]  # short reads end where the data ran out
        with pytest.raises(wdfusb.UsbTimeoutError):
            next(r)


def test_short_reads_close_up_in_the_callers_buffer(paced: wdfusb.Device) -> None:
    """Writes of odd sizes while a large readinto runs: the loopback runs dry between them, so
    reads end short in the middle of the buffer and what follows lands behind them."""
    pieces = [os.urandom(n) for n in (70001, 3, 65536, 131071, 999, 200000)]
    total = sum(map(len, pieces))
    out = bytearray(total)

    def feed() -> None:
        for piece in pieces:
            paced.pipe(OUT).write(piece)
            time.sleep(0.01)

    with paced.pipe(IN).reader(depth=4, chunk=32768, timeout=5) as r:
        t = threading.Thread(target=feed)
        t.start()
        assert r.readinto(out) == total
        t.join()
    assert bytes(out) == b"".join(pieces)


def test_a_time_out_keeps_what_came_and_the_reader_goes_on(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"a" * 5000)
    with loop.pipe(IN).reader(depth=4, chunk=4096, timeout=0.05) as r:
        with pytest.raises(wdfusb.UsbTimeoutError) as e:
            r.read(8192)
        assert e.value.bytes_transferred == 5000 and e.value.data == b"a" * 5000
        assert r.in_flight == 0  # stopped on a prefix
        buf = bytearray(100)
        with pytest.raises(wdfusb.UsbTimeoutError) as e:
            r.readinto(buf)
        assert e.value.bytes_transferred == 0
        loop.pipe(OUT).write(b"b" * 6000)
        assert r.read(6000) == b"b" * 6000
        assert r.bytes_read == 11000


def test_the_time_out_counts_only_while_a_caller_waits(paced: wdfusb.Device) -> None:
    with paced.pipe(IN).reader(depth=2, chunk=512, timeout=0.2) as r:
        paced.pipe(OUT).write(b"x" * 512)
        assert r.read(512) == b"x" * 512  # reads are in flight from here on
        time.sleep(0.5)  # longer than the time-out, with nobody waiting
        paced.pipe(OUT).write(b"y" * 512)
        assert r.read(512) == b"y" * 512


def test_a_stall_ends_the_stream_after_what_came_before_it(loop: wdfusb.Device) -> None:
    vdev = loop.source
    loop.pipe(OUT).write(b"s" * 3000)
    with loop.pipe(IN).reader(depth=4, chunk=1024, timeout=1) as r:
        assert r.read(1024) == b"s" * 1024
        vdev.endpoint(IN).stall()
        got = bytearray(4096)
        with pytest.raises(wdfusb.UsbStallError) as e:
            r.readinto(got)
        assert got[: e.value.bytes_transferred] == b"s" * e.value.bytes_transferred
        delivered = 1024 + e.value.bytes_transferred
        while delivered < 3000:  # what arrived before the stall is still handed over
            try:
                delivered += len(next(r))
            except wdfusb.UsbStallError:
                break
        with pytest.raises(wdfusb.UsbStallError):
            r.read(1)
        assert r.in_flight == 0
        assert r.bytes_read == delivered <= 3000


def test_unplug_under_a_reader_says_device_gone_with_exact_counts(paced: wdfusb.Device) -> None:
    vdev = paced.source
    data = os.urandom(2 * MIB)
    paced.pipe(OUT).write(data)
    out = bytearray(4 * MIB)
    with paced.pipe(IN).reader(depth=8, chunk=65536) as r:
        threading.Timer(0.02, vdev.unplug).start()
        with pytest.raises(wdfusb.DeviceGoneError) as e:
            r.readinto(out)
        n = e.value.bytes_transferred
        assert 0 < n <= len(data)
        assert out[:n] == data[:n]
        assert r.bytes_read == n and r.in_flight == 0


def test_cancel_from_another_thread_ends_a_blocked_read(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"c" * 10000)
    with loop.pipe(IN).reader(depth=4, chunk=4096) as r:
        out = bytearray(MIB)
        threading.Timer(0.05, r.cancel).start()
        with pytest.raises(wdfusb.UsbCancelledError) as e:
            r.readinto(out)
        assert e.value.bytes_transferred == 10000 and out[:10000] == b"c" * 10000
        with pytest.raises(wdfusb.UsbCancelledError):
            r.read(1)
        assert r.cancel() == 10000


def test_ctrl_c_stops_every_read_and_loses_nothing(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"k" * 7000)
    with loop.pipe(IN).reader(depth=4, chunk=4096) as r:
        out = bytearray(MIB)
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt) as e:
            r.readinto(out)
        assert e.value.bytes_transferred == 7000  # type: ignore[attr-defined]
        assert r.in_flight == 0 and out[:7000] == b"k" * 7000
        loop.pipe(OUT).write(b"m" * 100)  # the reader goes on after an interrupt
        assert next(r) == b"m" * 100
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            next(r)
        assert r.in_flight == 0
        loop.pipe(OUT).write(b"n" * 10)
        assert r.read(10) == b"n" * 10


def test_read_to_a_file(loop: wdfusb.Device, tmp_path: object) -> None:
    data = os.urandom(MIB + 123)
    loop.pipe(OUT).write(data)
    path = os.path.join(str(tmp_path), "capture.bin")
    with loop.pipe(IN).reader(depth=4, chunk=65536, timeout=0.5) as r, open(path, "wb") as f:
        assert r.read_to(f, MIB) == MIB
        with pytest.raises(wdfusb.UsbTimeoutError) as e:
            r.read_to(f, 1000)  # only 123 bytes are left
        assert e.value.bytes_transferred == 123
    with open(path, "rb") as f:
        assert f.read() == data


def test_a_reader_refuses_what_it_cannot_do(loop: wdfusb.Device) -> None:
    with pytest.raises(ValueError, match="OUT pipe"):
        loop.pipe(OUT).reader()
    with pytest.raises(ValueError, match="multiple of the max packet"):
        loop.pipe(IN).reader(chunk=1000)
    with pytest.raises(ValueError, match="depth"):
        loop.pipe(IN).reader(depth=0)
    with pytest.raises(ValueError, match="timeout"):
        loop.pipe(IN).reader(timeout=0)
    r = loop.pipe(IN).reader()
    with pytest.raises(TypeError, match="read-only"):
        r.readinto(b"immutable")
    r.close()
    r.close()
    with pytest.raises(ValueError, match="closed stream reader"):
        r.read(1)
    assert "closed" in repr(r)


def test_two_threads_cannot_read_one_reader_at_once(loop: wdfusb.Device) -> None:
    with loop.pipe(IN).reader(depth=2, chunk=512, timeout=2) as r:
        started = threading.Event()
        result: list[BaseException | bytes] = []

        def first() -> None:
            started.set()
            try:
                result.append(r.read(512))
            except BaseException as exc:  # noqa: BLE001 - reported below
                result.append(exc)

        t = threading.Thread(target=first)
        t.start()
        started.wait()
        time.sleep(0.1)
        with pytest.raises(wdfusb.UsbBusyError):
            r.read(1)
        loop.pipe(OUT).write(b"z" * 512)
        t.join()
        assert result == [b"z" * 512]


def test_a_closed_device_ends_its_readers(loop: wdfusb.Device) -> None:
    r = loop.pipe(IN).reader(depth=2, chunk=512)
    threading.Timer(0.05, loop.close).start()
    with pytest.raises((wdfusb.DeviceGoneError, wdfusb.UsbCancelledError)):
        r.read(512)
    assert r.in_flight == 0
    r.close()
    with pytest.raises(wdfusb.DeviceGoneError):
        loop.pipe(IN).reader()


def test_a_reader_dropped_without_close_warns_and_frees_everything(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"d" * 1536)  # (the pipe's own transfer for this thread stays)
    before = _engine.live_objects()
    r = loop.pipe(IN).reader(depth=3, chunk=512)
    assert r.read(10) == b"d" * 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del r
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "StreamReader" in str(w.message) for w in caught)
    assert _engine.live_objects() == before  # the reader's ring and transfers went with it


@settings(max_examples=80)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["write", "readinto", "next", "read_to"]), st.integers(1, 70000)),
        min_size=1,
        max_size=25,
    ),
    depth=st.integers(1, 5),
    chunk_packets=st.integers(1, 40),
)
def test_any_mix_of_writes_and_reads_delivers_the_stream_exactly(
    ops: list[tuple[str, int]], depth: int, chunk_packets: int
) -> None:
    import io

    with wdfusb.VirtualDevice(speed=None, loopback_capacity=16 * MIB) as v, wdfusb.open(v) as d:
        written, got = bytearray(), bytearray()
        with d.pipe(IN).reader(depth=depth, chunk=512 * chunk_packets, timeout=0.01) as r:
            for op, n in ops:
                if op == "write":
                    piece = os.urandom(n)
                    d.pipe(OUT).write(piece)
                    written += piece
                    continue
                try:
                    if op == "readinto":
                        buf = bytearray(n)
                        try:
                            r.readinto(buf)
                            got += buf
                        except wdfusb.UsbTimeoutError as e:
                            got += buf[: e.bytes_transferred]
                    elif op == "next":
                        got += next(r)
                    else:
                        f = io.BytesIO()
                        try:
                            r.read_to(f, n)
                        finally:
                            got += f.getvalue()
                except wdfusb.UsbTimeoutError:
                    pass
                assert r.bytes_read == len(got)
                assert got == written[: len(got)]
            rest = len(written) - len(got)
            if rest:
                got += r.read(rest)
        assert got == written


def test_a_view_stays_valid_memory_after_its_reader_is_gone(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"v" * 3000)
    view = next(loop.pipe(IN).reader(depth=2, chunk=4096))  # the reader is dropped at once
    gc.collect()
    assert bytes(view) == b"v" * 3000  # the view keeps the memory alive
    loop.pipe(OUT).write(b"w" * 100)
    r = loop.pipe(IN).reader(depth=2, chunk=4096, timeout=0.5)
    first = next(r)
    assert first == b"w" * 100
    loop.pipe(OUT).write(b"x" * 10)
    assert next(r) == b"x" * 10
    with pytest.raises(ValueError):  # valid until the next step: it was released
        bytes(first)
    r.close()


def test_a_second_thread_is_refused_between_the_slices_of_a_blocked_next(loop: wdfusb.Device) -> None:
    with loop.pipe(IN).reader(depth=2, chunk=512, timeout=2) as r:
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(bytes(next(r))))
        t.start()
        time.sleep(0.05)
        deadline = time.monotonic() + 0.3  # several 50 ms slices of the blocked call
        while time.monotonic() < deadline:
            for call in (lambda: next(r), lambda: r.read(1)):
                with pytest.raises(wdfusb.UsbBusyError):
                    call()
        loop.pipe(OUT).write(b"q" * 512)
        t.join(5)
        assert got == [b"q" * 512]


def test_ctrl_c_in_read_hands_over_what_came(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"c" * 9000)
    with loop.pipe(IN).reader(depth=2, chunk=4096) as r:
        threading.Timer(0.1, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt) as e:
            r.read(MIB)
        assert e.value.data == b"c" * 9000 and e.value.bytes_transferred == 9000  # type: ignore[attr-defined]
        assert r.bytes_read == 9000


def test_a_reader_from_before_fork_refuses_in_the_child(loop: wdfusb.Device) -> None:
    loop.pipe(OUT).write(b"f" * 2000)
    with loop.pipe(IN).reader(depth=2, chunk=1024) as r:
        assert r.read(100) == b"f" * 100  # reads are in flight and data is buffered
        pid = os.fork()
        if pid == 0:  # the child: every call says the device is the parent's, none hangs
            code = 0
            for call in (lambda: r.read(10), lambda: next(r), r.cancel):
                try:
                    call()
                    code = 1
                except wdfusb.DeviceGoneError as exc:
                    code |= 0 if "fork" in str(exc) else 2
                except BaseException:  # noqa: BLE001
                    code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert r.read(1900) == b"f" * 1900  # the parent goes on
