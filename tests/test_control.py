"""Control transfers on the virtual device: EP0's standard requests, Gadget Zero's test requests,
strings, stalls, pacing, time-outs, cancel, close, unplug and Ctrl-C (CONTRACT §6)."""

from __future__ import annotations

import random
import struct
import threading
import time
import zlib

import pytest
from background import in_thread, joined, wait_until
from sigint import interrupt_child

import wdfusb
from wdfusb.virtual import STALL, ControlRequest

GET_STATUS, CLEAR_FEATURE, SET_FEATURE, GET_DESCRIPTOR = 0x00, 0x01, 0x03, 0x06
GET_CONFIGURATION, SET_CONFIGURATION, GET_INTERFACE, SET_INTERFACE = 0x08, 0x09, 0x0A, 0x0B


def opened(speed: str | None = "high", **kw: str) -> tuple[wdfusb.VirtualDevice, wdfusb.Device]:
    v = wdfusb.VirtualDevice(speed=speed, **kw)  # type: ignore[arg-type]
    return v, wdfusb.open(v)


# ---- standard requests -----------------------------------------------------------------------


@pytest.mark.parametrize("speed", ["full", "high", "super", None])
def test_descriptors_come_from_ep0(counts: None, speed: str | None) -> None:
    v, dev = opened(speed)
    with v, dev:
        device = dev.control_read(0x80, GET_DESCRIPTOR, 0x0100, 0, 18)
        assert device == dev._core.device_descriptor and len(device) == 18
        assert struct.unpack_from("<HH", device, 8) == (v.vid, v.pid)
        head = dev.control_read(0x80, GET_DESCRIPTOR, 0x0200, 0, 9)
        total = struct.unpack_from("<H", head, 2)[0]
        config = dev.control_read(0x80, GET_DESCRIPTOR, 0x0200, 0, 4096)
        assert len(config) == total and config[:9] == head
        assert dev.control_read(0x80, GET_DESCRIPTOR, 0x0100, 0, 8) == device[:8]  # wLength caps the answer
        assert dev.langids == [0x0409]


def test_strings_and_identity(counts: None) -> None:
    v, dev = opened(manufacturer="Lab Instruments", product="Ünïcode DAQ", serial="B-0042")
    with v, dev:
        assert (dev.manufacturer, dev.product, dev.serial_number) == ("Lab Instruments", "Ünïcode DAQ", "B-0042")
        assert dev.get_string(dev.descriptor.i_serial, 0x0409) == "B-0042"
        with pytest.raises(wdfusb.UsbStallError):
            dev.get_string(9)  # a string the device does not have: it stalls
        with pytest.raises(ValueError, match="language table"):
            dev.get_string(0)


def test_get_status_and_features_are_the_endpoints_halt_state(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        out = dev.pipe(0x06)

        def halted() -> int:
            return dev.control_read(0x82, GET_STATUS, 0, 0x06, 2)[0]

        assert halted() == 0 and dev.control_read(0x80, GET_STATUS, 0, 0, 2) == b"\x00\x00"  # bus powered
        v.endpoint(0x06).stall()  # the device halts the endpoint itself
        assert halted() == 1
        dev.control_write(0x02, CLEAR_FEATURE, 0, 0x06)  # ENDPOINT_HALT
        assert halted() == 0 and not v.endpoint(0x06).halted
        assert out.write(b"x" * 512, timeout=1) == 512
        dev.control_write(0x02, SET_FEATURE, 0, 0x06)  # the host halts it
        assert v.endpoint(0x06).halted and halted() == 1
        with pytest.raises(wdfusb.UsbStallError):
            out.write(b"x" * 512, timeout=1)
        out.reset()
        assert halted() == 0
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_read(0x82, GET_STATUS, 0, 0x07, 2)  # no such endpoint


def test_configuration_and_interface_requests(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        assert dev.control_read(0x80, GET_CONFIGURATION, 0, 0, 1) == b"\x01"
        assert dev.control_read(0x81, GET_INTERFACE, 0, 0, 1) == b"\x00"
        v.endpoint(0x88).stall()
        dev.control_write(0x01, SET_INTERFACE, 0, 0)  # setting 0 again: its endpoints start afresh
        assert not v.endpoint(0x88).halted
        for bad in [(0x01, SET_INTERFACE, 1, 0), (0x01, SET_INTERFACE, 0, 1), (0x00, SET_CONFIGURATION, 2, 0)]:
            with pytest.raises(wdfusb.UsbStallError):
                dev.control_write(*bad)
        dev.control_write(0x00, SET_CONFIGURATION, 1, 0)
        assert dev.control_read(0x80, GET_CONFIGURATION, 0, 0, 1) == b"\x01"


# ---- data stages, stalls ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 512, 4095, 4096])
def test_gadget_zero_test_requests_round_trip(counts: None, size: int) -> None:
    data = random.Random(size).randbytes(size)
    v, dev = opened()
    with v, dev:
        assert dev.control_write(0x40, 0x5B, 0, 0, bytearray(data)) == size
        back = dev.control_read(0xC0, 0x5C, 0, 0, size)
        assert zlib.crc32(back) == zlib.crc32(data) and len(back) == size


def test_a_stall_is_reported_and_the_next_setup_clears_it(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        dev.control_write(0x40, 0x5B, 0, 0, b"abc")
        for bad in [(0xC0, 0x77, 0, 0, 4), (0xC0, 0x5C, 1, 0, 3), (0xA1, 0x01, 0, 0, 8)]:  # vendor, wValue, class
            with pytest.raises(wdfusb.UsbStallError) as err:
                dev.control_read(*bad)
            assert err.value.bytes_transferred == 0 and err.value.data == b""
            assert dev.control_read(0xC0, 0x5C, 0, 0, 3) == b"abc"
        v.endpoint(0).stall()  # the device refuses the next request, whatever it is
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_read(0x80, GET_STATUS, 0, 0, 2)
        assert dev.control_read(0x80, GET_STATUS, 0, 0, 2) == b"\x00\x00"


def test_bad_setup_fields_are_value_errors_and_reach_nothing(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        for args, match in [
            ((0xC0, 0x5C, 0, 0, 4097), "length"),
            ((0x1C0, 0x5C, 0, 0, 1), "request_type"),
            ((0xC0, 0x100, 0, 0, 1), "request"),
            ((0xC0, 0x5C, 0x10000, 0, 1), "value"),
            ((0xC0, 0x5C, 0, -1, 1), "index"),
            ((0x40, 0x5B, 0, 0, 1), "control_write"),
        ]:
            with pytest.raises(ValueError, match=match):
                dev.control_read(*args)
        with pytest.raises(ValueError, match="length"):
            dev.control_write(0x40, 0x5B, 0, 0, bytes(4097))
        with pytest.raises(ValueError, match="control_read"):
            dev.control_write(0xC0, 0x5C, 0, 0, b"x")
        with pytest.raises(TypeError):
            dev.control_write(0x40, 0x5B, 0, 0, "text")
        assert v.endpoint(0).transfers == 0  # none of them reached EP0


# ---- timing, time-outs, cancel, close, unplug ---------------------------------------------------


@pytest.mark.parametrize("speed,frame", [("full", 1e-3), ("high", 125e-6)])
def test_a_control_transfer_takes_its_frames(counts: None, speed: str, frame: float) -> None:
    """SETUP and STATUS take a (micro)frame each: no request is answered sooner (a lower bound)."""
    v, dev = opened(speed)
    with v, dev:
        t = time.monotonic()
        for _ in range(5):
            dev.control_read(0x80, GET_STATUS, 0, 0, 2)
        assert time.monotonic() - t >= 5 * 2 * frame


def test_a_time_out_then_the_next_request(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        v.endpoint(0).nak(float("inf"))  # the device holds the status stage
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.control_read(0xC0, 0x5C, 0, 0, 8, timeout=0.05)
        assert err.value.bytes_transferred == 0
        assert dev._core.native.live_transfers() == 0
        v.endpoint(0).nak(0)
        assert dev.control_read(0x80, GET_STATUS, 0, 0, 2) == b"\x00\x00"


@pytest.mark.parametrize("how", ["close", "unplug"])
def test_close_or_unplug_under_a_blocked_request(counts: None, how: str) -> None:
    v, dev = opened()
    with v:
        v.endpoint(0).nak(float("inf"))
        t, errors = in_thread(lambda: dev.control_read(0xC0, 0x5C, 0, 0, 64))
        wait_until(lambda: dev._core.native.live_transfers() > 0)
        dev.close() if how == "close" else v.unplug()
        joined(t, 5)
        assert len(errors) == 1 and isinstance(errors[0], wdfusb.UsbError)
        if how == "unplug":
            assert isinstance(errors[0], wdfusb.DeviceGoneError)
            with pytest.raises(wdfusb.DeviceGoneError):
                dev.control_read(0x80, GET_STATUS, 0, 0, 2)
        dev.close()
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.control_read(0x80, GET_STATUS, 0, 0, 2)


CTRL_C_CHILD = """
import time, wdfusb
from wdfusb import _engine
v = wdfusb.VirtualDevice(speed="high")
dev = wdfusb.open(v)
v.endpoint(0).nak(float("inf"))
before = _engine.Transfer.live
print("blocked", flush=True)
try:
    dev.control_read(0xC0, 0x5C, 0, 0, 64)
except KeyboardInterrupt as e:
    t = time.monotonic()
    print("interrupted", t, v._native.live_transfers(), e.bytes_transferred, flush=True)
"""


def test_ctrl_c_cancels_a_blocked_request() -> None:
    latency, fields = interrupt_child(CTRL_C_CHILD)
    assert latency < 0.5
    assert fields == ["0", "0"]  # nothing in flight, nothing moved


# ---- identity: open(serial=...) finds virtual devices as it finds real ones -------------------------


def test_open_by_serial_finds_virtual_devices(counts: None) -> None:
    boards = [wdfusb.VirtualDevice(serial=f"board-{c}") for c in "ABC"]
    try:
        with wdfusb.open(vid=0x1209, serial="board-B") as dev:
            assert dev.source is boards[1] and dev.serial_number == "board-B"
        boards[1].close()  # a closed device is not found any more
        with pytest.raises(wdfusb.DeviceNotFoundError):
            wdfusb.open(serial="board-B")
        assert wdfusb.find_device(pid=0x0001, serial="board-C") is boards[2]
    finally:
        for b in boards:
            b.close()
    with wdfusb.open(serial="wdfusb-virtual") as dev:  # the default device `wdfusb list` shows
        assert (dev.vid, dev.pid, dev.serial_number) == (0x1209, 0x0001, "wdfusb-virtual")
        assert isinstance(dev.source, wdfusb.VirtualDevice)
        dev.source.close()
    with pytest.raises(wdfusb.DeviceNotFoundError):
        wdfusb.open(vid=0x1209, serial="no-such-board")


# ---- the device's function: vendor and class requests answered in Python ------------------------


def instrument() -> tuple[dict[str, int], object]:
    """A lab instrument's vendor requests: 0x10 sets a register (wIndex) to wValue, 0x11 reads it
    back as 2 bytes, 0x12 takes a block (stored), 0x13 returns it; a class request 0x01 answers 3 bytes."""
    regs: dict[str, int] = {}
    block = bytearray()

    def handler(r: ControlRequest) -> object:
        if (r.kind, r.request) == ("vendor", 0x10) and not r.device_to_host:
            regs[str(r.index)] = r.value
            return None
        if (r.kind, r.request) == ("vendor", 0x11) and r.device_to_host:
            return regs.get(str(r.index), 0).to_bytes(2, "little")
        if (r.kind, r.request) == ("vendor", 0x12):
            block[:] = r.data
            return None
        if (r.kind, r.request) == ("vendor", 0x13):
            return bytes(block)
        if (r.kind, r.request) == ("class", 0x01):
            return b"\x01\x02\x03"
        return STALL

    return regs, handler


def test_a_handler_answers_vendor_and_class_requests(counts: None) -> None:
    regs, handler = instrument()
    v = wdfusb.VirtualDevice(speed="high", on_control=handler)  # type: ignore[arg-type]
    with v, wdfusb.open(v) as dev:
        dev.control_write(0x40, 0x10, 0x1234, 7)
        assert regs == {"7": 0x1234} and dev.control_read(0xC0, 0x11, 0, 7, 2) == b"\x34\x12"
        data = random.Random(3).randbytes(4096)
        assert dev.control_write(0x40, 0x12, 0, 0, data) == 4096
        assert dev.control_read(0xC0, 0x13, 0, 0, 4096) == data
        assert dev.control_read(0xC0, 0x13, 0, 0, 10) == data[:10]  # at most wLength, as from a device
        assert dev.control_read(0xA1, 0x01, 0, 0, 8) == b"\x01\x02\x03"  # a short answer
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_read(0xC0, 0x5C, 0, 0, 4)  # the handler's now, and it refuses it
        assert dev.control_read(0x80, GET_STATUS, 0, 0, 2) == b"\x00\x00"  # standard: still the device's
        v.on_control(None)  # back to the built-in requests
        dev.control_write(0x40, 0x5B, 0, 0, b"gz")
        assert dev.control_read(0xC0, 0x5C, 0, 0, 2) == b"gz"
    assert v.function_errors == []


def test_a_handler_that_raises_or_does_io_stalls_the_request(counts: None) -> None:
    def handler(r: ControlRequest) -> object:
        if r.request == 0x01:
            raise RuntimeError("instrument firmware bug")
        return dev.control_read(0x80, GET_STATUS, 0, 0, 2)  # I/O on its own device, from its function

    v = wdfusb.VirtualDevice(speed=None, on_control=handler)
    with v, wdfusb.open(v) as dev:
        for request in (0x01, 0x02):
            with pytest.warns(UserWarning, match="control handler raised"), pytest.raises(wdfusb.UsbStallError):
                dev.control_read(0xC0, request, 0, 0, 2)
        assert dev.control_read(0x80, GET_STATUS, 0, 0, 2) == b"\x00\x00"
    assert [type(e).__name__ for e in v.function_errors] == ["RuntimeError", "UsbError"]
    assert "completion" in str(v.function_errors[1]) or "context" in str(v.function_errors[1])


def test_a_slow_handler_times_out_cancels_and_closes(counts: None) -> None:
    gate = threading.Event()

    def handler(r: ControlRequest) -> object:
        gate.wait(5)
        return b"late"

    v = wdfusb.VirtualDevice(speed="high", on_control=handler)
    with v:
        dev = wdfusb.open(v)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.control_read(0xC0, 0x01, 0, 0, 4, timeout=0.05)
        assert err.value.bytes_transferred == 0 and dev._core.native.live_transfers() == 0
        gate.set()  # its answer comes too late: dropped
        assert dev.control_read(0xC0, 0x01, 0, 0, 4, timeout=5) == b"late"
        gate.clear()
        t, errors = in_thread(lambda: dev.control_read(0xC0, 0x01, 0, 0, 4))
        wait_until(lambda: dev._core.native.live_transfers() > 0)
        dev.close()  # the waiting request is cancelled; the handler's answer is dropped
        joined(t, 5)
        assert len(errors) == 1 and isinstance(errors[0], wdfusb.UsbError)
        gate.set()
    assert v._function is not None and not v._function._thread.is_alive()  # the close ended the function


# ---- port reset ------------------------------------------------------------------------------------


def test_a_port_reset_cancels_what_is_in_flight_and_clears_halts(counts: None) -> None:
    v, dev = opened()
    with v, dev:
        v.endpoint(0x06).stall()
        v.endpoint(0x88).nak(float("inf"))
        t, errors = in_thread(lambda: dev.pipe(0x88).read(512))
        wait_until(lambda: dev._core.native.live_transfers() > 0)
        dev.reset()
        joined(t, 5)
        assert len(errors) == 1 and isinstance(errors[0], wdfusb.UsbCancelledError)
        assert not v.endpoint(0x06).halted and dev.pipe(0x06).write(b"x" * 512, timeout=1) == 512
        assert dev.control_read(0x80, GET_CONFIGURATION, 0, 0, 1) == b"\x01"  # the configuration stays
        v.unplug()
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.reset()
