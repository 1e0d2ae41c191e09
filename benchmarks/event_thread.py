"""Inside the kernel rig: what a running libusb event thread costs a synchronous transfer.

Once an awaited transfer or a hotplug watch has started wdfusb's libusb event thread, that
thread sits in libusb's event handling, and a synchronous transfer on another thread completes
through it (libusb hands the completion over: one thread switch more). This times one 512-byte
bulk write per call on Gadget Zero, best of 3 rounds, in one process: pyusb on its own libusb1
backend (the reference), wdfusb before and after the event thread starts, and pyusb on wdfusb's
backend::

    python tests/rig/qemu_rig.py run --speed high -- .venv/bin/python benchmarks/event_thread.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "kernel")]

import gadget  # noqa: E402
import usb.backend.libusb1  # noqa: E402
import usb.core  # noqa: E402
import usb.util  # noqa: E402

import wdfusb  # noqa: E402
import wdfusb.pyusb  # noqa: E402

VID, PID, EP = 0x0525, 0xA4A0, 0x02


def per_call(fn: Callable[[], Any], calls: int) -> float:
    """Microseconds per call, best of 3 rounds."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e6


def pyusb_writes(backend: Any, data: bytes, calls: int) -> float:
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    dev.set_configuration()
    try:
        return per_call(lambda: dev.write(EP, data, 5000), calls)
    finally:
        usb.util.dispose_resources(dev)


def run(calls: int = 1500) -> dict[str, float]:
    g = gadget.SourceSink(pattern=1)
    try:
        g.bind(wait=30)
        data = gadget.mod63(512, g.maxp)
        out = {"pyusb (libusb1 backend)": pyusb_writes(usb.backend.libusb1.get_backend(), data, calls)}
        with wdfusb.open(vid=VID, pid=PID) as dev:
            pipe = dev.pipe(EP)
            out["wdfusb, no event thread"] = per_call(lambda: pipe.write(data, timeout=5), calls)
            asyncio.run(pipe.write_async(data, timeout=5))  # starts the event thread, for good
            out["wdfusb, event thread running"] = per_call(lambda: pipe.write(data, timeout=5), calls)
        out["pyusb on wdfusb's backend, event thread running"] = pyusb_writes(wdfusb.pyusb.get_backend(), data, calls)
        out["pyusb (libusb1 backend), again"] = pyusb_writes(usb.backend.libusb1.get_backend(), data, calls)
        return out
    finally:
        g.remove()


def main(argv: list[str]) -> int:
    result = run(int(argv[0]) if argv else 1500)
    for name, us in result.items():
        print(f"{name:50s} {us:8.1f} µs per 512-byte write")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
