"""asyncio on the real Linux USB stack: awaited transfers against Gadget Zero, many at once,
cancelled at random, and Ctrl-C of ``asyncio.run`` with a transfer on the bus."""

from __future__ import annotations

import asyncio
import random

import gadget
from sigint import interrupt_child

import wdfusb
from wdfusb import patterns

SS_VID, SS_PID = 0x0525, 0xA4A0


def test_many_awaited_transfers_at_once(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """100 writes (the gadget checks each byte) and 100 reads (each checked here) on one loop."""
    rng = random.Random(7)

    async def main() -> None:
        with wdfusb.open(vid=SS_VID, pid=SS_PID) as dev:
            out, inp = dev.pipe(0x02), dev.pipe(0x81)
            sizes = [bulk_maxp * rng.randint(1, 64) for _ in range(100)]
            writes = [asyncio.create_task(out.write_async(gadget.mod63(n, bulk_maxp), timeout=30)) for n in sizes]
            reads = [asyncio.create_task(inp.read_async(n, timeout=30)) for n in sizes]
            assert await asyncio.gather(*writes) == sizes
            for n, data in zip(sizes, await asyncio.gather(*reads), strict=True):
                assert len(data) == n and patterns.first_mismatch(data, "mod63", 0, bulk_maxp) is None
            assert await dev.control_write_async(0x40, 0x5B, 0, 0, b"awaited") == 7
            assert await dev.control_read_async(0xC0, 0x5C, 0, 0, 7) == b"awaited"

    asyncio.run(main())


def test_reads_cancelled_at_random_keep_whole_packets(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    rng = random.Random(11)

    async def main() -> None:
        with wdfusb.open(vid=SS_VID, pid=SS_PID) as dev:
            pipe = dev.pipe(0x81)
            for _ in range(20):
                buffers = [bytearray(bulk_maxp * 256) for _ in range(4)]
                tasks = [asyncio.create_task(pipe.readinto_async(b, timeout=30)) for b in buffers]
                await asyncio.sleep(rng.choice([0, 0.001, 0.005, 0.02]))
                for t in rng.sample(tasks, 2):
                    t.cancel()
                for t, buf in zip(tasks, buffers, strict=True):
                    try:
                        n = await t
                        assert n == len(buf)
                    except asyncio.CancelledError as e:
                        n = getattr(e, "bytes_transferred", 0)
                    assert n % bulk_maxp == 0  # the source sends whole packets; none is torn
                    assert patterns.first_mismatch(buf[:n], "mod63", 0, bulk_maxp) is None
                assert dev._core.native.live_transfers() == 0
            assert len(await pipe.read_async(bulk_maxp, timeout=5)) == bulk_maxp  # the pipe still works

    asyncio.run(main())


CTRL_C_CHILD = """
import asyncio, time, numpy, wdfusb
async def main(dev, out):
    print("blocked", flush=True)
    await dev.pipe(0x81).readinto_async(out)  # longer than the test waits
dev = wdfusb.open(vid=0x0525, pid=0xA4A0)
out = numpy.empty(1 << 30, numpy.uint8)  # (not zeroed: its pages are touched as data comes)
try:
    asyncio.run(main(dev, out))
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), dev._core.native.live_transfers(), flush=True)
"""


def test_ctrl_c_of_asyncio_run_leaves_nothing_in_flight(sourcesink: gadget.SourceSink) -> None:
    latency, (in_flight,) = interrupt_child(CTRL_C_CHILD, settle=0.5)
    assert latency < 2.0 and in_flight == "0"
