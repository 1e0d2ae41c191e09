"""WDF's continuous reader and the I/O-target states that run it.

``WdfUsbTargetPipeConfigContinuousReader`` gives an IN pipe ``NumPendingReads`` requests (2 if
0, at most 10), each reading ``TransferLength`` bytes into a WDFMEMORY of ``HeaderLength +
TransferLength + TrailerLength`` at offset ``HeaderLength``. The readers run between
``WdfIoTargetStart`` and ``WdfIoTargetStop`` of the pipe's I/O target, as in KMDF: each one
completes on the completion thread, ``EvtUsbTargetPipeReadComplete(Pipe, Buffer,
NumBytesTransferred, Context)`` gets its WDFMEMORY (deleted afterwards, unless the driver took a
reference with ``WdfObjectReference``), and it is sent again with a fresh buffer while the target
is started. A read that fails is not delivered (as in KMDF: what it moved before failing is not
the driver's; ``pipe.reader`` counts every byte) and stops them all: once every reader is back,
``EvtUsbTargetPipeReadersFailed(Pipe, Status, UsbdStatus)`` runs at passive level (a thread of its
own, as WDF's work item); TRUE (or no callback) resets the pipe and restarts the readers if the
device is still attached, FALSE leaves them stopped until the next ``WdfIoTargetStart``.

The readers are the WDF layer's own requests (``WdfRequestCreate``, ``FormatRequestForRead``,
``WdfRequestSend``, ``WdfRequestReuse``): one transfer path, no second engine.
"""

from __future__ import annotations

import threading
from typing import Any

from . import _target_state as target_state
from ._async import WdfRequestSend, WdfRequestSetCompletionRoutine, WdfUsbTargetPipeFormatRequestForRead
from ._context import at_passive_level
from ._handles import (
    WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_ATTRIBUTES_INIT,
    WdfBugCheck,
    WdfObjectDelete,
    get_object,
    required,
)
from ._memory import WDFMEMORY, WDFMEMORY_OFFSET, WdfMemoryCreate
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INTEGER_OVERFLOW,
    STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
    USBD_STATUS,
)
from ._request import (
    WDFREQUEST,
    FxIoTarget,
    FxRequest,
    WdfRequestCancelSentRequest,
    WdfRequestCreate,
    WdfRequestGetInformation,
    WdfRequestGetStatus,
    WdfRequestReuse,
)
from ._structs import (
    WDF_REQUEST_REUSE_PARAMS,
    WDF_REQUEST_REUSE_PARAMS_INIT,
    WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE,
    WDF_REQUEST_SEND_OPTIONS,
    WDF_REQUEST_SEND_OPTIONS_INIT,
    WdfIoTargetCancelSentIo,
    WdfIoTargetClosed,
    WdfIoTargetLeaveSentIoPending,
    WdfIoTargetWaitForSentIoToComplete,
    WdfUsbPipeTypeBulk,
    WdfUsbPipeTypeInterrupt,
)
from ._transfer import WdfUsbTargetPipeResetSynchronously
from ._usbdevice import connection_status
from ._usbpipe import WDFUSBPIPE, FxUsbPipe

__all__ = [
    "WDF_USB_CONTINUOUS_READER_CONFIG",
    "WDF_USB_CONTINUOUS_READER_CONFIG_INIT",
    "WdfIoTargetGetState",
    "WdfIoTargetStart",
    "WdfIoTargetStop",
    "WdfUsbTargetPipeConfigContinuousReader",
]

NUM_PENDING_READS_DEFAULT, NUM_PENDING_READS_MAX = 2, 10

# The readers go by their own started state (they are parked while the pipe is stopped), so
# their sends and the recovery's reset ignore the target's, as the framework's own do.
_OWN = WDF_REQUEST_SEND_OPTIONS()
WDF_REQUEST_SEND_OPTIONS_INIT(_OWN, WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE)


class WDF_USB_CONTINUOUS_READER_CONFIG:
    """WDF_USB_CONTINUOUS_READER_CONFIG (sizeof 72 on x64)."""

    SIZEOF = 72

    def __init__(self) -> None:
        self.Size = 0
        self.TransferLength = 0
        self.HeaderLength = 0
        self.TrailerLength = 0
        self.NumPendingReads = 0
        self.BufferAttributes: Any = None
        self.EvtUsbTargetPipeReadComplete: Any = None
        self.EvtUsbTargetPipeReadCompleteContext: Any = None
        self.EvtUsbTargetPipeReadersFailed: Any = None


def WDF_USB_CONTINUOUS_READER_CONFIG_INIT(
    Config: WDF_USB_CONTINUOUS_READER_CONFIG,
    EvtUsbTargetPipeReadComplete: Any,
    EvtUsbTargetPipeReadCompleteContext: Any,
    TransferLength: int,
) -> None:
    """WDF_USB_CONTINUOUS_READER_CONFIG_INIT."""
    Config.__init__()  # type: ignore[misc]
    Config.Size = WDF_USB_CONTINUOUS_READER_CONFIG.SIZEOF
    Config.EvtUsbTargetPipeReadComplete = EvtUsbTargetPipeReadComplete
    Config.EvtUsbTargetPipeReadCompleteContext = EvtUsbTargetPipeReadCompleteContext
    Config.TransferLength = TransferLength


class ContinuousReader:
    """A pipe's readers: which are out, whether the target is started, the failure being handled."""

    def __init__(self, pipe: FxUsbPipe, config: WDF_USB_CONTINUOUS_READER_CONFIG, count: int) -> None:
        self.pipe = pipe
        self.header, self.length = int(config.HeaderLength), int(config.TransferLength)
        self.total = self.header + self.length + int(config.TrailerLength)
        self.attributes = config.BufferAttributes
        self.on_read = config.EvtUsbTargetPipeReadComplete
        self.context = config.EvtUsbTargetPipeReadCompleteContext
        self.on_failed = config.EvtUsbTargetPipeReadersFailed
        self.cond = threading.Condition()
        self.started = False
        self.failing = False  # a read failed: nothing is sent until the failure is handled
        self.failure_thread: int | None = None  # the thread running EvtUsbTargetPipeReadersFailed
        self.out: dict[FxRequest, None] = {}  # readers sent and not back, oldest first
        self.idle: list[FxRequest] = []
        self.memory: dict[FxRequest, WDFMEMORY] = {}
        attributes = WDF_OBJECT_ATTRIBUTES()
        WDF_OBJECT_ATTRIBUTES_INIT(attributes)
        attributes.ParentObject = pipe  # the readers go with the pipe (and its device)
        for _ in range(count):
            box = WDFREQUEST()
            status = WdfRequestCreate(attributes, pipe, box)
            if not NT_SUCCESS(status):
                raise MemoryError(status)
            self.idle.append(get_object(box, FxRequest))

    # ---- sending --------------------------------------------------------------------

    def start(self) -> None:
        with self.cond:
            self.started = True
            if self.failing:
                return
            idle, self.idle = self.idle, []
        for req in idle:
            self._send(req)

    def _send(self, req: FxRequest) -> None:
        """Format a reader with a fresh buffer and send it; a refusal fails the readers."""
        params = WDF_REQUEST_REUSE_PARAMS()
        WDF_REQUEST_REUSE_PARAMS_INIT(params, 0, STATUS_SUCCESS)
        WdfRequestReuse(req, params)
        memory = WDFMEMORY()
        status = WdfMemoryCreate(self.attributes, 0, 0, self.total, memory)
        if NT_SUCCESS(status):
            offset = WDFMEMORY_OFFSET(self.header, self.length)
            status = WdfUsbTargetPipeFormatRequestForRead(self.pipe, req, memory, offset)
        if NT_SUCCESS(status):
            WdfRequestSetCompletionRoutine(req, self._completed)
            # sent under the lock: a stop either sees it out (and cancels it) or parks it unsent
            with self.cond:
                parked = not self.started or self.failing
                if parked:
                    self.idle.append(req)  # (the next start sends it)
                    self.cond.notify_all()
                else:
                    self.memory[req] = memory
                    self.out[req] = None
                    if WdfRequestSend(req, self.pipe, _OWN):
                        return
                    status = WdfRequestGetStatus(req)
                    del self.memory[req]
            if parked:
                WdfObjectDelete(memory)
                return
        if memory.value is not None:
            WdfObjectDelete(memory)
        self._back(req, status, USBD_STATUS(0))

    # ---- completing -------------------------------------------------------------------

    def _completed(self, Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        req = get_object(Request, FxRequest)
        usb = Params.Parameters.Usb.Completion
        status, usbd = NTSTATUS(Params.IoStatus.Status), USBD_STATUS(usb.UsbdStatus if usb is not None else 0)
        memory = self.memory.pop(req)
        if NT_SUCCESS(status):  # (still out: a stop waits for this callback too)
            try:
                self.on_read(WDFUSBPIPE(self.pipe), memory, WdfRequestGetInformation(req), self.context)
            finally:
                WdfObjectDelete(memory)  # (kept alive by a reference the driver took)
        else:
            WdfObjectDelete(memory)
        self._back(req, status, usbd)

    def _back(self, req: FxRequest, status: NTSTATUS, usbd: USBD_STATUS) -> None:
        """A reader is back: send it again, park it, or let it end the failure handling."""
        with self.cond:
            self.out.pop(req, None)
            stopping = not self.started or (status == STATUS_CANCELLED and not self.failing)
            if NT_SUCCESS(status) and self.started and not self.failing:
                resend = True
            else:
                resend = False
                self.idle.append(req)
                if not NT_SUCCESS(status) and not stopping and not self.failing:
                    self.failing = True  # the first failure: the others are cancelled, then handled
                    first = (status, usbd)
                    threading.Thread(target=self._handle_failure, args=first, daemon=True).start()
                self.cond.notify_all()
        if resend:
            self._send(req)

    def _handle_failure(self, status: NTSTATUS, usbd: USBD_STATUS) -> None:
        """EvtUsbTargetPipeReadersFailed at passive level, once every reader is back."""
        self.drain(True, lambda: not self.out)
        restart = True
        if self.on_failed is not None:
            self.failure_thread = threading.get_ident()
            try:
                restart = bool(self.on_failed(WDFUSBPIPE(self.pipe), status, usbd))
            finally:
                self.failure_thread = None
        # KMDF's recovery: a device that is not attached any more gets no restart; an attached
        # one has its pipe reset (whatever the reset returns) and its readers sent again
        if restart and NT_SUCCESS(connection_status(self.pipe.core.device)):
            WdfUsbTargetPipeResetSynchronously(self.pipe, None, _OWN)
        else:
            restart = False
        with self.cond:
            self.failing = False
            go = restart and self.started
            self.cond.notify_all()
        if go:
            self.start()

    # ---- stopping -------------------------------------------------------------------

    def cancel_out(self) -> None:
        """Cancel the readers out, newest first (as the engine cancels): the device, still filling
        the oldest, never moves on to one not yet cancelled — no gap in what is delivered."""
        with self.cond:
            out = list(self.out)[::-1]
        for req in out:
            WdfRequestCancelSentRequest(req)

    def check_stop(self) -> None:
        if self.failure_thread == threading.get_ident():  # it would wait for itself (KMDF: deadlock)
            raise WdfBugCheck(f"{self.pipe!r} stopped from EvtUsbTargetPipeReadersFailed", 0, self.pipe)

    def stop(self) -> None:
        """Stop sending, cancel what is out, and wait until every reader (and a failure being
        handled) is back — whatever the stop action: KMDF cancels a continuous reader's sent I/O
        always, or an idle pipe's readers would never come back."""
        own = self.failure_thread == threading.get_ident()  # the pipe deleted from that callback
        with self.cond:
            self.started = False
        self.drain(True, lambda: not self.out and (own or not self.failing))

    def drain(self, cancel: bool, done: Any) -> None:
        """Wait until ``done()``, cancelling what is out first if asked — again each round: a reader
        being resent when the target stopped (or a read failed) goes out after the first cancel."""
        while True:
            if cancel:
                self.cancel_out()
            with self.cond:
                if self.cond.wait_for(done, 0.05):
                    return


def _reader_of(target: FxIoTarget) -> ContinuousReader | None:
    return target.continuous_reader if isinstance(target, FxUsbPipe) else None


def WdfUsbTargetPipeConfigContinuousReader(Pipe: Any, Config: WDF_USB_CONTINUOUS_READER_CONFIG) -> NTSTATUS:
    """WdfUsbTargetPipeConfigContinuousReader: give an IN pipe its readers (they run from the
    next ``WdfIoTargetStart``); the checks and statuses are KMDF's."""
    pipe = get_object(Pipe, FxUsbPipe)
    required(Config, "Config")
    if Config.Size != WDF_USB_CONTINUOUS_READER_CONFIG.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH
    if Config.EvtUsbTargetPipeReadComplete is None:
        return STATUS_INVALID_DEVICE_REQUEST
    lengths = (Config.TransferLength, Config.HeaderLength, Config.TrailerLength)
    if not all(isinstance(n, int) and n >= 0 for n in lengths) or not Config.TransferLength:
        return STATUS_INVALID_PARAMETER
    if sum(lengths) >= 1 << 64:
        return STATUS_INTEGER_OVERFLOW
    if pipe.pipe_type not in (WdfUsbPipeTypeBulk, WdfUsbPipeTypeInterrupt) or not pipe.is_in:
        return STATUS_INVALID_DEVICE_REQUEST
    if pipe.check_packet_size and Config.TransferLength % pipe.core.max_packet:
        return STATUS_INVALID_BUFFER_SIZE
    if _reader_of(pipe) is not None:
        return STATUS_INVALID_DEVICE_STATE
    n = int(Config.NumPendingReads) or NUM_PENDING_READS_DEFAULT
    try:
        pipe.continuous_reader = ContinuousReader(pipe, Config, min(n, NUM_PENDING_READS_MAX))
    except MemoryError:
        return STATUS_INSUFFICIENT_RESOURCES
    return STATUS_SUCCESS


def _target(IoTarget: Any) -> FxIoTarget:
    target = get_object(IoTarget, FxIoTarget)
    if not at_passive_level():
        raise WdfBugCheck(f"{target!r}: started or stopped above PASSIVE_LEVEL", 0, target)
    return target


def WdfIoTargetStart(IoTarget: Any) -> NTSTATUS:
    """WdfIoTargetStart: the target takes I/O again: the requests pended while it was stopped
    are sent in order, waiting synchronous senders go, a pipe's continuous readers are sent."""
    target = _target(IoTarget)
    if target.target_closed:
        target_state.purge(target.target_state)
        return STATUS_INVALID_DEVICE_STATE
    target_state.start(target.target_state)
    reader = _reader_of(target)
    if reader is not None:
        reader.start()
    return STATUS_SUCCESS


def WdfIoTargetStop(IoTarget: Any, Action: int) -> None:
    """WdfIoTargetStop: stop the target (``Action``: one of the three
    WDF_IO_TARGET_SENT_IO_ACTIONs, for the requests sent and not back: cancel them and wait,
    wait, or leave them; see :mod:`wdfusb.wdf._target_state`); requests sent from now on wait
    for WdfIoTargetStart. A pipe's continuous readers are cancelled and waited for
    with every action, as KMDF converts the action to ``WdfIoTargetCancelSentIo`` for them (its
    readers on an idle pipe would never complete); none is delivered after the return. Stopping
    from EvtUsbTargetPipeReadersFailed is a bug check (KMDF's verifier breaks, then deadlocks)."""
    target = _target(IoTarget)
    if Action not in (WdfIoTargetCancelSentIo, WdfIoTargetWaitForSentIoToComplete, WdfIoTargetLeaveSentIoPending):
        raise WdfBugCheck(f"WdfIoTargetStop: {Action!r} is not a WDF_IO_TARGET_SENT_IO_ACTION", 0, target)
    reader = _reader_of(target)
    if reader is not None:
        reader.check_stop()
    target_state.stop(target.target_state, Action)
    if reader is not None:
        reader.stop()


def WdfIoTargetGetState(IoTarget: Any) -> int:
    """WdfIoTargetGetState: started, stopped, or closed (its device is gone)."""
    target = get_object(IoTarget, FxIoTarget)
    return WdfIoTargetClosed if target.target_closed else target.io_state
