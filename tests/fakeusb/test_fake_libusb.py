"""wdfusb's libusb backend against the scripted fake libusb (fakeusb.c), through the public API.

Runs in a child interpreter with WDFUSB_LIBUSB set to the fake (see conftest.py). Every
test starts on a reset fake; the lane guard checks afterwards that nothing is in flight in
the fake, that the native object count is back, and that libusb was not misused.
"""

from __future__ import annotations

import ctypes
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import fakectl as fk
import numpy as np
import pytest
from background import in_thread

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import *

PIECE = 8 << 20  # WU_LIBUSB_PIECE in csrc/backend_libusb.c: bytes per libusb transfer
JOIN_S = 20.0


def mod63(size: int, maxp: int = 512) -> bytes:
    """Gadget Zero's pattern: buf[i] = (i % maxp) % 63."""
    packet = bytes(i % 63 for i in range(maxp))
    return (packet * (size // maxp + 1))[:size]


def joined(t: threading.Thread, seconds: float = JOIN_S) -> None:
    t.join(seconds)
    assert not t.is_alive(), "a transfer hung (the thread did not return)"


def wdf_open() -> tuple[WDFUSBDEVICE, dict[int, Any]]:
    """The WDF layer on Gadget Zero: the device and its configured pipes by address."""
    device = WDFUSBDEVICE()
    info = wdfusb.find_device(vid=fk.GZ_VID, pid=fk.GZ_PID)
    assert WdfUsbTargetDeviceCreate(info, WDF_NO_OBJECT_ATTRIBUTES, device) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(device, WDF_NO_OBJECT_ATTRIBUTES, params))
    iface = WdfUsbTargetDeviceGetInterface(device, 0)
    pipes = {}
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        pinfo = WDF_USB_PIPE_INFORMATION()
        WDF_USB_PIPE_INFORMATION_INIT(pinfo)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, i, pinfo)
        pipes[pinfo.EndpointAddress] = pipe
    return device, pipes


def wdf_write(pipe: Any, data: Any, timeout_ms: int | None = None) -> tuple[NTSTATUS, int]:
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, data, len(data))
    options = None
    if timeout_ms is not None:
        options = WDF_REQUEST_SEND_OPTIONS()
        WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
        WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_MS(timeout_ms))
    written = ULONG(12345)
    status = WdfUsbTargetPipeWriteSynchronously(pipe, None, options, desc, written)
    return status, written.value


# ---- the fake itself: libusb's asynchronous model, checked without wdfusb ---------------------------
# (first in the module: they need the shim's event thread not started yet, i.e. no
# asynchronous wdfusb transfer before them in this interpreter)


class Transfer(ctypes.Structure):
    pass


CALLBACK = ctypes.CFUNCTYPE(None, ctypes.POINTER(Transfer))
Transfer._fields_ = [
    ("dev_handle", ctypes.c_void_p),
    ("flags", ctypes.c_uint8),
    ("endpoint", ctypes.c_ubyte),
    ("type", ctypes.c_ubyte),
    ("timeout", ctypes.c_uint),
    ("status", ctypes.c_int),
    ("length", ctypes.c_int),
    ("actual_length", ctypes.c_int),
    ("callback", CALLBACK),
    ("user_data", ctypes.c_void_p),
    ("buffer", ctypes.c_void_p),
    ("num_iso_packets", ctypes.c_int),
]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class RawLibusb:
    """Just enough of the fake's libusb API to drive it by hand."""

    def __init__(self, fake: fk.Fake) -> None:
        lib = self.lib = fake.lib
        lib.libusb_alloc_transfer.restype = ctypes.POINTER(Transfer)
        lib.libusb_submit_transfer.argtypes = [ctypes.POINTER(Transfer)]
        lib.libusb_cancel_transfer.argtypes = [ctypes.POINTER(Transfer)]
        lib.libusb_free_transfer.argtypes = [ctypes.POINTER(Transfer)]
        lib.libusb_handle_events_timeout_completed.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(Timeval),
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.libusb_open.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.libusb_close.argtypes = [ctypes.c_void_p]
        lib.libusb_get_device_list.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))]
        lib.libusb_get_device_list.restype = ctypes.c_long
        lib.libusb_free_device_list.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        devs = ctypes.POINTER(ctypes.c_void_p)()
        assert lib.libusb_get_device_list(None, ctypes.byref(devs)) == 2
        self.handle = ctypes.c_void_p()
        assert lib.libusb_open(devs[0], ctypes.byref(self.handle)) == 0
        lib.libusb_free_device_list(devs, 1)
        self.calls: list[tuple[int, int, int]] = []  # (status, actual_length, thread id) per callback
        self.cb = CALLBACK(self._callback)
        self.buf = ctypes.create_string_buffer(65536)

    def _callback(self, t: Any) -> None:
        self.calls.append((t.contents.status, t.contents.actual_length, threading.get_ident()))

    def transfer(self, ep: int, length: int, timeout_ms: int = 0) -> Any:
        t = self.lib.libusb_alloc_transfer(0)
        t.contents.dev_handle = self.handle.value
        t.contents.endpoint, t.contents.type, t.contents.timeout = ep, 2, timeout_ms
        t.contents.length, t.contents.callback = length, self.cb
        t.contents.buffer = ctypes.addressof(self.buf)
        return t

    def events(self, seconds: float = 0.0, completed: Any = None) -> None:
        tv = Timeval(int(seconds), int((seconds % 1) * 1e6))
        flag = ctypes.byref(completed) if completed is not None else None
        assert self.lib.libusb_handle_events_timeout_completed(None, ctypes.byref(tv), flag) == 0

    def close(self) -> None:
        self.lib.libusb_close(self.handle)


@pytest.fixture
def raw(fake: fk.Fake) -> Iterator[RawLibusb]:
    if fake is None:
        yield None
        return
    r = RawLibusb(fake)
    yield r
    r.close()


def test_fake_calls_back_only_inside_handle_events(fake: fk.Fake, raw: RawLibusb) -> None:
    calls_before = fake.glob()["events_calls"]
    time.sleep(0.15)
    assert fake.glob()["events_calls"] == calls_before, "someone else handles events: the shim's event thread?"
    t = raw.transfer(fk.GZ_OUT, 4096)
    assert raw.lib.libusb_submit_transfer(t) == 0
    assert raw.lib.libusb_submit_transfer(t) == fk.ERROR_BUSY  # already in flight
    time.sleep(0.05)
    assert raw.calls == [] and fake.stats(fk.GZ_OUT)["bytes"] == 4096  # moved on the bus, not reported
    assert raw.lib.libusb_cancel_transfer(t) == fk.ERROR_NOT_FOUND  # over already: too late to cancel
    raw.events(0)
    assert raw.calls == [(fk.COMPLETED, 4096, threading.get_ident())]
    assert fake.in_flight() == 0
    assert raw.lib.libusb_cancel_transfer(t) == fk.ERROR_NOT_FOUND  # not in flight
    raw.lib.libusb_free_transfer(t)


def test_fake_cancel_time_out_and_event_waiters(fake: fk.Fake, raw: RawLibusb) -> None:
    fake.nak_after(fk.GZ_OUT, 1536)
    fake.set_cancel_delay_us(100_000)
    t = raw.transfer(fk.GZ_OUT, 8192)
    assert raw.lib.libusb_submit_transfer(t) == 0
    assert raw.lib.libusb_cancel_transfer(t) == 0
    assert raw.lib.libusb_cancel_transfer(t) == fk.ERROR_NOT_FOUND  # cancelling already
    t0 = time.monotonic()
    done = ctypes.c_int(0)
    while not raw.calls:
        raw.events(1.0, done)
    assert time.monotonic() - t0 >= 0.09  # reported after the scripted delay
    assert raw.calls[-1][:2] == (fk.CANCELLED, 1536)
    # a time-out, while another thread holds the event lock (this one waits as an event waiter)
    fake.nak_after(fk.GZ_OUT, 0)
    fake.set_cancel_delay_us(0)
    assert raw.lib.libusb_submit_transfer(t) == 0
    holder = threading.Thread(target=raw.events, args=(2.0,))
    start = time.monotonic()
    t2 = raw.transfer(fk.GZ_OUT, 512, timeout_ms=150)
    calls = fake.glob()["events_calls"]
    holder.start()
    fake.wait(lambda: fake.glob()["events_calls"] > calls, 5, "the holder thread handling events")
    assert raw.lib.libusb_submit_transfer(t2) == 0  # behind t: waits, then times out
    raw.events(2.0)  # an event waiter: returns after one event
    holder.join(5)
    while len(raw.calls) < 2:
        raw.events(0.5)
    assert raw.calls[1][:2] == (fk.TIMED_OUT, 0)
    assert raw.calls[1][2] == holder.ident  # called back on the thread that held the event lock
    assert 0.13 <= time.monotonic() - start < 1.5
    assert fake.glob()["events_waited"] >= 1
    assert raw.lib.libusb_cancel_transfer(t) == 0
    while len(raw.calls) < 3:
        raw.events(0.5)
    assert raw.calls[2][:2] == (fk.CANCELLED, 0)
    raw.lib.libusb_free_transfer(t)
    raw.lib.libusb_free_transfer(t2)
    assert fake.violations() == {}


# ---- enumeration and configuration ----------------------------------------------------------------


def test_the_shim_loaded_the_fake(fake: fk.Fake) -> None:
    assert _engine.libusb_version() == "1.0.27.9999"
    assert _engine.libusb_path().endswith("libfakeusb.so")


def test_list_and_find_devices(fake: fk.Fake) -> None:
    devices = wdfusb.list_devices()
    assert [(d.vid, d.pid, d.bus, d.address, d.ports, d.speed) for d in devices] == [
        (0x0525, 0xA4A0, 1, 2, (1,), "high"),
        (0x0525, 0xA4AC, 2, 5, (1, 3), "full"),
    ]
    gz = wdfusb.find_device(vid=fk.GZ_VID, pid=fk.GZ_PID)
    assert gz.serial == "FAKE0001"
    assert gz.strings()["product"] == "Gadget Zero (fakeusb)"
    assert wdfusb.find_device(serial="FAKE0002").pid == fk.HID_PID
    with pytest.raises(wdfusb.DeviceNotFoundError):
        wdfusb.find_device(vid=0x1234)


@pytest.mark.parametrize(("speed", "maxp", "label"), [(fk.SPEED_HIGH, 512, "high"), (fk.SPEED_SUPER, 1024, "super")])
def test_open_selects_the_configuration_and_finds_the_pipes(fake: fk.Fake, speed: int, maxp: int, label: str) -> None:
    fake.set_speed(fk.GZ, speed)
    fake.set_configured(fk.GZ, 0)  # unconfigured: the shim must set configuration 1
    with wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID) as dev:
        assert dev.speed == label
        assert [(p.address, p.type, p.max_packet, p.is_out) for p in dev.pipes] == [
            (0x01, "bulk", maxp, True),
            (0x81, "bulk", maxp, False),
        ]
        g = fake.glob()
        assert g["set_configuration_calls"] == 1 and g["claimed"] == 1 and g["open_handles"] == 1
    g = fake.glob()
    assert g["claimed"] == 0 and g["open_handles"] == 0


def test_interrupt_pipes_of_the_second_device(fake: fk.Fake) -> None:
    with wdfusb.open(vid=fk.GZ_VID, pid=fk.HID_PID) as dev:
        assert {p.address: (p.type, p.max_packet) for p in dev.pipes} == {
            0x03: ("interrupt", 64),
            0x83: ("interrupt", 64),
        }
        assert dev.pipe(0x03).write(b"r" * 64) == 64
        assert dev.pipe(0x83).read(64) == mod63(64, 64)
    assert fake.stats(fk.HID_OUT)["crc32"] == zlib.crc32(b"r" * 64)


# ---- data: exact bytes, CRC, ZLP -------------------------------------------------------------------


def test_write_and_read_move_exact_bytes(fake: fk.Fake, gz: wdfusb.Device) -> None:
    data = mod63(1 << 20) + b"tail"
    assert gz.pipe(0x01).write(data) == len(data)
    st = fake.stats(fk.GZ_OUT)
    assert st["bytes"] == len(data) and st["crc32"] == zlib.crc32(data) and st["submits"] == 1
    got = gz.pipe(0x81).read(100_000)
    assert got == mod63(100_000)
    buf = np.zeros(4096, np.uint8)
    assert gz.pipe(0x81).readinto(buf) == 4096 and bytes(buf) == mod63(4096)


def test_control_transfers_are_asynchronous_libusb_transfers(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """A control transfer is a libusb transfer on EP0 with the setup packet first in its buffer
    (not libusb_control_transfer): Gadget Zero's 0x5b/0x5c test requests round-trip, a string
    reads through the same path, a stall is UsbStallError and EP0 takes the next request."""
    before = fake.stats(0)["submits"]
    data = bytes(random.Random(5).randbytes(4096))
    assert gz.control_write(0x40, 0x5B, 0, 0, data) == 4096
    assert gz.control_read(0xC0, 0x5C, 0, 0, 4096) == data
    assert gz.serial_number == fake_serial(gz)
    assert fake.stats(0)["submits"] >= before + 3  # each request went through libusb_submit_transfer
    with pytest.raises(wdfusb.UsbStallError) as stall:
        gz.control_read(0xC0, 0x77, 0, 0, 8)
    assert stall.value.bytes_transferred == 0
    assert gz.control_read(0xC0, 0x5C, 0, 0, 3) == data[:3]  # the stall cleared with the next SETUP
    fake.fail_control(fk.ERROR_NO_DEVICE, 1)  # libusb refuses the submit
    with pytest.raises(wdfusb.DeviceGoneError):
        gz.control_read(0xC0, 0x5C, 0, 0, 3)
    with pytest.raises(ValueError, match="length"):
        gz.control_read(0xC0, 0x5C, 0, 0, 4097)  # over 4096: refused before libusb sees it
    with pytest.raises(ValueError, match="control_read"):
        gz.control_write(0xC0, 0x5C, 0, 0, b"x")


def test_a_port_reset_reaches_libusb_after_the_transfers_are_drained(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """libusb_reset_device runs with nothing in flight (the fake refuses it otherwise) and clears
    the halt the device had."""
    fake.next_result(fk.GZ_OUT, fk.STALL, 0)
    with pytest.raises(wdfusb.UsbStallError):
        gz.pipe(0x01).write(b"x" * 512, timeout=5)
    assert fake.stats(fk.GZ_OUT)["halted"]
    gz.reset()
    assert not fake.stats(fk.GZ_OUT)["halted"]
    assert gz.pipe(0x01).write(b"x" * 512, timeout=5) == 512


def fake_serial(dev: wdfusb.Device) -> str:
    """The serial string the fake gives its first device (read with libusb's synchronous call)."""
    return wdfusb.find_device(vid=fk.GZ_VID, pid=fk.GZ_PID).strings()["serial"] or ""


def test_loopback_round_trip(fake: fk.Fake, gz: wdfusb.Device) -> None:
    fake.set_in_source(fk.GZ_IN, fk.IN_LOOPBACK)
    data = random.Random(1).randbytes(300_000)
    assert gz.pipe(0x01).write(data) == len(data)
    got = bytearray()
    while len(got) < len(data):
        got += gz.pipe(0x81).read(65536, timeout=5)
    assert bytes(got) == data


def test_zlp_flag_reaches_libusb(fake: fk.Fake, gz: wdfusb.Device) -> None:
    p = gz.pipe(0x01)
    assert p.write(b"x" * 512, zlp=True) == 512
    assert fake.stats(fk.GZ_OUT)["last_flags"] == fk.ADD_ZERO_PACKET
    assert p.write(b"x" * 513, zlp=True) == 513  # not a packet multiple: libusb sends no ZLP
    assert p.write(b"x" * 1024) == 1024
    assert fake.stats(fk.GZ_OUT)["last_flags"] == 0
    st = fake.stats(fk.GZ_OUT)
    assert st["zlp_flags"] == 2 and st["zlps"] == 1


# ---- every libusb transfer status, both layers -------------------------------------------------------

# libusb status -> (exception of the Pythonic layer, NTSTATUS of the WDF layer, USBD status)
MAPPING = {
    fk.COMPLETED: (None, STATUS_SUCCESS, USBD_STATUS_SUCCESS),
    fk.ERROR: (wdfusb.UsbIOError, STATUS_IO_DEVICE_ERROR, USBD_STATUS_XACT_ERROR),
    fk.TIMED_OUT: (wdfusb.UsbTimeoutError, STATUS_IO_TIMEOUT, USBD_STATUS_CANCELED),
    fk.CANCELLED: (wdfusb.UsbCancelledError, STATUS_CANCELLED, USBD_STATUS_CANCELED),
    fk.STALL: (wdfusb.UsbStallError, STATUS_UNSUCCESSFUL, USBD_STATUS_STALL_PID),
    fk.NO_DEVICE: (wdfusb.DeviceGoneError, STATUS_DEVICE_NOT_CONNECTED, USBD_STATUS_DEVICE_GONE),
    fk.OVERFLOW: (wdfusb.UsbOverflowError, STATUS_DEVICE_DATA_ERROR, USBD_STATUS_BABBLE_DETECTED),
    42: (wdfusb.UsbIOError, STATUS_UNSUCCESSFUL, USBD_STATUS_INTERNAL_HC_ERROR),  # a status libusb may add
}
STATUS_IDS = [*fk.STATUS_NAMES, "UNKNOWN"]


@pytest.mark.parametrize("status", list(MAPPING), ids=STATUS_IDS)
@pytest.mark.parametrize("direction", ["write", "read"])
def test_status_maps_to_the_exception_with_exact_bytes(
    fake: fk.Fake, gz: wdfusb.Device, status: int, direction: str
) -> None:
    exc, nt, usbd = MAPPING[status]
    ep, moved, size = (fk.GZ_OUT, 1536, 8192) if direction == "write" else (fk.GZ_IN, 1000, 8192)
    data = mod63(size)
    fake.next_result(ep, status, moved)
    controls = fake.glob()["control_transfers"]
    if direction == "write":
        call: Callable[[], Any] = lambda: gz.pipe(0x01).write(data)  # noqa: E731
    else:
        call = lambda: gz.pipe(0x81).read(size)  # noqa: E731
    if exc is None:
        got = call()
        assert got == (moved if direction == "write" else mod63(moved))
    else:
        with pytest.raises(exc) as err:
            call()
        assert type(err.value) is exc
        assert err.value.bytes_transferred == moved
        assert err.value.status == nt and err.value.usbd_status == usbd
    st = fake.stats(ep)
    assert st["bytes"] == moved and st["submits"] == 1 and st["callbacks"] == 1
    assert st["crc32"] == zlib.crc32(data[:moved] if direction == "write" else mod63(moved))
    # a bus error makes the shim ask the device (GET_STATUS) whether it is still there
    assert fake.glob()["control_transfers"] - controls == (1 if status == fk.ERROR else 0)
    if status == fk.STALL:
        gz.pipe(ep & 0x8F).reset()


@pytest.mark.parametrize("status", list(MAPPING), ids=STATUS_IDS)
def test_status_maps_to_ntstatus_in_the_wdf_layer(fake: fk.Fake, status: int) -> None:
    _, nt, _ = MAPPING[status]
    device, pipes = wdf_open()
    try:
        fake.next_result(fk.GZ_OUT, status, 1536)
        assert wdf_write(pipes[0x01], mod63(8192)) == (nt, 1536)
        assert fake.stats(fk.GZ_OUT)["bytes"] == 1536
        if status == fk.STALL:
            assert WdfUsbTargetPipeResetSynchronously(pipes[0x01], None, None) == STATUS_SUCCESS
    finally:
        WdfObjectDelete(device)


def test_a_stall_halts_the_pipe_until_reset(fake: fk.Fake, gz: wdfusb.Device) -> None:
    p = gz.pipe(0x01)
    fake.next_result(fk.GZ_OUT, fk.STALL, 512)
    with pytest.raises(wdfusb.UsbStallError):
        p.write(bytes(4096))
    with pytest.raises(wdfusb.UsbStallError) as err:  # halted: the next one stalls at once
        p.write(bytes(4096))
    assert err.value.bytes_transferred == 0
    p.reset()
    assert fake.glob()["clear_halt_calls"] >= 1 and not fake.stats(fk.GZ_OUT)["halted"]
    assert p.write(bytes(4096)) == 4096


# ---- lengths beyond one libusb transfer (WU_LIBUSB_PIECE), and the usbfs memory cap ----------------


@pytest.fixture
def big(fake: fk.Fake) -> Iterator[np.ndarray]:
    """Three pieces and three packets of random bytes."""
    if fake is None:
        yield None
        return
    yield np.frombuffer(random.Random(5).randbytes(3 * PIECE + 3 * 512), np.uint8)


@pytest.mark.parametrize("zlp", [False, True])
def test_a_transfer_beyond_a_piece_is_split_with_the_zlp_last(
    fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray, zlp: bool
) -> None:
    assert gz.pipe(0x01).write(big, timeout=120, zlp=zlp) == len(big)
    logs = fake.logs(fk.GZ_OUT)
    base = big.ctypes.data
    assert [e["length"] for e in logs] == [PIECE, PIECE, PIECE, 3 * 512]
    assert [e["buffer"] for e in logs] == [base + k * PIECE for k in range(4)]
    assert [e["flags"] for e in logs] == [0, 0, 0, fk.ADD_ZERO_PACKET if zlp else 0]
    timeouts = [e["timeout"] for e in logs]  # what is left of the one time-out, piece by piece
    assert all(0 < t <= 120_000 for t in timeouts) and timeouts == sorted(timeouts, reverse=True)
    st = fake.stats(fk.GZ_OUT)
    assert st["bytes"] == len(big) and st["max_length"] == PIECE and st["crc32"] == zlib.crc32(big)
    assert st["zlps"] == (1 if zlp else 0)


def test_a_read_beyond_a_piece_is_the_stream_the_device_sent(fake: fk.Fake, gz: wdfusb.Device) -> None:
    n = 2 * PIECE + 4096
    assert gz.pipe(0x81).read(n, timeout=60) == mod63(n)
    assert [e["length"] for e in fake.logs(fk.GZ_IN)] == [PIECE, PIECE, 4096]


def test_a_short_piece_ends_the_transfer(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    fake.next_result(fk.GZ_OUT, fk.COMPLETED, 4096)
    assert gz.pipe(0x01).write(big) == 4096
    assert fake.stats(fk.GZ_OUT)["submits"] == 1
    fake.next_result(fk.GZ_OUT, fk.COMPLETED, -1)
    fake.next_result(fk.GZ_OUT, fk.COMPLETED, 1000)
    assert gz.pipe(0x01).write(big) == PIECE + 1000
    st = fake.stats(fk.GZ_OUT)
    assert st["submits"] == 3 and st["short_transfers"] == 2 and st["bytes"] == 4096 + PIECE + 1000


def test_a_short_read_ends_the_transfer(fake: fk.Fake, gz: wdfusb.Device) -> None:
    fake.next_result(fk.GZ_IN, fk.COMPLETED, 100)
    assert gz.pipe(0x81).read(65536) == mod63(100)
    assert fake.stats(fk.GZ_IN)["submits"] == 1


def test_an_error_on_a_later_piece_counts_the_earlier_ones(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    fake.next_result(fk.GZ_OUT, fk.COMPLETED, -1)
    fake.next_result(fk.GZ_OUT, fk.STALL, 512)
    with pytest.raises(wdfusb.UsbStallError) as err:
        gz.pipe(0x01).write(big)
    assert err.value.bytes_transferred == PIECE + 512 == fake.stats(fk.GZ_OUT)["bytes"]
    gz.pipe(0x01).reset()


def test_a_piece_usbfs_has_no_room_for_is_halved(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    fake.fail_submit(fk.GZ_OUT, fk.ERROR_NO_MEM, 1, 1)  # the second piece: ENOMEM once
    assert gz.pipe(0x01).write(big) == len(big)
    half = PIECE // 2
    assert [e["length"] for e in fake.logs(fk.GZ_OUT)] == [PIECE, half, half, half, half, 3 * 512]
    assert fake.stats(fk.GZ_OUT)["crc32"] == zlib.crc32(big)


def test_no_room_at_all_is_insufficient_resources_with_the_bytes_before(
    fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray
) -> None:
    fake.fail_submit(fk.GZ_OUT, fk.ERROR_NO_MEM, 1, 1000)
    with pytest.raises(wdfusb.UsbError) as err:
        gz.pipe(0x01).write(big)
    assert err.value.status == STATUS_INSUFFICIENT_RESOURCES
    assert err.value.bytes_transferred == PIECE == fake.stats(fk.GZ_OUT)["bytes"]


def test_transfers_of_any_size_fit_the_usbfs_cap(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    """usbfs_memory_mb's 16 MiB for every URB in flight: a single write and read larger than
    it, and a writer whose chunks together exceed it, all complete with every byte."""
    fake.set_usbfs_cap(16 << 20)
    data = np.tile(big, 2)  # 48 MiB
    assert gz.pipe(0x01).write(data, timeout=60) == len(data)
    assert fake.stats(fk.GZ_OUT)["crc32"] == zlib.crc32(data)
    assert gz.pipe(0x81).read(len(data), timeout=60) == mod63(len(data))
    with gz.pipe(0x01).writer(depth=4, chunk=PIECE) as w:  # 32 MiB in flight asked for
        w.write(data)
    assert w.bytes_written == len(data)
    st = fake.stats(fk.GZ_OUT)
    assert st["crc32"] == zlib.crc32(np.concatenate([data, data])) and st["usbfs_refused"] > 0
    fake.set_usbfs_cap(8 << 10)  # below the smallest piece
    with pytest.raises(wdfusb.UsbError) as err:
        gz.pipe(0x01).write(bytes(65536))
    assert err.value.status == STATUS_INSUFFICIENT_RESOURCES and err.value.bytes_transferred == 0


def test_an_abort_between_the_pieces_is_a_cancellation(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    """The abort lands after the first piece moved on the bus but before its completion was
    reported (libusb_cancel_transfer: NOT_FOUND, too late for that piece): the rest is never
    sent, so the write was cut short by the cancel and must say so."""
    fake.set_complete_delay_us(300_000)
    t, out = in_thread(lambda: gz.pipe(0x01).write(big))
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["bytes"] == PIECE, 5, "the first piece moved")
    gz.pipe(0x01).abort()
    joined(t)
    st = fake.stats(fk.GZ_OUT)
    assert st["submits"] == 1 and st["bytes"] == PIECE and st["cancel_not_found"] == 1
    assert isinstance(out[0], wdfusb.UsbCancelledError), f"the write returned {out[0]!r} of {len(big)} bytes"
    assert out[0].bytes_transferred == PIECE


def test_aborts_racing_the_pieces_of_a_big_transfer(fake: fk.Fake, gz: wdfusb.Device, big: np.ndarray) -> None:
    """Aborts at random moments of a 4-piece transfer (each whole piece 50 ms on the bus): every
    outcome reports exactly the bytes the fake took, and no piece starts after the cancel."""
    fake.set_rate(fk.GZ_OUT, PIECE * 20)
    rng = random.Random(6)
    total = 0
    for _ in range(8):
        before = fake.stats(fk.GZ_OUT)
        t, out = in_thread(lambda: gz.pipe(0x01).write(big))
        time.sleep(rng.uniform(0.0, 0.16))
        gz.pipe(0x01).abort()
        joined(t)
        st = fake.stats(fk.GZ_OUT)
        moved = st["bytes"] - before["bytes"]
        if isinstance(out[0], wdfusb.UsbError):
            assert isinstance(out[0], wdfusb.UsbCancelledError), out[0]
            assert out[0].bytes_transferred == moved
        else:
            assert out[0] == moved == len(big), f"a write returned {out[0]} with no error; the fake took {moved}"
        total += moved
        pieces = st["submits"] - before["submits"]
        started = {max(1, -(-moved // PIECE))}  # the pieces that moved data, or the first
        if moved % PIECE == 0 and moved < len(big):
            started.add(moved // PIECE + 1)  # the next one may have started just before the cancel
        assert pieces in started, "a piece was submitted after the cancel"
    assert fake.stats(fk.GZ_OUT)["bytes"] == total


# ---- time-outs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["write", "read"])
def test_the_timeout_reaches_libusb_and_comes_back_with_the_bytes(
    fake: fk.Fake, gz: wdfusb.Device, direction: str
) -> None:
    ep = fk.GZ_OUT if direction == "write" else fk.GZ_IN
    fake.nak_after(ep, 4096)  # takes 8 packets, then NAKs
    t0 = time.monotonic()
    with pytest.raises(wdfusb.UsbTimeoutError) as err:
        if direction == "write":
            gz.pipe(0x01).write(bytes(65536), timeout=0.25)
        else:
            gz.pipe(0x81).read(65536, timeout=0.25)
    elapsed = time.monotonic() - t0
    assert err.value.bytes_transferred == 4096
    assert 0.24 <= elapsed < 2.0
    st = fake.stats(ep)
    assert 200 <= st["last_timeout"] <= 250  # transfer->timeout, in ms
    assert st["timed_out"] == 1 and st["bytes"] == 4096  # libusb timed it out, not a cancel


def test_the_timeout_of_the_wdf_layer(fake: fk.Fake) -> None:
    fake.nak_after(fk.GZ_OUT, 4096)
    device, pipes = wdf_open()
    try:
        t0 = time.monotonic()
        assert wdf_write(pipes[0x01], bytes(65536), timeout_ms=250) == (STATUS_IO_TIMEOUT, 4096)
        assert 0.24 <= time.monotonic() - t0 < 2.0
        st = fake.stats(fk.GZ_OUT)
        assert 200 <= st["last_timeout"] <= 250 and st["timed_out"] == 1
    finally:
        WdfObjectDelete(device)


def test_a_timeout_beyond_49_days_is_not_cut_short(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """transfer->timeout is an unsigned int of ms: a longer time-out must not wrap around."""
    fake.hold(fk.GZ_OUT, 1)
    timeout_s = (2**32 + 300) / 1000  # 49.7 days and 300 ms
    t, out = in_thread(lambda: gz.pipe(0x01).write(bytes(4096), timeout=timeout_s))
    fake.wait_pending(fk.GZ_OUT, 0)
    time.sleep(1.0)
    st = fake.stats(fk.GZ_OUT)
    try:
        assert st["last_timeout"] in (0, 2**32 - 1), f"libusb was given a {st['last_timeout']} ms time-out"
        assert out == [], f"the write ended after 1 s: {out}"
    finally:
        gz.pipe(0x01).abort()
        joined(t)


# ---- the libusb layer refusing a submit -------------------------------------------------------------

REFUSALS = {
    fk.ERROR_NO_DEVICE: (wdfusb.DeviceGoneError, STATUS_DEVICE_NOT_CONNECTED),
    fk.ERROR_BUSY: (wdfusb.UsbBusyError, STATUS_DEVICE_BUSY),
    fk.ERROR_NO_MEM: (wdfusb.UsbError, STATUS_INSUFFICIENT_RESOURCES),
}


@pytest.mark.parametrize("err", list(REFUSALS), ids=["NO_DEVICE", "BUSY", "NO_MEM"])
def test_a_refused_submit_is_a_clear_error_and_leaves_nothing_in_flight(fake: fk.Fake, err: int) -> None:
    exc, nt = REFUSALS[err]
    fake.fail_submit(fk.GZ_OUT, err, 0, 1)
    with wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID) as gz:
        with pytest.raises(exc) as e:
            gz.pipe(0x01).write(bytes(4096))
        assert type(e.value) is exc and e.value.status == nt and e.value.bytes_transferred == 0
        assert fake.in_flight() == 0 and gz._core.native.live_transfers() == 0
        assert gz.pipe(0x01).write(bytes(4096)) == 4096  # the pipe works again
    fake.fail_submit(fk.GZ_OUT, err, 0, 1)
    device, pipes = wdf_open()
    try:
        assert wdf_write(pipes[0x01], bytes(4096)) == (nt, 0)
        assert fake.in_flight() == 0
    finally:
        WdfObjectDelete(device)
    st = fake.stats(fk.GZ_OUT)
    assert st["submit_errors"] == 2 and st["submits"] == 1 and st["bytes"] == 4096


def test_a_refused_submit_in_a_stream(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """ENOMEM once: the transfer goes out in smaller pieces and the stream goes on; for good
    (nothing ever fits): the stream stops on the bytes that moved."""
    fake.set_rate(fk.GZ_OUT, 50 << 20)
    fake.fail_submit(fk.GZ_OUT, fk.ERROR_NO_MEM, 5, 1)
    data = np.frombuffer(mod63(1 << 20), np.uint8)
    with gz.pipe(0x01).writer(depth=4, chunk=65536) as w:
        w.write(data)
    assert w.bytes_written == len(data) and fake.stats(fk.GZ_OUT)["crc32"] == zlib.crc32(data)
    assert 32768 in [e["length"] for e in fake.logs(fk.GZ_OUT)]  # the refused one, halved
    before = fake.stats(fk.GZ_OUT)["bytes"]
    fake.fail_submit(fk.GZ_OUT, fk.ERROR_NO_MEM, 5, 10_000)
    w = gz.pipe(0x01).writer(depth=4, chunk=65536)
    with pytest.raises(wdfusb.UsbError) as err:
        w.write(data)
        w.flush()
    assert err.value.status == STATUS_INSUFFICIENT_RESOURCES
    n = err.value.bytes_transferred
    st = fake.stats(fk.GZ_OUT)
    assert n == w.bytes_written == st["bytes"] - before == 5 * 65536 and fake.in_flight() == 0
    w.close()


# ---- cancellation, close, unplug -------------------------------------------------------------------


@pytest.mark.parametrize("cancel_delay_ms", [0, 200])
def test_abort_reports_the_bytes_moved_and_waits(fake: fk.Fake, gz: wdfusb.Device, cancel_delay_ms: int) -> None:
    fake.nak_after(fk.GZ_OUT, 1536)
    fake.set_cancel_delay_us(cancel_delay_ms * 1000)
    data = mod63(65536)
    t, out = in_thread(lambda: gz.pipe(0x01).write(data))
    fake.wait_pending(fk.GZ_OUT, 1536)
    gz.pipe(0x01).abort()
    assert fake.in_flight() == 0, "abort returned before the cancelled transfer was back"
    joined(t)
    assert isinstance(out[0], wdfusb.UsbCancelledError), out
    assert out[0].bytes_transferred == 1536
    st = fake.stats(fk.GZ_OUT)
    assert st["cancelled"] == 1 and st["crc32"] == zlib.crc32(data[:1536])


@pytest.mark.parametrize("held", [True, False], ids=["pending", "already_over"])
def test_an_abort_inside_the_submit_window(fake: fk.Fake, gz: wdfusb.Device, held: bool) -> None:
    """lu_submit submits outside the device lock and looks for a cancel afterwards: an abort
    landing while the submitting thread is still inside libusb_submit_transfer (held there
    200 ms after the transfer was queued) must still cancel it (or see it over) and wait."""
    fake.nak_after(fk.GZ_OUT, 1024 if held else -1)
    fake.set_submit_delay_us(200_000)
    size = 65536
    t, out = in_thread(lambda: gz.pipe(0x01).write(bytes(size)))
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["submits"] == 1, 5, "the transfer queued in the fake")
    gz.pipe(0x01).abort()
    assert fake.in_flight() == 0, "abort returned before the transfer was back"
    joined(t)
    st = fake.stats(fk.GZ_OUT)
    if held:
        assert isinstance(out[0], wdfusb.UsbCancelledError), out
        assert out[0].bytes_transferred == 1024 and st["cancelled"] == 1
    else:
        assert out == [size] and st["bytes"] == size


def test_close_under_a_pending_write(fake: fk.Fake) -> None:
    fake.nak_after(fk.GZ_OUT, 2048)
    fake.set_cancel_delay_us(50_000)
    dev = wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
    t, out = in_thread(lambda: dev.pipe(0x01).write(bytes(1 << 20)))
    fake.wait_pending(fk.GZ_OUT, 2048)
    dev.close()
    g = fake.glob()
    assert g["in_flight"] == 0 and g["open_handles"] == 0 and g["claimed"] == 0
    joined(t)
    assert isinstance(out[0], wdfusb.UsbCancelledError), out
    assert out[0].bytes_transferred == 2048


@pytest.mark.parametrize("bus_error", [False, True], ids=["no_device", "bus_error_first"])
def test_unplug_under_a_sync_write(fake: fk.Fake, bus_error: bool) -> None:
    fake.nak_after(fk.GZ_OUT, 2048)
    with wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID) as dev:
        t, out = in_thread(lambda: dev.pipe(0x01).write(bytes(1 << 20)))
        fake.wait_pending(fk.GZ_OUT, 2048)
        fake.unplug(fk.GZ, bus_error)
        joined(t)
        assert isinstance(out[0], wdfusb.DeviceGoneError), out
        assert out[0].bytes_transferred == 2048
        with pytest.raises(wdfusb.DeviceGoneError) as err:  # refused by libusb_submit_transfer now
            dev.pipe(0x01).write(b"late")
        assert err.value.bytes_transferred == 0
        assert [d.pid for d in wdfusb.list_devices()] == [fk.HID_PID]
    assert fake.glob()["open_handles"] == 0


def test_unplug_under_a_wdf_write(fake: fk.Fake) -> None:
    fake.nak_after(fk.GZ_OUT, 512)
    device, pipes = wdf_open()
    try:
        t, out = in_thread(lambda: wdf_write(pipes[0x01], bytes(65536)))
        fake.wait_pending(fk.GZ_OUT, 512)
        fake.unplug(fk.GZ, 0)
        joined(t)
        assert out == [(STATUS_DEVICE_NOT_CONNECTED, 512)]
        assert wdf_write(pipes[0x01], bytes(512)) == (STATUS_DEVICE_NOT_CONNECTED, 0)
    finally:
        WdfObjectDelete(device)


@pytest.mark.parametrize("bus_error", [False, True], ids=["no_device", "bus_error_first"])
@pytest.mark.parametrize("style", ["span", "copied"])
def test_unplug_under_a_streaming_writer(fake: fk.Fake, gz: wdfusb.Device, style: str, bus_error: bool) -> None:
    fake.set_rate(fk.GZ_OUT, 20 << 20)  # 20 MB/s: the ring stays full
    data = np.frombuffer(mod63(32 << 20), np.uint8)
    w = gz.pipe(0x01).writer(depth=4, chunk=65536)

    def stream() -> None:
        if style == "span":
            w.write(data)  # whole chunks without a copy, looped in C (wu_ring_run)
        else:
            for i in range(0, len(data), 10_000):
                w.write(bytearray(data[i : i + 10_000]))  # copied into the ring, submitted from Python
        w.flush()

    t, out = in_thread(stream)
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["bytes"] >= 1 << 20, 10, "1 MiB streamed")
    fake.unplug(fk.GZ, bus_error)
    joined(t)
    assert isinstance(out[0], wdfusb.DeviceGoneError), out
    n = out[0].bytes_transferred
    st = fake.stats(fk.GZ_OUT)
    assert n == w.bytes_written == st["bytes"]
    assert st["crc32"] == zlib.crc32(data[:n])
    assert 1 << 20 <= n < len(data)
    assert gz._core.native.live_transfers() == 0 and fake.in_flight() == 0
    w.close()


def test_streaming_writer_round_trip(fake: fk.Fake, gz: wdfusb.Device) -> None:
    fake.set_rate(fk.GZ_OUT, 200 << 20)
    data = np.frombuffer(mod63((4 << 20) + 512), np.uint8)
    tail = bytearray(random.Random(2).randbytes(100_000))
    with gz.pipe(0x01).writer(depth=8, chunk=65536, zlp="end") as w:
        w.write(data)
        w.flush()
        w.write(tail)
    st = fake.stats(fk.GZ_OUT)
    assert w.bytes_written == st["bytes"] == len(data) + len(tail)
    assert st["crc32"] == zlib.crc32(bytes(data) + tail)
    assert w.peak_in_flight > 1
    assert st["zlps"] == 1  # the flush ended on a packet boundary: "end" added one ZLP


def test_streaming_writer_timeout(fake: fk.Fake, gz: wdfusb.Device) -> None:
    fake.nak_after(fk.GZ_OUT, 3 * 65536 + 1024)
    data = np.frombuffer(mod63(1 << 20), np.uint8)
    w = gz.pipe(0x01).writer(depth=4, chunk=65536, timeout=0.2)
    with pytest.raises(wdfusb.UsbTimeoutError) as err:
        w.write(data)
        w.flush()
    st = fake.stats(fk.GZ_OUT)
    assert err.value.bytes_transferred == w.bytes_written == st["bytes"] == 3 * 65536 + 1024
    assert st["crc32"] == zlib.crc32(data[: st["bytes"]])
    w.close()


def test_awaited_stream_writer_and_reader_through_libusb_events(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """The awaited ring on libusb: its transfers complete on the shim's event thread, which posts
    the ring's note; the loop streams both ways with exact bytes, and a time-out with nothing
    coming back still fires (the loop's timer at the time C says is left)."""
    import asyncio

    fake.set_rate(fk.GZ_OUT, 200 << 20)
    fake.set_in_source(fk.GZ_IN, fk.IN_LOOPBACK)
    data = random.Random(3).randbytes((2 << 20) + 777)

    async def main() -> None:
        async with (
            gz.pipe(0x01).writer(depth=4, chunk=65536) as w,
            gz.pipe(0x81).reader(depth=4, chunk=65536, timeout=5) as r,
        ):
            reading = asyncio.create_task(r.read_async(300_000))
            await w.write_async(data)
            await w.flush_async()
            assert await reading == data[:300_000]
        st = fake.stats(fk.GZ_OUT)
        assert w.bytes_written == st["bytes"] == len(data) and st["crc32"] == zlib.crc32(data)
        fake.nak_after(fk.GZ_OUT, 65536 + 1024)
        w = gz.pipe(0x01).writer(depth=4, chunk=65536, timeout=0.2)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            await w.write_async(data)
        assert err.value.bytes_transferred == w.bytes_written == fake.stats(fk.GZ_OUT)["bytes"] - len(data)
        assert err.value.bytes_transferred == 65536 + 1024 and fake.in_flight() == 0
        w.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_wdf_async_requests_complete_through_the_event_thread(fake: fk.Fake) -> None:
    """WdfRequestSend: completions come from the shim's event thread, nobody waits on them."""
    from test_wdf_helpers import new_memory, new_request

    fake.set_rate(fk.GZ_OUT, 100 << 20)
    device, pipes = wdf_open()
    pipe = pipes[0x01]
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    chunks = [random.Random(i).randbytes(1000 + 37 * i) for i in range(8)]
    done: list[tuple[int, int, int]] = []
    reqs = [(new_request(pipe), new_memory(c)) for c in chunks]
    try:
        for i, (req, mem) in enumerate(reqs):
            offset = WDFMEMORY_OFFSET()
            offset.BufferOffset, offset.BufferLength = 0, len(chunks[i])
            assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, offset) == STATUS_SUCCESS
            WdfRequestSetCompletionRoutine(
                req,
                lambda r, t, p, c: done.append(
                    (c, int(p.IoStatus.Status), p.Parameters.Usb.Completion.Parameters.PipeWrite.Length)
                ),
                i,
            )
            assert WdfRequestSend(req, target, None)
        assert wait_for_completions(10)
        assert sorted(done) == [(i, STATUS_SUCCESS, len(c)) for i, c in enumerate(chunks)]
        st = fake.stats(fk.GZ_OUT)
        assert st["bytes"] == sum(map(len, chunks)) and st["crc32"] == zlib.crc32(b"".join(chunks))
        # held: the requests wait in the fake; an abort cancels them all
        fake.hold(fk.GZ_OUT, 1)
        done.clear()
        for i, (req, mem) in enumerate(reqs):
            params = WDF_REQUEST_REUSE_PARAMS()
            WDF_REQUEST_REUSE_PARAMS_INIT(params, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
            assert WdfRequestReuse(req, params) == STATUS_SUCCESS
            assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
            WdfRequestSetCompletionRoutine(req, lambda r, t, p, c: done.append((c, int(p.IoStatus.Status), 0)), i)
            assert WdfRequestSend(req, target, None)
        fake.wait(lambda: fake.in_flight() == len(reqs), 5, "every request pending in the fake")
        assert WdfUsbTargetPipeAbortSynchronously(pipe, None, None) == STATUS_SUCCESS
        assert fake.in_flight() == 0
        assert wait_for_completions(10)
        assert sorted(done) == [(i, STATUS_CANCELLED, 0) for i in range(len(reqs))]
    finally:
        for req, mem in reqs:
            WdfObjectDelete(req)
            WdfObjectDelete(mem)
        WdfObjectDelete(device)


# ---- races: submits against cancels, aborts and closes -------------------------------------------


def test_concurrent_sync_io_on_both_pipes(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """Several threads waiting at once: each completion may be reported by any of them."""
    fake.set_rate(fk.GZ_OUT, 100 << 20)
    fake.set_rate(fk.GZ_IN, 100 << 20)
    fake.track_values(fk.GZ_OUT, 1)
    sent = [0] * 3
    got: list[int] = []

    def writer(i: int) -> None:
        buf = bytes([i + 1]) * 40_000
        for _ in range(40):
            sent[i] += gz.pipe(0x01).write(buf, timeout=10)

    def reader() -> None:
        for _ in range(40):
            data = gz.pipe(0x81).read(32768, timeout=10)
            assert data == mod63(32768)
            got.append(len(data))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        joined(t)
    assert sent == [40 * 40_000] * 3 and sum(got) == 80 * 32768
    assert [fake.hist(fk.GZ_OUT, i + 1) for i in range(3)] == sent


def _writer_loop(
    pipe: wdfusb.Pipe, i: int, seed: int, stop: threading.Event, reported: list[int], unexpected: list[BaseException]
) -> None:
    """Write buffers of byte value i + 1 (sizes and time-outs at random) until stopped or the
    device is gone, adding the bytes the library reports moved to reported[i]."""
    r = random.Random(seed)
    buf = bytes([i + 1]) * (512 << 10)
    while not stop.is_set():
        size = r.choice([1, 511, 512, 4096, 65536, 300_000, 512 << 10])
        try:
            reported[i] += pipe.write(buf[:size], timeout=r.choice([None, 0.002, 0.5]))
        except (wdfusb.UsbCancelledError, wdfusb.UsbTimeoutError) as e:
            reported[i] += e.bytes_transferred
        except wdfusb.DeviceGoneError as e:
            reported[i] += e.bytes_transferred
            return
        except BaseException as e:  # noqa: BLE001 - reported by the test
            unexpected.append(e)
            return


def _aborter_loop(pipe: wdfusb.Pipe, seed: float, stop: threading.Event, unexpected: list[BaseException]) -> None:
    r = random.Random(seed)
    while not stop.is_set():
        try:
            pipe.abort()
        except wdfusb.DeviceGoneError:
            return
        except BaseException as e:  # noqa: BLE001 - reported by the test
            unexpected.append(e)
            return
        time.sleep(r.random() * 0.003)


def _check_writers(fake: fk.Fake, reported: list[int], unexpected: list[BaseException]) -> None:
    assert not unexpected, unexpected
    hist = [fake.hist(fk.GZ_OUT, i + 1) for i in range(len(reported))]
    assert hist == reported, f"bytes the fake took per writer {hist} != bytes the library reported {reported}"
    assert fake.stats(fk.GZ_OUT)["bytes"] == sum(reported)


def test_writes_against_aborts(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """Four writer threads (some with time-outs) against a thread aborting the pipe, for 2 s:
    submits race cancels in the backend. Nothing hangs, and the bytes each writer was told it
    moved are exactly the bytes the fake took from it."""
    fake.set_rate(fk.GZ_OUT, 300 << 20)
    fake.set_cancel_delay_us(300)
    fake.track_values(fk.GZ_OUT, 1)
    reported: list[int] = [0] * 4
    unexpected: list[BaseException] = []
    stop = threading.Event()
    pipe = gz.pipe(0x01)
    threads = [
        threading.Thread(target=_writer_loop, args=(pipe, i, 10 + i, stop, reported, unexpected), daemon=True)
        for i in range(4)
    ]
    threads.append(threading.Thread(target=_aborter_loop, args=(pipe, 0.5, stop, unexpected), daemon=True))
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        joined(t)
    assert fake.in_flight() == 0
    st = fake.stats(fk.GZ_OUT)
    assert st["cancel_calls"] > 0 and st["cancelled"] > 0, "the aborts never cut a transfer: the test tests nothing"
    _check_writers(fake, reported, unexpected)


def test_writes_and_aborts_against_close(fake: fk.Fake) -> None:
    """Rounds of 2 s: writer threads and an aborting thread run while the main thread closes
    the device under them. Nothing hangs or crashes, every byte is accounted for."""
    fake.set_rate(fk.GZ_OUT, 300 << 20)
    fake.set_cancel_delay_us(300)
    fake.track_values(fk.GZ_OUT, 1)
    reported: list[int] = [0] * 4
    unexpected: list[BaseException] = []
    rng = random.Random(3)
    rounds = 0
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        dev = wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
        pipe = dev.pipe(0x01)
        stop = threading.Event()
        threads = [
            threading.Thread(target=_writer_loop, args=(pipe, i, rng.random(), stop, reported, unexpected), daemon=True)
            for i in range(4)
        ]
        threads.append(threading.Thread(target=_aborter_loop, args=(pipe, rng.random(), stop, unexpected), daemon=True))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.01, 0.08))
        dev.close()
        stop.set()
        for t in threads:
            joined(t)
        assert fake.in_flight() == 0, f"round {rounds}: transfers left in flight after close"
        rounds += 1
    assert rounds >= 5
    _check_writers(fake, reported, unexpected)


ABORT_AFTER_CLOSE = """
import sys, threading
import wdfusb
from wdfusb import _engine

dev = wdfusb.open(vid=0x0525, pid=0xA4A0)
pipe = dev.pipe(0x01)
reached, closed, out = threading.Event(), threading.Event(), []
target = _engine.lib.wu_device_cancel

def profile(frame, event, arg):
    if event == "c_call" and arg is target:  # the native handle is read, wu_device_cancel not yet called
        reached.set()
        closed.wait(10)

def aborter():
    sys.setprofile(profile)
    try:
        pipe.abort()
        out.append("returned")
    except wdfusb.DeviceGoneError:
        out.append("gone")
    except BaseException as e:
        out.append(repr(e))
    finally:
        sys.setprofile(None)

t = threading.Thread(target=aborter, daemon=True)
t.start()
assert reached.wait(10), "the aborter never reached wu_device_cancel"
dev.close()
closed.set()
t.join(10)
print("RESULT", out, "hung" if t.is_alive() else "done", flush=True)
"""


def test_an_abort_racing_close_never_uses_a_freed_device(fake: fk.Fake) -> None:
    """The window the random close rounds above hit now and then, made deterministic: a thread
    in pipe.abort() has read the device's native handle when another thread's dev.close()
    frees it. (In its own interpreter: a use after free may crash or hang.)"""
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", ABORT_AFTER_CLOSE], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "RESULT ['gone'] done" in res.stdout, (
        f"exit status {res.returncode}\n{res.stdout}\n{res.stderr[:3000]}\n...\n{res.stderr[-1500:]}"
    )
    assert os.environ["WDFUSB_LIBUSB"]  # the child inherited the fake


def _stream_rounds(fake: fk.Fake, how: str) -> None:
    """2 s of rounds: a streaming writer in a thread, cut by ``how`` ("abort": pipe.abort(),
    "close": dev.close()) from the main thread; it must report exactly the prefix of the
    stream the fake received (bytes and CRC)."""
    fake.set_rate(fk.GZ_OUT, 50 << 20)  # 2 MiB in 40 ms, a 512-byte transfer in 10 us
    fake.set_cancel_delay_us(200)
    data = np.frombuffer(mod63(2 << 20), np.uint8)
    rng = random.Random(4 if how == "abort" else 5)
    crc, total, rounds, cut = 0, 0, 0, 0
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        dev = wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
        depth, chunk, copied = rng.choice([1, 4, 8]), rng.choice([512, 16384, 65536]), rng.random() < 0.5
        w = dev.pipe(0x01).writer(depth=depth, chunk=chunk)

        def stream(w: Any = w, copied: bool = copied) -> None:
            if copied:
                for i in range(0, len(data), 50_000):
                    w.write(bytearray(data[i : i + 50_000]))  # copied into the ring, submitted from Python
            else:
                w.write(data)  # whole chunks without a copy, looped in C (wu_ring_run)
            w.flush()

        t, out = in_thread(stream)
        time.sleep(rng.uniform(0.002, 0.035))
        if how == "abort":
            dev.pipe(0x01).abort()
        else:
            dev.close()
        joined(t)
        what = f"round {rounds}: {how} under a writer depth={depth} chunk={chunk} copied={copied}"
        result = out[0]
        if isinstance(result, BaseException):
            assert isinstance(result, (wdfusb.UsbCancelledError, wdfusb.DeviceGoneError)), (what, result)
            n = result.bytes_transferred
            assert n == w.bytes_written, what
            cut += 1
        else:
            n = len(data)  # it finished first
            assert w.bytes_written == n, what
        crc = zlib.crc32(data[:n], crc)
        total += n
        st = fake.stats(fk.GZ_OUT)
        assert (st["bytes"], st["crc32"]) == (total, crc), f"{what}: the fake took {st['bytes'] - total:+} bytes more"
        try:
            w.close()
        except wdfusb.UsbError:
            pass  # its error was raised already
        dev.close()
        assert fake.in_flight() == 0
        rounds += 1
    assert rounds >= 5 and cut >= 2, f"{rounds} rounds, {cut} cut short: the test tests too little"


def test_streams_against_aborts(fake: fk.Fake) -> None:
    _stream_rounds(fake, "abort")


def test_streams_against_close(fake: fk.Fake) -> None:
    _stream_rounds(fake, "close")


@pytest.mark.parametrize("style", ["span", "copied"])
def test_close_under_a_streaming_writer_counts_every_byte(fake: fk.Fake, style: str) -> None:
    """Transfers the device finished but the writer had not yet retired when the device was
    closed: they count (nothing was lost, so flushing them is no error), and the next write
    says the device is gone, with the same count."""
    dev = wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
    w = dev.pipe(0x01).writer(depth=2, chunk=512)
    if style == "span":
        w.write(np.frombuffer(mod63(1024), np.uint8))  # both chunks submitted from C, left in flight
    else:
        w.write(bytearray(mod63(1024)))  # both chunks copied and submitted from Python
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["bytes"] == 1024, 5, "the device took both transfers")
    dev.close()
    w.flush()
    assert w.bytes_written == 1024
    with pytest.raises(wdfusb.DeviceGoneError) as err:
        w.write(bytearray(512))
        w.flush()
    assert err.value.bytes_transferred == w.bytes_written == 1024
    assert fake.stats(fk.GZ_OUT)["bytes"] == 1024
    w.close()


def test_a_bus_error_reaped_by_another_thread_is_still_device_gone(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """An unplug that kills the pending transfers as bus errors, whose completions another
    thread's event handling reaps first (here: control transfers to the other device, which
    handle events as libusb's sync API does): the stream must still say the device is gone."""
    fake.hold(fk.GZ_OUT, 1)
    w = gz.pipe(0x01).writer(depth=2, chunk=512)
    w.write(bytearray(1024))
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["in_flight"] == 2, 5, "two transfers pending")
    fake.unplug(fk.GZ, 1)
    assert wdfusb.find_device(serial="FAKE0002").pid == fk.HID_PID  # its control transfers handle events
    # both completions reported before the writer looks (by those control transfers, or by the
    # shim's event thread when an asynchronous transfer has started it in this interpreter)
    fake.wait(lambda: fake.stats(fk.GZ_OUT)["callbacks"] == 2, 5, "both completions reported")
    with pytest.raises(wdfusb.UsbError) as err:
        w.flush()
    assert type(err.value) is wdfusb.DeviceGoneError, err.value
    assert err.value.bytes_transferred == 0
    w.close()


# ---- opening: failures leave nothing behind ----------------------------------------------------------


def test_a_second_open_is_busy_and_leaks_nothing(fake: fk.Fake, gz: wdfusb.Device) -> None:
    with pytest.raises(wdfusb.UsbBusyError):
        wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)  # interface 0 is claimed by gz
    g = fake.glob()
    assert g["open_handles"] == 1 and g["claimed"] == 1


@pytest.mark.parametrize(
    ("err", "exc"),
    [(fk.ERROR_ACCESS, wdfusb.UsbAccessError), (fk.ERROR_NO_DEVICE, wdfusb.DeviceGoneError)],
    ids=["ACCESS", "NO_DEVICE"],
)
def test_open_refused_by_libusb(fake: fk.Fake, err: int, exc: type[wdfusb.UsbError]) -> None:
    fake.fail_open(err, 1)
    with pytest.raises(exc):
        wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
    assert fake.glob()["open_handles"] == 0


def test_open_when_the_descriptors_cannot_be_read(fake: fk.Fake) -> None:
    fake.fail_control(fk.ERROR_PIPE, 1)
    with pytest.raises(wdfusb.UsbStallError):
        wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID)
    assert fake.glob()["open_handles"] == 0
