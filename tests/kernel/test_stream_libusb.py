"""The streaming writer against the real Linux USB stack (dummy_hcd + configfs gadgets).

SourceSink (pattern=1) checks every byte it receives and halts its OUT endpoint on
the first wrong one: each packet must be ``i % 63``. The writer cuts the stream
into whole chunks (multiples of the max packet size) however it was written, so
``gadget.mod63`` data written in any slicing stays valid — which these tests check.
"""

from __future__ import annotations

import gc
import random
import threading
import time
import zlib
from pathlib import Path

import gadget
import numpy as np
import pytest
from sigint import interrupt_child
from unplug import FIRST_ERRORS, assert_gone_soon, unplug_after

import wdfusb
from wdfusb import _engine

SS_VID, SS_PID = 0x0525, 0xA4A0
MIB = 1 << 20


def open_sourcesink() -> wdfusb.Device:
    return wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL)


def still_accepts(pipe: wdfusb.Pipe, maxp: int) -> None:
    """The gadget did not halt: every byte it saw was right."""
    assert pipe.write(gadget.mod63(maxp, maxp), timeout=5) == maxp


def test_depth8_64k_of_16mib_verified_by_the_gadget(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = np.frombuffer(gadget.mod63(16 * MIB, bulk_maxp), np.uint8)
    gc.collect()
    before = (_engine.Transfer.live, _engine.live_objects())
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        t0 = time.perf_counter()
        with p.writer(depth=8, chunk=64 << 10, timeout=10) as w:
            assert w.write(data) == len(data)  # zero-copy chunks
        rate = len(data) / (time.perf_counter() - t0)
        print(f"stream depth 8 x 64 KiB: {rate / 1e6:.1f} MB/s")
        assert w.bytes_written == len(data)
        assert w.peak_in_flight == 8
        still_accepts(p, bulk_maxp)
        assert dev._core.native.live_transfers() == 0
    del dev, p, w  # the native objects go with the last reference (closing ended their I/O)
    gc.collect()
    assert (_engine.Transfer.live, _engine.live_objects()) == before


def test_any_slicing_keeps_packet_boundaries(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = gadget.mod63(4 * MIB + 3 * bulk_maxp + 17, bulk_maxp)
    rng = random.Random(5)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        with p.writer(depth=4, chunk=16 * bulk_maxp, timeout=10) as w:
            pos = 0
            while pos < len(data):
                n = rng.choice([1, 7, bulk_maxp - 1, bulk_maxp, 5000, 100_000])
                piece = data[pos : pos + n]
                w.write(bytearray(piece) if n % 2 else piece)  # copied and zero-copy paths
                pos += n
        assert w.bytes_written == len(data)
        still_accepts(p, bulk_maxp)


def test_generator_and_file(sourcesink: gadget.SourceSink, bulk_maxp: int, tmp_path: Path) -> None:
    data = gadget.mod63(2 * MIB, bulk_maxp)
    path = tmp_path / "mod63.bin"
    path.write_bytes(data)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        with p.writer(depth=8, chunk=64 << 10, timeout=10, zlp="end") as w:
            assert w.writelines(data[i : i + 3000] for i in range(0, len(data), 3000)) == len(data)
            w.flush()
            with open(path, "rb") as f:
                assert w.write_from(f) == len(data)
        assert w.bytes_written == 2 * len(data)
        still_accepts(p, bulk_maxp)


def test_unplug_mid_stream(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    data = np.frombuffer(gadget.mod63(4 * MIB, bulk_maxp), np.uint8)
    with open_sourcesink() as dev:
        w = dev.pipe(0x02).writer(depth=8, chunk=64 << 10, timeout=10)
        unplug_after(sourcesink, 0.5)
        deadline = time.monotonic() + 30
        with pytest.raises(FIRST_ERRORS) as err:
            while time.monotonic() < deadline:
                w.write(data)
            w.flush()
        assert err.value.bytes_transferred == w.bytes_written > 0
        assert err.value.bytes_transferred % bulk_maxp == 0  # whole packets only
        assert dev._core.native.live_transfers() == 0
        w.close()
        assert_gone_soon(dev.pipe(0x02))


@pytest.mark.parametrize("ffs_gadget", [{"mode": "slow", "read_size": 4096, "slow_delay": 0.01}], indirect=True)
def test_cancel_a_full_queue_counts_exactly(ffs_gadget: gadget.FfsGadget) -> None:
    data = random.Random(3).randbytes(8 * MIB)
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        w = dev.pipe(ffs_gadget.ep_out).writer(depth=8, chunk=16 << 10)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                w.write(data)
                w.flush()
            except wdfusb.UsbError as e:
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        assert w.in_flight == 8  # the slow reader keeps the queue full
        n = w.cancel()
        t.join(10)
        assert not t.is_alive()
        assert isinstance(errors[0], wdfusb.UsbCancelledError) and errors[0].bytes_transferred == n
        assert 0 < n < len(data)
        ffs_gadget.set_mode("count")
        assert ffs_gadget.received.wait_bytes(n, 10) == n  # the function read exactly what we counted
        assert ffs_gadget.received.crc32 == zlib.crc32(data[:n])
        w.close()


@pytest.mark.parametrize("ffs_gadget", ["count"], indirect=True)
def test_timeout_per_request_on_a_nak_ing_endpoint(ffs_gadget: gadget.FfsGadget) -> None:
    with wdfusb.open(vid=ffs_gadget.vid, pid=ffs_gadget.pid) as dev:
        w = dev.pipe(ffs_gadget.ep_out).writer(depth=4, chunk=64 << 10, timeout=0.5)
        w.write(bytes(256 << 10))
        w.flush()
        ffs_gadget.set_mode("stop")
        time.sleep(0.2)
        t0 = time.monotonic()
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            w.write(bytes(1 * MIB))
            w.flush()
        assert 0.45 < time.monotonic() - t0 < 3
        assert err.value.bytes_transferred == w.bytes_written >= 256 << 10
        assert dev._core.native.live_transfers() == 0
        w.close()


CTRL_C_CHILD = """
import time, wdfusb
dev = wdfusb.open(vid=0x1D6B, pid=0x0105)
w = dev.pipe(0x02).writer(depth=4, chunk=65536)  # FunctionFS OUT, as dummy_hcd numbers it
print("blocked", flush=True)
try:
    w.write(bytes(8 * 65536))
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), dev._core.native.live_transfers(), flush=True)
w.close()
dev.close()
"""


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_ctrl_c_while_the_writer_is_blocked(ffs_gadget: gadget.FfsGadget) -> None:
    latency, (in_flight,) = interrupt_child(CTRL_C_CHILD, settle=0.5)
    assert latency < 0.5
    assert in_flight == "0"


def test_stream_against_raw_c_and_sync(sourcesink: gadget.SourceSink, bulk_maxp: int, run_raw_bench) -> None:  # type: ignore[no-untyped-def]
    """Reports the issue-5 benchmark: stream depth 8 x 64 KiB vs raw C libusb async (same depth
    and size) and vs our synchronous 64 KiB writes. Bounds are generous; the numbers are printed."""
    size, count = 64 << 10, 256
    rc, raw, err = run_raw_bench(SS_VID, SS_PID, 0x02, size, count, "--async", "8")
    assert rc == 0 and raw is not None, err
    data = np.frombuffer(gadget.mod63(size * count, bulk_maxp), np.uint8)
    with open_sourcesink() as dev:
        p = dev.pipe(0x02)
        t0 = time.perf_counter()
        for i in range(count):
            p.write(data[i * size : (i + 1) * size], timeout=10)
        sync = len(data) / (time.perf_counter() - t0)
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            with p.writer(depth=8, chunk=size, timeout=10) as w:
                w.write(data)
            best = max(best, len(data) / (time.perf_counter() - t0))
    raw_rate = float(raw["MBps"]) * 1e6
    print(
        f"\nstream 8 x 64 KiB {best / 1e6:.1f} MB/s; raw C async {raw_rate / 1e6:.1f} MB/s "
        f"({best / raw_rate:.2f}x); sync 64 KiB {sync / 1e6:.1f} MB/s ({best / sync:.2f}x)"
    )
    assert best > 0.5 * raw_rate
    assert best > 0.9 * sync
