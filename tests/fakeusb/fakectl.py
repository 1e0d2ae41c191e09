"""ctypes control of the fake libusb (fakeusb.c): scripting and the counters it keeps.

Endpoints are named ``dev << 8 | address``: ``GZ_OUT``/``GZ_IN`` are Gadget Zero's (device 0),
``HID_OUT``/``HID_IN`` the HID-like device's (device 1).
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

# libusb_transfer_status
COMPLETED, ERROR, TIMED_OUT, CANCELLED, STALL, NO_DEVICE, OVERFLOW = range(7)
STATUS_NAMES = ["COMPLETED", "ERROR", "TIMED_OUT", "CANCELLED", "STALL", "NO_DEVICE", "OVERFLOW"]
# libusb_error
ERROR_IO, ERROR_INVALID_PARAM, ERROR_ACCESS, ERROR_NO_DEVICE, ERROR_NOT_FOUND, ERROR_BUSY = -1, -2, -3, -4, -5, -6
ERROR_TIMEOUT, ERROR_OVERFLOW, ERROR_PIPE, ERROR_INTERRUPTED, ERROR_NO_MEM = -7, -8, -9, -10, -11
ADD_ZERO_PACKET = 1 << 3
SPEED_FULL, SPEED_HIGH, SPEED_SUPER = 2, 3, 4
IN_PATTERN, IN_LOOPBACK, IN_ZEROS = 0, 1, 2

GZ, HID = 0, 1  # device indexes
GZ_OUT, GZ_IN = 0x01, 0x81
HID_OUT, HID_IN = 0x100 | 0x03, 0x100 | 0x83
GZ_VID, GZ_PID, HID_PID = 0x0525, 0xA4A0, 0xA4AC

_u64, _i64, _u32, _i32 = ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint32, ctypes.c_int32


class EpStats(ctypes.Structure):
    _fields_ = [
        ("bytes", _u64),
        ("submits", _u64),
        ("submit_errors", _u64),
        ("callbacks", _u64),
        ("status", _u64 * 8),
        ("cancel_calls", _u64),
        ("cancel_not_found", _u64),
        ("zlp_flags", _u64),
        ("zlps", _u64),
        ("short_transfers", _u64),
        ("crc_skipped", _u64),
        ("max_length", _u64),
        ("in_flight", _i64),
        ("crc32", _u32),
        ("last_flags", _u32),
        ("last_timeout", _u32),
        ("halted", _u32),
        ("usbfs_refused", _u64),
    ]


class GlobalStats(ctypes.Structure):
    _fields_ = [
        ("in_flight", _i64),
        ("open_handles", _i64),
        ("device_lists", _i64),
        ("transfers", _i64),
        ("claimed", _i64),
        ("inits", _u64),
        ("exits", _u64),
        ("events_calls", _u64),
        ("events_waited", _u64),
        ("callbacks", _u64),
        ("control_transfers", _u64),
        ("set_configuration_calls", _u64),
        ("clear_halt_calls", _u64),
        ("busy_submits", _u64),
        ("v_free_in_flight", _u64),
        ("v_close_with_pending", _u64),
        ("v_bad_handle", _u64),
        ("v_bad_transfer", _u64),
        ("v_recursive_events", _u64),
    ]


class LogEntry(ctypes.Structure):
    _fields_ = [
        ("seq", _u64),
        ("length", _i64),
        ("buffer", _u64),
        ("flags", _u32),
        ("timeout", _u32),
        ("status", _i32),
        ("pad", _i32),
        ("actual", _i64),
        ("thread", _u64),
    ]


def _as_dict(s: ctypes.Structure) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, _ in s._fields_:
        v = getattr(s, name)
        out[name] = list(v) if isinstance(v, ctypes.Array) else v
    return out


VIOLATIONS = ("v_free_in_flight", "v_close_with_pending", "v_bad_handle", "v_bad_transfer", "v_recursive_events")


class Fake:
    """The loaded fake (the very library the shim loaded: dlopen hands back the same one)."""

    def __init__(self, path: str) -> None:
        lib = self.lib = ctypes.CDLL(path)
        sig = {
            "fake_reset": (ctypes.c_int, []),
            "fake_next_result": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, _i64]),
            "fake_fail_submit": (ctypes.c_int, [ctypes.c_int] * 4),
            "fake_fail_control": (None, [ctypes.c_int, ctypes.c_int]),
            "fake_fail_open": (None, [ctypes.c_int, ctypes.c_int]),
            "fake_nak_after": (ctypes.c_int, [ctypes.c_int, _i64]),
            "fake_hold": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_set_rate": (ctypes.c_int, [ctypes.c_int, _i64]),
            "fake_set_in_source": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_track_values": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_hist": (_u64, [ctypes.c_int, ctypes.c_int]),
            "fake_stall": (ctypes.c_int, [ctypes.c_int]),
            "fake_set_speed": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_set_configured": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_unplug": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
            "fake_set_cancel_delay_us": (None, [_i64]),
            "fake_set_complete_delay_us": (None, [_i64]),
            "fake_set_submit_delay_us": (None, [_i64]),
            "fake_set_crc_limit": (None, [_i64]),
            "fake_set_usbfs_cap": (None, [_i64]),
            "fake_stats": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(EpStats)]),
            "fake_global": (None, [ctypes.POINTER(GlobalStats)]),
            "fake_in_flight": (_i64, []),
            "fake_interrupts": (_u64, []),
            "fake_handed_over": (_u64, []),
            "fake_log": (ctypes.c_int, [ctypes.c_int, _u64, ctypes.POINTER(LogEntry)]),
            "fake_sizeof": (ctypes.c_int, [ctypes.c_int]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        for i, cls in enumerate((EpStats, GlobalStats, LogEntry)):
            assert lib.fake_sizeof(i) == ctypes.sizeof(cls), f"fakectl.{cls.__name__} does not match fakeusb.c"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, "fake_" + name)

    def stats(self, ep: int) -> dict[str, Any]:
        st = EpStats()
        assert self.lib.fake_stats(ep, ctypes.byref(st)) == 0, f"no endpoint {ep:#x}"
        out = _as_dict(st)
        out.update({name.lower(): st.status[i] for i, name in enumerate(STATUS_NAMES)})
        return out

    def glob(self) -> dict[str, Any]:
        g = GlobalStats()
        self.lib.fake_global(ctypes.byref(g))
        return _as_dict(g)

    def violations(self) -> dict[str, int]:
        g = self.glob()
        return {k: g[k] for k in VIOLATIONS if g[k]}

    def log(self, ep: int, seq: int) -> dict[str, Any]:
        e = LogEntry()
        assert self.lib.fake_log(ep, seq, ctypes.byref(e)) == 0, f"submission {seq} on {ep:#x} is not logged"
        return _as_dict(e)

    def logs(self, ep: int) -> list[dict[str, Any]]:
        """Every logged submission on ep, oldest first."""
        n = self.stats(ep)["submits"]
        return [self.log(ep, s) for s in range(max(1, n - 511), n + 1)] if n else []

    def wait(self, cond: Any, seconds: float = 5.0, what: str = "condition") -> None:
        """Poll ``cond()`` until true (the fake's state changes on other threads)."""
        deadline = time.monotonic() + seconds
        while not cond():
            assert time.monotonic() < deadline, f"the fake never reached: {what}"
            time.sleep(0.001)

    def wait_pending(self, ep: int, moved: int, seconds: float = 5.0) -> None:
        """Until a transfer is in flight on ep and the endpoint has moved ``moved`` bytes."""

        def ready() -> bool:
            st = self.stats(ep)
            return bool(st["in_flight"] >= 1 and st["bytes"] >= moved)

        self.wait(ready, seconds, f"a transfer pending on {ep:#x} after {moved} bytes")
