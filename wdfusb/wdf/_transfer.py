"""The synchronous pipe calls: WdfUsbTargetPipeWrite/ReadSynchronously, Reset, Abort.

``_send_transfer`` follows ``FxUsbPipe::_SendTransfer`` step by step:

1. handles (bug check if bad); ``BytesTransferred`` = 0;
2. "IRQL" (inside a completion routine or on the event thread) -> STATUS_INVALID_DEVICE_REQUEST;
3. ``FxValidateRequestOptions``: Size != 16 -> STATUS_INFO_LENGTH_MISMATCH; unknown flags, or
   SEND_AND_FORGET with another flag -> STATUS_INVALID_PARAMETER;
4. the memory descriptor (:func:`resolve_descriptor`); None = zero-length packet;
5. ``FormatTransferRequest``: pipe type bulk/interrupt, length fits a ULONG, direction, read
   length a multiple of MaximumPacketSize (unless switched off) -> STATUS_INVALID_BUFFER_SIZE,
   a read-only buffer for a read -> STATUS_INVALID_DEVICE_REQUEST, request already pending ->
   STATUS_INVALID_DEVICE_REQUEST, ``ValidateTarget`` (stack depth) -> STATUS_REQUEST_NOT_ACCEPTED,
   allocation failure -> STATUS_INSUFFICIENT_RESOURCES;
6. submit and wait (time-out: the transfer is cancelled, then STATUS_IO_TIMEOUT); the byte count
   is written even on error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._engine import WU_ERR_NO_DEVICE, EngineError, in_completion_context, pin
from .._status import outcome
from ._context import at_passive_level
from ._handles import ULONG, get_object, integer
from ._memory import RequestBuffer, resolve_descriptor
from ._ntstatus import (
    NT_ERROR,
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INTEGER_OVERFLOW,
    STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
    USBD_STATUS,
    USBD_STATUS_CANCELED,
    USBD_STATUS_SUCCESS,
)
from ._request import FxRequest
from ._structs import (
    WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET,
    WDF_REQUEST_SEND_OPTION_TIMEOUT,
    WDF_REQUEST_SEND_OPTIONS,
    WDF_REQUEST_SEND_OPTIONS_VALID_FLAGS,
    WdfUsbPipeTypeBulk,
    WdfUsbPipeTypeInterrupt,
    WdfUsbRequestTypePipeAbort,
    WdfUsbRequestTypePipeRead,
    WdfUsbRequestTypePipeReset,
    WdfUsbRequestTypePipeWrite,
    timeout_to_seconds,
)
from ._target_state import admit, end_unsent, leave, wait_for_start
from ._usbpipe import WDFUSBPIPE, FxUsbPipe

ULONG_MAX = 0xFFFFFFFF
WU_ERR_TIMEOUT = -7
_PIPE_TRANSFER_TYPES = (WdfUsbPipeTypeBulk, WdfUsbPipeTypeInterrupt)


def validate_request_options(options: Any) -> NTSTATUS:
    """FxValidateRequestOptions (kernel-mode rules); a field that is not an integer (a float, a
    bool ...) is a wrong Size (STATUS_INFO_LENGTH_MISMATCH) or STATUS_INVALID_PARAMETER."""
    if options is None:
        return STATUS_SUCCESS
    if not isinstance(options, WDF_REQUEST_SEND_OPTIONS):
        return STATUS_INVALID_PARAMETER
    if integer(options.Size) != WDF_REQUEST_SEND_OPTIONS.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH
    flags = integer(options.Flags)
    if flags is None or integer(options.Timeout) is None:
        return STATUS_INVALID_PARAMETER
    if flags & ~WDF_REQUEST_SEND_OPTIONS_VALID_FLAGS:
        return STATUS_INVALID_PARAMETER
    if flags & WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET and flags & ~WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET:
        return STATUS_INVALID_PARAMETER
    return STATUS_SUCCESS


US_MAX = 2**63 - 1  # the engine's int64 microseconds
_SEEN_OPTIONS: dict[tuple[int, int, int], tuple[NTSTATUS, int]] = {}  # see send_options


def send_options(options: Any) -> tuple[NTSTATUS, int]:
    """:func:`validate_request_options`, and the engine's time-out the options give.

    A driver sends with the same few options over and over; the result for ``int`` fields
    with no absolute time-out (the only value that changes with the clock) is kept, keyed by
    the field values themselves, so a changed field is always seen."""
    if options is None:
        return STATUS_SUCCESS, 0
    if type(options) is WDF_REQUEST_SEND_OPTIONS:
        size, flags, timeout = options.Size, options.Flags, options.Timeout
        if type(size) is int and type(flags) is int and type(timeout) is int and timeout <= 0:
            key = (size, flags, timeout)
            seen = _SEEN_OPTIONS.get(key)
            if seen is None:
                if len(_SEEN_OPTIONS) >= 64:
                    _SEEN_OPTIONS.clear()
                seen = _SEEN_OPTIONS[key] = _checked_options(options)
            return seen
    return _checked_options(options)


def _checked_options(options: Any) -> tuple[NTSTATUS, int]:
    status = validate_request_options(options)
    return status, (_timeout_us(options) if NT_SUCCESS(status) else 0)


def _timeout_us(options: WDF_REQUEST_SEND_OPTIONS | None) -> int:
    """The engine's time-out: 0 = none. WDF: TIMEOUT flag with Timeout 0 waits for ever.
    ``options`` passed :func:`validate_request_options` (its fields are integers)."""
    if options is None or not (integer(options.Flags) or 0) & WDF_REQUEST_SEND_OPTION_TIMEOUT:
        return 0
    seconds = timeout_to_seconds(integer(options.Timeout) or 0)
    if seconds is None:
        return 0
    # an absolute time already past still cancels at once; beyond the engine's range: for ever
    return min(max(1, int(seconds * 1e6)), US_MAX)


def _prepare_buffer(rb: RequestBuffer, read: bool) -> tuple[Any, Any]:
    """Pin the buffer for the engine: (pointer argument, gather/scatter scratch or None)."""
    array = rb.array
    if type(array) is bytes and rb.offset == 0 and 0 < rb.length <= len(array):
        # cffi hands C the bytes' own storage: no pin needed (never read into); immutable, so
        # the answer is kept for the next send of the same (memoized) buffer
        prepared = rb.prepared = (array, None)
        return prepared
    if rb.length == 0:
        return None, None
    if rb.pieces is not None:  # a chained MDL: one contiguous scratch buffer
        if read:
            scratch = np.empty(rb.length, dtype=np.uint8)
        else:
            scratch = np.concatenate(rb.pieces)[: rb.length]
        if scratch.size != rb.length:
            raise ValueError("the MDL chain is shorter than the transfer")
        return pin(scratch, writable=read), scratch
    cdata = rb.cdata
    if cdata is None:
        assert rb.array is not None
        cdata = rb.cdata = pin(rb.array, writable=read)
    if len(cdata) < rb.offset + rb.length:  # the engine trusts its length: never past the pinned bytes
        raise ValueError("the descriptor is longer than its buffer")
    return (cdata if rb.offset == 0 else rb.pointer()), None


def check_transfer(pipe: FxUsbPipe, rb: RequestBuffer, read: bool) -> NTSTATUS:
    """FxUsbPipe::FormatTransferRequest's checks of the pipe and the buffer."""
    if pipe.pipe_type not in _PIPE_TRANSFER_TYPES:
        return STATUS_INVALID_DEVICE_REQUEST
    if rb.length > ULONG_MAX:
        return STATUS_INTEGER_OVERFLOW
    if read:
        if not pipe.is_in:
            return STATUS_INVALID_DEVICE_REQUEST
        mps = pipe.core.max_packet
        if pipe.check_packet_size and mps and rb.length % mps:
            return STATUS_INVALID_BUFFER_SIZE
        if rb.readonly and rb.length:
            return STATUS_INVALID_DEVICE_REQUEST  # cannot lock a read-only buffer for IoWriteAccess
    elif pipe.is_in:
        return STATUS_INVALID_DEVICE_REQUEST
    return STATUS_SUCCESS


def format_request(pipe: FxUsbPipe, req: FxRequest, rb: RequestBuffer, read: bool) -> NTSTATUS:
    """Format ``req`` for a pipe transfer: target (stack depth), memory reference, USB parameters."""
    status = req.validate_target(pipe)
    if status & NT_ERROR:
        return status
    req.set_memory(rb)
    usb = req.usb
    usb.Type = WdfUsbRequestTypePipeRead if read else WdfUsbRequestTypePipeWrite
    usb.UsbdStatus = USBD_STATUS(0)
    usb.Parameters.PipeWrite.Buffer = rb.memory
    usb.Parameters.PipeWrite.Length = rb.length
    usb.Parameters.PipeWrite.Offset = rb.mem_offset
    req.formatted_usb = True
    req.pipe_format = (pipe, rb, read)
    return STATUS_SUCCESS


def _send_transfer(
    Pipe: Any, Request: Any, RequestOptions: Any, MemoryDescriptor: Any, BytesTransferred: ULONG | None, read: bool
) -> NTSTATUS:
    # The one path of every synchronous pipe transfer, so it is kept lean: the checks return
    # STATUS_SUCCESS (0) or an error, so ``if status`` stands for NT_ERROR, and a bytes buffer's
    # engine arguments are prepared once (RequestBuffer.prepared).
    pipe = Pipe.value if type(Pipe) is WDFUSBPIPE else Pipe
    if type(pipe) is not FxUsbPipe or pipe._deleted:  # get_object()'s common case, inlined
        pipe = get_object(Pipe, FxUsbPipe)  # (a subclass, or a bug check)
    req = get_object(Request, FxRequest) if Request is not None else None
    if BytesTransferred is not None:
        BytesTransferred.value = 0
    if in_completion_context():  # not at_passive_level() (its C call, without a frame around it)
        return STATUS_INVALID_DEVICE_REQUEST
    status, timeout_us = send_options(RequestOptions)
    if status:
        return status
    if MemoryDescriptor is not None:
        status, rb = resolve_descriptor(MemoryDescriptor)
        if status:
            return status
    else:
        rb = RequestBuffer()
    status = check_transfer(pipe, rb, read)
    if status:
        return status
    if req is not None:  # mark it sent, then format it
        if not req.begin():
            return STATUS_INVALID_DEVICE_REQUEST  # already pending at a target
        status = format_request(pipe, req, rb, read)
        if status & NT_ERROR:
            req.abandon()
            return status
    try:
        ptr, scratch = rb.prepared or _prepare_buffer(rb, read)
    except MemoryError:
        if req is not None:
            req.abandon()
        return STATUS_INSUFFICIENT_RESOURCES
    except (TypeError, ValueError, BufferError):
        if req is not None:
            req.abandon()
        return STATUS_INVALID_PARAMETER
    if req is None:
        try:
            xfer = pipe.core.internal_transfer()
        except EngineError as exc:  # the device is closed
            return outcome(exc.code).status
    else:
        with req.lock:
            canceled = req.canceled
        if canceled:  # WdfRequestCancelSentRequest (or a time-out) since the last WdfRequestReuse
            req.end(STATUS_CANCELLED, 0, USBD_STATUS_SUCCESS)
            return STATUS_CANCELLED
        assert req.transfer is not None  # (made by format_request)
        xfer = req.transfer
    state = pipe.target_state
    status, timeout_us = admit(pipe, RequestOptions, xfer, timeout_us)  # a stopped target: wait
    if status:
        return status if req is None else end_unsent(req, status)
    try:
        code, actual = pipe.core.transfer(ptr, rb.length, timeout_us, 0, xfer)
    finally:
        leave(state, xfer)
    if scratch is not None and read and actual:
        rb.scatter(scratch[:actual])
    if BytesTransferred is not None:
        BytesTransferred.value = actual
    if req is None:
        return STATUS_SUCCESS if code == 0 else outcome(code).status
    result = outcome(code)
    if code == WU_ERR_TIMEOUT:
        with req.lock:
            req.canceled = True  # WDF cancels the request on a time-out (FX_REQUEST_CANCELLED_FROM_TIMER)
    req.end(result.status, actual, result.usbd_status)
    return result.status


def WdfUsbTargetPipeWriteSynchronously(
    Pipe: Any,
    Request: Any = None,
    RequestOptions: WDF_REQUEST_SEND_OPTIONS | None = None,
    MemoryDescriptor: Any = None,
    BytesWritten: ULONG | None = None,
) -> NTSTATUS:
    """WdfUsbTargetPipeWriteSynchronously: write to a bulk or interrupt OUT pipe and wait.

    ``Request`` None uses an internal request (it cannot be cancelled); a WDFREQUEST can be
    cancelled from another thread with WdfRequestCancelSentRequest. ``MemoryDescriptor`` None
    sends a zero-length packet. ``BytesWritten`` (a ``ULONG()`` box) is zeroed first and set to
    the bytes moved even on error. Returns the completion NTSTATUS or one of the seed's codes.
    """
    return _send_transfer(Pipe, Request, RequestOptions, MemoryDescriptor, BytesWritten, False)  # False: a write


def WdfUsbTargetPipeReadSynchronously(
    Pipe: Any,
    Request: Any = None,
    RequestOptions: WDF_REQUEST_SEND_OPTIONS | None = None,
    MemoryDescriptor: Any = None,
    BytesRead: ULONG | None = None,
) -> NTSTATUS:
    """WdfUsbTargetPipeReadSynchronously: read from a bulk or interrupt IN pipe and wait (short reads are OK).

    The length must be a multiple of the pipe's MaximumPacketSize unless
    WdfUsbTargetPipeSetNoMaximumPacketSizeCheck was called (else STATUS_INVALID_BUFFER_SIZE).
    """
    return _send_transfer(Pipe, Request, RequestOptions, MemoryDescriptor, BytesRead, True)  # True: a read


def _pipe_control(Pipe: Any, Request: Any, RequestOptions: Any, reset: bool) -> NTSTATUS:
    pipe = get_object(Pipe, FxUsbPipe)
    req = get_object(Request, FxRequest) if Request is not None else None
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    status, timeout_us = send_options(RequestOptions)
    if not NT_SUCCESS(status):
        return status
    if req is not None:
        if not req.begin():
            return STATUS_INVALID_DEVICE_REQUEST
        status = req.validate_target(pipe)
        if not NT_SUCCESS(status):
            req.abandon()
            return status
        req.usb.Type = WdfUsbRequestTypePipeReset if reset else WdfUsbRequestTypePipeAbort
        req.formatted_usb = True
        with req.lock:
            canceled = req.canceled
        if canceled:
            req.end(STATUS_CANCELLED, 0, USBD_STATUS_CANCELED)
            return STATUS_CANCELLED
    status = wait_for_start(pipe, RequestOptions, timeout_us)  # a stopped target: it waits too
    if status:
        return status if req is None else end_unsent(req, status)
    if pipe.target_closed:  # a pipe kept by a reference after its device was deleted (closed)
        code = WU_ERR_NO_DEVICE
    elif reset:
        pipe.core.abort()  # CancelSentIo, then the reset (clear halt)
        code = pipe.core.reset()
    else:
        code = pipe.core.abort()
    result = outcome(code)
    if req is not None:
        req.end(result.status, 0, result.usbd_status)
    return result.status


def WdfUsbTargetPipeResetSynchronously(
    Pipe: Any, Request: Any = None, RequestOptions: WDF_REQUEST_SEND_OPTIONS | None = None
) -> NTSTATUS:
    """WdfUsbTargetPipeResetSynchronously: cancel the pipe's I/O, then clear the halt (stall) and data toggle."""
    return _pipe_control(Pipe, Request, RequestOptions, reset=True)


def WdfUsbTargetPipeAbortSynchronously(
    Pipe: Any, Request: Any = None, RequestOptions: WDF_REQUEST_SEND_OPTIONS | None = None
) -> NTSTATUS:
    """WdfUsbTargetPipeAbortSynchronously: cancel every transfer on the pipe and wait until they are back."""
    return _pipe_control(Pipe, Request, RequestOptions, reset=False)
