"""Soak: many GiB and a million small writes to the virtual device, watching memory and objects.

    python benchmarks/soak.py              # >= 10 GiB and >= 1,000,000 small writes (a few minutes)
    python benchmarks/soak.py --short      # 256 MiB and 100,000 small writes (seconds; what CI runs)
    python benchmarks/soak.py --gib 20 --small 2000000 --every 5

Each round opens the unpaced virtual device (``speed=None``) and drives every path once:
large synchronous writes (Pythonic and WDF), the streaming writer, asynchronous WDF requests
with completion routines, small synchronous writes (Pythonic and WDF), then closes it all.
Every round checks that the device received exactly the bytes reported (count and CRC-32).
Every ``--every`` seconds it prints RSS and the live-object counts; flat is the target.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import (
    NT_SUCCESS,
    STATUS_SUCCESS,
    ULONG,
    WDF_MEMORY_DESCRIPTOR,
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER,
    WDF_NO_OBJECT_ATTRIBUTES,
    WDF_REQUEST_REUSE_NO_FLAGS,
    WDF_REQUEST_REUSE_PARAMS,
    WDF_REQUEST_REUSE_PARAMS_INIT,
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE,
    WDFMEMORY,
    WDFREQUEST,
    WDFUSBDEVICE,
    NonPagedPool,
    WdfMemoryCreate,
    WdfMemoryGetBuffer,
    WdfObjectDelete,
    WdfRequestCreate,
    WdfRequestReuse,
    WdfRequestSend,
    WdfRequestSetCompletionRoutine,
    WdfUsbInterfaceGetConfiguredPipe,
    WdfUsbTargetDeviceCreate,
    WdfUsbTargetDeviceGetInterface,
    WdfUsbTargetDeviceSelectConfig,
    WdfUsbTargetPipeFormatRequestForWrite,
    WdfUsbTargetPipeGetIoTarget,
    WdfUsbTargetPipeWriteSynchronously,
    wait_for_completions,
)

EP = 0x06
BIG = 4 << 20  # one large synchronous write
STREAM_CHUNK = 1 << 20
ASYNC_SIZE = 256 << 10
SMALL = 64  # one small write


def rss_bytes() -> int:
    """Resident set size now (Linux /proc/self/statm; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def live() -> tuple[int, int]:
    """(Python Transfer objects not freed, native devices + transfers not freed)."""
    return _engine.Transfer.live, _engine.live_objects()


@dataclass
class Sample:
    seconds: float
    bytes: int
    small: int
    rss: int
    transfers: int
    native: int


@dataclass
class Soak:
    """Counters of a soak run and the samples taken."""

    target_bytes: int
    target_small: int
    bytes: int = 0
    small: int = 0
    rounds: int = 0
    samples: list[Sample] = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)

    def sample(self) -> Sample:
        t, n = live()
        s = Sample(time.monotonic() - self.start, self.bytes, self.small, rss_bytes(), t, n)
        self.samples.append(s)
        return s

    @property
    def done(self) -> bool:
        return self.bytes >= self.target_bytes and self.small >= self.target_small


def wdf_open(v: wdfusb.VirtualDevice) -> tuple[WDFUSBDEVICE, Any]:
    usb = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(v, WDF_NO_OBJECT_ATTRIBUTES, usb) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(usb, WDF_NO_OBJECT_ATTRIBUTES, params))
    return usb, WdfUsbInterfaceGetConfiguredPipe(WdfUsbTargetDeviceGetInterface(usb, 0), 0, None)


def one_round(s: Soak, big: np.ndarray, small: bytes, bytes_per_round: int, small_per_round: int) -> None:
    """Every path once on a fresh device; checks the device got exactly what was reported."""
    v = wdfusb.VirtualDevice(speed=None, loopback_capacity=0)
    crc, sent = 0, 0
    usb, wpipe = wdf_open(v)
    with wdfusb.open(v) as dev:
        pipe = dev.pipe(EP)
        # large writes: a quarter Pythonic, a quarter WDF, half through the streaming writer
        quarter = max(BIG, bytes_per_round // 4)
        desc, n = WDF_MEMORY_DESCRIPTOR(), ULONG()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, big, big.nbytes)
        for _ in range(quarter // BIG):
            assert pipe.write(big, timeout=10) == BIG
            assert WdfUsbTargetPipeWriteSynchronously(wpipe, None, None, desc, n) == STATUS_SUCCESS
            assert n.value == BIG
            crc = zlib.crc32(big, zlib.crc32(big, crc))
            sent += 2 * BIG
        with pipe.writer(depth=8, chunk=STREAM_CHUNK) as w:
            for _ in range(2 * quarter // BIG):
                w.write(big)
                crc = zlib.crc32(big, crc)
        sent += w.bytes_written
        assert w.bytes_written == 2 * (quarter // BIG) * BIG
        # asynchronous WDF requests with completion routines, 4 in flight
        sent, crc = async_requests(wpipe, big[:ASYNC_SIZE], 64, sent, crc)
        # small writes: half Pythonic, half WDF
        sdesc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(sdesc, small, len(small))
        half = small_per_round // 2
        for _ in range(half):
            pipe.write(small)
        for _ in range(small_per_round - half):
            WdfUsbTargetPipeWriteSynchronously(wpipe, None, None, sdesc, n)
        small_crc = crc
        for _ in range(small_per_round):
            small_crc = zlib.crc32(small, small_crc)
        crc = small_crc
        sent += small_per_round * len(small)
        ep = v.endpoint(EP)
        assert ep.received_bytes == sent, (ep.received_bytes, sent)
        assert ep.crc32 == crc, "the device received other bytes than were reported written"
    WdfObjectDelete(usb)
    v.close()
    s.bytes += sent
    s.small += small_per_round
    s.rounds += 1


def async_requests(pipe: Any, data: np.ndarray, count: int, sent: int, crc: int) -> tuple[int, int]:
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    depth = 4
    free = threading.Semaphore(depth)
    statuses: list[int] = []

    def routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        statuses.append(int(Params.IoStatus.Status))
        free.release()

    reqs, mems = [], []
    for _ in range(depth):
        req, mem = WDFREQUEST(), WDFMEMORY()
        assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, target, req) == STATUS_SUCCESS
        assert WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, data.nbytes, mem, None) == STATUS_SUCCESS
        WdfMemoryGetBuffer(mem, None)[:] = data
        reqs.append(req)
        mems.append(mem)
    reuse = WDF_REQUEST_REUSE_PARAMS()
    for i in range(count):
        assert free.acquire(timeout=10)
        req = reqs[i % depth]
        WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mems[i % depth], None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, None)
        assert WdfRequestSend(req, target, None)
        crc = zlib.crc32(data, crc)
    assert wait_for_completions(30)
    assert statuses == [STATUS_SUCCESS] * count
    for obj in reqs + mems:
        WdfObjectDelete(obj)
    return sent + count * data.nbytes, crc


def run(total_bytes: int, small_writes: int, every: float = 5.0, rounds: int = 40, quiet: bool = False) -> Soak:
    """Soak until both targets are met, printing a sample every ``every`` seconds."""
    big = np.random.default_rng(7).integers(0, 256, BIG, dtype=np.uint8)
    small = bytes(range(SMALL))
    bytes_per_round = max(BIG * 4, total_bytes // rounds)
    small_per_round = max(2, -(-small_writes // rounds))
    s = Soak(total_bytes, small_writes)
    say = (lambda *a: None) if quiet else print
    say(f"{'seconds':>8} {'GiB':>8} {'small writes':>13} {'RSS MiB':>8} {'Transfer.live':>13} {'native live':>11}")

    def show(x: Sample) -> None:
        say(
            f"{x.seconds:8.1f} {x.bytes / 2**30:8.2f} {x.small:13,d} {x.rss / 2**20:8.1f} "
            f"{x.transfers:13d} {x.native:11d}"
        )

    show(s.sample())
    last = time.monotonic()
    while not s.done:
        one_round(s, big, small, bytes_per_round, small_per_round)
        if time.monotonic() - last >= every:
            gc.collect()
            show(s.sample())
            last = time.monotonic()
    gc.collect()
    show(s.sample())
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="256 MiB and 100,000 small writes")
    ap.add_argument("--gib", type=float, default=10.0, help="GiB to write (default 10)")
    ap.add_argument("--small", type=int, default=1_000_000, help="small writes (default 1,000,000)")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    args = ap.parse_args(argv)
    total, small = (256 << 20, 100_000) if args.short else (int(args.gib * 2**30), args.small)
    start_live = live()
    s = run(total, small, args.every, rounds=8 if args.short else 40)
    first, warm, end = s.samples[0], s.samples[min(1, len(s.samples) - 1)], s.samples[-1]
    secs = end.seconds
    print(
        f"\n{s.bytes / 2**30:.2f} GiB and {s.small:,d} small writes in {secs:.1f} s "
        f"({s.bytes / secs / 1e6:.0f} MB/s, {s.rounds} rounds, every byte CRC-checked)\n"
        f"RSS {first.rss / 2**20:.1f} MiB at start, {warm.rss / 2**20:.1f} MiB after the first sample, "
        f"{end.rss / 2**20:.1f} MiB at the end (peak sample {max(x.rss for x in s.samples) / 2**20:.1f} MiB)\n"
        f"live objects (Transfer.live, native): {start_live} at start, {live()} at the end"
    )
    return 0 if live() == start_live else 1


if __name__ == "__main__":
    sys.exit(main())
