"""Isochronous transfers through the real kernel: ``wdfusb serve`` exports the "pyusb-benchmark"
virtual device (its third alternate setting loops isochronous 0x03 OUT back to 0x83 IN), vhci-hcd
attaches it, and libusb's isochronous transfers go through usbfs and vhci-hcd (dummy_hcd has no
isochronous endpoints). wdfusb, pyusb on its own libusb1 backend and pyusb on wdfusb's backend
move the same packets; what the served device received is checked against what each reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest
import usbip

import wdfusb

VID, PID, ISO_ALT, OUT, IN, MAXP = 0x04D8, 0xFA2E, 2, 0x03, 0x83, 16
pytestmark = pytest.mark.usbip


@pytest.fixture
def served() -> Iterator[usbip.WdfusbServe]:
    usbip.detach_all()  # a crashed test's leftovers
    with usbip.WdfusbServe(sys.executable, serve_args=("virtual:high", "--profile", "pyusb-benchmark")) as s:
        yield s


def test_wdfusb_loops_packets_through_the_kernel(served: usbip.WdfusbServe) -> None:
    data = os.urandom(MAXP * 300 + 7)  # more packets than one usbfs URB takes (libusb splits at 128)
    with wdfusb.open(vid=VID, pid=PID) as dev:
        assert dev.speed == "high"
        dev.set_alt_setting(0, ISO_ALT)
        out = dev.pipe(OUT).write_iso(data, timeout=60)
        assert out.bytes_transferred == len(data) and all(p.ok for p in out.packets)
        assert [p.length for p in out.packets] == [MAXP] * 300 + [7]
        back = dev.pipe(IN).read_iso(310, timeout=60)  # 10 more than were sent: they come back empty
        assert zlib.crc32(back.data) == zlib.crc32(data) and back.bytes_transferred == len(data)
        assert [p.actual for p in back.packets] == [MAXP] * 300 + [7] + [0] * 9
        assert all(p.ok for p in back.packets)
    assert served.stop()[OUT] == len(data)


def test_a_timed_out_read_keeps_every_packet_that_came(served: usbip.WdfusbServe) -> None:
    """8000 packets take a second on the bus; a 0.3 s time-out unlinks the URBs in flight, and
    ``wdfusb serve`` answers each with what it moved: the bytes that were in the loopback."""
    data = os.urandom(MAXP * 40)
    with wdfusb.open(vid=VID, pid=PID) as dev:
        dev.set_alt_setting(0, ISO_ALT)
        dev.pipe(OUT).write_iso(data, timeout=60)
        with pytest.raises(wdfusb.UsbTimeoutError) as info:
            dev.pipe(IN).read_iso(8000, timeout=0.3)
        assert info.value.data == data and info.value.bytes_transferred == len(data)
    assert served.stop()[OUT] == len(data)


PYUSB_ISO = """
import array, json, os, sys
import usb.backend.libusb1, usb.core, usb.util
from wdfusb import _engine
if sys.argv[1] == "wdfusb":
    import wdfusb.pyusb
    backend = wdfusb.pyusb.get_backend()
else:
    path = _engine.libusb_path() or None
    backend = usb.backend.libusb1.get_backend(find_library=(lambda _name: path) if path else None)
dev = usb.core.find(idVendor=0x04D8, idProduct=0xFA2E, backend=backend)
dev.set_configuration()
dev.set_interface_altsetting(0, 2)
data = array.array("B", os.urandom(16 * 64))
written = dev.write(0x03, data, 30000)
back = dev.read(0x83, len(data), 30000)
print(json.dumps([written, len(back), back == data]))
usb.util.dispose_resources(dev)
"""


@pytest.mark.parametrize("backend", ["libusb1", "wdfusb"])
def test_pyusb_iso_write_and_read_on_either_backend(served: usbip.WdfusbServe, backend: str) -> None:
    """An unchanged pyusb script (in a process of its own: a pyusb context made before the device
    was attached never lists it) moves the same packets on pyusb's backend and on wdfusb's."""
    res = subprocess.run([sys.executable, "-c", PYUSB_ISO, backend], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [16 * 64, 16 * 64, True]
    assert served.stop()[OUT] == 16 * 64
