"""`wdfusb serve` attached by the real kernel: vhci-hcd imports a virtual device over USB/IP on
loopback, and wdfusb, an unchanged pyusb script and a raw C libusb program use it through the
guest's USB stack (usbfs, the hub driver, the kernel's enumeration).

Every test runs its own server (``--virtual-fault report``: at exit it prints what each OUT
endpoint received), so the bytes the host says it moved are checked against the bytes the served
device took, also after a time-out, a detach and the device leaving on the server's side.
"""

from __future__ import annotations

import array
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import gadget
import pytest
import usb.backend.libusb1
import usb.core
import usb.util

import wdfusb
from wdfusb import _engine

VID, PID, OUT, IN = 0x1209, 0x0001, 0x06, 0x88  # the default virtual profile: bulk loopback
pytestmark = pytest.mark.usbip


class Served:
    """A ``wdfusb serve`` process and the device vhci-hcd attached from it."""

    def __init__(self, *serve_args: str) -> None:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wdfusb", "--virtual-fault", "report", *serve_args, "serve", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"serving (\S+) .*--tcp-port (\d+)", line)
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else "")
        self.busid, self.port = match.group(1), int(match.group(2))
        self.received: dict[int, int] | None = None
        usbip("--tcp-port", str(self.port), "attach", "-r", "127.0.0.1", "-b", self.busid)
        deadline = time.monotonic() + 60
        while (path := gadget.find_usb_device(VID, PID)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path is not None, "the attached device never enumerated"
        self.sysfs = path

    def vhci_port(self) -> int | None:
        found = re.search(r"Port (\d+): <Port in Use>", usbip("port").stdout)
        return int(found.group(1)) if found else None

    def detach(self) -> None:
        port = self.vhci_port()
        if port is not None:
            usbip("detach", "-p", str(port))

    def stop(self) -> dict[int, int]:
        """Detach, stop the server; what each OUT endpoint of the served device received."""
        if self.received is None:
            self.detach()
            self.proc.send_signal(signal.SIGINT)
            _out, err = self.proc.communicate(timeout=60)
            self.received = {int(ep, 16): int(n) for ep, n in re.findall(r"virtual: 0x(\w+) received (\d+)", err)}
        return self.received


def usbip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["usbip", *args], capture_output=True, text=True, check=True, timeout=60)


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(*getattr(request, "param", ()))
    try:
        yield s
    finally:
        try:
            s.stop()
        finally:
            s.proc.kill()


def test_the_kernel_enumerates_the_served_device(served: Served) -> None:
    assert served.busid == "0-1"
    assert (served.sysfs / "speed").read_text().strip() == "480"
    assert (served.sysfs / "product").read_text().strip() == "wdfusb virtual device"
    assert (served.sysfs / "bConfigurationValue").read_text().strip() == "1"  # the kernel configured it
    with wdfusb.open(vid=VID, pid=PID) as dev:
        assert dev.serial_number == (served.sysfs / "serial").read_text().strip()
        assert dev.speed == "high"


def test_wdfusb_moves_data_through_the_kernel(served: Served) -> None:
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


def test_an_unchanged_pyusb_script(served: Served) -> None:
    path = _engine.libusb_path() or None
    backend = usb.backend.libusb1.get_backend(find_library=(lambda _name: path) if path else None)
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=backend)
    assert dev is not None
    try:
        data = array.array("B", os.urandom(64 << 10))
        assert dev.write(OUT, data, 30000) == len(data)
        assert dev.read(IN, len(data), 30000) == data
        assert usb.util.get_string(dev, dev.iSerialNumber) == (served.sysfs / "serial").read_text().strip()
        assert dev.ctrl_transfer(0x40, 0x5B, 0, 0, b"pyusb over usbip") == 16
        assert bytes(dev.ctrl_transfer(0xC0, 0x5C, 0, 0, 16)) == b"pyusb over usbip"
    finally:
        usb.util.dispose_resources(dev)
    assert served.stop()[OUT] == 64 << 10


def test_a_raw_c_libusb_program(served: Served, run_raw_bench) -> None:  # type: ignore[no-untyped-def]
    rc, sync, err = run_raw_bench(VID, PID, OUT, 65536, 16)
    assert rc == 0 and sync is not None, err
    rc, deep, err = run_raw_bench(VID, PID, OUT, 65536, 32, "--async", "8")
    assert rc == 0 and deep is not None, err
    print(f"\nraw C over wdfusb serve: sync 64 KiB {sync['MBps']:.2f} MB/s, depth 8 {deep['MBps']:.2f} MB/s")
    assert served.stop()[OUT] == 48 * 65536


def test_a_time_out_reports_every_byte_that_moved(served: Served) -> None:
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


def test_usbip_detach_mid_stream_is_a_removal(served: Served) -> None:
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
def test_the_device_leaving_the_server_is_a_removal(served: Served) -> None:
    """The served device unplugs (8 s after the server started): the server closes the session,
    vhci-hcd reports the port disconnected, and the write in flight ends with DeviceGoneError."""
    with wdfusb.open(vid=VID, pid=PID) as dev:
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.pipe(OUT).write(os.urandom(256 << 20), timeout=120)
    deadline = time.monotonic() + 30
    while gadget.find_usb_device(VID, PID) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gadget.find_usb_device(VID, PID) is None
    assert served.vhci_port() is None


def test_list_marks_nothing_twice(served: Served) -> None:
    """The attached device is listed once, on a vhci bus, with its port path."""
    found = [d for d in wdfusb.list_devices(virtual=False) if (d.vid, d.pid) == (VID, PID)]
    assert len(found) == 1
    bus = int((served.sysfs / "busnum").read_text())
    assert found[0].bus == bus
    assert "vhci_hcd" in str(Path(f"/sys/bus/usb/devices/usb{bus}").resolve())


def test_the_command_line_on_the_served_device(served: Served) -> None:
    """wdfusb's own tools through the kernel: info lists the pipes, bench runs its table."""
    wdfusb_cli = [sys.executable, "-m", "wdfusb"]
    info = subprocess.run([*wdfusb_cli, "info", f"{VID:04x}:{PID:04x}"], capture_output=True, text=True, cwd="/")
    assert info.returncode == 0, info.stderr
    assert "0x06" in info.stdout and "0x88" in info.stdout
    bench = subprocess.run(
        [*wdfusb_cli, "bench", f"{VID:04x}:{PID:04x}", "0x06", "--sizes", "512,64K",
         "--methods", "pythonic,streaming,pyusb", "--duration", "0.3", "-q"],
        capture_output=True, text=True, cwd="/", timeout=600,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert "64 KiB" in bench.stdout and "pyusb" in bench.stdout, bench.stdout
    print(bench.stdout)
