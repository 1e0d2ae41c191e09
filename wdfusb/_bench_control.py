"""The control benchmark (``wdfusb bench DEVICE --control``): round trips on EP0.

A round trip is a 1-byte vendor IN and a 64-byte vendor OUT: Gadget Zero's control test
requests (0x5c reads its buffer, 0x5b fills it), which the virtual device answers as well.
Each method runs the same round trips; ``c-loop`` is the engine's C loop (the reference),
``pythonic`` ``Device.control_read/control_write``, ``wdf``
``WdfUsbTargetDeviceSendControlTransferSynchronously``, and ``pyusb`` / ``libusb1``
``ctrl_transfer`` / ``controlRead``+``controlWrite`` over the same libusb (real devices only),
``pyusb+wdfusb`` pyusb's ``ctrl_transfer`` on wdfusb's pyusb backend.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _engine
from ._bench_methods import RUNNERS, find_with_pyusb
from ._core import SETUP_SIZE
from .device import UsbDeviceInfo
from .device import open as open_device
from .errors import UsbIOError, error_for, error_for_status

IN_REQUEST = (0xC0, 0x5C, 0, 0, 1)  # bmRequestType, bRequest, wValue, wIndex, wLength
OUT_REQUEST = (0x40, 0x5B, 0, 0, 64)
OUT_DATA = bytes(range(64))
ROUNDS = 3
CONTROL_METHODS = ("c-loop", "wdf", "pythonic", "pyusb", "libusb1", "pyusb+wdfusb")
FOREIGN = ("pyusb", "libusb1", "pyusb+wdfusb")  # the libraries that open the device themselves


@dataclass
class ControlRow:
    """One method's result: the fastest of ``ROUNDS`` rounds of ``round_trips``."""

    method: str
    round_trips: int = 0
    us_per_round_trip: float = 0.0
    ratio: float | None = None  # the c-loop's time per round trip / this method's (1.0 = as fast)
    skipped: str | None = None


def _loop_pythonic(dev: Any, timeout: float | None) -> Callable[[int], None]:
    read, write = dev.control_read, dev.control_write

    def loop(n: int) -> None:
        for _ in range(n):
            read(*IN_REQUEST, timeout)
            write(*OUT_REQUEST[:4], OUT_DATA, timeout)

    return loop


def _loop_c(dev: Any, timeout: float | None) -> Callable[[int], None]:
    xfer = dev._core.new_transfer()
    us = 0 if timeout is None else max(1, round(timeout * 1e6))
    bufs = [
        _engine.pin(bytearray(struct.pack("<BBHHH", *IN_REQUEST) + bytes(IN_REQUEST[4])), True),
        _engine.pin(bytearray(struct.pack("<BBHHH", *OUT_REQUEST) + OUT_DATA), True),
    ]

    def loop(n: int) -> None:
        for buf in bufs:  # n INs in C, then n OUTs: the same work as n round trips
            rc, _ = xfer.bench_loop(0, _engine.EP_CONTROL, buf, len(buf), n, us)
            if rc != 0:
                raise error_for(rc, 0, "control C loop")

    loop.close = xfer.free  # type: ignore[attr-defined]  # (the pinned buffers live in the closure)
    return loop


def _loop_wdf(dev: Any, timeout: float | None) -> Callable[[int], None]:
    from . import wdf as wdf_layer

    W = wdf_layer
    usb = W.WDFUSBDEVICE()
    status = W.WdfUsbTargetDeviceCreate(dev.source, W.WDF_NO_OBJECT_ATTRIBUTES, usb)
    if not W.NT_SUCCESS(status):
        raise error_for_status(status, 0, 0, "WdfUsbTargetDeviceCreate")
    packets, descs = [], []
    for (_, request, value, index, _), buf, direction in (
        (IN_REQUEST, bytearray(1), W.BmRequestDeviceToHost),
        (OUT_REQUEST, OUT_DATA, W.BmRequestHostToDevice),
    ):
        p = W.WDF_USB_CONTROL_SETUP_PACKET()
        W.WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(p, direction, W.BmRequestToDevice, request, value, index)
        d = W.WDF_MEMORY_DESCRIPTOR()
        W.WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, buf, len(buf))
        packets.append(p)
        descs.append(d)
    options = None
    if timeout is not None:
        options = W.WDF_REQUEST_SEND_OPTIONS()
        W.WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
        W.WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, W.WDF_REL_TIMEOUT_IN_MS(max(1, round(timeout * 1000))))
    send, done = W.WdfUsbTargetDeviceSendControlTransferSynchronously, W.ULONG()
    (pin, din), (pout, dout) = zip(packets, descs, strict=True)

    def loop(n: int) -> None:
        for _ in range(n):
            status = send(usb, None, options, pin, din, done) or send(usb, None, options, pout, dout, done)
            if status:
                raise error_for_status(status, 0, done.value, "WDF control round trip")

    loop.close = lambda: W.WdfObjectDelete(usb)  # type: ignore[attr-defined]
    return loop


def _loop_pyusb(source: Any, timeout: float | None, method: str = "pyusb") -> Callable[[int], None]:
    import usb.util

    dev = find_with_pyusb(source, method)
    ms = 0 if timeout is None else max(1, round(timeout * 1000))
    ctrl = dev.ctrl_transfer

    def loop(n: int) -> None:
        for _ in range(n):
            ctrl(*IN_REQUEST, ms)
            ctrl(*OUT_REQUEST[:4], OUT_DATA, ms)

    loop.close = lambda: usb.util.dispose_resources(dev)  # type: ignore[attr-defined]
    return loop


def _loop_libusb1(info: UsbDeviceInfo, timeout: float | None) -> Callable[[int], None]:
    import usb1

    ctx = usb1.USBContext()
    ctx.open()
    handle = None
    for d in ctx.getDeviceIterator(skip_on_error=True):
        if d.getBusNumber() == info.bus and d.getDeviceAddress() == info.address:
            handle = d.open()
            break
    if handle is None:
        ctx.close()
        raise UsbIOError(f"python-libusb1 does not see bus {info.bus} address {info.address}")
    ms = 0 if timeout is None else max(1, round(timeout * 1000))
    read, write = handle.controlRead, handle.controlWrite

    def loop(n: int) -> None:
        for _ in range(n):
            read(*IN_REQUEST, ms)
            write(*OUT_REQUEST[:4], OUT_DATA, ms)

    def close() -> None:
        handle.close()
        ctx.close()

    loop.close = close  # type: ignore[attr-defined]
    return loop


def _calibrated(loop: Callable[[int], None], duration: float) -> int:
    """Round trips that take about ``duration / ROUNDS`` seconds (the calibration warms up too)."""
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        loop(n)
        t = time.perf_counter() - t0
        if t >= duration / ROUNDS / 8 or n >= 1_000_000:
            break
        n *= 4
    return max(1, min(1_000_000, round(n * duration / ROUNDS / max(t, 1e-9))))


def _timed_in_turns(loops: dict[str, Callable[[int], None]], duration: float) -> dict[str, tuple[int, float]]:
    """Each method's round trips per round and its fastest round's time. The rounds take turns,
    method by method, each round starting one method later, so a slow spell of the host lands
    on every method alike instead of on whichever ran then."""
    counts = {method: _calibrated(loop, duration) for method, loop in loops.items()}
    order, best = list(loops), dict.fromkeys(loops, float("inf"))
    for r in range(ROUNDS):
        for method in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            loops[method](counts[method])
            best[method] = min(best[method], time.perf_counter() - t0)
    return {method: (counts[method], best[method]) for method in loops}


def run_control(
    source: Any, methods: tuple[str, ...] = CONTROL_METHODS, duration: float = 0.3, timeout: float | None = 10.0
) -> list[ControlRow]:
    """Time control round trips on ``source`` (a :class:`VirtualDevice` or :class:`UsbDeviceInfo`):
    every method's device open at once (the other libraries open it themselves, without claiming
    an interface: the requests go to the device), their rounds in turns."""
    rows = [ControlRow(method) for method in CONTROL_METHODS if method in methods]
    loops: dict[str, Callable[[int], None]] = {}
    dev = None  # wdfusb's methods share one open device (it has claimed the interfaces)
    with contextlib.ExitStack() as opened:
        for row in rows:
            method = row.method
            row.skipped = RUNNERS[method].unavailable(source) if method in FOREIGN else None
            if row.skipped:
                continue
            if method == "libusb1":
                loop = _loop_libusb1(source, timeout)  # (the other libraries open the device themselves)
            elif method in FOREIGN:
                loop = _loop_pyusb(source, timeout, method)
            else:
                dev = dev or opened.enter_context(open_device(source))
                loop = {"c-loop": _loop_c, "wdf": _loop_wdf, "pythonic": _loop_pythonic}[method](dev, timeout)
            opened.callback(getattr(loop, "close", lambda: None))  # what the loop opened
            loops[method] = loop
        timed = _timed_in_turns(loops, duration)
    reference = timed["c-loop"][1] / timed["c-loop"][0] * 1e6 if "c-loop" in timed else None
    for row in rows:
        if row.method in timed:
            n, best = timed[row.method]
            row.round_trips, row.us_per_round_trip = n * ROUNDS, best / n * 1e6
            row.ratio = reference / row.us_per_round_trip if reference else None
    return rows


__all__ = ["CONTROL_METHODS", "SETUP_SIZE", "ControlRow", "run_control"]
