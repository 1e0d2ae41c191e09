"""libusb: finding and loading the library, and listing the devices it sees."""

from __future__ import annotations

import ctypes.util
import os
import sys
import threading
from dataclasses import dataclass

from ..errors import LibusbNotFoundError
from .native import WU_OK, ffi, lib

_load_lock = threading.Lock()
_load_error: str | None = None


def libusb_candidates() -> list[str]:
    """The libusb paths tried, in order: ``WDFUSB_LIBUSB`` alone if set, else the
    ``libusb-package`` wheel's library, then the system's."""
    override = os.environ.get("WDFUSB_LIBUSB")
    if override:
        return [override]
    paths: list[str] = []
    try:
        import libusb_package

        path = libusb_package.get_library_path()
        if path:
            paths.append(str(path))
    except Exception:  # noqa: BLE001, S110 - a missing or broken wheel only removes a candidate
        pass
    found = ctypes.util.find_library("usb-1.0")
    if found:
        paths.append(found)
    paths += {"win32": ["libusb-1.0.dll"], "darwin": ["libusb-1.0.dylib"]}.get(sys.platform, ["libusb-1.0.so.0"])
    return list(dict.fromkeys(paths))


def ensure_libusb() -> None:
    """Load libusb once; raise :class:`LibusbNotFoundError` naming every path tried."""
    global _load_error
    if lib.wu_libusb_loaded():
        return
    with _load_lock:
        if lib.wu_libusb_loaded():
            return
        err = ffi.new("char[512]")
        tried = []
        for path in libusb_candidates():
            if lib.wu_libusb_load(path.encode(), err, 512) == WU_OK:
                _load_error = None
                return
            tried.append(f"  {path}: {ffi.string(err).decode(errors='replace')}")
        _load_error = "\n".join(tried)
        raise LibusbNotFoundError(
            "libusb could not be loaded. Tried:\n"
            + _load_error
            + "\nFix: `pip install libusb-package`, install your system's libusb-1.0, or set "
            "WDFUSB_LIBUSB=/path/to/libusb-1.0 library.",
            0xC0000135,
        )


def libusb_version() -> str:
    """The loaded libusb's version, or ``""``."""
    return ffi.string(lib.wu_libusb_version()).decode()


def libusb_path() -> str:
    return ffi.string(lib.wu_libusb_path()).decode()


@dataclass(frozen=True)
class DevInfo:
    """One device libusb sees, without opening it."""

    bus: int
    address: int
    speed: int
    ports: tuple[int, ...]
    device_descriptor: bytes

    @property
    def vid(self) -> int:
        return int.from_bytes(self.device_descriptor[8:10], "little")

    @property
    def pid(self) -> int:
        return int.from_bytes(self.device_descriptor[10:12], "little")


def libusb_list() -> list[DevInfo]:
    """Every device libusb sees."""
    ensure_libusb()
    n = 64
    while True:
        arr = ffi.new("wu_devinfo[]", n)
        count = lib.wu_libusb_list(arr, n)
        if count < 0:
            from ..errors import error_for

            raise error_for(count, context="listing USB devices")
        if count <= n:
            break
        n = count
    return [
        DevInfo(
            d.bus,
            d.address,
            d.speed,
            tuple(d.ports[0 : d.port_count]),
            bytes(ffi.buffer(d.device_descriptor, 18)),
        )
        for d in arr[0:count]
    ]


def controller_driver(bus: int, sysfs: str = "/sys") -> str:
    """The driver of bus ``bus``'s host controller as the OS says (Linux: sysfs under ``sysfs``), e.g.
    ``"vhci_hcd"`` for USB/IP's virtual host controller; ``""`` where unknown."""
    name = ffi.new("char[]", 256)
    n = lib.wu_bus_controller_driver(sysfs.encode(), bus, name, 256)
    return ffi.string(name).decode(errors="replace") if n > 0 else ""
