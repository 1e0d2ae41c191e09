"""Surprise removal: a USB device that leaves while queues are on it (the cable pulled, a
re-enumeration, a port cycle) is handled as KMDF handles it for a power-managed queue. The queue
is purged: the requests waiting in it are cancelled (STATUS_CANCELLED, or EvtIoCanceledOnQueue for
a request the driver forwarded to it), the driver's cancelable requests are cancelled, and new ones
are refused with STATUS_INVALID_DEVICE_STATE. What the driver sent to the USB target ends with the
device-gone status (the engine's), and continuous readers fail (EvtUsbTargetPipeReadersFailed).

The removal is seen by one watch for the process (:mod:`wdfusb.hotplug`: the device-list counter),
started with the first power-managed queue on a USB device. It lists real devices every
``POLL_INTERVAL`` (0.5 s) rather than through libusb hotplug, which would keep a libusb event
thread running and make every synchronous transfer of a forwarding driver one thread switch
slower; a transfer in flight sees the removal at once anyway, and virtual devices are seen at
once. A queue that is not power-managed (``PowerManaged = WdfFalse``) is left alone, as KMDF
leaves it until the device is deleted.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..hotplug import DeviceEvent, Watch
from ._queue_config import WdfFalse
from ._queue_state import purge_for_removal

if TYPE_CHECKING:
    from ._queue import FxIoQueue

_LOCK = threading.Lock()
_QUEUES: weakref.WeakKeyDictionary[FxIoQueue, Any] = weakref.WeakKeyDictionary()  # queue -> its device's attachment
_watch: Watch | None = None


def purge_on_removal(queue: FxIoQueue) -> None:
    """Purge ``queue`` once its device has left (at once if it already has)."""
    global _watch
    if queue.config.PowerManaged == WdfFalse:
        return
    info = queue.device.core.attachment
    if info is None:
        return
    key = info.key
    with _LOCK:
        _QUEUES[queue] = key
        if _watch is None:
            _watch = Watch(poll=True).call(_event)  # no libusb event thread for it: see watch(poll=)
        watch = _watch
    if key not in {d.key for d in watch.refresh()}:  # it has left: no event will say so
        _left(key)


def _event(event: DeviceEvent) -> None:
    if event.kind == "left":
        _left(event.device.key)


def _left(key: Any) -> None:
    with _LOCK:
        gone = [q for q, k in _QUEUES.items() if k == key]
        for q in gone:
            del _QUEUES[q]
    for q in gone:
        try:
            purge_for_removal(q)
        except Exception as exc:  # noqa: BLE001 - a driver callback's error: kept with its queue, the watch goes on
            q.errors.append(exc)


def _forget_after_fork() -> None:
    """The watch's thread is not in a forked child: the child starts its own on demand."""
    global _watch
    _watch = None
    _QUEUES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
