"""Inside the kernel rig: what a running libusb event thread costs a synchronous transfer.

While wdfusb's libusb event thread sits in libusb's event handling, a synchronous transfer on
another thread completes through it (libusb hands the completion over: one thread switch more).
The thread handles events only while something needs it (an asynchronous transfer or an armed
stream ring's transfer in flight, a hotplug watch open) and idles otherwise. This times one
512-byte bulk write per call on Gadget Zero, best of 3 rounds, in one process: pyusb on its own
libusb1 backend (the reference), wdfusb before the event thread starts, after an awaited write
started it and returned (it idles), and while a hotplug watch holds it in libusb; pyusb on
wdfusb's backend with the thread idle and held::

    python tests/rig/qemu_rig.py run --speed high -- .venv/bin/python benchmarks/event_thread.py
"""

from __future__ import annotations

import asyncio
import errno
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
import wdfusb._engine  # noqa: E402
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
    dev = None
    # a gadget bound again: pyusb's libusb may still list the attachment that left (ENODEV) next
    # to the new one, in a process that used it before (the kernel lane's pyusb test)
    for candidate in usb.core.find(find_all=True, idVendor=VID, idProduct=PID, backend=backend):
        try:
            candidate.set_configuration()
        except usb.core.USBError as exc:
            usb.util.dispose_resources(candidate)
            if exc.errno != errno.ENODEV:
                raise
            continue
        dev = candidate
        break
    if dev is None:
        raise RuntimeError("pyusb found no gadget it could open")
    try:
        return per_call(lambda: dev.write(EP, data, 5000), calls)
    finally:
        usb.util.dispose_resources(dev)


def thread_state(expect: int) -> None:
    """Check the row measures what it says: the event thread idle (0) or handling events (1)."""
    deadline = time.monotonic() + 5
    while (state := wdfusb._engine.libusb_event_thread_state()[0]) != expect and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state == expect, f"the libusb event thread is in state {state}, not {expect}"


def run(calls: int = 1500) -> dict[str, float]:
    g = gadget.SourceSink(pattern=1)
    try:
        g.bind(wait=30)
        data = gadget.mod63(512, g.maxp)
        out = {"pyusb (libusb1 backend)": pyusb_writes(usb.backend.libusb1.get_backend(), data, calls)}
        with wdfusb.open(vid=VID, pid=PID) as dev:
            pipe = dev.pipe(EP)
            out["wdfusb, no event thread"] = per_call(lambda: pipe.write(data, timeout=5), calls)
            asyncio.run(pipe.write_async(data, timeout=5))  # starts the event thread; it idles once back
            thread_state(0)
            out["wdfusb, after the async write returned"] = per_call(lambda: pipe.write(data, timeout=5), calls)
        out["pyusb on wdfusb's backend, event thread idle"] = pyusb_writes(wdfusb.pyusb.get_backend(), data, calls)
        with wdfusb.watch(vid=VID, pid=PID):  # a hotplug watch holds the thread in libusb's events
            thread_state(1)
            with wdfusb.open(vid=VID, pid=PID) as dev:
                pipe = dev.pipe(EP)
                out["wdfusb, event thread running (a watch open)"] = per_call(
                    lambda: pipe.write(data, timeout=5), calls
                )
            out["pyusb on wdfusb's backend, event thread running"] = pyusb_writes(
                wdfusb.pyusb.get_backend(), data, calls
            )
        thread_state(0)
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
