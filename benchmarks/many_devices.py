"""Several virtual devices streaming at once, one process: the aggregate against the bus limits.

    python benchmarks/many_devices.py                  # 4 devices at high speed, 3 s
    python benchmarks/many_devices.py --devices 8 --seconds 5

Each device gets its own thread and a :class:`~wdfusb.StreamWriter` (depth 8, 1 MiB chunks) on a
bulk sink; each device's bytes are checked against the CRC-32 the device computed of what it
received. The aggregate is compared with N times the high-speed bulk limit (53.248 MB/s): the
engine's event threads and its completion thread must not serialize devices behind each other.
"""

from __future__ import annotations

import argparse
import threading
import time
import zlib
from typing import Any

import numpy as np

import wdfusb
from wdfusb.virtual import EndpointSpec

HIGH_SPEED_BULK = 53_248_000  # bytes/s: 13 packets of 512 bytes per 125 us microframe
CHUNK = 1 << 20


def run(devices: int = 4, seconds: float = 3.0) -> dict[str, Any]:
    """Stream to ``devices`` high-speed virtual devices for ``seconds``; per device and in aggregate."""
    data = np.random.default_rng(7).integers(0, 256, CHUNK, dtype=np.uint8)
    boards = [
        wdfusb.VirtualDevice("high", serial=f"daq{i}", endpoints=[EndpointSpec(0x02, "bulk", 512, 0, "sink")])
        for i in range(devices)
    ]
    opened = [wdfusb.open(b) for b in boards]
    written = [0] * devices
    start = threading.Barrier(devices + 1)

    def stream(i: int) -> None:
        with opened[i].pipe(0x02).writer(depth=8, chunk=CHUNK, timeout=5) as w:
            start.wait()
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                w.write(data)
        written[i] = w.bytes_written

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(devices)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    rows = []
    for b, d, n in zip(boards, opened, written, strict=True):
        ep = b.endpoint(0x02)
        crc = 0
        for _ in range(n // CHUNK):
            crc = zlib.crc32(data, crc)
        rows.append({"serial": b.serial, "bytes": n, "rate": n / elapsed,
                     "exact": ep.received_bytes == n and ep.crc32 == crc and n % CHUNK == 0})  # fmt: skip
        d.close()
        b.close()
    aggregate = sum(written) / elapsed
    return {
        "devices": rows,
        "seconds": elapsed,
        "aggregate": aggregate,
        "limit": devices * HIGH_SPEED_BULK,
        "aggregate_ratio": aggregate / (devices * HIGH_SPEED_BULK),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    result = run(args.devices, args.seconds)
    for row in result["devices"]:
        print(f"{row['serial']}: {row['rate'] / 1e6:7.2f} MB/s  {row['bytes']} bytes  exact={row['exact']}")
    print(
        f"aggregate {result['aggregate'] / 1e6:.2f} MB/s of {result['limit'] / 1e6:.3f} MB/s "
        f"({result['aggregate_ratio']:.2%}) over {result['seconds']:.2f} s, {args.devices} devices at high speed"
    )
    return result


if __name__ == "__main__":
    main()
