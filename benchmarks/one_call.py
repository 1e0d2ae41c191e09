"""One call of any size against transfers of 4 MiB, on the virtual device, each way.

    python benchmarks/one_call.py                      # 1 GiB, high and super speed
    python benchmarks/one_call.py --mib 64 --speed super

A single ``pipe.write`` / ``pipe.readinto`` of the whole array is split by the engine into
pieces (as usbfs needs on Linux); this measures what the splitting costs against the same bytes
moved as separate 4 MiB transfers (a quarter of the size, at least one), in the same run. Every
byte is checked: the write against the device's CRC-32 of what it received, the read against
the source's counter pattern.
"""

from __future__ import annotations

import argparse
import time
import zlib
from dataclasses import dataclass

import numpy as np

import wdfusb
from wdfusb import patterns

MIB = 1 << 20
PIECE = 4 * MIB
OUT, IN = 0x06, 0x88
BUS_LIMIT = {"high": 53_248_000, "super": 491_520_000}


@dataclass
class Row:
    speed: str
    direction: str
    reference: float  # bytes/s in 4 MiB transfers
    one_call: float  # bytes/s in one call

    @property
    def ratio(self) -> float:
        return self.one_call / self.reference


def timed(move, buf: np.ndarray, pieces: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for i in range(pieces):
        assert move(buf[i * PIECE : (i + 1) * PIECE], timeout=60) == PIECE
    return pieces * PIECE / (time.perf_counter() - t0)


def measure(speed: str, size: int) -> list[Row]:
    pieces = max(1, size // 4 // PIECE)
    rows = []
    with wdfusb.VirtualDevice(speed) as vdev, wdfusb.open(vdev) as dev:
        data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
        write = dev.pipe(OUT).write
        reference = timed(write, data, pieces)
        t0 = time.perf_counter()
        assert write(data, timeout=600) == size
        rate = size / (time.perf_counter() - t0)
        crc = zlib.crc32(data[: pieces * PIECE])
        assert vdev.endpoint(OUT).crc32 == zlib.crc32(data, crc), "the device received other bytes"
        rows.append(Row(speed, "write", reference, rate))

        vdev.endpoint(IN).source("counter")
        readinto = dev.pipe(IN).readinto
        reference = timed(readinto, data, pieces)
        first = pieces * PIECE
        assert patterns.first_mismatch(data[:first], "counter", 0) is None
        t0 = time.perf_counter()
        assert readinto(data, timeout=600) == size
        rate = size / (time.perf_counter() - t0)
        bad = patterns.first_mismatch(data, "counter", first)
        assert bad is None, f"byte {bad} of the stream is not the counter's"
        rows.append(Row(speed, "read", reference, rate))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="size of the one call (MiB)")
    ap.add_argument("--speed", choices=sorted(BUS_LIMIT), action="append", help="default: high and super")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'speed':6} {'dir':5} {'4 MiB transfers':>16} {args.mib:>6} MiB in one call {'ratio':>6} {'bus':>6}")
    for speed in args.speed or ["high", "super"]:
        for row in measure(speed, args.mib * MIB):
            rows.append(row)
            print(f"{row.speed:6} {row.direction:5} {row.reference / 1e6:11.1f} MB/s {row.one_call / 1e6:14.1f} MB/s "
                  f"{row.ratio:6.3f} {row.one_call / BUS_LIMIT[speed]:6.1%}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
