"""The device-list generation (csrc/hotplug.c): a counter that moves when a device may have
arrived or left, and libusb's hotplug events that move it."""

from __future__ import annotations

from .native import ffi, lib

ANY = (1 << 64) - 1  # a generation the counter never has: wait(ANY, 0) is the current one


def wait_generation(seen: int, timeout_us: int) -> int:
    """The counter once it differs from ``seen``, or after ``timeout_us`` (< 0: no limit); the GIL is released."""
    return int(lib.wu_hotplug_wait(seen, timeout_us))


def bump_generation() -> None:
    """The device list may have changed (a new virtual attachment is listed from now on)."""
    lib.wu_hotplug_bump()


def start_libusb_hotplug() -> int:
    """1 when libusb reports arrivals and removals, 0 when the list must be polled, or an engine
    error (libusb must be loaded first). The events are delivered while a thread handles libusb's
    events: :func:`hold_libusb_events` for as long as they are wanted."""
    return int(lib.wu_libusb_hotplug())


def hold_libusb_events(on: bool) -> int:
    """Hold (``on``) or let go of libusb's event thread for hotplug events; the count is the shim's.
    0, or an engine error (letting go of more than was held: WU_ERR_INVALID_PARAM)."""
    return int(lib.wu_libusb_hotplug_hold(1 if on else 0))


def libusb_event_thread_state() -> tuple[int, int]:
    """(state, demand) of libusb's event thread, for tests: state -1 not started, 0 idle, 1 handling
    events; demand the asynchronous and armed ring transfers in flight plus the hotplug holds."""
    demand = ffi.new("int *")
    state = int(lib.wu_libusb_event_thread_state(demand))
    return state, int(demand[0])
