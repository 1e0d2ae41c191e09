"""Write throughput on a real device, one transfer in flight, against the references.

Methods, each measured in the same run on the same device and endpoint:

* ``raw-c``     — a C program calling libusb_bulk_transfer in a loop (tests/kernel/raw_libusb_bench.c)
* ``c-loop``    — wdfusb's engine looping in C (no Python per transfer)
* ``wdf``       — ``WdfUsbTargetPipeWriteSynchronously`` from Python
* ``pythonic``  — ``wdfusb`` ``pipe.write`` from Python
* ``pyusb``     — pyusb 1.3 ``ep.write`` (libusb1 backend, same libusb)
* ``libusb1``   — python-libusb1 ``bulkWrite``

Ratios are to ``raw-c``. In the kernel rig the device is Gadget Zero's SourceSink with
pattern=1, so the gadget verifies every byte each method sends::

    python tests/rig/qemu_rig.py run --speed super -- .venv/bin/python benchmarks/compare_libusb.py --sourcesink
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wdfusb
from wdfusb import _engine

ROOT = Path(__file__).resolve().parent.parent
SIZES = [512, 4096, 65536, 512 << 10, 4 << 20]
Writer = Callable[[bytes], int]


def mod63(size: int, maxp: int) -> bytes:
    """Data SourceSink's pattern=1 accepts: each packet restarts i % 63."""
    packet = bytes(i % 63 for i in range(maxp))
    return (packet * (size // maxp + 1))[:size]


def timed(write: Writer, data: bytes, budget: float) -> tuple[int, float]:
    """Transfers done and seconds taken, for about ``budget`` seconds of writing."""
    write(data)  # warm up (and catch a failure before timing)
    t0 = time.perf_counter()
    count = 0
    while True:
        assert write(data) == len(data)
        count += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= budget and count >= 3:
            return count, elapsed


def pythonic(vid: int, pid: int, ep: int) -> tuple[Writer, Callable[[], None]]:
    dev = wdfusb.open(vid=vid, pid=pid)
    pipe = dev.pipe(ep)
    return (lambda d: pipe.write(d, timeout=10)), dev.close


def c_loop(vid: int, pid: int, ep: int) -> tuple[Callable[[bytes, int], float], Callable[[], None]]:
    dev = wdfusb.open(vid=vid, pid=pid)
    core = dev.pipe(ep)._core
    x = core.new_transfer()

    def run(data: bytes, count: int) -> float:
        rc, seconds = x.bench_loop(ep, core.type, _engine.pin(data), len(data), count, 10_000_000)
        assert rc == 0, rc
        return seconds

    def close() -> None:
        x.free()
        dev.close()

    return run, close


def wdf(vid: int, pid: int, ep: int) -> tuple[Writer, Callable[[], None]]:
    from wdfusb import wdf as w

    device = w.WDFUSBDEVICE()
    assert w.WdfUsbTargetDeviceCreate(wdfusb.find_device(vid=vid, pid=pid), None, device) == 0
    params = w.WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    w.WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert w.NT_SUCCESS(w.WdfUsbTargetDeviceSelectConfig(device, None, params))
    iface = w.WdfUsbTargetDeviceGetInterface(device, 0)
    pipe = None
    for i in range(w.WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        info = w.WDF_USB_PIPE_INFORMATION()
        w.WDF_USB_PIPE_INFORMATION_INIT(info)
        p = w.WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
        if info.EndpointAddress == ep:
            pipe = p
    desc, written = w.WDF_MEMORY_DESCRIPTOR(), w.ULONG()

    def write(data: bytes) -> int:
        w.WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, data, len(data))
        status = w.WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, written)
        assert w.NT_SUCCESS(status), status
        return int(written.value)

    return write, lambda: w.WdfObjectDelete(device)


def pyusb(vid: int, pid: int, ep: int) -> tuple[Writer, Callable[[], None]]:
    import libusb_package
    import usb.backend.libusb1
    import usb.core
    import usb.util

    backend = usb.backend.libusb1.get_backend(find_library=lambda _: str(libusb_package.get_library_path()))
    dev = usb.core.find(idVendor=vid, idProduct=pid, backend=backend)
    assert dev is not None
    dev.set_configuration()
    return (lambda d: dev.write(ep, d, timeout=10_000)), lambda: usb.util.dispose_resources(dev)


def libusb1(vid: int, pid: int, ep: int) -> tuple[Writer, Callable[[], None]]:
    import usb1

    ctx = usb1.USBContext()
    handle = ctx.openByVendorIDAndProductID(vid, pid)
    assert handle is not None
    handle.claimInterface(0)

    def close() -> None:
        handle.releaseInterface(0)
        handle.close()
        ctx.close()

    return (lambda d: handle.bulkWrite(ep, d, timeout=10_000)), close


def raw_c(binary: str, vid: int, pid: int, ep: int, data: bytes, count: int) -> float:
    out = subprocess.run(
        [
            binary,
            "--vid",
            hex(vid),
            "--pid",
            hex(pid),
            "--ep",
            hex(ep),
            "--size",
            str(len(data)),
            "--count",
            str(count),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(json.loads(out.stdout)["seconds"])


def run(vid: int, pid: int, ep: int, maxp: int, raw: str | None, budget: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    methods: dict[str, Callable[[int, int, int], tuple[Writer, Callable[[], None]]]] = {
        "wdf": wdf,
        "pythonic": pythonic,
        "pyusb": pyusb,
        "libusb1": libusb1,
    }
    for size in SIZES:
        data = mod63(size, maxp)
        cells: dict[str, float] = {}  # seconds per transfer
        count = 0
        for name, make in methods.items():
            try:
                write, close = make(vid, pid, ep)
            except ImportError as exc:
                print(f"  {name}: not installed ({exc})", file=sys.stderr)
                continue
            try:
                count, secs = timed(write, data, budget)
                cells[name] = secs / count
            finally:
                close()
        loop, close = c_loop(vid, pid, ep)
        try:
            cells["c-loop"] = loop(data, count) / count
        finally:
            close()
        if raw:
            cells["raw-c"] = raw_c(raw, vid, pid, ep, data, count) / count
        ref = cells.get("raw-c")
        for name, per in cells.items():
            rows.append(
                {
                    "size": size,
                    "method": name,
                    "us_per_transfer": per * 1e6,
                    "MBps": size / per / 1e6,
                    "ratio_to_raw_c_time": per / ref if ref else None,
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| size | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for size in dict.fromkeys(r["size"] for r in rows):
        cells = {r["method"]: r for r in rows if r["size"] == size}
        out = []
        for m in methods:
            r = cells.get(m)
            if r is None:
                out.append("—")
                continue
            ratio = f" ({r['ratio_to_raw_c_time']:.2f}x)" if r["ratio_to_raw_c_time"] else ""
            out.append(f"{r['MBps']:.1f} MB/s, {r['us_per_transfer']:.0f} µs{ratio}")
        label = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vid", type=lambda s: int(s, 16), default=0x0525)
    ap.add_argument("--pid", type=lambda s: int(s, 16), default=0xA4A0)
    ap.add_argument("--ep", type=lambda s: int(s, 0), default=0x02)
    ap.add_argument("--raw", help="the raw C libusb benchmark binary")
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per cell")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--sourcesink", action="store_true", help="inside the kernel rig: create the gadget first")
    args = ap.parse_args()
    gadget_obj = None
    if args.sourcesink:
        sys.path[:0] = [str(ROOT / "tests" / "kernel"), str(ROOT / "tests" / "rig")]
        import gadget
        import qemu_rig

        gadget_obj = gadget.SourceSink(pattern=1)
        gadget_obj.bind(wait=30)
        args.raw = args.raw or str(qemu_rig.build_raw_bench())
    try:
        dev = wdfusb.open(vid=args.vid, pid=args.pid)
        maxp, speed = dev.pipe(args.ep).max_packet, dev.speed
        dev.close()
        rows = run(args.vid, args.pid, args.ep, maxp, args.raw, args.budget)
    finally:
        if gadget_obj is not None:
            gadget_obj.remove()
    print(f"\nwrites to {args.vid:04x}:{args.pid:04x} endpoint 0x{args.ep:02X} ({speed} speed), one transfer in flight")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"speed": speed, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
