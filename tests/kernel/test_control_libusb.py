"""Control transfers through libusb and the real Linux USB stack (dummy_hcd + configfs gadgets):
Gadget Zero's own vendor requests, its strings against sysfs, GET_STATUS and the halt feature on
a real endpoint, stalls, HID class requests, and a request the device never answers."""

from __future__ import annotations

import random
import threading
import time
import zlib

import gadget
import pytest
from unplug import unplug_after

import wdfusb

SS_VID, SS_PID = 0x0525, 0xA4A0
GET_STATUS, CLEAR_FEATURE, SET_FEATURE, GET_DESCRIPTOR = 0x00, 0x01, 0x03, 0x06
HID_GET_REPORT, HID_GET_IDLE, HID_SET_REPORT, HID_SET_IDLE = 0x01, 0x02, 0x09, 0x0A


def open_ss() -> wdfusb.Device:
    return wdfusb.open(vid=SS_VID, pid=SS_PID, serial=gadget.SERIAL)


@pytest.mark.parametrize("size", [0, 1, 64, 65, 1000, 4096])
def test_gadget_zero_control_write_then_read(sourcesink: gadget.SourceSink, size: int) -> None:
    """f_sourcesink's 0x5b (vendor OUT) fills its buffer, 0x5c (vendor IN) sends it back."""
    data = random.Random(size).randbytes(size)
    with open_ss() as dev:
        assert dev.control_write(0x40, 0x5B, 0, 0, data, timeout=5) == size
        back = dev.control_read(0xC0, 0x5C, 0, 0, size, timeout=5)
        assert len(back) == size and zlib.crc32(back) == zlib.crc32(data)


def test_gadget_zero_refuses_what_its_rules_refuse(sourcesink: gadget.SourceSink) -> None:
    """0x5b/0x5c with a wValue or wIndex, the wrong direction's type, or an unknown request: a
    stall; EP0 takes the next request."""
    with open_ss() as dev:
        dev.control_write(0x40, 0x5B, 0, 0, b"wdfusb", timeout=5)
        for bad in [(0xC0, 0x5C, 1, 0, 6), (0xC0, 0x5C, 0, 1, 6), (0xC0, 0x77, 0, 0, 6), (0xC0, 0x5B, 0, 0, 6)]:
            with pytest.raises(wdfusb.UsbStallError) as err:
                dev.control_read(*bad, timeout=5)
            assert err.value.bytes_transferred == 0
            assert dev.control_read(0xC0, 0x5C, 0, 0, 6, timeout=5) == b"wdfusb"


def test_strings_match_sysfs(sourcesink: gadget.SourceSink) -> None:
    usb = sourcesink.usb_dir
    assert usb is not None
    with open_ss() as dev:
        assert dev.langids == [0x0409]
        assert dev.manufacturer == (usb / "manufacturer").read_text().strip()
        assert dev.product == (usb / "product").read_text().strip() == sourcesink.product
        assert dev.serial_number == (usb / "serial").read_text().strip() == gadget.SERIAL
        device = dev.control_read(0x80, GET_DESCRIPTOR, 0x0100, 0, 18, timeout=5)
        assert device == (usb / "descriptors").read_bytes()[:18]
        with pytest.raises(wdfusb.UsbStallError):
            dev.get_string(0xEE)  # the gadget has no such string


def test_get_status_and_the_halt_feature_of_a_real_endpoint(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    good = gadget.mod63(4 * bulk_maxp, bulk_maxp)
    with open_ss() as dev:
        out = dev.pipe(0x02)

        def halted() -> int:
            return dev.control_read(0x82, GET_STATUS, 0, 0x02, 2, timeout=5)[0] & 1

        assert halted() == 0
        dev.control_write(0x02, SET_FEATURE, 0, 0x02, timeout=5)  # ENDPOINT_HALT, set by the host
        assert halted() == 1
        with pytest.raises(wdfusb.UsbStallError):
            out.write(good, timeout=5)
        dev.control_write(0x02, CLEAR_FEATURE, 0, 0x02, timeout=5)
        assert halted() == 0
        assert out.write(good, timeout=5) == len(good)
        bad = bytearray(good)
        bad[7] ^= 0xFF  # f_sourcesink checks the pattern and halts the endpoint itself
        with pytest.raises(wdfusb.UsbStallError):
            for _ in range(64):
                out.write(bad, timeout=5)
        assert halted() == 1
        dev.control_write(0x02, CLEAR_FEATURE, 0, 0x02, timeout=5)
        assert halted() == 0


def test_hid_class_requests(hid_gadget: gadget.HidGadget) -> None:
    """f_hid: SET_IDLE / GET_IDLE, GET_REPORT (a zeroed report), the report descriptor, and
    SET_REPORT, which a HID function with an OUT endpoint stalls."""
    with wdfusb.open(vid=gadget.HidGadget.vid, pid=gadget.HidGadget.pid) as dev:
        dev.control_write(0x21, HID_SET_IDLE, 4 << 8, 0, timeout=5)  # duration 4 x 4 ms, all reports
        assert dev.control_read(0xA1, HID_GET_IDLE, 0, 0, 1, timeout=5) == b"\x04"
        report = dev.control_read(0xA1, HID_GET_REPORT, 0x0100, 0, hid_gadget.report_length, timeout=5)
        assert report == bytes(hid_gadget.report_length)
        assert dev.control_read(0x81, GET_DESCRIPTOR, 0x2200, 0, 255, timeout=5) == gadget.HID_REPORT_DESC
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_write(0x21, HID_SET_REPORT, 0x0200, 0, bytes(hid_gadget.report_length), timeout=5)
        dev.control_write(0x21, HID_SET_IDLE, 0, 0, timeout=5)  # EP0 took the next request
        assert dev.control_read(0xA1, HID_GET_IDLE, 0, 0, 1, timeout=5) == b"\x00"


def test_a_request_the_device_never_answers_times_out(ffs_gadget: gadget.FfsGadget) -> None:
    """The FunctionFS gadget holds its vendor requests: libusb's transfer is cancelled at the
    time-out, exactly once, and nothing stays in flight."""
    ffs_gadget.ctrl_hold = True
    with wdfusb.open(vid=gadget.FfsGadget.vid, pid=gadget.FfsGadget.pid) as dev:
        t = time.monotonic()
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.control_read(0xC1, 0x01, 0, 0, 8, timeout=0.3)
        assert time.monotonic() - t >= 0.29
        assert err.value.bytes_transferred == 0 and dev._core.native.live_transfers() == 0


def test_unplug_under_a_held_request(ffs_gadget: gadget.FfsGadget) -> None:
    ffs_gadget.ctrl_hold = True
    with wdfusb.open(vid=gadget.FfsGadget.vid, pid=gadget.FfsGadget.pid) as dev:
        unplug_after(ffs_gadget, 0.3)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                dev.control_read(0xC1, 0x01, 0, 0, 8, timeout=30)
            except BaseException as e:  # noqa: BLE001 - handed to the test
                errors.append(e)

        th = threading.Thread(target=run)
        th.start()
        th.join(30)
        assert not th.is_alive(), "the control transfer hung across the unplug"
        assert len(errors) == 1 and isinstance(errors[0], (wdfusb.DeviceGoneError, wdfusb.UsbIOError)), errors
        assert dev._core.native.live_transfers() == 0


def test_the_control_benchmark_runs_every_method(sourcesink: gadget.SourceSink) -> None:
    """``wdfusb bench --control``'s methods, pyusb's and python-libusb1's included, against the
    real stack (its timings go to the closing notes and the README, not to an assertion)."""
    from wdfusb._bench_control import CONTROL_METHODS, run_control

    rows = {r.method: r for r in run_control(wdfusb.find_device(vid=SS_VID, pid=SS_PID), duration=0.5, timeout=5)}
    for name in CONTROL_METHODS:
        assert rows[name].skipped is None and rows[name].round_trips > 0, rows[name]
        print(f"{name:>14}: {rows[name].us_per_round_trip:8.1f} us per round trip ({rows[name].ratio:.3f}x c-loop)")
    assert rows["c-loop"].ratio == 1.0


def test_a_port_reset_on_the_real_stack(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    """libusb_reset_device through dummy_hcd: the halt the host set is gone, the configuration
    and the interface claim are back, and the gadget answers as before."""
    good = gadget.mod63(4 * bulk_maxp, bulk_maxp)
    with open_ss() as dev:
        dev.control_write(0x02, SET_FEATURE, 0, 0x02, timeout=5)
        assert dev.control_read(0x82, GET_STATUS, 0, 0x02, 2, timeout=5)[0] & 1
        dev.reset()
        assert dev.control_read(0x82, GET_STATUS, 0, 0x02, 2, timeout=5)[0] & 1 == 0
        assert dev.pipe(0x02).write(good, timeout=5) == len(good)
        assert dev.serial_number == gadget.SERIAL
