"""Splitting a received write into smaller new requests (the seed: "Drivers often divide received
I/O requests into smaller requests that they send to an I/O target").

:class:`WriteSplitter` (wdfusb's own helper, not a WDF name) does what a driver's EvtIoWrite would:
the part requests are created once (``WdfRequestCreate``, at "EvtDriverDeviceAdd" time) and
``WdfRequestReuse``-d for every part; each part is a ``WDFMEMORY_OFFSET`` window into the
received request's input memory (``WdfRequestRetrieveInputMemory``, no copy), written with
``WdfUsbTargetPipeWriteSynchronously``. The received request is marked cancelable while its parts
are sent (cancelling it cancels the part in flight and stops the rest), and completed once all
parts are done — with the total byte count, or with the first error and the bytes written up to
it — after the part request was reused, so that the seed's reference rule holds.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ._handles import ULONG, get_object, require_integer
from ._memory import WDF_MEMORY_DESCRIPTOR, WDF_MEMORY_DESCRIPTOR_INIT_HANDLE, WDFMEMORY, WDFMEMORY_OFFSET
from ._ntstatus import NT_SUCCESS, NTSTATUS, STATUS_CANCELLED, STATUS_INVALID_PARAMETER, STATUS_SUCCESS
from ._received import (
    WdfRequestCompleteWithInformation,
    WdfRequestMarkCancelable,
    WdfRequestRetrieveInputMemory,
    WdfRequestUnmarkCancelable,
)
from ._request import WDFREQUEST, WdfRequestCancelSentRequest, WdfRequestCreate, WdfRequestReuse
from ._structs import WDF_REQUEST_REUSE_NO_FLAGS, WDF_REQUEST_REUSE_PARAMS, WDF_REQUEST_REUSE_PARAMS_INIT
from ._transfer import WdfUsbTargetPipeWriteSynchronously
from ._usbpipe import FxUsbPipe

__all__ = ["WriteSplitter"]


class WriteSplitter:
    """Forward received writes to an OUT pipe in parts of at most ``limit`` bytes.

    ``count`` part requests are preallocated (one per write forwarded at the same time: 1 for a
    sequential queue); :meth:`forward` blocks while they are all in use. Call :meth:`delete`
    when done (deleting the pipe's device deletes them too).
    """

    def __init__(self, Pipe: Any, limit: int, count: int = 1, RequestOptions: Any = None) -> None:
        self.pipe = get_object(Pipe, FxUsbPipe)
        limit, count = require_integer(limit, "limit"), require_integer(count, "count")
        if limit <= 0 or count <= 0:
            raise ValueError("limit and count must be positive")
        self.limit = limit
        self.options = RequestOptions
        self.requests: list[WDFREQUEST] = []
        self._free: queue.SimpleQueue[WDFREQUEST] = queue.SimpleQueue()
        for _ in range(count):
            box = WDFREQUEST()
            status = WdfRequestCreate(None, self.pipe, box)
            if not NT_SUCCESS(status):
                self.delete()
                raise MemoryError(f"WdfRequestCreate failed: {status!r}")
            self.requests.append(box)
            self._free.put(box)

    def delete(self) -> None:
        """Delete the part requests (none may be in use)."""
        from ._handles import WdfObjectDelete

        for box in self.requests:
            if box.value is not None and not box.value.is_deleted:
                WdfObjectDelete(box)
        self.requests = []

    def forward(self, Request: Any) -> tuple[NTSTATUS, int]:
        """Write the received ``Request``'s input buffer in parts, then complete it.

        Returns the ``(status, information)`` it was completed with.
        """
        memory = WDFMEMORY()
        status = WdfRequestRetrieveInputMemory(Request, memory)
        if not NT_SUCCESS(status):  # a zero-length write: nothing to send
            WdfRequestCompleteWithInformation(Request, STATUS_SUCCESS, 0)
            return STATUS_SUCCESS, 0
        length = memory.value.size
        part = self._free.get()
        lock = threading.Lock()
        state = {"active": True, "cancelled": False}

        def on_cancel(_request: Any) -> None:  # EvtRequestCancel: stop the rest, cancel the part in flight
            with lock:
                state["cancelled"] = True
                if state["active"]:
                    WdfRequestCancelSentRequest(part)

        reuse = WDF_REQUEST_REUSE_PARAMS()
        WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
        desc = WDF_MEMORY_DESCRIPTOR()
        written = ULONG()
        total, status = 0, STATUS_SUCCESS
        try:
            WdfRequestMarkCancelable(Request, on_cancel)
            for offset in range(0, length, self.limit):
                status = WdfRequestReuse(part, reuse)  # clears the previous part's format (and cancel flag)
                if not NT_SUCCESS(status):
                    break
                with lock:
                    if state["cancelled"]:
                        status = STATUS_CANCELLED
                        break
                window = WDFMEMORY_OFFSET(offset, min(self.limit, length - offset))
                WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, memory, window)
                status = WdfUsbTargetPipeWriteSynchronously(self.pipe, part, self.options, desc, written)
                total += written.value
                if not NT_SUCCESS(status):
                    break
            WdfRequestUnmarkCancelable(Request)
            with lock:
                state["active"] = False
                if state["cancelled"] and NT_SUCCESS(status) and total < length:
                    status = STATUS_CANCELLED
        finally:
            with lock:
                state["active"] = False
            # the part request still references the received request's memory: reuse it *before* completing
            if not NT_SUCCESS(WdfRequestReuse(part, reuse)):
                status = STATUS_INVALID_PARAMETER if NT_SUCCESS(status) else status
            self._free.put(part)
        WdfRequestCompleteWithInformation(Request, status, total)
        return status, total
