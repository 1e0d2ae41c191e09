"""Streaming-writer throughput: depth x chunk on the virtual device, or on a real device.

    python benchmarks/stream_bench.py                       # VirtualDevice(speed="high")
    python benchmarks/stream_bench.py --speed full --mib 8
    python benchmarks/stream_bench.py --device 0525:a4a0 --ep 0x02 --pattern mod63

On the virtual device each result is also given as a fraction of the bus model's
limit (53.248 MB/s at high speed). On a real device (``VID:PID[:SERIAL]`` or
``BUS/ADDR``) each row is compared with synchronous ``pipe.write`` of the same chunk
size, one transfer at a time. ``--pattern mod63`` sends data that the Linux
f_sourcesink gadget (pattern=1) accepts: every packet restarts ``i % 63``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import wdfusb

BUS_LIMIT = {"full": 19 * 64 * 1000, "high": 53_248_000, "super": 491_520_000}
DEPTHS = (1, 2, 4, 8)
CHUNKS = (16 << 10, 64 << 10, 256 << 10)


def make_data(size: int, pattern: str, maxp: int) -> np.ndarray:
    if pattern == "mod63":
        packet = (np.arange(maxp) % 63).astype(np.uint8)
        return np.resize(packet, size)
    return np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)


def stream_rate(pipe: wdfusb.Pipe, data: np.ndarray, depth: int, chunk: int, repeat: int, copy: bool) -> float:
    """Best of ``repeat`` runs, bytes per second: the whole array through one writer
    (zero-copy, or copied through the ring buffers with ``copy``)."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with pipe.writer(depth=depth, chunk=chunk, timeout=10) as w:
            w.write(data, copy=copy)
        best = max(best, w.bytes_written / (time.perf_counter() - t0))
    return best


def sync_rate(pipe: wdfusb.Pipe, data: np.ndarray, chunk: int, repeat: int) -> float:
    """Best of ``repeat`` runs of synchronous ``pipe.write`` of ``chunk`` bytes at a time."""
    best = 0.0
    view = data.data
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(view), chunk):
            pipe.write(view[i : i + chunk], timeout=10)
        best = max(best, len(view) / (time.perf_counter() - t0))
    return best


def run(dev: wdfusb.Device, ep: int, args: Any, limit: float | None) -> None:
    pipe = dev.pipe(ep)
    data = make_data(args.mib << 20, args.pattern, pipe.max_packet)
    how = "copied into the ring" if args.copy else "zero-copy"
    print(f"{dev!r}, pipe 0x{ep:02X} max packet {pipe.max_packet}, {args.mib} MiB per run ({how}), ", end="")
    print(f"best of {args.repeat}")
    head = f"{'depth':>5} {'chunk':>8} {'MB/s':>9}"
    head += f" {'of bus':>7}" if limit else f" {'sync MB/s':>9} {'ratio':>6}"
    print(head)
    sync: dict[int, float] = {}
    for chunk in CHUNKS:
        if limit is None:
            sync[chunk] = sync_rate(pipe, data, chunk, args.repeat)
        for depth in DEPTHS:
            rate = stream_rate(pipe, data, depth, chunk, args.repeat, args.copy)
            row = f"{depth:>5} {chunk >> 10:>6}Ki {rate / 1e6:>9.3f}"
            if limit:
                row += f" {rate / limit:>7.2%}"
            else:
                row += f" {sync[chunk] / 1e6:>9.3f} {rate / sync[chunk]:>5.2f}x"
            print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", help="VID:PID[:SERIAL] or BUS/ADDR of a real device (default: virtual)")
    ap.add_argument("--ep", type=lambda s: int(s, 0), default=None, help="OUT endpoint (virtual: 0x06)")
    ap.add_argument("--speed", default="high", choices=sorted(BUS_LIMIT), help="virtual device speed")
    ap.add_argument("--mib", type=int, default=16, help="MiB per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pattern", choices=["random", "mod63"], default="random")
    ap.add_argument("--copy", action="store_true", help="copy the data through the ring buffers")
    args = ap.parse_args()
    if args.device:
        with wdfusb.open(args.device) as dev:
            ep = args.ep if args.ep is not None else next(p.address for p in dev.pipes if p.is_out and p.type == "bulk")
            run(dev, ep, args, None)
        return
    with wdfusb.VirtualDevice(speed=args.speed, loopback_capacity=0) as v, wdfusb.open(v) as dev:
        run(dev, args.ep or 0x06, args, BUS_LIMIT[args.speed])


if __name__ == "__main__":
    main()
