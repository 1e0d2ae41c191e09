"""The driver's side of a received request: its input buffer, parameters, completion, cancel.

``WdfRequestRetrieveInputMemory``/``InputBuffer``/``InputWdmMdl``, ``WdfRequestGetParameters``,
``WdfRequestComplete``/``CompleteWithInformation`` (with the seed's rule: not while another
request still references the input memory), ``WdfRequestForwardToIoQueue`` and the cancel
routines. The queues that deliver these requests are in :mod:`._queue`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._handles import (
    LOCK,
    SIZE_T,
    WDF_REQUEST_FATAL_ERROR,
    WdfBugCheck,
    get_object,
    integer,
    require_integer,
    required,
    store,
)
from ._memory import MDL, WDFMEMORY, FxMemory
from ._ntstatus import (
    NTSTATUS,
    STATUS_BUFFER_TOO_SMALL,
    STATUS_CANCELLED,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)
from ._queue import (
    FATAL_COMPLETE_DRIVER_CREATED,
    FATAL_COMPLETE_WHILE_CANCELABLE,
    FATAL_COMPLETE_WHILE_MEMORY_REFERENCED,
    FATAL_COMPLETE_WHILE_SENT,
    FATAL_NOT_OWNED_BY_DRIVER,
    FxIoQueue,
    FxReceivedRequest,
    _request_box,
)
from ._queue_config import STATUS_WDF_BUSY, WDF_REQUEST_PARAMETERS
from ._request import FxRequest
from ._structs import WdfRequestTypeDeviceControl
from ._usbdevice import FxUsbDevice

__all__ = [
    "WdfRequestComplete",
    "WdfRequestCompleteWithInformation",
    "WdfRequestForwardToIoQueue",
    "WdfRequestGetParameters",
    "WdfRequestIsCanceled",
    "WdfRequestMarkCancelable",
    "WdfRequestMarkCancelableEx",
    "WdfRequestRetrieveInputBuffer",
    "WdfRequestRetrieveInputMemory",
    "WdfRequestRetrieveInputWdmMdl",
    "WdfRequestRetrieveOutputBuffer",
    "WdfRequestRetrieveOutputMemory",
    "WdfRequestRetrieveOutputWdmMdl",
    "WdfRequestSetInformation",
    "WdfRequestStopAcknowledge",
    "WdfRequestUnmarkCancelable",
]


def _received(Request: Any) -> FxReceivedRequest:
    return get_object(Request, FxReceivedRequest, "WDFREQUEST (received from a queue)")


def _owned_received(Request: Any, what: str) -> FxReceivedRequest:
    req = get_object(Request, FxRequest)
    if not isinstance(req, FxReceivedRequest):
        raise WdfBugCheck(
            f"{what} on {req!r}, which the driver created (not received from a queue)",
            WDF_REQUEST_FATAL_ERROR,
            FATAL_COMPLETE_DRIVER_CREATED,
            req,
        )
    if not req.owned:
        raise WdfBugCheck(
            f"{what} on {req!r}, which is still in a queue", WDF_REQUEST_FATAL_ERROR, FATAL_NOT_OWNED_BY_DRIVER, req
        )
    return req


def _memory_of(req: FxReceivedRequest, output: bool) -> FxMemory | None:
    """A received request's input or output memory; a read has no input, a write no output."""
    return req.output_memory if output else req.input_memory


def _retrieve_memory(Request: Any, Memory: WDFMEMORY, output: bool) -> NTSTATUS:
    req = _received(Request)
    required(Memory, "Memory")
    Memory.value = None
    mem = _memory_of(req, output)
    if mem is None:
        return STATUS_BUFFER_TOO_SMALL
    store(Memory, "Memory", mem, WDFMEMORY)
    return STATUS_SUCCESS


def _retrieve_buffer(
    Request: Any, MinimumRequiredSize: int, Buffer: Any, Length: SIZE_T | None, output: bool
) -> NTSTATUS:
    req = _received(Request)
    required(Buffer, "Buffer")
    Buffer.value = None
    if Length is not None:
        Length.value = 0
    minimum = integer(MinimumRequiredSize)
    if minimum is None:
        return STATUS_INVALID_PARAMETER
    mem = _memory_of(req, output)
    if mem is None or mem.size < minimum:
        return STATUS_BUFFER_TOO_SMALL
    Buffer.value = mem.array
    if Length is not None:
        Length.value = mem.size
    return STATUS_SUCCESS


def _retrieve_mdl(Request: Any, Mdl: Any, output: bool) -> NTSTATUS:
    req = _received(Request)
    required(Mdl, "Mdl")
    Mdl.value = None
    mem = _memory_of(req, output)
    if mem is None:
        return STATUS_BUFFER_TOO_SMALL
    with LOCK:
        mdl = req.mdls.get(output)
        if mdl is None:
            mdl = req.mdls[output] = MDL(mem.array)
        Mdl.value = mdl
    return STATUS_SUCCESS


def WdfRequestRetrieveInputMemory(Request: Any, Memory: WDFMEMORY) -> NTSTATUS:
    """WdfRequestRetrieveInputMemory: the WDFMEMORY over the write's (or device control's input)
    buffer, no copy. None (zero-length, or a read): STATUS_BUFFER_TOO_SMALL."""
    return _retrieve_memory(Request, Memory, False)


def WdfRequestRetrieveOutputMemory(Request: Any, Memory: WDFMEMORY) -> NTSTATUS:
    """WdfRequestRetrieveOutputMemory: the WDFMEMORY over the read's (or device control's output)
    buffer, which the producer gets back filled. None: STATUS_BUFFER_TOO_SMALL."""
    return _retrieve_memory(Request, Memory, True)


def WdfRequestRetrieveInputBuffer(
    Request: Any, MinimumRequiredSize: int, Buffer: Any, Length: SIZE_T | None = None
) -> NTSTATUS:
    """WdfRequestRetrieveInputBuffer: ``Buffer.value`` = the input bytes (a numpy uint8 view, no
    copy; read-only if the producer's buffer is), ``Length.value`` = their size. Smaller than
    ``MinimumRequiredSize`` (or none) -> STATUS_BUFFER_TOO_SMALL."""
    return _retrieve_buffer(Request, MinimumRequiredSize, Buffer, Length, False)


def WdfRequestRetrieveOutputBuffer(
    Request: Any, MinimumRequiredSize: int, Buffer: Any, Length: SIZE_T | None = None
) -> NTSTATUS:
    """WdfRequestRetrieveOutputBuffer: as the input one, for the output buffer (writable)."""
    return _retrieve_buffer(Request, MinimumRequiredSize, Buffer, Length, True)


def WdfRequestRetrieveInputWdmMdl(Request: Any, Mdl: Any) -> NTSTATUS:
    """WdfRequestRetrieveInputWdmMdl: ``Mdl.value`` = an :class:`MDL` over the input buffer
    (direct I/O; the same one on every call). None -> STATUS_BUFFER_TOO_SMALL."""
    return _retrieve_mdl(Request, Mdl, False)


def WdfRequestRetrieveOutputWdmMdl(Request: Any, Mdl: Any) -> NTSTATUS:
    """WdfRequestRetrieveOutputWdmMdl: the :class:`MDL` over the output buffer."""
    return _retrieve_mdl(Request, Mdl, True)


def WdfRequestGetParameters(Request: Any, Parameters: WDF_REQUEST_PARAMETERS) -> None:
    """WdfRequestGetParameters: Type (write, read, device control), Parameters.Write/Read.Length
    (Key, DeviceOffset 0) or Parameters.DeviceIoControl's lengths and IoControlCode."""
    req = _received(Request)
    required(Parameters, "Parameters")
    Parameters.MinorFunction = 0
    Parameters.Type = req.kind
    Parameters.Parameters.Write.Length = req.length if req.kind != WdfRequestTypeDeviceControl else 0
    Parameters.Parameters.Write.Key = 0
    Parameters.Parameters.Write.DeviceOffset = 0
    control = Parameters.Parameters.DeviceIoControl
    if req.kind == WdfRequestTypeDeviceControl:
        control.OutputBufferLength, control.InputBufferLength = req.output_length, req.length
        control.IoControlCode = req.ioctl


def WdfRequestSetInformation(Request: Any, Information: int) -> None:
    """WdfRequestSetInformation: IoStatus.Information, reported by a later WdfRequestComplete."""
    req = get_object(Request, FxRequest)
    information = require_integer(Information, "Information")
    with req.lock:
        req.information = information


def WdfRequestCompleteWithInformation(Request: Any, Status: int, Information: int) -> None:
    """WdfRequestCompleteWithInformation: complete a received request; the producer's
    ``IoOperation.wait()`` returns ``(Status, Information)``. See the module's rules."""
    req = _owned_received(Request, "WdfRequestComplete")
    status, information = require_integer(Status, "Status"), require_integer(Information, "Information")
    with req.lock:
        sent = req.pending
    if sent:
        raise WdfBugCheck(
            f"{req!r} completed while it is pending at an I/O target",
            WDF_REQUEST_FATAL_ERROR,
            FATAL_COMPLETE_WHILE_SENT,
            req,
        )
    with LOCK:
        if req.cancel_routine is not None:
            raise WdfBugCheck(
                f"{req!r} completed while marked cancelable (call WdfRequestUnmarkCancelable first)",
                WDF_REQUEST_FATAL_ERROR,
                FATAL_COMPLETE_WHILE_CANCELABLE,
                req,
            )
        mem = req.input_memory
        if mem is not None:
            own = 1 if req.memory is mem else 0
            others = mem._refs - own
            if others > 0:
                raise WdfBugCheck(
                    f"{req!r} completed while its input memory {mem!r} is still referenced by {others} other "
                    "request(s): delete, reuse or reformat them first",
                    WDF_REQUEST_FATAL_ERROR,
                    FATAL_COMPLETE_WHILE_MEMORY_REFERENCED,
                    req,
                    mem,
                )
    req.finish(NTSTATUS(status), information)


def WdfRequestComplete(Request: Any, Status: int) -> None:
    """WdfRequestComplete: complete with the request's current information (what
    WdfRequestSetInformation set, or the byte count of the send it was forwarded in)."""
    req = get_object(Request, FxRequest)
    WdfRequestCompleteWithInformation(req, Status, req.information)


def WdfRequestForwardToIoQueue(Request: Any, DestinationQueue: Any) -> NTSTATUS:
    """WdfRequestForwardToIoQueue: requeue a request the driver owns to another queue of the device.
    The same queue, a request pending at a target or marked cancelable -> STATUS_INVALID_DEVICE_REQUEST;
    a queue that does not accept requests (drained, purged) -> STATUS_WDF_BUSY (the driver keeps it)."""
    req = _owned_received(Request, "WdfRequestForwardToIoQueue")
    dest = get_object(DestinationQueue, FxIoQueue)
    with LOCK:
        src = req.queue
        if src is dest or req.pending or req.cancel_routine is not None or dest.device is not req_device(req):
            return STATUS_INVALID_DEVICE_REQUEST
        if dest.stopping or dest._delete_requested:
            return STATUS_INVALID_DEVICE_REQUEST
        if not dest.accepting:
            return STATUS_WDF_BUSY  # stopped accepting (drain, purge): the driver keeps it
        req.owned = False
    if src is not None:
        src.owned_done(req)
        src.settle()
    with LOCK:
        cancelled = req.irp_cancel
    if cancelled:
        req.finish(STATUS_CANCELLED, 0)  # cancelled while the driver owned it: the framework cancels it on the queue
        return STATUS_SUCCESS
    dest.enqueue(req)
    return STATUS_SUCCESS


def req_device(req: FxReceivedRequest) -> FxUsbDevice | None:
    return req.queue.device if req.queue is not None else None


def WdfRequestMarkCancelable(Request: Any, EvtRequestCancel: Callable[[Any], Any]) -> None:
    """WdfRequestMarkCancelable: ``EvtRequestCancel(Request)`` runs (on the cancelling thread)
    if the producer cancels; if the request is already cancelled it runs now."""
    status = WdfRequestMarkCancelableEx(Request, EvtRequestCancel)
    if status == STATUS_CANCELLED:
        EvtRequestCancel(_request_box(_received(Request)))


def WdfRequestMarkCancelableEx(Request: Any, EvtRequestCancel: Callable[[Any], Any]) -> NTSTATUS:
    """WdfRequestMarkCancelableEx: as WdfRequestMarkCancelable, but an already cancelled request
    returns STATUS_CANCELLED (the routine is not called)."""
    req = _owned_received(Request, "WdfRequestMarkCancelable")
    required(EvtRequestCancel, "EvtRequestCancel")
    with LOCK:
        if req.irp_cancel or (req.queue is not None and req.queue.cancel_dispatched):
            return STATUS_CANCELLED  # cancelled, or its queue is being purged
        req.cancel_routine = EvtRequestCancel
    return STATUS_SUCCESS


def WdfRequestUnmarkCancelable(Request: Any) -> NTSTATUS:
    """WdfRequestUnmarkCancelable: STATUS_CANCELLED if the cancel routine ran (or runs), else STATUS_SUCCESS."""
    req = _owned_received(Request, "WdfRequestUnmarkCancelable")
    with LOCK:
        had, req.cancel_routine = req.cancel_routine, None
        if had is None and req.irp_cancel:
            return STATUS_CANCELLED
    return STATUS_SUCCESS


def WdfRequestIsCanceled(Request: Any) -> bool:
    """WdfRequestIsCanceled: True once the producer cancelled the request."""
    return _received(Request).irp_cancel


def WdfRequestStopAcknowledge(Request: Any, Requeue: bool) -> None:
    """WdfRequestStopAcknowledge (from ``EvtIoStop``): the driver has stopped working on a request
    it owns; ``Requeue=True`` puts it back at the head of its queue (presented again when the queue
    dispatches), ``False`` leaves it the driver's to complete later."""
    req = _owned_received(Request, "WdfRequestStopAcknowledge")
    with req.lock:
        sent = req.pending
    if sent:
        raise WdfBugCheck(
            f"{req!r} acknowledged while pending at an I/O target",
            WDF_REQUEST_FATAL_ERROR,
            FATAL_COMPLETE_WHILE_SENT,
            req,
        )
    if not Requeue:
        return
    queue = req.queue
    assert queue is not None
    with LOCK:
        req.owned = False
    queue.owned_done(req)
    queue.requeue(req)
