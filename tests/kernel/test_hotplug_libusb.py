"""Devices that come and go on the real Linux USB stack: libusb hotplug, port paths against sysfs,
two gadgets on two buses, a cable pulled and plugged back mid-stream, a re-enumeration with a
changed descriptor, and a port cycle the kernel performs (the port's power switched off and on).

The rig loads dummy_hcd with ``num=2``: two UDCs, each with its own host bus."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import gadget
import pytest
import usbip
from test_wdf_libusb import open_pipes
from unplug import FIRST_ERRORS, unplug_after

import wdfusb
from wdfusb import hotplug
from wdfusb.wdf import *

SS_VID, SS_PID = 0x0525, 0xA4A0
MIB = 1 << 20


def events(w: wdfusb.Watch, n: int, within: float = 30.0) -> list[wdfusb.DeviceEvent]:
    out = []
    for _ in range(n):
        event = w.get(within)
        assert event is not None, f"only {out} in {within} s"
        out.append(event)
    return out


def stream_mod63(pipe: wdfusb.Pipe, size: int, maxp: int) -> int:
    """Stream ``size`` bytes the gadget checks (pattern 1): a wrong byte halts it and fails this."""
    with pipe.writer(depth=8, chunk=64 << 10, timeout=10) as w:
        w.write(gadget.mod63(size, maxp))
    return w.bytes_written


def test_port_paths_bus_and_address_match_sysfs(sourcesink: gadget.SourceSink, rig_speed: str) -> None:
    (info,) = [d for d in wdfusb.list_devices(virtual=False) if (d.vid, d.pid) == (SS_VID, SS_PID)]
    usb = sourcesink.usb_dir
    assert usb is not None
    assert info.port_path == usb.name  # "1-1": the kernel's name of the device
    assert (info.bus, info.address) == (sourcesink.busnum, sourcesink.devnum)
    assert (usb / "port").resolve().name == f"usb{info.bus}-port{info.ports[-1]}"
    with wdfusb.open(port=info.port_path) as dev:
        assert dev.port_path == usb.name and dev.serial_number == gadget.SERIAL
    hubs = {d.port_path for d in wdfusb.list_devices(virtual=False) if d.descriptor and d.descriptor.device_class == 9}
    # dummy_hcd num=2: two controllers, a root hub each at high speed, a USB 2 and a USB 3 one each at
    # super speed; every other root hub is vhci-hcd's (USB/IP), numbered after them
    dummy = {hub.name for hub in Path("/sys/devices/platform").glob("dummy_hcd.*/usb*")}
    assert len(dummy) == (4 if rig_speed == "super" else 2) and {"usb1", "usb2"} <= dummy, dummy
    vhci = {f"usb{n}" for n in usbip.vhci_buses()}
    assert vhci and hubs - vhci == dummy, hubs


def test_libusb_hotplug_reports_the_cable_pulled_and_plugged_back(sourcesink: gadget.SourceSink) -> None:
    assert hotplug.hotplug_events(), "libusb on Linux has hotplug: the watch must not poll"
    address, path = sourcesink.devnum, sourcesink.usb_dir.name  # type: ignore[union-attr]
    with wdfusb.watch(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL) as w:
        sourcesink.unplug()
        (left,) = events(w, 1)
        assert (left.kind, left.device.address, left.device.port_path) == ("left", address, path)
        sourcesink.replug()
        (back,) = events(w, 1)
        assert back.kind == "arrived" and back.device.port_path == path
        assert back.device.address == sourcesink.devnum != address
    assert wdfusb.wait_for(serial=gadget.SERIAL, timeout=1).address == sourcesink.devnum


def test_wait_for_returns_when_the_gadget_is_bound() -> None:
    g = gadget.SourceSink()
    try:
        found: list[wdfusb.UsbDeviceInfo] = []
        t = threading.Thread(target=lambda: found.append(wdfusb.wait_for(vid=SS_VID, serial=gadget.SERIAL, timeout=60)))
        t.start()
        time.sleep(0.2)
        assert not found  # nothing bound yet
        g.bind()
        t.join(60)
        assert len(found) == 1 and found[0].address == g.devnum and found[0].port_path == g.usb_dir.name  # type: ignore[union-attr]
    finally:
        g.remove()


def test_two_gadgets_on_two_buses_stream_at_once(bulk_maxp: int) -> None:
    a = gadget.SourceSink(name="wdfusb-ss-a", udc=0, serial="wdfusb-rig-a")
    b = gadget.SourceSink(name="wdfusb-ss-b", udc=1, serial="wdfusb-rig-b")
    try:
        a.bind()
        b.bind()
        assert a.busnum != b.busnum
        with pytest.raises(wdfusb.MultipleDevicesError) as many:
            wdfusb.open(vid=SS_VID, pid=SS_PID)
        text = str(many.value)
        assert text.startswith("2 devices match") and "give serial= or port=" in text
        assert a.usb_dir is not None and b.usb_dir is not None
        assert a.usb_dir.name in text and b.usb_dir.name in text
        with wdfusb.open(serial="wdfusb-rig-a") as da, wdfusb.open(port=b.usb_dir.name) as db:
            assert (da.port_path, db.port_path) == (a.usb_dir.name, b.usb_dir.name)
            assert db.serial_number == "wdfusb-rig-b"
            moved: dict[str, int] = {}
            threads = [
                threading.Thread(
                    target=lambda d=d, k=k: moved.__setitem__(k, stream_mod63(d.pipe(0x02), 8 * MIB, bulk_maxp))
                )
                for d, k in ((da, "a"), (db, "b"))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert moved == {"a": 8 * MIB, "b": 8 * MIB}
            for d in (da, db):  # neither gadget halted: every byte each one saw was right
                assert d.pipe(0x02).write(gadget.mod63(bulk_maxp, bulk_maxp), timeout=5) == bulk_maxp
    finally:
        a.remove()
        b.remove()


def test_reconnect_after_the_cable_is_pulled_mid_stream(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    with wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL) as dev:
        pipe = dev.pipe(0x02)
        w = pipe.writer(depth=8, chunk=64 << 10, timeout=10)
        unplug_after(sourcesink, 0.5)
        data = gadget.mod63(4 * MIB, bulk_maxp)
        with pytest.raises(FIRST_ERRORS) as err:
            for _ in range(100):
                w.write(data)
            w.flush()
        assert err.value.bytes_transferred == w.bytes_written > 0 and w.bytes_written % bulk_maxp == 0
        w.close()
        threading.Timer(0.5, sourcesink.replug, kwargs={"wait": None}).start()
        dev.reconnect(timeout=60)
        assert dev.pipe(0x02) is pipe and dev.port_path == sourcesink.wait_enumerated().name
        assert stream_mod63(pipe, 4 * MIB, bulk_maxp) == 4 * MIB
        assert dev.pipe(0x81).read(bulk_maxp, timeout=5) == gadget.mod63(bulk_maxp, bulk_maxp)


def test_re_enumeration_with_a_changed_descriptor(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """A firmware update: the device leaves and comes back with another bcdDevice and product."""
    with wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL) as dev:
        assert dev.descriptor.bcd_device == 0x0100
        sourcesink.unbind()
        (sourcesink.root / "bcdDevice").write_text("0x0201")
        (sourcesink.root / "strings/0x409/product").write_text("wdfusb SourceSink v2.1")
        threading.Timer(0.3, sourcesink.bind, kwargs={"wait": None}).start()
        dev.reconnect(timeout=60)
        assert dev.descriptor.bcd_device == 0x0201 and dev.product == "wdfusb SourceSink v2.1"
        assert stream_mod63(dev.pipe(0x02), MIB, bulk_maxp) == MIB


def sysfs_devnum(port_path: str) -> int:
    return int((Path("/sys/bus/usb/devices") / port_path / "devnum").read_text())


def test_a_port_cycle_the_kernel_performs(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """cycle_port switches the port's power off and on (sysfs): the kernel disconnects the device and
    enumerates it again with a new address; the Device reconnects with the same Pipe objects."""
    with wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL) as dev, wdfusb.watch(serial=gadget.SERIAL) as w:
        pipe, path, address = dev.pipe(0x02), dev.port_path, sourcesink.devnum
        assert path is not None
        dev.cycle_port(timeout=60)
        assert [e.kind for e in events(w, 2)] == ["left", "arrived"]
        assert sysfs_devnum(path) != address and dev.port_path == path and dev.pipe(0x02) is pipe
        assert stream_mod63(pipe, MIB, bulk_maxp) == MIB


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_cycle_port_synchronously_cancels_the_sent_io_first(ffs_gadget: gadget.FfsGadget) -> None:
    """FxUsbDevice::CyclePort: CancelSentIo, then the cycle; the old target's I/O is over, a new
    target on the re-enumerated device works (the gadget never reads: the write waits on NAKs)."""
    device, pipes, _ = open_pipes(ffs_gadget.vid, ffs_gadget.pid)
    out = next(a for a in pipes if not a & 0x80)
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, bytearray(1 << 20), 1 << 20)
    written = ULONG(123)
    sent: list[int] = []
    t = threading.Thread(
        target=lambda: sent.append(WdfUsbTargetPipeWriteSynchronously(pipes[out], None, None, desc, written))
    )
    t.start()
    time.sleep(0.5)
    assert t.is_alive()  # waiting on NAKs
    address = ffs_gadget.devnum
    assert WdfUsbTargetDeviceCyclePortSynchronously(device) == STATUS_SUCCESS
    t.join(10)
    assert sent == [STATUS_CANCELLED] and written.value < 1 << 20
    assert WdfUsbTargetDeviceIsConnectedSynchronous(device) == STATUS_DEVICE_DOES_NOT_EXIST
    again = WDFUSBDEVICE()
    back = wdfusb.wait_for(vid=ffs_gadget.vid, pid=ffs_gadget.pid, timeout=60)
    assert back.address != address
    assert WdfUsbTargetDeviceCreate(back, WDF_NO_OBJECT_ATTRIBUTES, again) == STATUS_SUCCESS
    assert WdfUsbTargetDeviceIsConnectedSynchronous(again) == STATUS_SUCCESS
    WdfObjectDelete(again)
    WdfObjectDelete(device)


def test_an_async_watch_and_async_streams_across_a_replug(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """asyncio end to end: an async writer and reader on the gadget, the cable pulled under them,
    ``async for`` over the watch for the removal and the return, then the streams again."""

    async def main() -> None:
        with wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL) as dev:
            async with dev.pipe(0x02).writer(depth=8, chunk=64 << 10, timeout=10) as w:
                assert await w.write_async(gadget.mod63(2 * MIB, bulk_maxp)) == 2 * MIB
                await w.flush_async()
            async with dev.pipe(0x81).reader(depth=8, chunk=64 << 10, timeout=10) as r:
                got = await r.read_async(MIB)
                assert got == gadget.mod63(MIB, bulk_maxp)
            with wdfusb.watch(serial=gadget.SERIAL) as events:
                w = dev.pipe(0x02).writer(depth=8, chunk=64 << 10, timeout=10)
                unplug_after(sourcesink, 0.3)
                with pytest.raises(FIRST_ERRORS) as err:
                    for _ in range(200):
                        await w.write_async(gadget.mod63(MIB, bulk_maxp))
                    await w.flush_async()
                assert err.value.bytes_transferred == w.bytes_written and w.bytes_written % bulk_maxp == 0
                await w.aclose()
                kinds = []
                threading.Timer(0.3, sourcesink.replug, kwargs={"wait": None}).start()
                async for event in events:
                    kinds.append(event.kind)
                    if event.kind == "arrived":
                        break
                assert kinds == ["left", "arrived"]
            dev.reconnect(timeout=60)
            async with dev.pipe(0x02).writer(depth=8, chunk=64 << 10, timeout=10) as w:
                assert await w.write_async(gadget.mod63(MIB, bulk_maxp)) == MIB

    asyncio.run(main())


def test_the_cli_names_the_gadget_by_its_port_path(sourcesink: gadget.SourceSink) -> None:
    path = sourcesink.usb_dir.name  # type: ignore[union-attr]
    out = subprocess.run([sys.executable, "-m", "wdfusb", "list", "--json"], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (row,) = [r for r in json.loads(out.stdout) if r["serial"] == gadget.SERIAL]
    assert row["port"] == path
    info = subprocess.run([sys.executable, "-m", "wdfusb", "info", path, "--json"], capture_output=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["serial"] == gadget.SERIAL
