"""wdfusb.pyusb (CONTRACT §8): what a pyusb script gets from wdfusb's backend beyond pyusb's own
suite — pyusb's errors for every failure, Ctrl-C that leaves nothing in flight, transfers of any
size, the virtual devices as pyusb devices, and the default-backend switch."""

from __future__ import annotations

import errno
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import usb.backend.libusb1
import usb.core
import usb.util
from sigint import interrupt_child

import wdfusb
import wdfusb.pyusb

VID, PID = 0x04D8, 0xFA2E


@pytest.fixture
def bench() -> Iterator[tuple[wdfusb.VirtualDevice, usb.core.Device]]:
    vdev = wdfusb.VirtualDevice("high", profile="pyusb-benchmark")
    dev = usb.core.find(idVendor=VID, idProduct=PID, backend=wdfusb.pyusb.get_backend(vdev))
    assert dev is not None
    dev.set_configuration()
    yield vdev, dev
    usb.util.dispose_resources(dev)
    vdev.close()


def test_the_virtual_devices_are_pyusb_devices(bench: tuple[wdfusb.VirtualDevice, usb.core.Device]) -> None:
    vdev, dev = bench
    assert (dev.bus, dev.address, dev.port_numbers) == (0, vdev.address, (vdev.port,))  # as wdfusb lists it
    assert (dev.manufacturer, dev.product, dev.serial_number) == ("Travis Robinson", "Benchmark Device", vdev.serial)
    assert [e.bEndpointAddress for e in dev[0][(0, 1)]] == [0x02, 0x82]
    others = wdfusb.VirtualDevice("high", serial="second")
    try:
        found = list(usb.core.find(find_all=True, backend=wdfusb.pyusb.get_backend(vdev, others)))
        assert [(d.idVendor, d.address) for d in found if d.bus == 0] == [
            (VID, vdev.address),
            (others.vid, others.address),
        ]
    finally:
        others.close()
    with pytest.raises(TypeError, match="VirtualDevice"):
        wdfusb.pyusb.get_backend("virtual")  # type: ignore[arg-type]


def test_failures_are_pyusbs_errors_with_libusbs_numbers(bench: tuple[wdfusb.VirtualDevice, usb.core.Device]) -> None:
    vdev, dev = bench
    with pytest.raises(usb.core.USBTimeoutError) as timeout:
        dev.read(0x81, 16, timeout=20)  # nothing was written
    assert (timeout.value.errno, timeout.value.backend_error_code) == (errno.ETIMEDOUT, -7)
    vdev.endpoint(0x81).stall()
    with pytest.raises(usb.core.USBError) as stall:
        dev.read(0x81, 16, timeout=1000)
    assert (stall.value.errno, stall.value.backend_error_code) == (errno.EPIPE, -9)
    dev.clear_halt(0x81)
    assert dev.write(0x01, b"after the halt") == 14 and dev.read(0x81, 64).tobytes() == b"after the halt"
    with pytest.raises(usb.core.USBError) as unknown:
        dev.ctrl_transfer(0xC0, 0x77, 0, 0, 4)  # the device stalls a request it does not know
    assert unknown.value.errno == errno.EPIPE
    with pytest.raises(usb.core.USBError) as too_long:
        dev.ctrl_transfer(0x40, 0x10, 0, 0, bytes(4097))
    assert too_long.value.errno == errno.EINVAL
    with pytest.raises(usb.core.USBError) as overflow:
        dev.write(0x01, bytes(32))
        dev.read(0x81, 8)  # the device sends a 16-byte packet
    assert overflow.value.errno == errno.EOVERFLOW
    assert dev.is_kernel_driver_active(0) is False
    with pytest.raises(usb.core.USBError) as none:
        dev.detach_kernel_driver(0)
    assert none.value.errno == errno.ENOENT
    vdev.unplug()
    with pytest.raises(usb.core.USBError) as gone:
        dev.write(0x01, b"x")
    assert gone.value.errno == errno.ENODEV


def test_a_write_of_any_size_in_one_call(bench: tuple[wdfusb.VirtualDevice, usb.core.Device]) -> None:
    vdev, dev = bench
    data = np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8)
    import array

    assert dev.write(0x01, array.array("B", data.tobytes()), timeout=0) == len(data)  # 0: for ever
    ep = vdev.endpoint(0x01)
    assert ep.received_bytes == len(data) and ep.crc32 == zlib.crc32(data)


CTRL_C_CHILD = """
import usb.core, wdfusb, wdfusb.pyusb
vdev = wdfusb.VirtualDevice("high", profile="pyusb-benchmark")
dev = usb.core.find(idVendor=0x04D8, backend=wdfusb.pyusb.get_backend(vdev))
dev.set_configuration()
print("blocked", flush=True)
try:
    dev.read(0x81, 64, timeout=0)  # nothing comes: blocks for ever
except KeyboardInterrupt:
    import time
    print("interrupted", time.monotonic(), vdev._native.live_transfers(), flush=True)
"""


def test_ctrl_c_in_a_pyusb_read_leaves_nothing_in_flight() -> None:
    latency, (in_flight,) = interrupt_child(CTRL_C_CHILD)
    assert latency < 1.0 and in_flight == "0"


def test_install_makes_it_pyusbs_default_until_uninstall() -> None:
    with wdfusb.VirtualDevice("high", profile="pyusb-benchmark") as vdev:
        original = usb.backend.libusb1.get_backend
        backend = wdfusb.pyusb.install(vdev)
        try:
            dev = usb.core.find(idVendor=VID, idProduct=PID)  # no backend given
            assert dev is not None and dev.backend is backend
            assert any(d.idVendor == VID for bus in usb.busses() for d in bus.devices)  # the legacy API
        finally:
            wdfusb.pyusb.uninstall()
        assert usb.backend.libusb1.get_backend is original


def test_what_an_adversary_found(bench: tuple[wdfusb.VirtualDevice, usb.core.Device]) -> None:
    """A fraction of a millisecond is a time-out, not for ever; a cancelled transfer is libusb's
    I/O error; setup fields are libusb's uint8/uint16, masked as ctypes masks them."""
    import threading
    import time

    _, dev = bench
    t0 = time.monotonic()
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(0x81, 16, timeout=0.5)
    assert time.monotonic() - t0 < 1
    assert dev.ctrl_transfer(0x40, 0x10, 0x10000, 0, b"masked") == 6  # wValue 0x10000 is 0
    caught: list[BaseException] = []

    def blocked() -> None:
        try:
            dev.read(0x81, 16, timeout=0)  # for ever
        except usb.core.USBError as e:
            caught.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.1)
    usb.util.dispose_resources(dev)  # closes the handle: the read is cancelled
    t.join(5)
    assert caught and (caught[0].errno, caught[0].backend_error_code) == (errno.EIO, -1)


def test_endpoints_belong_to_the_interface_before_them() -> None:
    """Interfaces described out of order, and alternate settings interleaved between them."""
    import struct

    from wdfusb.pyusb import _Config

    def iface(number: int, alt: int, n_eps: int) -> bytes:
        return struct.pack("<BBBBBBBBB", 9, 4, number, alt, n_eps, 0xFF, 0, 0, 0)

    def ep(address: int) -> bytes:
        return struct.pack("<BBBBHB", 7, 5, address, 2, 512, 0)

    body = iface(1, 0, 1) + ep(0x81) + iface(0, 0, 1) + ep(0x02) + iface(0, 1, 1) + ep(0x83) + b"\x04\x24\x01\x02"
    blob = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), 2, 1, 0, 0x80, 50) + body
    config = _Config.parse(blob)
    where = [[(d.bInterfaceNumber, d.bAlternateSetting, [e.bEndpointAddress for e in eps]) for d, eps in s]
             for s in config.interfaces]  # fmt: skip
    assert where == [[(1, 0, [0x81])], [(0, 0, [0x02]), (0, 1, [0x83])]]
    assert config.interfaces[1][1][1][0].extra_descriptors == [4, 0x24, 1, 2]  # after the endpoint: its extra
