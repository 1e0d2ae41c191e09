"""The streaming writer on the virtual device: data, order, back-pressure, ZLPs, cancel, faults, Ctrl-C."""

from __future__ import annotations

import gc
import io
import random
import sys
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sigint import interrupt_child

import wdfusb
from wdfusb import _engine
from wdfusb.stream import StreamWriter

EP = 0x06
CHUNK = 4096


def rand(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sink(speed: str | None = None) -> tuple[wdfusb.VirtualDevice, wdfusb.Device, wdfusb.Pipe]:
    v = wdfusb.VirtualDevice(speed=speed, loopback_capacity=0)
    dev = wdfusb.open(v)
    return v, dev, dev.pipe(EP)


def check_received(v: wdfusb.VirtualDevice, data: bytes) -> None:
    ep = v.endpoint(EP)
    assert ep.received_bytes == len(data)
    assert ep.crc32 == zlib.crc32(data)


# ---- data: every way in, CRC over everything ------------------------------------------


def pieces_bytes() -> list[Any]:
    sizes = [0, 1, 511, 512, 513, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 17, 5 * CHUNK]
    return [rand(n, i) for i, n in enumerate(sizes)]


def pieces_numpy() -> list[Any]:
    big = np.frombuffer(rand(10 * CHUNK + 123, 1), dtype=np.uint8).copy()
    words = np.arange(3000, dtype="<u4")  # a non-byte dtype: sent as its raw bytes
    return [np.frombuffer(rand(100, 2), np.uint8).copy(), big, np.array([7, 8, 9], np.uint8), words, big[: 2 * CHUNK]]


def pieces_mixed() -> list[Any]:
    return [
        bytearray(rand(300, 3)),
        memoryview(rand(7 * CHUNK, 4)),
        np.frombuffer(rand(CHUNK * 2, 5), np.uint8).copy(),
        b"x",
        memoryview(bytearray(rand(CHUNK + 5, 6))),
    ]


@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("make", [pieces_bytes, pieces_numpy, pieces_mixed], ids=["bytes", "numpy", "mixed"])
def test_writes_arrive_in_order_with_crc(counts: None, make: Any, depth: int) -> None:
    pieces = make()
    data = b"".join(bytes(memoryview(p).cast("B")) for p in pieces)
    v, dev, pipe = sink()
    with v, dev:
        with pipe.writer(depth=depth, chunk=CHUNK) as w:
            for p in pieces:
                assert w.write(p) == memoryview(p).nbytes
        assert w.bytes_written == len(data)
        check_received(v, data)
        # the stream is cut into whole chunks however it was written; only the close is short
        assert v.endpoint(EP).transfers == -(-len(data) // CHUNK)


def test_generator_through_writelines(counts: None) -> None:
    data = rand(300_001, 7)

    def produce() -> Iterator[bytes]:
        pos = 0
        while pos < len(data):
            n = random.Random(pos).randint(1, 20_000)
            yield data[pos : pos + n]
            pos += n

    v, dev, pipe = sink()
    with v, dev, pipe.writer(depth=4, chunk=CHUNK) as w:
        assert w.writelines(produce()) == len(data)
        w.flush()
        check_received(v, data)


def test_generator_refilling_one_array_with_copy(counts: None) -> None:
    data = rand(20 * CHUNK, 8)
    buf = np.empty(2 * CHUNK, np.uint8)

    def refill() -> Iterator[np.ndarray]:
        for i in range(0, len(data), len(buf)):
            buf[:] = np.frombuffer(data[i : i + len(buf)], np.uint8)
            yield buf

    v, dev, pipe = sink()
    with v, dev, pipe.writer(depth=4, chunk=CHUNK) as w:
        w.writelines(refill(), copy=True)
        w.flush()
        check_received(v, data)


@pytest.mark.parametrize("size", [0, 1, CHUNK, 10 * CHUNK + 99])
@pytest.mark.parametrize("kind", ["file", "rawfile", "bytesio", "readonly"])
def test_write_from_files(counts: None, tmp_path: Path, kind: str, size: int) -> None:
    data = rand(size, 9)
    path = tmp_path / "data.bin"
    path.write_bytes(data)

    class ReadOnly:  # a file-like object without readinto
        def __init__(self) -> None:
            self.f = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self.f.read(min(n, 1000))

    v, dev, pipe = sink()
    with v, dev, pipe.writer(depth=3, chunk=CHUNK) as w:
        w.write(b"head")
        if kind == "file":
            with open(path, "rb") as f:
                assert w.write_from(f) == size
        elif kind == "rawfile":
            with open(path, "rb", buffering=0) as raw:
                assert w.write_from(raw) == size
        elif kind == "bytesio":
            assert w.write_from(io.BytesIO(data)) == size
        else:
            assert w.write_from(ReadOnly()) == size
        w.write(b"tail")
        w.flush()
        check_received(v, b"head" + data + b"tail")


def test_write_from_stops_at_size(counts: None) -> None:
    data = rand(5 * CHUNK, 10)
    v, dev, pipe = sink()
    with v, dev, pipe.writer(depth=2, chunk=CHUNK) as w:
        src = io.BytesIO(data)
        assert w.write_from(src, size=2 * CHUNK + 3) == 2 * CHUNK + 3
        assert src.tell() == 2 * CHUNK + 3
        w.flush()
        check_received(v, data[: 2 * CHUNK + 3])


def test_ten_thousand_small_writes_in_order(counts: None) -> None:
    rng = random.Random(11)
    parts = [rng.randbytes(rng.randint(1, 200)) for _ in range(10_000)]
    data = b"".join(parts)
    v, dev, pipe = sink()
    with v, dev:
        w = pipe.writer(depth=8, chunk=CHUNK)
        for p in parts:
            w.write(p)
        w.close()
        assert w.bytes_written == len(data)
        check_received(v, data)


def test_ten_thousand_queued_requests_complete_in_order(counts: None) -> None:
    parts = [i.to_bytes(4, "little") * 128 for i in range(10_000)]  # 512 B each: one request each
    v, dev, pipe = sink()
    with v, dev:
        with pipe.writer(depth=8, chunk=512) as w:
            for p in parts:
                w.write(p)
            assert w.peak_in_flight == 8
        check_received(v, b"".join(parts))
        assert v.endpoint(EP).transfers == 10_000


def test_large_arrays_go_out_without_a_copy(counts: None) -> None:
    v, dev, pipe = sink("high")
    arr = np.frombuffer(rand(4 * CHUNK + 10, 12), np.uint8).copy()
    base = sys.getrefcount(arr)
    with v, dev, pipe.writer(depth=8, chunk=CHUNK) as w:
        v.endpoint(EP).nak(float("inf"))
        w.write(arr)
        assert w.in_flight == 4  # the whole chunks, straight from the caller's memory:
        carried = [keep for _, keep in w._ring._carried]  # what C may still read
        assert len(carried) == 1 and carried[0][0].obj is arr
        assert w.buffered == 10  # the tail waits in the ring (copied)
        del carried
        assert sys.getrefcount(arr) > base
        v.endpoint(EP).nak(0)
        w.flush()
        assert sys.getrefcount(arr) == base  # nothing holds the array once flush returned
        check_received(v, arr.tobytes())


def test_writable_buffers_are_copied_and_may_be_reused(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev, pipe.writer(depth=8, chunk=CHUNK) as w:
        v.endpoint(EP).nak(float("inf"))
        buf = bytearray(b"A" * 3 * CHUNK)
        w.write(buf)
        buf[:] = b"B" * len(buf)  # reused at once, while the requests are still queued
        w.write(buf)
        v.endpoint(EP).nak(0)
        w.flush()
        check_received(v, b"A" * 3 * CHUNK + b"B" * 3 * CHUNK)


# ---- back-pressure ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_back_pressure_never_more_than_depth_in_flight(counts: None, depth: int) -> None:
    v, dev, pipe = sink("high")
    seen: list[int] = []
    data = rand(40 * CHUNK, 13)
    with v, dev, pipe.writer(depth=depth, chunk=CHUNK) as w:

        def produce() -> Iterator[bytes]:
            for i in range(0, len(data), 1000):
                seen.append(dev._core.native.live_transfers())
                yield data[i : i + 1000]

        w.writelines(produce())
        w.flush()
        assert max(seen) == depth  # reached, never exceeded
        assert w.peak_in_flight == depth
        assert dev._core.native.live_transfers() == 0
        check_received(v, data)


def test_write_blocks_while_the_queue_is_full(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev, pipe.writer(depth=2, chunk=CHUNK) as w:
        v.endpoint(EP).nak(0.3)
        t0 = time.monotonic()
        w.write(rand(2 * CHUNK))  # fills the queue: returns at once
        assert time.monotonic() - t0 < 0.2
        assert w.in_flight == 2
        w.write(rand(CHUNK))  # needs a slot: waits for the NAKs to end
        assert time.monotonic() - t0 >= 0.25
        assert w.in_flight <= 2


# ---- zero-length packets ------------------------------------------------------------------


Z = _engine.ZLP


@pytest.mark.parametrize(
    "zlp,total,expect",
    [
        ("never", 2 * CHUNK, [(CHUNK, 0), (CHUNK, 0)]),
        ("never", CHUNK + 512, [(CHUNK, 0), (512, 0)]),
        ("end", 2 * CHUNK, [(CHUNK, 0), (CHUNK, 0), (0, 0)]),
        ("end", CHUNK + 512, [(CHUNK, 0), (512, Z)]),
        ("end", CHUNK + 100, [(CHUNK, 0), (100, 0)]),
        ("always", 2 * CHUNK, [(CHUNK, Z), (CHUNK, Z)]),
        ("always", CHUNK + 1024, [(CHUNK, Z), (1024, Z)]),
        ("always", CHUNK + 100, [(CHUNK, Z), (100, 0)]),
    ],
)
def test_short_packet_terminate_policy(counts: None, zlp: Any, total: int, expect: list[tuple[int, int]]) -> None:
    data = rand(total, 14)
    v, dev, pipe = sink()
    with v, dev:
        w = pipe.writer(depth=4, chunk=CHUNK, zlp=zlp)
        w.write(data)
        w.close()
        check_received(v, data)  # the lengths add up, in order
        ep = v.endpoint(EP)  # the device saw each transfer and each zero-length packet
        assert ep.transfers == len(expect)
        assert ep.zero_length_packets == sum(1 for n, flags in expect if n == 0 or flags == Z)


def test_end_policy_once_per_flush(counts: None) -> None:
    v, dev, pipe = sink()
    with v, dev, pipe.writer(depth=4, chunk=CHUNK, zlp="end") as w:
        ep = v.endpoint(EP)
        w.write(rand(CHUNK))
        w.flush()
        assert (ep.transfers, ep.zero_length_packets) == (2, 1)  # (CHUNK, no flag), then a ZLP
        w.flush()  # nothing new: no second ZLP
        assert (ep.transfers, ep.zero_length_packets) == (2, 1)
        w.write(rand(100))
        w.flush()
        assert (ep.transfers, ep.zero_length_packets) == (3, 1)


# ---- cancel ------------------------------------------------------------------------------------


def start_writer(w: StreamWriter, data: bytes) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            w.write(data)
            w.flush()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


def test_cancel_a_full_queue_from_another_thread(counts: None) -> None:
    v, dev, pipe = sink("full")  # 1.216 MB/s: data flows for a while, then the device NAKs for ever
    data = rand(64 * CHUNK, 15)
    with v, dev:
        w = pipe.writer(depth=8, chunk=CHUNK)
        t, errors = start_writer(w, data)
        time.sleep(0.1)
        v.endpoint(EP).nak(float("inf"))
        deadline = time.monotonic() + 5  # (a transfer back before the NAK is retired and replaced first)
        while (w.in_flight, dev._core.native.live_transfers()) != (8, 8) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.in_flight == 8 and dev._core.native.live_transfers() == 8  # full, writer blocked
        n = w.cancel()
        t.join(5)
        assert not t.is_alive()
        assert n == w.bytes_written == v.endpoint(EP).received_bytes
        assert 0 < n < len(data)
        assert v.endpoint(EP).crc32 == zlib.crc32(data[:n])
        assert dev._core.native.live_transfers() == 0
        assert isinstance(errors[0], wdfusb.UsbCancelledError)
        assert errors[0].bytes_transferred == n
        with pytest.raises(wdfusb.UsbCancelledError):
            w.write(b"more")
        w.close()  # the caller's own cancel is not raised again


def test_cancel_while_data_moves_counts_the_partial_request(counts: None) -> None:
    v, dev, pipe = sink("full")
    data = rand(64 * CHUNK, 16)
    with v, dev:
        w = pipe.writer(depth=4, chunk=4 * CHUNK)  # 16 KiB requests take 13.5 ms each
        t, errors = start_writer(w, data)
        time.sleep(0.123)
        n = w.cancel()
        t.join(5)
        assert n == v.endpoint(EP).received_bytes and 0 < n < len(data)
        assert v.endpoint(EP).crc32 == zlib.crc32(data[:n])
        assert errors and errors[0].bytes_transferred == n  # type: ignore[attr-defined]
        w.close()


@pytest.mark.parametrize("first", ["cancel", "writer"])
def test_cancel_as_the_c_loop_starts_keeps_a_prefix(counts: None, first: str) -> None:
    # the kernel rig once saw a cancel that raced the start of the C loop: the loop kept
    # submitting behind a transfer the cancel had cut short (count exact, bytes not a prefix).
    # C now records the failure under the ring's lock before it cancels anything, and every
    # submit checks it under the same lock: no order of the two can break the prefix.
    for round_ in range(20):
        v, dev, pipe = sink("high")
        data = rand(4 << 20, 17)  # 80 ms at high speed
        with v, dev:
            w = pipe.writer(depth=4, chunk=8 * CHUNK)
            out: list[int] = []
            c = threading.Thread(target=lambda w=w, out=out: out.append(w.cancel()))
            if first == "cancel":
                c.start()
                time.sleep(0.0001 * round_)
                t, errors = start_writer(w, data)
            else:
                t, errors = start_writer(w, data)
                time.sleep(0.001 * round_)
                c.start()
            c.join(5)
            t.join(5)
            assert not c.is_alive() and not t.is_alive()
            n = out[0]
            assert n == w.bytes_written == v.endpoint(EP).received_bytes
            assert v.endpoint(EP).crc32 == zlib.crc32(data[:n])
            if errors:  # the cancel landed while the writer ran (else all was written before it)
                assert isinstance(errors[0], wdfusb.UsbCancelledError) and errors[0].bytes_transferred == n
            else:
                assert n == len(data)
            w.close()


def test_cancel_from_the_writing_thread_drops_buffered_data(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev:
        w = pipe.writer(depth=4, chunk=CHUNK)
        v.endpoint(EP).nak(float("inf"))
        w.write(rand(2 * CHUNK + 50))
        assert (w.in_flight, w.buffered) == (2, 50)
        assert w.cancel() == 0
        assert w.in_flight == 0 and dev._core.native.live_transfers() == 0
        w.close()
        assert v.endpoint(EP).received_bytes == 0


# ---- faults ---------------------------------------------------------------------------------


def stream_until_error(w: StreamWriter, data: bytes, seconds: float = 10) -> BaseException:
    deadline = time.monotonic() + seconds
    with pytest.raises(wdfusb.UsbError) as err:
        while time.monotonic() < deadline:
            w.write(data)
        w.flush()
    return err.value


def test_unplug_mid_stream(counts: None) -> None:
    v, dev, pipe = sink("high")
    data = rand(1 << 20, 17)
    with v, dev:
        w = pipe.writer(depth=8, chunk=64 << 10)
        threading.Timer(0.1, v.unplug).start()
        err = stream_until_error(w, data)
        assert isinstance(err, wdfusb.DeviceGoneError)
        received = v.endpoint(EP).received_bytes
        assert err.bytes_transferred == w.bytes_written == received > 0
        assert v.endpoint(EP).crc32 == zlib.crc32((data * (received // len(data) + 1))[:received])
        assert dev._core.native.live_transfers() == 0
        with pytest.raises(wdfusb.DeviceGoneError):
            w.write(b"x")
        w.close()  # already raised: not again


def test_stall_mid_stream_then_reset(counts: None) -> None:
    v, dev, pipe = sink("high")
    data = rand(1 << 20, 18)
    with v, dev:
        w = pipe.writer(depth=8, chunk=64 << 10)
        threading.Timer(0.1, v.endpoint(EP).stall).start()
        err = stream_until_error(w, data)
        assert isinstance(err, wdfusb.UsbStallError)
        received = v.endpoint(EP).received_bytes
        assert err.bytes_transferred == received > 0
        assert v.endpoint(EP).crc32 == zlib.crc32((data * (received // len(data) + 1))[:received])
        w.close()
        pipe.reset()
        with pipe.writer(depth=2, chunk=CHUNK) as w2:
            w2.write(b"again")
        assert v.endpoint(EP).received_bytes == received + 5


def test_whole_chunks_of_bytes_see_a_failed_or_closed_writer(counts: None) -> None:
    """A bytes write of whole chunks goes to C in one call (no view, no separate look at the
    ring): the ring's error still comes out of that call with the bytes that moved, a ZLP the
    policy owes is still sent, and a closed writer still refuses."""
    v, dev, pipe = sink("high")
    with v, dev:
        w = pipe.writer(depth=4, chunk=CHUNK, zlp="end")
        w.write(rand(2 * CHUNK, 30))
        w.flush()
        ep = v.endpoint(EP)
        assert (ep.transfers, ep.zero_length_packets, w.bytes_written) == (3, 1, 2 * CHUNK)
        ep.stall()
        with pytest.raises(wdfusb.UsbStallError) as first:
            w.write(rand(CHUNK, 31))
            w.flush()
        assert first.value.bytes_transferred == ep.received_bytes == 2 * CHUNK
        with pytest.raises(wdfusb.UsbStallError) as again:  # the failed ring refuses the next call too
            w.write(rand(4 * CHUNK, 32))
        assert again.value.bytes_transferred == 2 * CHUNK and ep.received_bytes == 2 * CHUNK
        w.close()
        with pytest.raises(ValueError, match="closed"):
            w.write(bytes(CHUNK))
        assert dev._core.native.live_transfers() == 0


def test_error_raised_from_close_when_nobody_saw_it(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev:
        w = pipe.writer(depth=4, chunk=CHUNK)
        v.endpoint(EP).nak(float("inf"))
        w.write(rand(2 * CHUNK))
        v.endpoint(EP).stall()
        with pytest.raises(wdfusb.UsbStallError) as err:
            w.close()
        assert err.value.bytes_transferred == 0
        assert w.closed and dev._core.native.live_transfers() == 0


def test_timeout_per_request(counts: None) -> None:
    v, dev, pipe = sink("high")
    first = rand(1 << 20, 19)
    with v, dev:
        w = pipe.writer(depth=4, chunk=64 << 10, timeout=0.2)
        w.write(first)
        w.flush()  # 1 MiB in 20 ms: well within the time-out
        v.endpoint(EP).nak(float("inf"))
        t0 = time.monotonic()
        w.write(rand(3 * (64 << 10)))
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            w.flush()
        assert 0.15 < time.monotonic() - t0 < 3
        assert err.value.bytes_transferred == len(first) == v.endpoint(EP).received_bytes
        assert err.value.status == 0xC00000B5
        assert dev._core.native.live_transfers() == 0
        w.close()


@pytest.mark.parametrize("depth", [1, 4])
def test_timeout_with_a_partial_request_keeps_a_prefix(counts: None, depth: int) -> None:
    v, dev, pipe = sink("full")  # a 64 KiB request needs 54 ms at full speed
    data = rand(4 * (64 << 10), 20)
    with v, dev:
        w = pipe.writer(depth=depth, chunk=64 << 10, timeout=0.03)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            w.write(data)
            w.flush()
        n = err.value.bytes_transferred
        assert 0 < n < 64 << 10 and n == v.endpoint(EP).received_bytes
        assert v.endpoint(EP).crc32 == zlib.crc32(data[:n])  # nothing behind the timed-out request moved
        w.close()


def test_timeout_counts_from_the_front_of_the_queue(counts: None) -> None:
    v, dev, pipe = sink("full")  # 8 x 54 ms queued: only the time at the front counts
    data = rand(16 * (64 << 10), 21)
    with v, dev, pipe.writer(depth=8, chunk=64 << 10, timeout=0.2) as w:
        w.write(data)
        w.flush()
        check_received(v, data)


# ---- lifetimes --------------------------------------------------------------------------------------


def test_nothing_alive_after_close(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev:
        before = (_engine.Transfer.live, _engine.live_objects())
        w = pipe.writer(depth=8, chunk=CHUNK)
        assert _engine.live_objects() == before[1] + 9  # the ring and its 8 transfers, in C
        assert w._ring is not None
        ring = weakref.ref(w._ring)
        w.write(rand(20 * CHUNK + 1))
        w.close()
        w.close()
        gc.collect()
        assert (_engine.Transfer.live, _engine.live_objects()) == before
        assert ring() is None  # the ring buffers are gone though the writer object is not
        with pytest.raises(ValueError, match="closed"):
            w.write(b"x")


def test_exception_in_with_block_cancels(counts: None) -> None:
    v, dev, pipe = sink("high")
    with v, dev:
        before = _engine.Transfer.live
        v.endpoint(EP).nak(float("inf"))
        with pytest.raises(RuntimeError), pipe.writer(depth=4, chunk=CHUNK) as w:
            w.write(rand(3 * CHUNK))
            raise RuntimeError("boom")
        assert w.closed and dev._core.native.live_transfers() == 0
        assert _engine.Transfer.live == before


def test_argument_checks(dev: wdfusb.Device) -> None:
    out = dev.pipe(EP)
    with pytest.raises(ValueError, match="multiple"):
        out.writer(chunk=1000)
    with pytest.raises(ValueError, match="depth"):
        out.writer(depth=0)
    with pytest.raises(ValueError, match="zlp"):
        out.writer(zlp="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        out.writer(timeout=0)
    with pytest.raises(ValueError, match="IN pipe"):
        dev.pipe(0x88).writer()
    with out.writer(chunk=512) as w:
        with pytest.raises(TypeError):
            w.write("text")
        with pytest.raises(ValueError, match="contiguous"):
            w.write(np.zeros((4, 4), np.uint8)[:, 1])
        assert "StreamWriter" in repr(w)


# ---- Ctrl-C ------------------------------------------------------------------------------------------

CTRL_C_CHILD = """
import sys, time, wdfusb
from wdfusb import _engine
v = wdfusb.VirtualDevice(speed="high")
dev = wdfusb.open(v)
v.endpoint(0x06).nak(float("inf"))
before = _engine.Transfer.live
w = dev.pipe(0x06).writer(depth=4, chunk=4096)
try:
    if sys.argv[1] == "write":
        w.write(bytes(4096 * 4))
        print("blocked", flush=True)
        w.write(bytes(4096))
    else:
        w.write(bytes(100))
        print("blocked", flush=True)
        w.flush()
except KeyboardInterrupt:
    t = time.monotonic()
    live = v._native.live_transfers()
    w.close()
    print("interrupted", t, live, w.bytes_written, _engine.Transfer.live - before, flush=True)
"""


@pytest.mark.parametrize("where", ["write", "flush"])
def test_ctrl_c_while_blocked_cancels_and_reaps(where: str) -> None:
    latency, fields = interrupt_child(CTRL_C_CHILD, where)
    assert latency < 0.5
    assert fields == ["0", "0", "0"]  # nothing in flight, nothing written, every transfer freed


def test_nothing_is_submitted_behind_a_transfer_an_abort_ended(counts: None) -> None:
    """A pipe abort (or a device-level cancel) ends the ring's transfer in C before the ring has
    looked at it: the next write must see that failure and not send its chunk behind the gap,
    or the device would hold bytes that are not a prefix of the stream."""
    v, dev, pipe = sink("high")
    first, second = rand(512, 41), rand(512, 42)
    with v, dev:
        w = pipe.writer(depth=2, chunk=512)
        v.endpoint(EP).nak(float("inf"))
        w.write(first)  # in flight, held by the NAK
        pipe.abort()  # ends it with nothing moved; the ring has not retired it yet
        v.endpoint(EP).nak(0)
        with pytest.raises(wdfusb.UsbCancelledError) as err:
            w.write(second)
            time.sleep(0.01)  # bus time for a chunk submitted behind the gap to move
            w.flush()
        received = v.endpoint(EP).received_bytes
        assert err.value.bytes_transferred == received
        assert v.endpoint(EP).crc32 == zlib.crc32((first + second)[:received])  # a prefix, whatever moved
        w.close()
