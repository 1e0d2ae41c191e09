"""WDFREQUEST: creation, reuse, cancellation, status and completion parameters; the IRP model.

Stack depth (``STATUS_REQUEST_NOT_ACCEPTED``) is modelled as WDF does it
(``FxRequestBase::ValidateTarget``): every I/O target has a stack size
(``CoreDevice.stack_size``: 1 for the virtual device, 2 for a libusb device). A request
carries an :class:`IRP` with ``StackSize`` locations. Before a request is formatted for a
target, its IRP must have at least the target's stack size. If it does not, and the IRP is
the framework's own (``WdfRequestCreate``, or ``WdfRequestCreateFromIrp`` with
``RequestFreesIrp=True``), the framework silently allocates a deeper one; if the driver owns
the IRP (``WdfRequestCreateFromIrp(..., RequestFreesIrp=False)``, or ``WdfRequestReuse``
with ``WDF_REQUEST_REUSE_SET_NEW_IRP``), it cannot, and the send returns
``STATUS_REQUEST_NOT_ACCEPTED``: the IRP "does not provide enough IO_STACK_LOCATION
structures", exactly the seed's wording.

Each request owns one native transfer (``_engine.Transfer``) for the device of the target
it was last formatted for, so another thread can cancel it with
``WdfRequestCancelSentRequest``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._engine import EngineError
from .._status import outcome
from ._handles import (
    LOCK,
    WDF_REQUEST_FATAL_ERROR,
    WDF_REQUEST_FATAL_ERROR_REQUEST_ALREADY_SENT,
    WDFOBJECT,
    FxObject,
    WdfBugCheck,
    get_object,
    integer,
    require_integer,
    required,
    store,
    validate_attributes,
)
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_REQUEST_NOT_ACCEPTED,
    STATUS_SUCCESS,
    USBD_STATUS,
)
from ._structs import (
    WDF_REQUEST_COMPLETION_PARAMS,
    WDF_REQUEST_REUSE_PARAMS,
    WDF_REQUEST_REUSE_SET_NEW_IRP,
    WDF_REQUEST_REUSE_VALID_FLAGS,
    WDF_USB_REQUEST_COMPLETION_PARAMS,
    WdfIoTargetStarted,
    WdfIoTargetStopped,
    WdfRequestTypeNoFormat,
    WdfRequestTypeUsb,
    WdfUsbRequestTypeDeviceControlTransfer,
)
from ._target_state import TargetState, purge, unpend

if TYPE_CHECKING:
    from .._engine import Transfer
    from ._memory import FxMemory, RequestBuffer

# FxRequestBase m_IrpAllocation
REQUEST_ALLOCATED_INTERNAL = 0
REQUEST_ALLOCATED_DRIVER = 1


class IRP:
    """A minimal I/O request packet: what matters here is ``StackSize``."""

    def __init__(self, StackSize: int) -> None:
        StackSize = require_integer(StackSize, "StackSize")
        if StackSize < 0 or StackSize > 127:
            raise ValueError("StackSize must be 0..127 (a CCHAR)")
        self.StackSize = StackSize
        self.freed = False

    def __repr__(self) -> str:
        return f"<IRP StackSize={self.StackSize}>"


def IoAllocateIrp(StackSize: int, ChargeQuota: bool = False) -> IRP | None:
    """IoAllocateIrp: an IRP with ``StackSize`` stack locations (None on failure)."""
    try:
        return IRP(StackSize)
    except (TypeError, ValueError, MemoryError):
        return None


def IoFreeIrp(Irp: IRP) -> None:
    """IoFreeIrp."""
    Irp.freed = True


class FxIoTarget(FxObject):
    """A WDFIOTARGET: something requests are sent to (a USB device or one of its pipes); what it
    does with them by its state is :mod:`wdfusb.wdf._target_state`'s."""

    HANDLE_TYPE = "WDFIOTARGET"

    def __init__(self, parent: FxObject | None, attributes: Any) -> None:
        super().__init__(parent, attributes)
        self.target_state = TargetState()

    @property
    def io_state(self) -> int:
        return WdfIoTargetStarted if self.target_state.started else WdfIoTargetStopped

    def _before_delete(self) -> None:
        purge(self.target_state)  # its pended requests fail: the target is going

    @property
    def stack_size(self) -> int:
        raise NotImplementedError

    @property
    def target_closed(self) -> bool:
        raise NotImplementedError

    def new_transfer(self) -> Transfer:
        raise NotImplementedError

    def device_key(self) -> object:
        """Identifies the native device a transfer must belong to."""
        raise NotImplementedError


class WDFIOTARGET(WDFOBJECT):
    """Handle box for a WDFIOTARGET."""

    _OBJECT = FxIoTarget


class FxRequest(FxObject):
    """A WDFREQUEST."""

    HANDLE_TYPE = "WDFREQUEST"
    FROM_IO = False  # True for a request received from a queue (wdfusb.wdf._queue): its IRP is the I/O manager's

    def __init__(self, parent: FxObject | None, attributes: Any, irp: IRP | None, irp_owned: bool) -> None:
        super().__init__(parent, attributes)
        self.irp = irp
        self.irp_allocation = REQUEST_ALLOCATED_INTERNAL if irp_owned else REQUEST_ALLOCATED_DRIVER
        self.target: FxIoTarget | None = None
        self.transfer: Transfer | None = None
        self._transfer_key: object = None
        self.lock = threading.Lock()
        self.pending = False
        self.canceled = False
        self.status: NTSTATUS = STATUS_SUCCESS
        self.information = 0
        self.usb = WDF_USB_REQUEST_COMPLETION_PARAMS()
        self.formatted_usb = False
        self.memory: FxMemory | None = None  # referenced until deleted, reused or reformatted
        self.buffer: RequestBuffer | None = None
        self.pipe_format: tuple[Any, RequestBuffer, bool] | None = None  # (target, buffer, read) to send
        self.setup: bytes | None = None  # a control transfer's setup packet (wLength: the buffer's)
        self.completion: tuple[Any, Any] | None = None  # (routine, context)

    # -- formatting ------------------------------------------------------------------
    def validate_target(self, target: FxIoTarget) -> NTSTATUS:
        """FxRequestBase::ValidateTarget: release the previous format; make the IRP deep enough."""
        self.release_format()
        if target.target_closed:
            return STATUS_INVALID_DEVICE_STATE
        need = target.stack_size
        if self.irp is not None and self.irp.StackSize >= need:
            pass
        elif self.irp is None or self.irp_allocation == REQUEST_ALLOCATED_INTERNAL:
            irp = IoAllocateIrp(need)
            if irp is None:
                return STATUS_INSUFFICIENT_RESOURCES
            self.irp = irp
        else:
            return STATUS_REQUEST_NOT_ACCEPTED
        key = target.device_key()
        if self.transfer is None or self._transfer_key is not key:
            try:
                xfer = target.new_transfer()
            except EngineError as exc:  # out of memory, or the target's device is gone
                return outcome(exc.code).status
            except MemoryError:
                return STATUS_INSUFFICIENT_RESOURCES
            self._free_transfer()
            self.transfer, self._transfer_key = xfer, key
        self.target = target
        return STATUS_SUCCESS

    def release_format(self) -> None:
        """ContextReleaseAndRestore: drop the reference on the memory of the previous format."""
        with LOCK:
            mem, self.memory = self.memory, None
            self.buffer = None
            self.pipe_format = None
            self.setup = None
        if mem is not None:
            mem.release()

    def set_memory(self, rb: RequestBuffer) -> None:
        """StoreAndReferenceMemory: keep the buffer (and reference its WDFMEMORY) for this format."""
        if rb.memory is not None:
            rb.memory.reference()
        with LOCK:
            self.memory, self.buffer = rb.memory, rb

    # -- sending state -----------------------------------------------------------------
    def begin(self) -> bool:
        """Mark the request sent; False if it already is (the caller reports it)."""
        with self.lock:
            if self.pending:
                return False
            self.pending = True
            return True

    def abandon(self) -> None:
        """Undo :meth:`begin` after a format failure (the request's status is unchanged)."""
        with self.lock:
            self.pending = False

    def end(self, status: NTSTATUS, information: int, usbd: USBD_STATUS) -> None:
        with self.lock:
            self.status, self.information = status, information
            self.usb.UsbdStatus = usbd
            if self.usb.Type == WdfUsbRequestTypeDeviceControlTransfer:
                self.usb.Parameters.DeviceControlTransfer.Length = information
            else:
                self.usb.Parameters.PipeWrite.Length = information
            self.pending = False

    def cancel(self) -> bool:
        """WdfRequestCancelSentRequest (FxRequestBase::Cancel), from any thread.

        Always marks the request cancelled (a later send without WdfRequestReuse fails with
        STATUS_CANCELLED, as in WDF); returns True only if the request was sent and not yet
        complete, i.e. a cancel was attempted.
        """
        with self.lock:
            self.canceled = True
            if not self.pending:
                return False
            xfer, target = self.transfer, self.target
        resume = unpend(target.target_state, self) if target is not None else None
        if resume is not None:  # pended at a stopped target: it completes now, cancelled
            resume(STATUS_CANCELLED)
            return True
        # In flight: C cancels it. Not submitted yet (the sender is between its check of
        # ``canceled`` and the submit): the cancel sticks in C and that submit fails.
        if xfer is not None:
            xfer.cancel()
        return True

    def _before_delete(self) -> None:
        if self.pending:
            raise WdfBugCheck(
                f"{self!r} deleted while pending at an I/O target",
                WDF_REQUEST_FATAL_ERROR,
                WDF_REQUEST_FATAL_ERROR_REQUEST_ALREADY_SENT,
                self,
            )

    def _free_transfer(self) -> None:
        xfer, self.transfer = self.transfer, None
        if xfer is not None:
            xfer.free()

    def _dispose(self) -> None:
        self.release_format()
        self._free_transfer()
        self.target = None


class WDFREQUEST(WDFOBJECT):
    """Handle box for a WDFREQUEST."""

    _OBJECT = FxRequest


def WdfRequestCreate(RequestAttributes: Any, Target: Any, Request: WDFREQUEST) -> NTSTATUS:
    """WdfRequestCreate: a request, optionally prepared for ``Target`` (a WDFIOTARGET, WDFUSBDEVICE or WDFUSBPIPE).

    The request's IRP is the framework's: it is re-allocated deeper whenever the request is
    formatted for a target with a deeper stack (see the module docstring).
    """
    target = get_object(Target, FxIoTarget) if Target is not None else None
    required(Request, "Request")
    Request.value = None
    status, parent = validate_attributes(RequestAttributes)
    if not NT_SUCCESS(status):
        return status
    try:
        req = FxRequest(parent, RequestAttributes, None, irp_owned=True)
    except MemoryError:
        return STATUS_INSUFFICIENT_RESOURCES
    if target is not None:
        status = req.validate_target(target)
        if not NT_SUCCESS(status):
            req.delete()
            return status
    store(Request, "Request", req, WDFREQUEST)
    return STATUS_SUCCESS


def WdfRequestCreateFromIrp(RequestAttributes: Any, Irp: IRP, RequestFreesIrp: bool, Request: WDFREQUEST) -> NTSTATUS:
    """WdfRequestCreateFromIrp: a request around the driver's IRP.

    With ``RequestFreesIrp=False`` the driver keeps owning the IRP, so the framework cannot
    replace it: sending the request to a target whose stack is deeper than
    ``Irp.StackSize`` returns ``STATUS_REQUEST_NOT_ACCEPTED``.
    """
    required(Irp, "Irp")
    required(Request, "Request")
    if not isinstance(Irp, IRP):
        raise TypeError("Irp must come from IoAllocateIrp")
    Request.value = None
    status, parent = validate_attributes(RequestAttributes)
    if not NT_SUCCESS(status):
        return status
    req = FxRequest(parent, RequestAttributes, Irp, irp_owned=bool(RequestFreesIrp))
    store(Request, "Request", req, WDFREQUEST)
    return STATUS_SUCCESS


def WdfRequestReuse(Request: Any, ReuseParams: WDF_REQUEST_REUSE_PARAMS) -> NTSTATUS:
    """WdfRequestReuse: clear the request's previous format, status and target for another send.

    Releases the reference on the previous format's WDFMEMORY. A request still pending at a
    target cannot be reused: ``STATUS_INVALID_DEVICE_REQUEST`` (WDF only breaks into the
    debugger under the verifier); neither can a request received from a queue (only requests
    the driver created are reusable).
    """
    req = get_object(Request, FxRequest)
    if req.FROM_IO:
        return STATUS_INVALID_DEVICE_REQUEST
    required(ReuseParams, "ReuseParams")
    if integer(ReuseParams.Size) != WDF_REQUEST_REUSE_PARAMS.SIZEOF:
        return STATUS_INVALID_PARAMETER
    flags = integer(ReuseParams.Flags)
    if flags is None or flags & ~WDF_REQUEST_REUSE_VALID_FLAGS:
        return STATUS_INVALID_PARAMETER
    new_irp = ReuseParams.NewIrp if ReuseParams.Flags & WDF_REQUEST_REUSE_SET_NEW_IRP else None
    if new_irp is not None and not isinstance(new_irp, IRP):
        return STATUS_INVALID_PARAMETER
    with req.lock:
        if req.pending:
            return STATUS_INVALID_DEVICE_REQUEST
    req.release_format()
    if ReuseParams.Flags & WDF_REQUEST_REUSE_SET_NEW_IRP:
        req.irp = new_irp
        req.irp_allocation = REQUEST_ALLOCATED_DRIVER
    with req.lock:
        req.status = NTSTATUS(ReuseParams.Status)
        req.information = 0
        req.usb = WDF_USB_REQUEST_COMPLETION_PARAMS()
        req.formatted_usb = False
        req.canceled = False
        req.target = None
        xfer = req.transfer
    if xfer is not None:
        xfer.rearm()  # a cancel that reached the transfer after it was back is forgotten too
    return STATUS_SUCCESS


def WdfRequestCancelSentRequest(Request: Any) -> bool:
    """WdfRequestCancelSentRequest: cancel a request that was sent (any thread). True if cancellation was requested."""
    return get_object(Request, FxRequest).cancel()


def WdfRequestGetStatus(Request: Any) -> NTSTATUS:
    """WdfRequestGetStatus: the request's completion status (or the status set by WdfRequestReuse)."""
    return get_object(Request, FxRequest).status


def WdfRequestGetInformation(Request: Any) -> int:
    """WdfRequestGetInformation: IoStatus.Information (bytes transferred)."""
    return get_object(Request, FxRequest).information


def WdfRequestGetIoTarget(Request: Any) -> FxIoTarget | None:
    """WdfRequestGetIoTarget: the target the request was last formatted for (None if none)."""
    return get_object(Request, FxRequest).target


def WdfRequestGetCompletionParams(Request: Any, Params: WDF_REQUEST_COMPLETION_PARAMS) -> None:
    """WdfRequestGetCompletionParams: Type, IoStatus and, for USB requests, Parameters.Usb.Completion."""
    req = get_object(Request, FxRequest)
    required(Params, "Params")
    with req.lock:
        Params.Size = WDF_REQUEST_COMPLETION_PARAMS.SIZEOF
        Params.IoStatus.Status = req.status
        Params.IoStatus.Information = req.information
        if req.formatted_usb:
            Params.Type = WdfRequestTypeUsb
            Params.Parameters.Usb.Completion = req.usb
        else:
            Params.Type = WdfRequestTypeNoFormat
            Params.Parameters.Usb.Completion = None
