"""Remote devices (USB/IP): which host controller a bus has, read from a fake sysfs tree shaped as
Linux's (the kernel lane checks the real one: tests/kernel/test_usbip_libusb.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from wdfusb import _engine, _lookup, cli
from wdfusb._engine import DevInfo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysfs is Linux's")


def fake_sysfs(root: Path) -> Path:
    """usb1 under dummy_hcd.0, usb3 and usb4 under vhci_hcd.0, as /sys links them."""
    for driver, device, buses in (("dummy_hcd", "dummy_hcd.0", (1,)), ("vhci_hcd", "vhci_hcd.0", (3, 4))):
        (root / "bus/platform/drivers" / driver).mkdir(parents=True, exist_ok=True)
        dev = root / "devices/platform" / device
        dev.mkdir(parents=True)
        os.symlink(f"../../../bus/platform/drivers/{driver}", dev / "driver")
        (root / "bus/usb/devices").mkdir(parents=True, exist_ok=True)
        for bus in buses:
            (dev / f"usb{bus}").mkdir()
            os.symlink(f"../../../devices/platform/{device}/usb{bus}", root / f"bus/usb/devices/usb{bus}")
    return root


def test_the_controller_driver_of_a_bus(tmp_path: Path) -> None:
    sysfs = str(fake_sysfs(tmp_path))
    assert _engine.controller_driver(1, sysfs) == "dummy_hcd"
    assert _engine.controller_driver(3, sysfs) == _engine.controller_driver(4, sysfs) == "vhci_hcd"
    assert _engine.controller_driver(9, sysfs) == ""  # no such bus
    assert _engine.controller_driver(1, str(tmp_path / "nowhere")) == ""
    assert [_lookup.is_remote_bus(b, sysfs) for b in (1, 3, 4, 9)] == [False, True, True, False]


def test_a_device_behind_vhci_is_remote_its_root_hub_is_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sysfs = str(fake_sysfs(tmp_path))
    real = _engine.controller_driver
    monkeypatch.setattr(_engine, "controller_driver", lambda bus, _sysfs="/sys": real(bus, sysfs))
    desc = bytes([18, 1, 0, 2, 0, 0, 0, 64, 0x25, 0x05, 0xA0, 0xA4, 0, 1, 1, 2, 3, 1])
    hub = bytes([18, 1, 0, 2, 9, 0, 1, 64, 0x6B, 0x1D, 0x02, 0x00, 0, 1, 3, 2, 1, 1])
    remote = _lookup.UsbDeviceInfo.from_devinfo(DevInfo(3, 2, 3, (1,), desc))
    local = _lookup.UsbDeviceInfo.from_devinfo(DevInfo(1, 2, 3, (1,), desc))
    vhci_hub = _lookup.UsbDeviceInfo.from_devinfo(DevInfo(3, 1, 3, (), hub))
    assert (remote.remote, local.remote, vhci_hub.remote) == (True, False, False)
    assert "remote, usbip" in str(remote) and "remote" not in str(local)


def test_the_list_table_leaves_out_idle_usbip_root_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "is_remote_bus", lambda bus: bus >= 3)  # buses 3.. are vhci_hcd's
    rows = [
        {"bus": b, "port": p} for b, p in [(1, "usb1"), (1, "1-1"), (3, "usb3"), (3, "3-1"), (4, "usb4"), (5, "usb5")]
    ]
    rows.append({"bus": None, "port": None})  # the virtual device
    assert cli.idle_usbip_hubs(rows) == ["usb4", "usb5"]
