"""The device-list generation (csrc/hotplug.c): a counter that moves when a device may have
arrived or left, and libusb's hotplug events that move it."""

from __future__ import annotations

from .native import lib

ANY = (1 << 64) - 1  # a generation the counter never has: wait(ANY, 0) is the current one


def wait_generation(seen: int, timeout_us: int) -> int:
    """The counter once it differs from ``seen``, or after ``timeout_us`` (< 0: no limit); the GIL is released."""
    return int(lib.wu_hotplug_wait(seen, timeout_us))


def bump_generation() -> None:
    """The device list may have changed (a new virtual attachment is listed from now on)."""
    lib.wu_hotplug_bump()


def start_libusb_hotplug() -> int:
    """1 when libusb reports arrivals and removals (its event thread then runs), 0 when the list
    must be polled, or an engine error (libusb must be loaded first)."""
    return int(lib.wu_libusb_hotplug())
