"""The asynchronous path: format a request for a pipe, set its completion routine, send it.

``WdfUsbTargetPipeFormatRequestForWrite``/``ForRead`` check and format a request (the
WDFMEMORY is referenced until the request is deleted, reused or reformatted);
``WdfRequestSetCompletionRoutine`` stores ``routine(Request, Target, Params, Context)``;
``WdfRequestSend`` starts the transfer and returns at once. Completion routines run on
wdfusb's completion thread (see :mod:`wdfusb._dispatch`), one at a time, in completion
order; inside them a synchronous send returns ``STATUS_INVALID_DEVICE_REQUEST``, while
``WdfRequestReuse`` + format + ``WdfRequestSend`` of the same request is the normal way to
keep a pipe busy. An exception a routine raises is kept and re-raised by
:func:`wait_for_completions` — never lost.
"""

from __future__ import annotations

from typing import Any

from .. import _dispatch
from .._core import SETUP_SIZE
from .._status import outcome
from .._timeout import seconds
from ._context import at_passive_level, completion_routine_context
from ._control import control_buffer
from ._handles import get_object
from ._memory import WDF_MEMORY_DESCRIPTOR, WDF_MEMORY_DESCRIPTOR_INIT_HANDLE, RequestBuffer, resolve_descriptor
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    USBD_STATUS_SUCCESS,
)
from ._request import WDFIOTARGET, WDFREQUEST, FxIoTarget, FxRequest, WdfRequestGetCompletionParams
from ._structs import (
    WDF_REQUEST_COMPLETION_PARAMS,
    WDF_REQUEST_COMPLETION_PARAMS_INIT,
    WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET,
    WDF_REQUEST_SEND_OPTION_SYNCHRONOUS,
)
from ._target_state import PendedClock, admit, end_unsent, expire, ignores_state, leave, pend
from ._transfer import (
    WU_ERR_TIMEOUT,
    _prepare_buffer,
    check_transfer,
    format_request,
    send_options,
)
from ._usbpipe import FxUsbPipe

__all__ = [
    "WdfRequestSend",
    "WdfRequestSetCompletionRoutine",
    "WdfUsbTargetPipeFormatRequestForRead",
    "WdfUsbTargetPipeFormatRequestForWrite",
    "wait_for_completions",
]


def _format_for(Pipe: Any, Request: Any, Memory: Any, Offset: Any, read: bool) -> NTSTATUS:
    pipe = get_object(Pipe, FxUsbPipe)
    req = get_object(Request, FxRequest)
    rb = RequestBuffer()
    if Memory is not None:
        desc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, Memory, Offset)
        status, rb = resolve_descriptor(desc)
        if not NT_SUCCESS(status):
            return status
    status = check_transfer(pipe, rb, read)
    if not NT_SUCCESS(status):
        return status
    with req.lock:
        if req.pending:
            return STATUS_INVALID_DEVICE_REQUEST  # cannot reformat a request that is still sent
    return format_request(pipe, req, rb, read)


def WdfUsbTargetPipeFormatRequestForWrite(
    Pipe: Any, Request: Any, WriteMemory: Any = None, WriteOffset: Any = None
) -> NTSTATUS:
    """WdfUsbTargetPipeFormatRequestForWrite: format ``Request`` to write ``WriteMemory``
    (a WDFMEMORY, optionally narrowed by a ``WDFMEMORY_OFFSET``; None = zero-length packet)
    to an OUT pipe. Send it with :func:`WdfRequestSend`."""
    return _format_for(Pipe, Request, WriteMemory, WriteOffset, read=False)


def WdfUsbTargetPipeFormatRequestForRead(
    Pipe: Any, Request: Any, ReadMemory: Any = None, ReadOffset: Any = None
) -> NTSTATUS:
    """WdfUsbTargetPipeFormatRequestForRead: format ``Request`` to read into ``ReadMemory``."""
    return _format_for(Pipe, Request, ReadMemory, ReadOffset, read=True)


def WdfRequestSetCompletionRoutine(Request: Any, CompletionRoutine: Any = None, CompletionContext: Any = None) -> None:
    """WdfRequestSetCompletionRoutine: ``CompletionRoutine(Request, Target, Params, Context)``
    runs when the sent request completes (None removes it)."""
    req = get_object(Request, FxRequest)
    with req.lock:
        req.completion = (CompletionRoutine, CompletionContext) if CompletionRoutine is not None else None


def _fail(req: FxRequest, status: NTSTATUS) -> bool:
    """WdfRequestSend failed before the request was sent: its status says why."""
    with req.lock:
        req.status, req.information = status, 0
    return False


def WdfRequestSend(Request: Any, Target: Any, Options: Any = None) -> bool:
    """WdfRequestSend: send a formatted request to its pipe. Returns True if it was sent
    (its completion routine will run), False if not (``WdfRequestGetStatus`` says why).

    With ``WDF_REQUEST_SEND_OPTION_SYNCHRONOUS`` it waits for completion instead and the
    completion routine is not called (refused, like every synchronous send, inside a
    completion routine). A time-out from the options cancels the transfer and completes
    the request with ``STATUS_IO_TIMEOUT``.
    """
    req = get_object(Request, FxRequest)
    target = get_object(Target, FxIoTarget)
    status, timeout_us = send_options(Options)
    if not NT_SUCCESS(status):
        return _fail(req, status)
    flags = Options.Flags if Options is not None else 0
    if flags & WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET:
        return _fail(req, STATUS_INVALID_PARAMETER)  # formatted requests cannot be sent and forgotten
    synchronous = bool(flags & WDF_REQUEST_SEND_OPTION_SYNCHRONOUS)
    if synchronous and not at_passive_level():
        return _fail(req, STATUS_INVALID_DEVICE_REQUEST)
    fmt = req.pipe_format
    if fmt is None or fmt[0] is not target or req.transfer is None:
        return _fail(req, STATUS_INVALID_DEVICE_REQUEST)  # not formatted for this target
    pipe, rb, read = fmt  # the pipe (or, for a control transfer, the device), its buffer, its way
    setup = req.setup
    if not req.begin():
        return False  # already pending at a target; its status belongs to that send
    with req.lock:
        canceled = req.canceled
    if canceled:  # WdfRequestCancelSentRequest (or a time-out) since the last WdfRequestReuse
        req.end(STATUS_CANCELLED, 0, USBD_STATUS_SUCCESS)
        return False
    try:
        if setup is None:
            ptr, scratch = _prepare_buffer(rb, read)
            core, length = pipe.core, rb.length
        else:
            ptr, scratch = control_buffer(setup, rb)
            core, length = pipe.core.control_pipe, len(scratch)
    except MemoryError:
        req.abandon()
        return _fail(req, STATUS_INSUFFICIENT_RESOURCES)

    # (no local holds the transfer: a traceback that keeps these frames must not keep it alive
    # once the request lets it go)
    state, tracked = target.target_state, not ignores_state(Options)

    def complete(code: int, actual: int) -> None:
        leave(state, req.transfer)  # back: off the target's sent list
        if scratch is not None and read and actual:
            rb.scatter(scratch[:actual] if setup is None else memoryview(scratch)[SETUP_SIZE : SETUP_SIZE + actual])
        out = outcome(code)
        if code == WU_ERR_TIMEOUT:
            with req.lock:
                req.canceled = True  # WDF cancels a timed-out request (FX_REQUEST_CANCELLED_FROM_TIMER)
        req.end(out.status, actual, out.usbd_status)
        if not synchronous:
            _call_routine(req, target)

    if synchronous:
        status, timeout_us = admit(target, Options, req.transfer, timeout_us)  # a stopped target: wait
        if status:
            end_unsent(req, status)
            return False
        try:
            code, actual = core.transfer(ptr, length, timeout_us, 0, req.transfer)
        finally:
            leave(state, req.transfer)
        complete(code, actual)
        return NT_SUCCESS(req.status)

    def go(left_us: int = timeout_us) -> bool:
        if tracked:
            state.sent.add(req.transfer)
        xfer = req.transfer
        assert xfer is not None  # (formatted: the request has its transfer)
        rc = _dispatch.submit(xfer, core.address, core.type, ptr, length, 0, left_us, complete)
        if rc != 0:
            leave(state, req.transfer)
            out = outcome(rc)
            req.end(out.status, 0, out.usbd_status)
            return False
        return True

    clock = PendedClock(timeout_us)  # the time-out counts from here, pended or not (FxIoTarget::SubmitLocked)

    def resume(status: NTSTATUS) -> None:  # pended at a stopped target: it starts, or it never will
        clock.stop()
        if status:
            end_unsent(req, status)  # timed out or cancelled while pended, or the target closed
            _call_routine(req, target)
        elif not go(clock.left_us()):
            _call_routine(req, target)  # WdfRequestSend said it was sent: its routine tells the failure

    if tracked:
        state.sent.add(req.transfer)  # first, then the state (see _target_state)
        if pend(state, req, resume):
            leave(state, req.transfer)  # pended, not sent: WdfIoTargetStart sends it
            clock.arm(lambda: expire(state, req))
            return True
    return go()


def _call_routine(req: FxRequest, target: FxIoTarget) -> None:
    routine = req.completion
    if routine is not None:
        params = WDF_REQUEST_COMPLETION_PARAMS()
        WDF_REQUEST_COMPLETION_PARAMS_INIT(params)
        WdfRequestGetCompletionParams(req, params)
        with completion_routine_context():
            routine[0](WDFREQUEST(req), WDFIOTARGET(target), params, routine[1])


def wait_for_completions(timeout: float | None = None) -> bool:
    """Wait until every sent request's completion routine has run (wdfusb's own helper,
    not a WDF name); re-raises an exception a completion routine raised. False on time-out
    (``timeout`` in seconds; ``None``, ``math.inf``: for ever)."""
    idle = _dispatch.wait_idle(seconds(timeout))
    _dispatch.raise_pending()
    return idle
