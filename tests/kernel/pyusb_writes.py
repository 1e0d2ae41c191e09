"""pyusb on its own libusb1 backend, in a process of its own (a pyusb context made before a
device appeared never lists it): synchronous writes to one endpoint, timed, best of 3::

    python pyusb_writes.py BUS ADDRESS EP MAXP   ->   {"sync 512 B": µs, "sync 64 KiB": µs}

The data is Gadget Zero's mod63 pattern (byte j of each MAXP-byte packet is j % 63), which a
SourceSink with pattern=1 checks.
"""

from __future__ import annotations

import json
import sys
import time

import usb.backend.libusb1
import usb.core
import usb.util

from wdfusb import _engine


def main(bus: int, address: int, ep: int, maxp: int) -> dict[str, float]:
    path = _engine.libusb_path() or None
    backend = usb.backend.libusb1.get_backend(find_library=(lambda _name: path) if path else None)
    dev = usb.core.find(bus=bus, address=address, backend=backend)
    assert dev is not None, f"pyusb does not see {bus}/{address}"
    try:
        out: dict[str, float] = {}
        for name, size, n in (("sync 512 B", 512, 200), ("sync 64 KiB", 64 << 10, 48)):
            data = bytes(i % maxp % 63 for i in range(size))
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(n):
                    assert dev.write(ep, data, 10000) == size
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            out[name] = best
        return out
    finally:
        usb.util.dispose_resources(dev)


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3], 0), int(sys.argv[4]))))
