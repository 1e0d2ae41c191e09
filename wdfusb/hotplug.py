"""Devices that come and go: :func:`watch`, :func:`wait_for` and the events they report.

Every event that may change which devices are attached moves one counter in the shim
(``csrc/hotplug.c``): libusb's hotplug callback where the platform has hotplug (Linux, macOS;
libusb's event thread runs it while a hotplug watch is open), a virtual device created,
unplugged, re-enumerated or closed. A watcher waits for the counter (the GIL released), lists
the devices again and compares the list with the last one: the list stays the one record of
what is attached, and a burst of changes is one comparison. Where libusb has no hotplug
(Windows, a libusb built without it) the watcher lists again every :data:`POLL_INTERVAL`
seconds instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _engine
from ._core import CoreDevice
from ._engine import GENERATION_ANY, hold_libusb_events, start_libusb_hotplug, wait_generation
from ._lookup import UsbDeviceInfo, attached, describe_criteria
from ._timeout import seconds
from .errors import DeviceGoneError, DeviceNotFoundError, LibusbNotFoundError, UsbTimeoutError

POLL_INTERVAL = 0.5  # seconds between listings without hotplug events
REOPEN_INTERVAL = 0.05  # seconds between tries to open a device that arrived but refused
SLICE_US = 100_000  # a wait returns this often, so that Ctrl-C and close() are seen


def hotplug_events() -> bool:
    """Whether arrivals and removals of real devices are reported by the platform (libusb
    hotplug) rather than found by listing on a timer."""
    try:
        _engine.ensure_libusb()
    except LibusbNotFoundError:
        return False
    return start_libusb_hotplug() == 1


@dataclass(frozen=True)
class DeviceEvent:
    """``kind`` is ``"arrived"`` or ``"left"``; ``device`` the device's information."""

    kind: str
    device: UsbDeviceInfo

    def __str__(self) -> str:
        return f"{self.kind}: {self.device}"


class Watch:
    """The arrivals and removals of the devices that match (see :func:`watch`)."""

    def __init__(
        self,
        vid: int | None = None,
        pid: int | None = None,
        serial: str | None = None,
        port: str | None = None,
        *,
        existing: bool = False,
        poll: bool = False,
    ) -> None:
        self._criteria: dict[str, Any] = {"vid": vid, "pid": pid, "serial": serial, "port": port}
        self._events: deque[DeviceEvent] = deque()
        self._lock = threading.Lock()  # one listing at a time; guards the fields below
        self._known: dict[Any, UsbDeviceInfo] = {}  # attached and matching
        self._other: set[Any] = set()  # attached, not matching (not asked again: a serial costs I/O)
        self._closed = False
        self._callback_thread: threading.Thread | None = None
        self._platform_events = not poll and hotplug_events()
        self._hold: weakref.finalize | None = None
        if self._platform_events:
            # libusb delivers its hotplug events only to a thread that handles its events: hold
            # wdfusb's event thread while the watch lives (close, or the watch collected, lets go)
            if hold_libusb_events(True) != 0:
                self._platform_events = False  # no thread for them: list on a timer
            else:
                self._hold = weakref.finalize(self, _let_go, os.getpid())
                self._hold.atexit = False
        self._generation = wait_generation(GENERATION_ANY, 0)
        self._listed_at = 0.0
        self._scan(report=existing)

    # ---- the one comparison -------------------------------------------------------------

    def _scan(self, report: bool = True) -> None:
        """List the devices and queue what changed (caller holds no lock)."""
        with self._lock:
            self._generation = wait_generation(GENERATION_ANY, 0)  # before listing: a later change lists again
            self._listed_at = time.monotonic()
            devices, _ = attached()
            now = {d.key: d for d in devices}
            for key in [k for k in self._known if k not in now]:
                left = self._known.pop(key)
                if report:
                    self._events.append(DeviceEvent("left", left))
            self._other &= now.keys()
            for key, d in now.items():
                if key in self._known or key in self._other:
                    continue
                if not d.matches(**self._criteria):
                    self._other.add(key)
                    continue
                self._known[key] = d
                if report:
                    self._events.append(DeviceEvent("arrived", d))

    def _changed(self, timeout_us: int) -> bool:
        """Wait up to ``timeout_us`` for the device list to change; True when it may have."""
        seen = self._generation
        if wait_generation(seen, timeout_us) != seen:
            return True
        return not self._platform_events and time.monotonic() - self._listed_at >= POLL_INTERVAL

    def _ready(self, timeout: float | None) -> bool:
        """Wait until an event is queued (True) or ``timeout`` seconds pass or the watch closes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._events and not self._closed:
            left = SLICE_US if deadline is None else min(SLICE_US, int((deadline - time.monotonic()) * 1e6))
            if left < 0:
                return False
            if self._changed(max(left, 0)):
                self._scan()
        return bool(self._events)

    # ---- consuming ----------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> DeviceEvent | None:
        """The next event; None after ``timeout`` seconds (None: wait for ever) or once closed."""
        if not self._ready(seconds(timeout)):
            return None
        try:
            return self._events.popleft()
        except IndexError:  # another consumer took it
            return None

    def refresh(self) -> list[UsbDeviceInfo]:
        """List the devices now (what changed is reported as usual) and return the matching ones
        attached: a device in this list is reported when it leaves."""
        self._scan()
        return self.attached

    @property
    def attached(self) -> list[UsbDeviceInfo]:
        """The matching devices attached at the last listing."""
        with self._lock:
            return list(self._known.values())

    def __iter__(self) -> Iterator[DeviceEvent]:
        return self

    def __next__(self) -> DeviceEvent:
        while True:
            event = self.get(None)
            if event is not None:
                return event
            if self._closed:
                raise StopIteration

    def __aiter__(self) -> AsyncIterator[DeviceEvent]:
        return self

    async def __anext__(self) -> DeviceEvent:
        loop = asyncio.get_running_loop()
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed:
                raise StopAsyncIteration
            # the wait runs on an executor thread and only waits: the event is taken here, on the
            # loop, so a cancelled task loses none
            await loop.run_in_executor(None, self._ready, SLICE_US / 1e6)

    def call(self, callback: Callable[[DeviceEvent], Any]) -> Watch:
        """Call ``callback(event)`` for every event, on a thread of its own, until :meth:`close`."""

        def run() -> None:
            for event in self:
                callback(event)

        self._callback_thread = threading.Thread(target=run, name="wdfusb-watch", daemon=True)
        self._callback_thread.start()
        return self

    def close(self) -> None:
        """Stop: iteration ends and the callback thread (if any) returns. Idempotent."""
        self._closed = True
        if self._hold is not None:
            self._hold()  # at most once
        t = self._callback_thread
        if t is not None and t is not threading.current_thread():
            t.join()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        how = "hotplug" if self._platform_events else f"listing every {POLL_INTERVAL} s"
        return f"<Watch {describe_criteria(**self._criteria) or 'every device'} ({how})>"


def _let_go(pid: int) -> None:
    """A watch's hold on the event thread ends (in the process that took it: a forked child's
    count never had the parent's holds)."""
    if os.getpid() == pid:
        hold_libusb_events(False)


def watch(
    vid: int | None = None,
    pid: int | None = None,
    serial: str | None = None,
    port: str | None = None,
    *,
    existing: bool = False,
    callback: Callable[[DeviceEvent], Any] | None = None,
    poll: bool = False,
) -> Watch:
    """Arrivals and removals of the devices matching every criterion given, real and virtual.

    Iterate it (``for event in watch(...)``, also ``async for``), or pass ``callback`` to have
    it called on a thread of its own; ``close()`` or leaving the ``with`` block stops it.
    ``existing=True`` first reports the devices already attached as arrived. A device that
    re-enumerates is reported as ``"left"``, then ``"arrived"`` with its new address.

    ``poll=True`` finds real devices by listing every :data:`POLL_INTERVAL` seconds even where
    libusb reports hotplug events. libusb delivers those events only to a thread that handles its
    events, so a hotplug watch keeps wdfusb's libusb event thread running until it is closed, and
    every synchronous transfer of the process then completes through that thread (one thread
    switch more per transfer: in the kernel rig, a 512-byte write took 415 to 470 µs with the thread
    idle and 643 to 2066 µs with it running, depending on the host's load). Virtual devices are
    reported at once either way."""
    w = Watch(vid, pid, serial, port, existing=existing, poll=poll)
    return w.call(callback) if callback is not None else w


def wait_for(
    vid: int | None = None,
    pid: int | None = None,
    serial: str | None = None,
    port: str | None = None,
    timeout: float | None = None,
) -> UsbDeviceInfo:
    """The matching device's information once it is attached (at once when it already is);
    :class:`UsbTimeoutError` after ``timeout`` seconds (None: wait for ever)."""
    limit = seconds(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    with Watch(vid, pid, serial, port, existing=True) as w:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            event = w.get(left)
            if event is None:
                want = describe_criteria(vid=vid, pid=pid, serial=serial, port=port) or "any device"
                raise UsbTimeoutError(f"no device matching {want} attached within {timeout} s", 0xC00000B5)
            if event.kind == "arrived":
                return event.device


def reconnect_target(device: Any, settings: dict[int, int], timeout: float | None) -> tuple[Any, CoreDevice]:
    """For :meth:`wdfusb.Device.reconnect`: wait until ``device``'s attachment has left and the
    same device (serial, else port path) is back; open it with ``settings`` selected."""
    serial, port, old = device._serial, device.port_path, device._attachment_key
    from .virtual import VirtualDevice

    source = device.source
    mine = source.virtual if isinstance(source, UsbDeviceInfo) else source  # a virtual device: that one only
    if not isinstance(mine, VirtualDevice):
        mine = None
    if serial is None and port is None:
        raise DeviceNotFoundError(f"{device!r} has neither a serial number nor a port path to be found by", 0xC000000E)
    criteria = {"serial": serial} if serial else {"port": port}
    limit = seconds(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    with Watch(**criteria, existing=True) as w:
        gone = all(d.key != old for d in w.attached)
        waiting: list[UsbDeviceInfo] = []  # arrived, not opened yet (udev may not have let go)
        while True:
            if gone:
                for info in list(waiting):
                    if mine is not None and info.virtual is not mine:  # another one with its serial
                        waiting.remove(info)
                        continue
                    core = _open_with(info, settings)
                    if core is not None:
                        return (info.virtual or info), core
                    if info.key not in {d.key for d in w.attached}:
                        waiting.remove(info)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                want = describe_criteria(**criteria)
                why = "came back" if gone else "left"
                raise UsbTimeoutError(f"reconnect: the device ({want}) never {why} within {timeout} s", 0xC00000B5)
            if device.closed:  # by another thread: nothing to reconnect any more
                raise DeviceGoneError("reconnect: the device was closed", 0xC000009D)
            step = REOPEN_INTERVAL if waiting else SLICE_US / 1e6
            event = w.get(step if left is None else min(step, left))
            if event is None:
                continue
            if event.kind == "left" and event.device.key == old:
                gone = True
            elif event.kind == "arrived" and event.device.key != old:
                waiting.append(event.device)


def _open_with(info: UsbDeviceInfo, settings: dict[int, int]) -> CoreDevice | None:
    _, core = CoreDevice.open(info)
    if core is None:
        return None
    if core.select_configuration(settings) != 0:
        core.close()
        return None
    return core


__all__ = ["POLL_INTERVAL", "DeviceEvent", "Watch", "hotplug_events", "wait_for", "watch"]
