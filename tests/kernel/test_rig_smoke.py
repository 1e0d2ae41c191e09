"""Smoke tests of the kernel rig itself (no wdfusb needed): gadgets enumerate and
the raw C libusb reference moves verified data through dummy_hcd."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import gadget
import pytest

MIB = 1024 * 1024


def test_rig_environment(rig_speed: str) -> None:
    assert rig_speed in ("high", "super")
    assert os.getuid() == 0
    assert gadget.udc_name().startswith("dummy_udc")
    with open("/sys/module/usbcore/parameters/usbfs_memory_mb") as f:  # the stock kernel's cap
        assert f.read().strip() == "16"
    assert Path("/sys/devices/platform/vhci_hcd.0").is_dir() and Path("/sys/bus/usb/drivers/usbip-host").is_dir()
    assert shutil.which("usbipd") and shutil.which("usbip")  # USB/IP: the usbip package
    flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    assert flags & 1  # IFF_UP: the loopback USB/IP runs over


def test_sourcesink_enumerates(sourcesink: gadget.SourceSink, rig_speed: str, bulk_maxp: int) -> None:
    dev = sourcesink.usb_dir
    assert dev is not None
    assert (dev / "idVendor").read_text().strip() == "0525"
    assert (dev / "idProduct").read_text().strip() == "a4a0"
    assert (dev / "serial").read_text().strip() == gadget.SERIAL
    assert sourcesink.speed_mbps == (5000 if rig_speed == "super" else 480)
    eps = sourcesink.endpoints()
    assert set(eps) == {0x81, 0x02} and (sourcesink.ep_out, sourcesink.ep_in) == (0x02, 0x81)
    assert eps[0x02] == {"type": "Bulk", "maxp": bulk_maxp, "direction": "out"}
    assert eps[0x81]["type"] == "Bulk" and eps[0x81]["direction"] == "in"
    node = f"/dev/bus/usb/{sourcesink.busnum:03d}/{sourcesink.devnum:03d}"
    assert os.path.exists(node), f"{node} missing (devtmpfs not mounted?)"


def test_raw_bench_writes_1mib_pattern1(sourcesink: gadget.SourceSink, run_raw_bench, bulk_maxp: int) -> None:
    rc, out, err = run_raw_bench(0x0525, 0xA4A0, 0x02, MIB, 1)
    assert rc == 0, err
    assert out is not None and out["error"] is None
    assert out["bytes"] == MIB and out["maxp"] == bulk_maxp
    assert out["serial"] == gadget.SERIAL  # string descriptor read through libusb


@pytest.mark.parametrize("size,count,depth", [(512, 200, 0), (65536, 32, 0), (65536, 64, 4)])
def test_raw_bench_throughput(
    sourcesink: gadget.SourceSink, run_raw_bench, rig_speed: str, size: int, count: int, depth: int
) -> None:
    extra = ("--async", str(depth)) if depth else ()
    rc, out, err = run_raw_bench(0x0525, 0xA4A0, 0x02, size, count, *extra)
    assert rc == 0, err
    assert out is not None and out["done"] == count and out["bytes"] == size * count
    print(
        f"\nRAW[{rig_speed}] size={size} count={count} depth={depth}: "
        f"{out['MBps']:.1f} MB/s, {out['us_per_transfer']:.0f} us/transfer"
    )


def test_raw_bench_reads_in_endpoint(sourcesink: gadget.SourceSink, run_raw_bench, bulk_maxp: int) -> None:
    rc, out, err = run_raw_bench(0x0525, 0xA4A0, 0x81, 65536, 4)
    assert rc == 0, err
    assert out is not None and out["bytes"] == 4 * 65536 and out["maxp"] == bulk_maxp


def test_bad_byte_stalls(sourcesink: gadget.SourceSink, run_raw_bench) -> None:
    rc, out, err = run_raw_bench(0x0525, 0xA4A0, 0x02, 65536, 8, "--bad-byte")
    assert rc == 3, (rc, out, err)
    assert out is not None and out["error"] == "LIBUSB_ERROR_PIPE"


@pytest.mark.parametrize("sourcesink", [0], indirect=True)
def test_pattern0_sink_rejects_nonzero_data(sourcesink: gadget.SourceSink, run_raw_bench) -> None:
    assert sourcesink.pattern == 0
    rc, out, _ = run_raw_bench(0x0525, 0xA4A0, 0x02, 65536, 4)
    assert rc == 3 and out is not None and out["error"] == "LIBUSB_ERROR_PIPE"


def test_unbind_rebind(sourcesink: gadget.SourceSink) -> None:
    first = sourcesink.devnum
    sourcesink.unbind()
    assert gadget.find_usb_device(0x0525, 0xA4A0) is None
    sourcesink.bind(wait=30)
    assert gadget.find_usb_device(0x0525, 0xA4A0) is not None
    assert sourcesink.devnum != first


def test_unplug_is_seen_by_the_host(sourcesink: gadget.SourceSink) -> None:
    assert sourcesink.usb_dir is not None
    sourcesink.unplug()
    assert gadget.find_usb_device(0x0525, 0xA4A0) is None


def test_hid_enumerates_and_receives(hid_gadget: gadget.HidGadget, run_raw_bench) -> None:
    eps = hid_gadget.endpoints()
    outs = [a for a, e in eps.items() if e["direction"] == "out"]
    ins = [a for a, e in eps.items() if e["direction"] == "in"]
    assert outs == [hid_gadget.ep_out] and ins == [hid_gadget.ep_in]
    assert all(e["type"] == "Interrupt" and e["maxp"] == 64 for e in eps.values())
    rc, out, err = run_raw_bench(hid_gadget.vid, hid_gadget.pid, outs[0], 64, 10)
    assert rc == 0 and out is not None and out["bytes"] == 640, err
    assert hid_gadget.received.wait_bytes(640, timeout=20) == 640
    assert hid_gadget.received.reads == 10
    assert hid_gadget.reports[0] == gadget.mod63(64, 64)


def test_ffs_enumerates_and_counts(ffs_gadget: gadget.FfsGadget, run_raw_bench, bulk_maxp: int) -> None:
    eps = ffs_gadget.endpoints()
    out_ep, in_ep = ffs_gadget.ep_out, ffs_gadget.ep_in
    assert (out_ep, in_ep) == (0x02, 0x81)  # dummy_hcd's autoconfig, not the 0x01/0x82 we wrote
    assert eps[out_ep]["direction"] == "out" and eps[in_ep]["direction"] == "in"
    assert eps[out_ep]["type"] == eps[in_ep]["type"] == "Bulk"
    assert eps[out_ep]["maxp"] == bulk_maxp
    rc, out, err = run_raw_bench(ffs_gadget.vid, ffs_gadget.pid, out_ep, MIB, 1)
    assert rc == 0, err
    assert ffs_gadget.received.wait_bytes(MIB, timeout=30) == MIB
    assert ffs_gadget.received.crc32 == zlib.crc32(gadget.mod63(MIB, bulk_maxp))
    rc, out, err = run_raw_bench(ffs_gadget.vid, ffs_gadget.pid, in_ep, 65536, 2)
    assert rc == 0 and out is not None and out["bytes"] == 2 * 65536, err
    assert ffs_gadget.sent.bytes >= 2 * 65536
    assert "ENABLE" in ffs_gadget.events


@pytest.mark.parametrize("ffs_gadget", ["stop"], indirect=True)
def test_ffs_stop_mode_times_out(ffs_gadget: gadget.FfsGadget, run_raw_bench) -> None:
    rc, out, _ = run_raw_bench(ffs_gadget.vid, ffs_gadget.pid, ffs_gadget.ep_out, 65536, 1, "--timeout", "500")
    assert rc == 4 and out is not None and out["error"] == "LIBUSB_ERROR_TIMEOUT"
    assert ffs_gadget.received.bytes == 0
