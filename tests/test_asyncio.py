"""asyncio (CONTRACT §8): transfers awaited on the running loop, cancelled with exact counts."""

from __future__ import annotations

import asyncio
import random
import zlib

import numpy as np
import pytest

import wdfusb
from wdfusb import patterns

OUT, IN = 0x06, 0x88


def test_awaited_transfers_and_control_requests() -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high") as vdev, wdfusb.open(vdev) as dev:
            assert await dev.pipe(OUT).write_async(b"hello, loop") == 11
            assert await dev.pipe(IN).read_async(512) == b"hello, loop"
            buf = np.zeros(8, np.uint8)
            await dev.pipe(OUT).write_async(np.arange(8, dtype=np.uint8))
            assert await dev.pipe(IN).readinto_async(buf) == 8 and list(buf) == list(range(8))
            assert await dev.control_write_async(0x40, 0x5B, 0, 0, b"config") == 6
            assert await dev.control_read_async(0xC0, 0x5C, 0, 0, 6) == b"config"
            with pytest.raises(wdfusb.UsbStallError):
                await dev.control_read_async(0xC0, 0x77, 0, 0, 4)
            with pytest.raises(ValueError, match="control_read"):
                await dev.control_write_async(0xC0, 0x5B, 0, 0, b"x")
            with pytest.raises(wdfusb.UsbTimeoutError) as timeout:
                await dev.pipe(IN).read_async(512, timeout=0.05)  # the loopback is empty
            assert timeout.value.bytes_transferred == 0
            with pytest.raises(ValueError, match="OUT pipe"):
                await dev.pipe(OUT).read_async(4)

    asyncio.run(main())


def test_a_thousand_concurrent_transfers_on_four_devices_one_loop() -> None:
    """250 per device, writes and reads at once: each device's bytes arrive in the order the
    tasks were started, every one of them (CRC of the writes, the counter pattern of the reads)."""
    rng = random.Random(4)

    async def main() -> None:
        vdevs = [wdfusb.VirtualDevice("high", serial=f"aio-{i}") for i in range(4)]
        for v in vdevs:
            v.endpoint(IN).source("counter")
        devs = [wdfusb.open(v) for v in vdevs]
        try:
            writes = [[rng.randbytes(rng.randint(1, 8192)) for _ in range(125)] for _ in devs]
            sizes = [[512 * rng.randint(1, 16) for _ in range(125)] for _ in devs]
            tasks = []
            for d, dev in enumerate(devs):
                tasks += [asyncio.create_task(dev.pipe(OUT).write_async(w, timeout=30)) for w in writes[d]]
                tasks += [asyncio.create_task(dev.pipe(IN).read_async(n, timeout=30)) for n in sizes[d]]
            results = await asyncio.gather(*tasks)
            assert len(results) == 1000
            for d, v in enumerate(vdevs):
                mine = results[d * 250 : (d + 1) * 250]
                assert mine[:125] == [len(w) for w in writes[d]]
                assert v.endpoint(OUT).crc32 == zlib.crc32(b"".join(writes[d]))
                stream = b"".join(mine[125:])  # type: ignore[arg-type]
                assert len(stream) == sum(sizes[d]) and patterns.first_mismatch(stream, "counter", 0) is None
        finally:
            for dev in devs:
                dev.close()
            for v in vdevs:
                v.close()

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(3))
def test_tasks_cancelled_at_random_report_exactly_what_moved(seed: int) -> None:
    """Writes of distinct data, cancelled at random moments (some twice, some before they
    start): what each reports — its result, or its CancelledError's bytes_transferred — is what
    the device received from it, in order (the device's CRC covers every byte)."""
    rng = random.Random(seed)

    async def main() -> None:
        with wdfusb.VirtualDevice("full") as vdev, wdfusb.open(vdev) as dev:  # slow: cancels land mid-transfer
            pipe = dev.pipe(OUT)
            data = [rng.randbytes(rng.randint(1, 24) * 1000) for _ in range(40)]
            tasks = [asyncio.create_task(pipe.write_async(d, timeout=30)) for d in data]
            for _ in range(30):
                await asyncio.sleep(rng.choice([0, 0.0005, 0.002, 0.005]))
                running = next((t for t in tasks if not t.done()), None)  # the one on the bus, mostly
                victim = running if running is not None and rng.random() < 0.5 else rng.choice(tasks)
                victim.cancel()
                if rng.random() < 0.3:
                    victim.cancel()  # a second cancel does not skip the wait
            moved = []
            for t, d in zip(tasks, data, strict=True):
                try:
                    n = await t
                    assert n == len(d)
                except asyncio.CancelledError as e:
                    n = getattr(e, "bytes_transferred", 0)  # 0: cancelled before it was submitted
                moved.append(n)
            assert dev._core.native.live_transfers() == 0
            ep = vdev.endpoint(OUT)
            assert ep.received_bytes == sum(moved)
            assert ep.crc32 == zlib.crc32(b"".join(d[:n] for d, n in zip(data, moved, strict=True)))
            assert any(0 < n < len(d) for d, n in zip(data, moved, strict=True))  # cut on the bus

    asyncio.run(main())


def test_closing_the_device_ends_an_awaited_read() -> None:
    async def main() -> None:
        with wdfusb.VirtualDevice("high") as vdev:
            dev = wdfusb.open(vdev)
            read = asyncio.create_task(dev.pipe(IN).read_async(512))  # nothing comes: waits for ever
            await asyncio.sleep(0.05)
            await asyncio.get_running_loop().run_in_executor(None, dev.close)  # close cancels and drains
            with pytest.raises(wdfusb.UsbError):
                await asyncio.wait_for(read, 5)

    asyncio.run(main())


def test_the_loop_runs_while_a_transfer_is_on_the_bus() -> None:
    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        with wdfusb.VirtualDevice("high") as vdev, wdfusb.open(vdev) as dev:
            t = asyncio.create_task(ticker())
            assert await dev.pipe(OUT).write_async(bytes(1 << 20)) == 1 << 20  # ~20 ms at high speed
            t.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


def test_a_closed_device_and_a_closed_coroutine() -> None:
    """Awaited calls on a closed device raise wdfusb's device-gone error; a coroutine closed at
    its await (no loop left to wait on) cancels and reaps its transfer before it goes."""

    async def on_closed(dev: wdfusb.Device) -> None:
        calls = [dev.pipe(OUT).write_async(b"x"), dev.pipe(IN).read_async(4)]
        calls += [dev.control_read_async(0xC0, 0x5C, 0, 0, 1), dev.control_write_async(0x40, 0x5B, 0, 0, b"x")]
        for call in calls:
            with pytest.raises(wdfusb.DeviceGoneError):
                await call

    with wdfusb.VirtualDevice("high") as vdev:
        dev = wdfusb.open(vdev)
        coro = dev.pipe(IN).read_async(512)  # nothing comes
        with pytest.raises(RuntimeError):  # (no running loop: it cannot even start)
            coro.send(None)
        dev.close()
        asyncio.run(on_closed(dev))
        dev = wdfusb.open(vdev)

        async def read_then_abandon() -> None:
            coro = dev.pipe(IN).read_async(512)
            waiter = coro.__await__()
            next(waiter)  # submitted, awaiting its completion
            assert dev._core.native.live_transfers() == 1
            waiter.close()  # GeneratorExit at the await
            assert dev._core.native.live_transfers() == 0

        asyncio.run(read_then_abandon())
        dev.pipe(OUT).write(b"kept")
        assert dev.pipe(IN).read(512, timeout=1) == b"kept"  # no orphaned read took it
        dev.close()
