"""The streaming writer and reader awaited from asyncio: the same C ring, woken through the
completion queue (``wu_ring_notify``); cancelled tasks with exact counts; time-outs with no
completion to wake anyone; devices and loops that go away under an awaiting task."""

from __future__ import annotations

import asyncio
import gc
import io
import random
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

import wdfusb
from wdfusb import _dispatch, patterns

OUT, IN = 0x06, 0x88
INF = float("inf")


def run(main: Callable[[], Any], seconds: float = 60) -> Any:
    """Run ``main()`` on a fresh loop; a hang fails the test (a bound, not a timing assertion)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), seconds)

    return asyncio.run(bounded())


def pieces(rng: random.Random, total: int) -> list[Any]:
    """``total`` bytes in pieces of every kind a writer takes (bytes, bytearray, numpy, views)."""
    out: list[Any] = []
    while total > 0:
        n = min(total, rng.choice([1, 63, 512, 4096, 4097, 65536, 3 * 65536 + 5, rng.randint(1, 100_000)]))
        data = rng.randbytes(n)
        kind = rng.randrange(4)
        out.append(
            data
            if kind == 0
            else bytearray(data)
            if kind == 1
            else np.frombuffer(data, np.uint8).copy()
            if kind == 2
            else memoryview(data)
        )
        total -= n
    return out


def raw(piece: Any) -> bytes:
    return bytes(memoryview(piece).cast("B"))


# ---- the writer -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_awaited_writes_arrive_exactly_in_order(counts: None, depth: int) -> None:
    rng = random.Random(depth)
    parts = pieces(rng, 2_000_003)
    stream = b"".join(map(raw, parts))
    listeners = len(_dispatch._listeners)

    async def gen() -> AsyncIterator[bytes]:  # an asynchronous iterable
        for _ in range(5):
            yield b"g" * 1000

    async def main() -> None:
        with wdfusb.VirtualDevice("high", loopback_capacity=0) as v, wdfusb.open(v) as dev:
            async with dev.pipe(OUT).writer(depth=depth, chunk=16384, zlp="end") as w:
                for p in parts[: len(parts) // 2]:
                    assert await w.write_async(p) == memoryview(p).nbytes
                await w.flush_async()
                assert w.in_flight == 0 and w.bytes_written == v.endpoint(OUT).received_bytes
                w.write(parts[len(parts) // 2])  # the blocking calls go on on the same ring
                assert await w.writelines_async(parts[len(parts) // 2 + 1 :]) == sum(
                    memoryview(p).nbytes for p in parts[len(parts) // 2 + 1 :]
                )
                assert await w.writelines_async(gen()) == 5000
            assert w.closed and w.bytes_written == len(stream) + 5000
            ep = v.endpoint(OUT)
            assert ep.received_bytes == len(stream) + 5000
            assert ep.crc32 == zlib.crc32(stream + b"g" * 5000)
            assert dev._core.native.live_transfers() == 0

    run(main)
    assert len(_dispatch._listeners) == listeners  # the ring's listener went with the writer


def test_a_second_task_on_one_writer_or_reader_is_refused(counts: None) -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high") as v, wdfusb.open(v) as dev:
            v.endpoint(OUT).nak(INF)
            async with dev.pipe(OUT).writer(depth=2, chunk=512) as w, dev.pipe(IN).reader(depth=2, chunk=512) as r:
                writing = asyncio.create_task(w.write_async(bytes(4096)))  # waits for back-pressure
                reading = asyncio.create_task(r.read_async(10))  # the loopback is empty
                await asyncio.sleep(0)
                with pytest.raises(wdfusb.UsbBusyError):
                    await w.write_async(b"x")
                with pytest.raises(wdfusb.UsbBusyError):
                    await r.read_async(1)
                with pytest.raises(wdfusb.UsbBusyError):
                    await r.__anext__()
                v.endpoint(OUT).nak(0)
                assert await writing == 4096
                await w.flush_async()
                assert await reading == bytes(10)
                assert v.endpoint(OUT).received_bytes == 4096

    run(main)


# ---- the reader -----------------------------------------------------------------------------


def test_awaited_reads_deliver_the_stream_exactly(counts: None) -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high") as v, wdfusb.open(v) as dev:
            v.endpoint(IN).source("counter")
            async with dev.pipe(IN).reader(depth=4, chunk=16384, timeout=5) as r:
                got = bytearray(await r.read_async(100_000))
                samples = np.zeros(300_001, np.uint8)
                assert await r.readinto_async(samples) == samples.nbytes
                got += samples.tobytes()
                n = 0
                async for data in r:  # each read as it completed
                    assert data.readonly and 0 < len(data) <= 16384
                    got += data
                    n += 1
                    if n == 20:
                        break
                f = io.BytesIO()
                assert await r.read_to_async(f, 123_457) == 123_457
                got += f.getvalue()
                got += r.read(1000)  # the blocking calls go on on the same ring
                got += await r.read_async(1000)
                assert r.bytes_read == len(got)
                assert patterns.first_mismatch(bytes(got), "counter", 0) is None
                assert r.peak_in_flight >= 2
            assert r.closed and r.in_flight == 0

    run(main)


def test_awaited_reads_of_the_loopback_close_up_short_reads(counts: None) -> None:
    rng = random.Random(7)
    writes = [rng.randbytes(n) for n in (70001, 3, 65536, 131071, 999, 200000)]
    stream = b"".join(writes)

    async def main() -> None:
        with wdfusb.VirtualDevice("high", loopback_capacity=1 << 22) as v, wdfusb.open(v) as dev:
            async with dev.pipe(IN).reader(depth=4, chunk=32768, timeout=10) as r:
                out = bytearray(len(stream))
                reading = asyncio.create_task(r.readinto_async(out))
                for piece in writes:  # the loopback runs dry between them: reads end short
                    await dev.pipe(OUT).write_async(piece)
                    await asyncio.sleep(0.005)
                assert await reading == len(stream)
                assert out == stream

    run(main)


# ---- many devices, one loop ------------------------------------------------------------------


def test_four_devices_stream_both_ways_on_one_loop_without_a_thread_per_call(counts: None) -> None:
    rng = random.Random(4)
    writes = [pieces(rng, 1_500_000) for _ in range(4)]
    wanted = [rng.randrange(1, 1_500_000) for _ in range(4)]
    _dispatch._ensure_thread()
    threads = threading.active_count()
    seen_threads: list[int] = []

    async def write(dev: wdfusb.Device, parts: list[Any]) -> int:
        async with dev.pipe(OUT).writer(depth=4, chunk=65536) as w:
            for p in parts:
                await w.write_async(p)
                seen_threads.append(threading.active_count())
        return w.bytes_written

    async def read(dev: wdfusb.Device, n: int) -> bytes:
        got = bytearray()
        async with dev.pipe(IN).reader(depth=4, chunk=65536, timeout=10) as r:
            async for data in r:
                got += data[: n - len(got)]
                seen_threads.append(threading.active_count())
                if len(got) == n:
                    break
        return bytes(got)

    async def main() -> None:
        vdevs = [wdfusb.VirtualDevice("high", serial=f"aio-stream-{i}", loopback_capacity=0) for i in range(4)]
        devs = [wdfusb.open(v) for v in vdevs]
        try:
            for v in vdevs:
                v.endpoint(IN).source("counter")
            results = await asyncio.gather(
                *(write(d, w) for d, w in zip(devs, writes, strict=True)),
                *(read(d, n) for d, n in zip(devs, wanted, strict=True)),
            )
            for i, v in enumerate(vdevs):
                stream = b"".join(map(raw, writes[i]))
                assert results[i] == len(stream) == v.endpoint(OUT).received_bytes
                assert v.endpoint(OUT).crc32 == zlib.crc32(stream)
                got = results[4 + i]
                assert len(got) == wanted[i] and patterns.first_mismatch(got, "counter", 0) is None
        finally:
            for d in devs:
                d.close()
            for v in vdevs:
                v.close()

    run(main)
    assert seen_threads and set(seen_threads) == {threads}  # the completion thread serves every call


# ---- cancelled tasks --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_cancelled_writer_tasks_leave_nothing_in_flight_and_an_exact_count(counts: None, seed: int) -> None:
    """A task writes (in pieces of every kind, flushing now and then) until it is cancelled, at a
    random moment after the first bytes reached the device: its CancelledError, the writer and the
    device agree on how many bytes went, and they are a prefix of the stream (CRC)."""
    rng, plan = random.Random(seed), random.Random(1000 + seed)  # the test's draws, the task's
    depth, chunk = rng.randint(1, 6), 64 * rng.randint(1, 300)
    sent: list[bytes] = []

    async def writing(w: wdfusb.StreamWriter) -> None:
        while True:  # until cancelled
            for p in pieces(plan, 100_000):
                sent.append(raw(p))
                await w.write_async(p)
            if plan.random() < 0.3:
                await w.flush_async()

    async def main() -> None:
        with wdfusb.VirtualDevice("full", loopback_capacity=0) as v, wdfusb.open(v) as dev:
            w = dev.pipe(OUT).writer(depth=depth, chunk=chunk, timeout=30)
            task = asyncio.create_task(writing(w))
            while v.endpoint(OUT).received_bytes == 0:  # (the device's event thread moves its bus)
                await asyncio.sleep(0.001)
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002, 0.01, 0.03]))
            task.cancel()
            if rng.random() < 0.3:
                await asyncio.sleep(0)
                task.cancel()  # a second cancel does not skip the wait
            with pytest.raises(asyncio.CancelledError) as cancelled:
                await task
            n = cancelled.value.bytes_transferred  # type: ignore[attr-defined]
            assert dev._core.native.live_transfers() == 0 and w.in_flight == 0
            ep = v.endpoint(OUT)
            assert 0 < n == w.bytes_written == ep.received_bytes
            assert ep.crc32 == zlib.crc32(b"".join(sent)[:n])
            with pytest.raises(wdfusb.UsbCancelledError) as later:  # the stream is finished, as after Ctrl-C
                await w.write_async(b"more")
            assert later.value.bytes_transferred == n
            await w.aclose()  # raises nothing more
            assert v.endpoint(OUT).received_bytes == n

    run(main)


@pytest.mark.parametrize("seed", range(6))
def test_cancelled_reader_tasks_keep_every_byte_and_the_reader_goes_on(counts: None, seed: int) -> None:
    """Tasks read with every awaited call until cancelled at random moments: what each hands
    over (its CancelledError's data or bytes_transferred) plus what the reader keeps is exactly
    what the device sent, in order; nothing is in flight when the cancelled await returns."""
    rng, plan = random.Random(100 + seed), random.Random(200 + seed)  # the test's draws, the tasks'
    got = bytearray()

    async def reading(r: wdfusb.StreamReader) -> None:
        while True:
            op, n = plan.choice(["read", "readinto", "next", "read_to"]), plan.randint(1, 300_000)
            if op == "read":
                try:
                    got.extend(await r.read_async(n))
                except asyncio.CancelledError as e:
                    assert len(e.data) == e.bytes_transferred  # type: ignore[attr-defined]
                    got.extend(e.data)  # type: ignore[attr-defined]
                    raise
            elif op == "readinto":
                buf = np.zeros(n, np.uint8)
                try:
                    await r.readinto_async(buf)
                    got.extend(buf.tobytes())
                except asyncio.CancelledError as e:
                    got.extend(buf[: e.bytes_transferred].tobytes())  # type: ignore[attr-defined]
                    raise
            elif op == "next":
                got.extend(await r.__anext__())  # cancelled: what arrived stays for the next call
            else:
                f = io.BytesIO()
                try:
                    await r.read_to_async(f, n)
                finally:
                    got.extend(f.getvalue())

    async def main() -> None:
        speed = rng.choice(["full", "high"])
        with wdfusb.VirtualDevice(speed) as v, wdfusb.open(v) as dev:
            v.endpoint(IN).source("counter")
            chunk = 512 * rng.randint(1, 64)
            async with dev.pipe(IN).reader(depth=rng.randint(1, 6), chunk=chunk, timeout=30) as r:
                for _ in range(8):
                    task = asyncio.create_task(reading(r))
                    for _ in range(rng.randint(0, 3)):
                        await asyncio.sleep(0)
                    await asyncio.sleep(rng.choice([0, 0.0005, 0.002, 0.01]))
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    assert r.in_flight == 0 and dev._core.native.live_transfers() == 0
                    assert r.bytes_read == len(got)
                    assert r.bytes_read + r.buffered == v.endpoint(IN).sent_bytes  # nothing lost
                    assert patterns.first_mismatch(bytes(got), "counter", 0) is None
                got.extend(await r.read_async(r.buffered + 4096))  # the reader goes on
                assert patterns.first_mismatch(bytes(got), "counter", 0) is None and r.bytes_read == len(got)

    run(main)


def test_a_reader_interrupted_over_and_over_never_finds_a_cancel_stuck(counts: None) -> None:
    """Its reads come back on the device's event thread while an interrupt cancels them: one that
    came back just before its cancel must not keep that cancel for its next submit (the reader
    would end with UsbCancelledError instead of going on). Found by this test, 1 in ~300."""

    async def main() -> None:
        with wdfusb.VirtualDevice("high") as v, wdfusb.open(v) as dev:
            v.endpoint(IN).source("counter")
            async with dev.pipe(IN).reader(depth=6, chunk=512, timeout=30) as r:
                for _ in range(3000):
                    task = asyncio.create_task(r.read_async(1 << 20))
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                assert r.in_flight == 0 and r.bytes_read + r.buffered == v.endpoint(IN).sent_bytes
                offset = r.bytes_read
                more = await r.read_async(r.buffered + 512)  # and it goes on where it was
                assert patterns.first_mismatch(more, "counter", offset) is None

    run(main)


# ---- time-outs: counted in C, with no completion to wake the task -----------------------------


def test_writer_time_outs_fire_with_nothing_coming_back(counts: None) -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high", loopback_capacity=0) as v, wdfusb.open(v) as dev:
            first = bytes(range(256)) * 8
            w = dev.pipe(OUT).writer(depth=2, chunk=512, timeout=0.05)
            await w.write_async(first)
            await w.flush_async()
            v.endpoint(OUT).nak(INF)  # from here on nothing completes
            assert await w.write_async(b"q" * 1024) == 1024  # queued: two requests in flight
            with pytest.raises(wdfusb.UsbTimeoutError) as back_pressure:
                await w.write_async(b"r" * 512)  # waits for room that never comes
            assert back_pressure.value.bytes_transferred == len(first) == v.endpoint(OUT).received_bytes
            assert w.in_flight == 0
            await w.aclose()

            v.endpoint(OUT).nak(0)
            w = dev.pipe(OUT).writer(depth=4, chunk=512, timeout=0.05)
            await w.write_async(b"s" * 1000)
            v.endpoint(OUT).nak(INF)
            await w.write_async(b"t" * 100)
            with pytest.raises(wdfusb.UsbTimeoutError) as flushing:
                await w.flush_async()
            n = flushing.value.bytes_transferred
            assert n == w.bytes_written == v.endpoint(OUT).received_bytes - len(first)
            assert v.endpoint(OUT).crc32 == zlib.crc32(first + (b"s" * 1000 + b"t" * 100)[:n])
            w.close()

    run(main)


def test_reader_time_outs_keep_what_came_and_the_reader_goes_on(counts: None) -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high") as v, wdfusb.open(v) as dev:
            async with dev.pipe(IN).reader(depth=4, chunk=4096, timeout=0.05) as r:
                with pytest.raises(wdfusb.UsbTimeoutError) as nothing:
                    await r.read_async(100)  # the loopback is empty: no read ever comes back
                assert nothing.value.bytes_transferred == 0 and r.in_flight == 0
                await dev.pipe(OUT).write_async(b"a" * 5000)
                with pytest.raises(wdfusb.UsbTimeoutError) as some:
                    await r.read_async(8192)
                assert some.value.bytes_transferred == 5000 and some.value.data == b"a" * 5000
                with pytest.raises(wdfusb.UsbTimeoutError):
                    await r.__anext__()
                buf = bytearray(10)
                with pytest.raises(wdfusb.UsbTimeoutError) as into:
                    await r.readinto_async(buf)
                assert into.value.bytes_transferred == 0
                await dev.pipe(OUT).write_async(b"b" * 6000)
                assert await r.read_async(6000) == b"b" * 6000
                assert r.bytes_read == 11000

    run(main)


# ---- what goes away under an awaiting task -----------------------------------------------------


def test_the_device_closed_under_awaiting_tasks_ends_them_with_device_gone(counts: None) -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high", loopback_capacity=0) as v:
            dev = wdfusb.open(v)
            r = dev.pipe(IN).reader(depth=4, chunk=4096)
            w = dev.pipe(OUT).writer(depth=2, chunk=4096)
            reading = asyncio.create_task(r.read_async(100))  # nothing comes: awaits for ever
            v.endpoint(OUT).nak(INF)
            writing = asyncio.create_task(w.write_async(bytes(5 * 4096)))  # awaits room for ever
            await asyncio.sleep(0.01)
            assert not reading.done() and not writing.done()
            dev.close()
            with pytest.raises(wdfusb.DeviceGoneError) as read_error:
                await reading
            assert read_error.value.bytes_transferred == 0 and r.in_flight == 0
            with pytest.raises(wdfusb.DeviceGoneError) as write_error:
                await writing
            assert write_error.value.bytes_transferred == 0 == v.endpoint(OUT).received_bytes
            assert w.in_flight == 0
            with pytest.raises(wdfusb.DeviceGoneError):
                await r.read_async(1)
            r.close()
            w.close()

    run(main)


def test_a_loop_closed_with_a_reader_awaiting(counts: None) -> None:
    """The loop goes without cancelling the task: completions for it are dropped (nothing raised on
    the completion thread), the read stays the reader's until its coroutine is closed, which ends it
    as a cancel does; then the reader goes on, on another loop, with every byte accounted for."""
    with wdfusb.VirtualDevice("high") as v, wdfusb.open(v) as dev:
        r = dev.pipe(IN).reader(depth=2, chunk=512)
        loop = asyncio.new_event_loop()
        task = loop.create_task(r.read_async(100_000))
        loop.run_until_complete(asyncio.sleep(0.01))  # the task awaits its read
        assert r.in_flight == 2
        loop.close()
        dev.pipe(OUT).write(b"x" * 3000)  # reads come back for a loop that is closed
        with pytest.raises(wdfusb.UsbBusyError):  # the read is still the abandoned task's
            asyncio.run(r.read_async(1))
        task.get_coro().close()  # what collecting it would do: the read ends as a cancel ends it
        assert r.in_flight == 0
        before = r.bytes_read
        assert before + r.buffered == v.endpoint(IN).sent_bytes <= 3000  # kept, or handed to the task
        dev.pipe(OUT).write(b"y" * 100)
        stream = b"x" * 3000 + b"y" * 100
        assert run(lambda: r.read_async(len(stream) - before)) == stream[before:]  # the reader goes on
        _dispatch.raise_pending()  # no completion routine failed
        r.close()
        del task
        gc.collect()
