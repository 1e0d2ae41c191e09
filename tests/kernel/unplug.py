"""Surprise removal in the kernel lane: pull the gadget's cable while I/O runs, then check the
device is reported gone.

The URBs in flight when the port drops may die as bus errors (an I/O error) before the host
notices the disconnect; every call after that reports the device gone."""

from __future__ import annotations

import threading
import time

import gadget

import wdfusb

GONE = (0xC000000E, 0xC000009D, 0xC00002B6)  # no such device, not connected, removed
FIRST_ERRORS = (wdfusb.DeviceGoneError, wdfusb.UsbIOError)  # what the I/O in flight may see


def unplug_after(g: gadget.Gadget, seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, g.unplug, kwargs={"wait": None})
    t.start()
    return t


def assert_gone_soon(pipe: wdfusb.Pipe, within: float = 30.0) -> None:
    """Writes to ``pipe`` report the device gone within ``within`` seconds (bus errors before)."""
    deadline = time.monotonic() + within
    while True:
        try:
            pipe.write(b"x", timeout=1)
        except wdfusb.DeviceGoneError as gone:
            assert gone.status in GONE
            return
        except wdfusb.UsbIOError:
            assert time.monotonic() < deadline, "never reported the device gone"
            time.sleep(0.05)
        else:
            raise AssertionError("a write succeeded after the unplug")
