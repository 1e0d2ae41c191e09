"""Fixtures for wdfusb kernel tests (real USB stack inside the QEMU rig guest).

Every test under tests/kernel is marked `kernel` and skipped unless it runs
inside the rig guest (WDFUSB_IN_RIG=1, set by tests/rig/qemu_rig.py run).
Run the lane with:

    python tests/rig/qemu_rig.py run --speed high -- python3 -m pytest -q tests/kernel
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "rig"))
sys.path.insert(0, str(HERE.parent))  # tests/sigint.py

import gadget  # noqa: E402
import usbip  # noqa: E402

import wdfusb  # noqa: E402

G = TypeVar("G", bound=gadget.Gadget)
IN_RIG = os.environ.get("WDFUSB_IN_RIG") == "1"
SKIP_REASON = (
    "kernel test: needs the QEMU USB rig; run `python tests/rig/qemu_rig.py run -- python3 -m pytest tests/kernel`"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: needs the QEMU kernel rig (dummy_hcd + configfs gadgets)")
    config.addinivalue_line(
        "markers", "usbip: a gadget exported by usbip-host and attached through vhci-hcd over loopback (kernel lane)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.kernel)
        if any(name.startswith("usbip_") for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.usbip)
        if not IN_RIG:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def rig_speed() -> str:
    """'high' or 'super': the dummy_hcd speed the rig booted with."""
    return os.environ.get("WDFUSB_RIG_SPEED", "high")


@pytest.fixture(scope="session")
def bulk_maxp(rig_speed: str) -> int:
    return 1024 if rig_speed == "super" else 512


@pytest.fixture(autouse=True)
def _clean_configfs() -> Iterator[None]:
    """Remove gadgets a crashed test may have left, so the UDC is free."""
    if IN_RIG and gadget.CONFIGFS.exists():
        for leftover in gadget.CONFIGFS.glob("wdfusb-*"):
            gadget.Gadget._remove_tree(leftover)
    yield


def _params(request: pytest.FixtureRequest, key: str) -> dict[str, Any]:
    param = getattr(request, "param", None)
    if param is None:
        return {}
    return dict(param) if isinstance(param, dict) else {key: param}


def _bound(g: G) -> Iterator[G]:
    """Bind ``g`` to the UDC, wait until the host enumerated it, hand it over, remove it after."""
    try:
        g.bind(wait=30)
        yield g
    finally:
        g.remove()


@pytest.fixture
def sourcesink(request: pytest.FixtureRequest) -> Iterator[gadget.SourceSink]:
    """Bound, enumerated SourceSink (0525:a4a0, bulk OUT 0x02, bulk IN 0x81).

    Parametrize indirectly with a pattern (0, 1, 2) or a dict of SourceSink kwargs:
    @pytest.mark.parametrize("sourcesink", [0], indirect=True)."""
    yield from _bound(gadget.SourceSink(**_params(request, "pattern")))


@pytest.fixture
def hid_gadget(request: pytest.FixtureRequest) -> Iterator[gadget.HidGadget]:
    """Bound HID gadget (0525:a4ac) with interrupt IN/OUT; .received counts OUT reports."""
    yield from _bound(gadget.HidGadget(**_params(request, "report_length")))


@pytest.fixture
def ncm_gadget() -> Iterator[gadget.NcmGadget]:
    """Bound CDC NCM gadget (0525:a4a1): interface 1 has alternate settings 0 (no endpoints) and 1 (bulk)."""
    yield from _bound(gadget.NcmGadget())


@pytest.fixture
def ffs_gadget(request: pytest.FixtureRequest) -> Iterator[gadget.FfsGadget]:
    """Bound FunctionFS gadget (1d6b:0105), bulk OUT + IN; param: mode or kwargs dict."""
    yield from _bound(gadget.FfsGadget(**_params(request, "mode")))


@dataclass
class RemoteGadget(Generic[G]):
    """A bound gadget exported by the kernel's USB/IP server and attached back through vhci-hcd:
    ``gadget`` is the local device (its sysfs, its counters), ``remote`` the copy on a vhci port."""

    gadget: G
    remote: usbip.Attachment
    server: usbip.Usbipd

    @property
    def port_path(self) -> str:
        """The remote copy's port path (``"3-1"``): ``wdfusb.open(port=...)`` picks it, not the local one
        (libusb lists both: usbip-host holds the local device, it does not hide it)."""
        return self.remote.busid

    def open(self) -> wdfusb.Device:
        return wdfusb.open(vid=self.gadget.vid, pid=self.gadget.pid, port=self.port_path)


def _remote(g: G) -> Iterator[RemoteGadget[G]]:
    """Bind ``g``, export it (usbip-host, usbipd on loopback), attach it (vhci-hcd); undo all of it
    after, the gadget last: the next test finds the local device and free vhci ports."""
    usbip.detach_all()  # a crashed test's leftovers
    try:
        g.bind(wait=30)
        assert g.usb_dir is not None
        with usbip.Usbipd() as server, usbip.exported_and_attached(g.usb_dir.name, server) as remote:
            yield RemoteGadget(g, remote, server)
    finally:
        usbip.detach_all()
        g.remove()


@pytest.fixture
def usbip_sourcesink(request: pytest.FixtureRequest) -> Iterator[RemoteGadget[gadget.SourceSink]]:
    """A SourceSink (params as for ``sourcesink``) seen through USB/IP on loopback."""
    yield from _remote(gadget.SourceSink(**_params(request, "pattern")))


@pytest.fixture
def usbip_ffs(request: pytest.FixtureRequest) -> Iterator[RemoteGadget[gadget.FfsGadget]]:
    """A FunctionFS gadget (params as for ``ffs_gadget``) seen through USB/IP on loopback."""
    yield from _remote(gadget.FfsGadget(**_params(request, "mode")))


@pytest.fixture(scope="session")
def raw_bench() -> Path:
    """Path of the compiled raw C libusb benchmark (tests/kernel/raw_libusb_bench.c)."""
    import qemu_rig

    return qemu_rig.build_raw_bench()


@pytest.fixture
def run_raw_bench(raw_bench: Path):  # type: ignore[no-untyped-def]
    """Call the raw C bench: run_raw_bench(vid, pid, ep, size, count, *extra) ->
    (exit status, parsed JSON or None, stderr)."""

    def run(
        vid: int, pid: int, ep: int, size: int, count: int = 1, *extra: str, timeout: float = 120.0
    ) -> tuple[int, dict[str, Any] | None, str]:
        cmd = [
            str(raw_bench),
            "--vid",
            hex(vid),
            "--pid",
            hex(pid),
            "--ep",
            hex(ep),
            "--size",
            str(size),
            "--count",
            str(count),
            *extra,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
        return res.returncode, data, res.stderr

    return run
