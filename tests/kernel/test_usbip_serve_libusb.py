"""`wdfusb serve` attached by the real kernel: vhci-hcd imports a virtual device over USB/IP on
loopback, and wdfusb, an unchanged pyusb script and a raw C libusb program use it through the
guest's USB stack (usbfs, the hub driver, the kernel's enumeration).

Every test runs its own server (``--virtual-fault report``: at exit it prints what each OUT
endpoint received), so the bytes the host says it moved are checked against the bytes the served
device took, also after a time-out, a detach and the device leaving on the server's side.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import gadget
import pytest
import usbip

import wdfusb

VID, PID, OUT, IN = 0x1209, 0x0001, 0x06, 0x88  # the default virtual profile: bulk loopback
pytestmark = pytest.mark.usbip


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[usbip.WdfusbServe]:
    """``wdfusb serve virtual:high`` attached here (params: more wdfusb options, e.g. a fault)."""
    usbip.detach_all()  # a crashed test's leftovers
    with usbip.WdfusbServe(sys.executable, *getattr(request, "param", ())) as s:
        yield s


def sysfs(s: usbip.WdfusbServe) -> Path:
    assert s.attachment is not None
    return s.attachment.usb_dir


def test_the_kernel_enumerates_the_served_device(served: usbip.WdfusbServe) -> None:
    assert served.busid == "0-1"
    assert (sysfs(served) / "speed").read_text().strip() == "480"
    assert (sysfs(served) / "product").read_text().strip() == "wdfusb virtual device"
    assert (sysfs(served) / "bConfigurationValue").read_text().strip() == "1"  # the kernel configured it
    with wdfusb.open(vid=VID, pid=PID) as dev:
        assert dev.serial_number == (sysfs(served) / "serial").read_text().strip()
        assert dev.speed == "high"


def test_wdfusb_moves_data_through_the_kernel(served: usbip.WdfusbServe) -> None:
    data = os.urandom(1 << 20)
    with wdfusb.open(vid=VID, pid=PID) as dev:
        assert dev.pipe(OUT).write(data, timeout=60) == len(data)
        back = dev.pipe(IN).read(len(data), timeout=60)
        assert zlib.crc32(back) == zlib.crc32(data)
        blob = os.urandom(64)
        dev.control_write(0x40, 0x5B, 0, 0, blob)
        assert dev.control_read(0xC0, 0x5C, 0, 0, 64) == blob
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_read(0xC0, 0x77, 0, 0, 1)
    assert served.stop()[OUT] == len(data)


PYUSB_SCRIPT = """
import array, os, sys
import usb.backend.libusb1, usb.core, usb.util
from wdfusb import _engine
path = _engine.libusb_path() or None
backend = usb.backend.libusb1.get_backend(find_library=(lambda _name: path) if path else None)
dev = usb.core.find(idVendor=0x1209, idProduct=0x0001, backend=backend)
data = array.array("B", os.urandom(64 << 10))
assert dev.write(0x06, data, 30000) == len(data)
assert dev.read(0x88, len(data), 30000) == data
assert dev.ctrl_transfer(0x40, 0x5B, 0, 0, b"pyusb over usbip") == 16
assert bytes(dev.ctrl_transfer(0xC0, 0x5C, 0, 0, 16)) == b"pyusb over usbip"
print(usb.util.get_string(dev, dev.iSerialNumber))
usb.util.dispose_resources(dev)
"""


def test_an_unchanged_pyusb_script(served: usbip.WdfusbServe) -> None:
    """pyusb on its own libusb1 backend, in a process of its own (a pyusb context made before the
    device was attached would never list it)."""
    res = subprocess.run([sys.executable, "-c", PYUSB_SCRIPT], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (sysfs(served) / "serial").read_text().strip()
    assert served.stop()[OUT] == 64 << 10


def test_a_raw_c_libusb_program(served: usbip.WdfusbServe, run_raw_bench) -> None:  # type: ignore[no-untyped-def]
    rc, sync, err = run_raw_bench(VID, PID, OUT, 65536, 16)
    assert rc == 0 and sync is not None, err
    rc, deep, err = run_raw_bench(VID, PID, OUT, 65536, 32, "--async", "8")
    assert rc == 0 and deep is not None, err
    print(f"\nraw C over wdfusb serve: sync 64 KiB {sync['MBps']:.2f} MB/s, depth 8 {deep['MBps']:.2f} MB/s")
    assert served.stop()[OUT] == 48 * 65536


def test_a_time_out_reports_every_byte_that_moved(served: usbip.WdfusbServe) -> None:
    """The host's time-out becomes an USB/IP unlink; the server answers with the URB's exact
    count, so the error's byte count is what the device took."""
    data = os.urandom(32 << 20)
    with wdfusb.open(vid=VID, pid=PID) as dev:
        with pytest.raises(wdfusb.UsbTimeoutError) as timed_out:
            dev.pipe(OUT).write(data, timeout=1.0)
        moved = timed_out.value.bytes_transferred
        assert 0 < moved < len(data) and moved % 512 == 0
        assert dev.pipe(OUT).write(b"next", timeout=30) == 4  # nothing was left in flight
    assert served.stop()[OUT] == moved + 4


def test_usbip_detach_mid_stream_is_a_removal(served: usbip.WdfusbServe) -> None:
    with wdfusb.open(vid=VID, pid=PID) as dev, dev.pipe(OUT).writer(depth=4, chunk=256 << 10) as writer:
        pulled = threading.Timer(2.0, served.detach)
        pulled.start()
        try:
            with pytest.raises(wdfusb.DeviceGoneError) as gone:
                block = os.urandom(256 << 10)
                for _ in range(4096):
                    writer.write(block)
                writer.flush()
        finally:
            pulled.join()
        reported = gone.value.bytes_transferred
    received = served.stop()[OUT]
    # vhci gives the URBs it still had back with no count (the connection is gone): whole packets,
    # never more than the device took
    assert reported % 512 == 0 and 0 < reported <= received


@pytest.mark.parametrize("served", [("--virtual-fault", "unplug-after:8")], indirect=True)
def test_the_device_leaving_the_server_is_a_removal(served: usbip.WdfusbServe) -> None:
    """The served device unplugs (8 s after the server started): the server closes the session,
    vhci-hcd reports the port disconnected, and the write in flight ends with DeviceGoneError."""
    with wdfusb.open(vid=VID, pid=PID) as dev:
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.pipe(OUT).write(os.urandom(256 << 20), timeout=120)
    deadline = time.monotonic() + 30
    while gadget.find_usb_device(VID, PID) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gadget.find_usb_device(VID, PID) is None
    assert not any(p.used for p in usbip.vhci_ports())


def test_the_served_device_is_listed_once_and_remote(served: usbip.WdfusbServe) -> None:
    """The attached device is listed once, on a vhci bus, marked remote, with its port path."""
    found = [d for d in wdfusb.list_devices(virtual=False) if (d.vid, d.pid) == (VID, PID)]
    assert len(found) == 1 and found[0].remote
    assert found[0].bus == int((sysfs(served) / "busnum").read_text()) and found[0].bus in usbip.vhci_buses()
    assert served.attachment is not None and found[0].port_path == served.attachment.busid


def test_the_command_line_on_the_served_device(served: usbip.WdfusbServe) -> None:
    """wdfusb's own tools through the kernel: info lists the pipes, bench runs its table."""
    wdfusb_cli = [sys.executable, "-m", "wdfusb"]
    info = subprocess.run([*wdfusb_cli, "info", f"{VID:04x}:{PID:04x}"], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert "0x06" in info.stdout and "0x88" in info.stdout
    bench = subprocess.run(
        [*wdfusb_cli, "bench", f"{VID:04x}:{PID:04x}", "0x06", "--sizes", "512,64K",
         "--methods", "pythonic,streaming,pyusb", "--duration", "0.3", "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert "64 KiB" in bench.stdout and "pyusb" in bench.stdout, bench.stdout
    print(bench.stdout)
