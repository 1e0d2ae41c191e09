"""wdfusb on the kernel's USB/IP: a gadget exported by usbip-host (``usbip bind``, ``usbipd`` on
loopback) and attached back through vhci-hcd (``usbip attach``), driven through the public API.

libusb lists both the local device (usbip-host holds it) and its remote copy on a vhci bus, with the
same VID, PID and serial: the tests open the copy by its port path. Every transfer to the copy
goes vhci-hcd -> TCP -> usbip-host -> dummy_hcd -> the gadget, and its completion back."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import gadget
import numpy as np
import pytest
import usbip
from conftest import RemoteGadget
from sigint import interrupt_child
from unplug import FIRST_ERRORS, assert_gone_soon

import wdfusb

SS_VID, SS_PID = 0x0525, 0xA4A0
GET_STATUS = 0x00
MIB = 1 << 20

pytestmark = pytest.mark.usbip


def local_strings(g: gadget.Gadget) -> dict[str, str]:
    assert g.usb_dir is not None
    return {k: (g.usb_dir / k).read_text().strip() for k in ("manufacturer", "product", "serial")}


def test_the_remote_copy_is_listed_marked_and_opened_by_its_port(
    usbip_sourcesink: RemoteGadget[gadget.SourceSink],
) -> None:
    r = usbip_sourcesink
    assert r.remote.busnum in usbip.vhci_buses() and r.gadget.busnum not in usbip.vhci_buses()
    copies = {d.port_path: d for d in wdfusb.list_devices(virtual=False) if (d.vid, d.pid) == (SS_VID, SS_PID)}
    assert set(copies) == {r.port_path, r.gadget.usb_dir.name}  # type: ignore[union-attr]
    assert copies[r.port_path].remote and not copies[r.gadget.usb_dir.name].remote  # type: ignore[union-attr]
    assert (copies[r.port_path].bus, copies[r.port_path].address) == (r.remote.busnum, r.remote.devnum)
    assert copies[r.port_path].speed == copies[r.gadget.usb_dir.name].speed  # type: ignore[union-attr]
    hubs = [d for d in wdfusb.list_devices(virtual=False) if d.bus in usbip.vhci_buses() and not d.ports]
    assert len(hubs) == len(usbip.vhci_buses()) >= 2  # a high-speed and a SuperSpeed one per vhci controller
    assert not any(h.remote for h in hubs)  # vhci's own root hubs are this machine's
    with pytest.raises(wdfusb.MultipleDevicesError):
        wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL)  # the same serial twice
    with r.open() as dev:
        assert dev.port_path == r.port_path and dev.serial_number == gadget.SERIAL


@pytest.mark.parametrize("packets", [1, 3, 128, 8192])  # 1 packet .. 4 MiB at high speed (8 MiB at super)
def test_writes_the_gadget_checks_and_reads_compared(
    usbip_sourcesink: RemoteGadget[gadget.SourceSink], bulk_maxp: int, packets: int
) -> None:
    size = packets * bulk_maxp
    data = gadget.mod63(size, bulk_maxp)
    with usbip_sourcesink.open() as dev:
        out, inp = dev.pipe(0x02), dev.pipe(0x81)
        assert out.write(data, timeout=30) == size
        assert out.write(data[:bulk_maxp], timeout=5) == bulk_maxp  # not halted: every byte was right
        got = inp.read(size, timeout=30)
        assert len(got) == size and zlib.crc32(got) == zlib.crc32(data)


def test_control_transfers_strings_and_get_status(usbip_sourcesink: RemoteGadget[gadget.SourceSink]) -> None:
    r = usbip_sourcesink
    with r.open() as dev:
        for size in (0, 1, 64, 65, 4096):
            data = bytes((i * 7 + size) & 0xFF for i in range(size))
            assert dev.control_write(0x40, 0x5B, 0, 0, data, timeout=5) == size
            assert dev.control_read(0xC0, 0x5C, 0, 0, size, timeout=5) == data
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_read(0xC0, 0x77, 0, 0, 6, timeout=5)  # Gadget Zero refuses it; EP0 goes on
        names = local_strings(r.gadget)
        assert {"manufacturer": dev.manufacturer, "product": dev.product, "serial": dev.serial_number} == names
        assert len(dev.control_read(0x80, GET_STATUS, 0, 0, 2, timeout=5)) == 2  # device status
        assert dev.control_read(0x82, GET_STATUS, 0, 0x02, 2, timeout=5) == b"\0\0"  # OUT pipe not halted


def test_streams_count_exactly(usbip_sourcesink: RemoteGadget[gadget.SourceSink], bulk_maxp: int) -> None:
    data = np.frombuffer(gadget.mod63(8 * MIB, bulk_maxp), np.uint8)
    with usbip_sourcesink.open() as dev:
        out = dev.pipe(0x02)
        with out.writer(depth=8, chunk=64 << 10, timeout=30) as w:
            assert w.write(data) == len(data)
        assert w.bytes_written == len(data) and w.peak_in_flight == 8
        assert out.write(gadget.mod63(bulk_maxp, bulk_maxp), timeout=5) == bulk_maxp
        with dev.pipe(0x81).reader(depth=8, chunk=64 << 10, timeout=30) as rd:
            got = rd.read(4 * MIB)
        assert got == gadget.mod63(4 * MIB, bulk_maxp)


def timed_out_write(dev: wdfusb.Device, ffs: gadget.FfsGadget, data: bytes) -> tuple[int, int]:
    """One write to a slowly reading FunctionFS gadget that times out: (the count wdfusb reports,
    what the gadget received by the time everything settled)."""
    out = dev.pipe(ffs.ep_out)
    with pytest.raises(wdfusb.UsbTimeoutError) as err:
        out.write(data, timeout=0.5)
    reported = err.value.bytes_transferred
    ffs.set_mode("count")  # drain what was queued, then nothing more comes
    time.sleep(1.0)
    received = ffs.received.bytes
    assert ffs.received.crc32 == zlib.crc32(data[:received])  # a prefix, in order
    return reported, received


@pytest.mark.parametrize(
    "usbip_ffs", [{"mode": "slow", "read_size": 4096, "slow_delay": 0.02, "in_source": False}], indirect=True
)
def test_a_timed_out_write_reports_no_more_than_the_device_received(
    usbip_ffs: RemoteGadget[gadget.FfsGadget], bulk_maxp: int
) -> None:
    """A write times out while the gadget reads slowly: libusb cancels the URB; vhci-hcd sends
    CMD_UNLINK, usbip-host unlinks the URB on the server and answers RET_UNLINK, which carries a
    status but no actual_length (drivers/usb/usbip: stub_tx.c sends RET_UNLINK instead of
    RET_SUBMIT for an unlinked URB, vhci_rx.c gives the URB back with the count it knew). So the
    count reported for a cancelled URB over USB/IP is what vhci had been told: 0, while the device
    received part of it. Locally (dummy_hcd) the two are equal (test_stream_libusb)."""
    data = np.random.default_rng(7).integers(0, 256, 1 * MIB, np.uint8).tobytes()
    with usbip_ffs.open() as dev:
        reported, received = timed_out_write(dev, usbip_ffs.gadget, data)
    print(f"\nUSB/IP timed-out 1 MiB write: wdfusb reports {reported} bytes, the gadget received {received}")
    assert reported % bulk_maxp == 0 and reported <= received < len(data)
    assert received > 0  # the slow reader took some of it before the time-out


@pytest.mark.parametrize("usbip_ffs", [{"mode": "slow", "read_size": 16384, "slow_delay": 0.005}], indirect=True)
def test_usbip_detach_mid_stream_is_a_removal(usbip_ffs: RemoteGadget[gadget.FfsGadget], bulk_maxp: int) -> None:
    r = usbip_ffs
    data = np.random.default_rng(3).integers(0, 256, 4 * MIB, np.uint8).tobytes()
    with r.open() as dev:
        w = dev.pipe(r.gadget.ep_out).writer(depth=8, chunk=64 << 10, timeout=10)
        threading.Timer(0.8, usbip.detach, args=(r.remote,)).start()
        deadline = time.monotonic() + 60
        with pytest.raises(FIRST_ERRORS) as err:
            while time.monotonic() < deadline:
                w.write(data)
            w.flush()
        assert err.value.bytes_transferred == w.bytes_written > 0
        assert w.bytes_written % bulk_maxp == 0  # whole packets only
        assert dev._core.native.live_transfers() == 0
        w.close()
        r.gadget.set_mode("count")
        time.sleep(1.0)
        received = r.gadget.received.bytes
        print(f"\nusbip detach mid-stream: wdfusb counted {w.bytes_written} bytes, the gadget received {received}")
        assert w.bytes_written <= received
        assert_gone_soon(dev.pipe(r.gadget.ep_out))
    assert not any(d.port_path == r.port_path for d in wdfusb.list_devices(virtual=False))


CTRL_C_CHILD = """
import sys, time, wdfusb
dev = wdfusb.open(vid=0x1D6B, pid=0x0105, port=sys.argv[1])
w = dev.pipe(int(sys.argv[2], 0)).writer(depth=4, chunk=65536)
print("blocked", flush=True)
try:
    w.write(bytes(8 * 65536))
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), dev._core.native.live_transfers(), w.bytes_written, flush=True)
w.close()
dev.close()
"""


@pytest.mark.parametrize("usbip_ffs", ["stop"], indirect=True)
def test_ctrl_c_while_a_write_to_the_remote_device_is_blocked(usbip_ffs: RemoteGadget[gadget.FfsGadget]) -> None:
    r = usbip_ffs
    latency, (in_flight, written) = interrupt_child(CTRL_C_CHILD, r.port_path, hex(r.gadget.ep_out), settle=0.5)
    print(f"\nCtrl-C over USB/IP: KeyboardInterrupt {latency * 1e3:.0f} ms after SIGINT")
    assert latency < 1.0
    assert in_flight == "0" and written == "0"
    with r.open() as dev:  # the device is fine after it: nothing of the child's is left in flight
        assert dev.control_read(0x80, GET_STATUS, 0, 0, 2, timeout=5) is not None


def test_the_cli_marks_the_remote_device(usbip_sourcesink: RemoteGadget[gadget.SourceSink]) -> None:
    r = usbip_sourcesink
    run = [sys.executable, "-m", "wdfusb"]
    out = subprocess.run([*run, "list", "--json"], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {row["port"]: row for row in json.loads(out.stdout) if (row["vid"], row["pid"]) == ("0525", "a4a0")}
    assert set(rows) == {r.port_path, r.gadget.usb_dir.name}  # type: ignore[union-attr]
    assert rows[r.port_path]["remote"] is True and rows[r.gadget.usb_dir.name]["remote"] is False  # type: ignore[union-attr]
    assert rows[r.port_path]["target"] == r.port_path  # VID:PID is ambiguous: the CLI names it by port
    table = subprocess.run([*run, "list"], capture_output=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.decode().splitlines()
    (marked,) = [i for i, ln in enumerate(lines) if "remote (usbip)" in ln]  # under its port path, in its row
    assert "0525:a4a0" in lines[marked - 1] and f" {r.port_path} " in lines[marked - 1]
    assert any("remote:" in ln and "usbip attach" in ln for ln in lines[marked:])  # the note under the table
    # readable with vhci-hcd's many root hubs: the one the copy is on is listed, the idle ones are counted
    shown = {ln.split()[0] for ln in lines if ln.strip().startswith("usb")}
    vhci = {f"usb{n}" for n in usbip.vhci_buses()}
    assert shown & vhci == {f"usb{r.remote.busnum}"}, shown
    assert f"not shown: {len(vhci) - 1} USB/IP root hubs with nothing attached" in table.stdout.decode()
    info = subprocess.run([*run, "info", r.port_path, "--json"], capture_output=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["remote"] is True
    text = subprocess.run([*run, "info", r.port_path], capture_output=True, timeout=300)
    assert text.returncode == 0 and b"remote (usbip)" in text.stdout, text.stderr


ROUNDS = 3  # each cell is the best of three (the rig shares its two cores with whatever else runs)


def bench_wdfusb(dev: wdfusb.Device, maxp: int, ep: int = 0x02) -> dict[str, float]:
    """µs per transfer: sync 512 B, sync 64 KiB; MB/s: depth 8 x 64 KiB."""
    out = dev.pipe(ep)
    small, big = gadget.mod63(512, maxp), gadget.mod63(64 << 10, maxp)
    res: dict[str, float] = {}
    for name, data, n in (("sync 512 B", small, 200), ("sync 64 KiB", big, 48)):
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            for _ in range(n):
                assert out.write(data, timeout=10) == len(data)
            times.append((time.perf_counter() - t0) / n * 1e6)
        res[name] = min(times)
    stream = np.frombuffer(gadget.mod63(8 * MIB, maxp), np.uint8)
    rates = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        with out.writer(depth=8, chunk=64 << 10, timeout=10) as w:
            w.write(stream)
        assert w.bytes_written == len(stream)
        rates.append(len(stream) / (time.perf_counter() - t0) / 1e6)
    res["depth 8 x 64 KiB"] = max(rates)
    return res


def bench_raw(run_raw_bench, bus: int, address: int, ids: tuple[int, int, int] = (SS_VID, SS_PID, 0x02)):  # type: ignore[no-untyped-def]
    res: dict[str, float] = {}
    where = ("--bus", str(bus), "--address", str(address))
    for name, size, count, extra in (
        ("sync 512 B", 512, 200, ()),
        ("sync 64 KiB", 64 << 10, 48, ()),
        ("depth 8 x 64 KiB", 64 << 10, 128, ("--async", "8")),
    ):
        cells = []
        for _ in range(ROUNDS):
            rc, raw, err = run_raw_bench(*ids, size, count, *where, *extra)
            assert rc == 0 and raw is not None and raw["bytes"] == size * count, err
            cells.append(float(raw["MBps"]) if extra else float(raw["us_per_transfer"]))
        res[name] = max(cells) if extra else min(cells)
    return res


def bench_pyusb(bus: int, address: int, maxp: int, ep: int = 0x02) -> dict[str, float]:
    """pyusb's sync writes, in a process of its own (tests/kernel/pyusb_writes.py); no depth 8."""
    script = str(Path(__file__).with_name("pyusb_writes.py"))
    res = subprocess.run(
        [sys.executable, script, str(bus), str(address), hex(ep), str(maxp)], capture_output=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    return {**json.loads(res.stdout), "depth 8 x 64 KiB": float("nan")}


def test_benchmark_usbip_loopback_against_the_local_device(  # type: ignore[no-untyped-def]
    sourcesink: gadget.SourceSink, bulk_maxp: int, run_raw_bench, rig_speed: str
) -> None:
    """Raw C libusb, wdfusb and pyusb on the local dummy_hcd device, on its USB/IP copy (the
    kernel's usbip-host, loopback), and on a virtual device served by ``wdfusb serve`` (also
    attached through vhci-hcd). Only that each ran and moved the right bytes is asserted; the
    table is printed."""
    assert sourcesink.usb_dir is not None
    busid = sourcesink.usb_dir.name
    table: dict[str, dict[str, float]] = {}
    table["raw C, local"] = bench_raw(run_raw_bench, sourcesink.busnum, sourcesink.devnum)
    with wdfusb.open(vid=SS_VID, pid=SS_PID, port=busid) as dev:
        table["wdfusb, local"] = bench_wdfusb(dev, bulk_maxp)
    table["pyusb, local"] = bench_pyusb(sourcesink.busnum, sourcesink.devnum, bulk_maxp)
    with usbip.Usbipd() as server, usbip.exported_and_attached(busid, server) as remote:
        table["raw C, USB/IP"] = bench_raw(run_raw_bench, remote.busnum, remote.devnum)
        with wdfusb.open(vid=SS_VID, pid=SS_PID, port=remote.busid) as dev:
            assert dev.port_path == remote.busid
            table["wdfusb, USB/IP"] = bench_wdfusb(dev, bulk_maxp)
        table["pyusb, USB/IP"] = bench_pyusb(remote.busnum, remote.devnum, bulk_maxp)
    served = (0x1209, 0x0001, 0x06)  # the default virtual profile's bulk OUT sink
    with usbip.WdfusbServe(sys.executable, serve_args=(f"virtual:{rig_speed}",)) as serve:
        at = serve.attachment
        assert at is not None
        table["raw C, serve"] = bench_raw(run_raw_bench, at.busnum, at.devnum, served)
        with wdfusb.open(port=at.busid) as dev:
            table["wdfusb, serve"] = bench_wdfusb(dev, bulk_maxp, 0x06)
        table["pyusb, serve"] = bench_pyusb(at.busnum, at.devnum, bulk_maxp, 0x06)
    cols = ["sync 512 B", "sync 64 KiB", "depth 8 x 64 KiB"]
    lines = [f"\nbenchmark ({rig_speed} speed, QEMU TCG guest, best of {ROUNDS}): µs per write; depth 8: MB/s"]
    lines.append(f"{'':16}" + "".join(f"{c:>18}" for c in cols))
    for row, cells in table.items():
        units = ["µs", "µs", "MB/s"]
        shown = ("-" if math.isnan(cells[c]) else f"{cells[c]:.1f}" for c in cols)
        lines.append(f"{row:16}" + "".join(f"{v:>14} {u:4}" for v, u in zip(shown, units, strict=True)))
    print("\n".join(lines))
    assert all(v > 0 for cells in table.values() for v in cells.values() if not math.isnan(v))
