"""Control transfers: the setup packet (``WDF_USB_CONTROL_SETUP_PACKET`` and its INIT functions)
and ``WdfUsbTargetDeviceSendControlTransferSynchronously``.

The setup packet is a union as in C: ``Packet`` (``bm.Request.Recipient/Type/Dir``,
``bm.Byte``, ``bRequest``, ``wValue``/``wIndex`` with ``.Value`` and ``.Bytes.LowByte/HiByte``,
``wLength``) and ``Generic.Bytes`` are two views of the same 8 bytes. As WDF does
(``FxUsbDeviceControlContext::StoreAndReferenceMemory``), the framework sends ``wLength`` as the
length of the memory descriptor, whatever the packet says, and leaves the caller's packet as it is.
"""

from __future__ import annotations

from typing import Any

from .._core import CONTROL_MAX, SETUP_PACKET, SETUP_SIZE
from .._engine import EngineError, in_completion_context, pin
from .._status import outcome
from ._handles import ULONG, get_object, require_integer, required
from ._memory import (
    WDF_MEMORY_DESCRIPTOR,
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE,
    RequestBuffer,
    resolve_descriptor,
    resolve_descriptor_for_control,
)
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
    USBD_STATUS,
    USBD_STATUS_SUCCESS,
)
from ._request import FxRequest
from ._structs import WdfUsbRequestTypeDeviceControlTransfer
from ._target_state import admit, end_unsent, leave
from ._transfer import WU_ERR_TIMEOUT, send_options
from ._usbdevice import FxUsbDevice

# WDF_USB_BMREQUEST_DIRECTION, _TYPE, _RECIPIENT
BmRequestHostToDevice, BmRequestDeviceToHost = 0, 1
BmRequestStandard, BmRequestClass, BmRequestVendor = 0, 1, 2
BmRequestToDevice, BmRequestToInterface, BmRequestToEndpoint, BmRequestToOther = 0, 1, 2, 3
USB_REQUEST_GET_STATUS, USB_REQUEST_CLEAR_FEATURE, USB_REQUEST_SET_FEATURE = 0x00, 0x01, 0x03
USB_REQUEST_GET_DESCRIPTOR, USB_REQUEST_GET_CONFIGURATION, USB_REQUEST_SET_CONFIGURATION = 0x06, 0x08, 0x09
USB_REQUEST_GET_INTERFACE, USB_REQUEST_SET_INTERFACE = 0x0A, 0x0B
USB_FEATURE_ENDPOINT_STALL, USB_FEATURE_REMOTE_WAKEUP = 0x00, 0x01


def _checked(value: Any, bits: int, what: str) -> int:
    n = require_integer(value, what)
    if not 0 <= n < 1 << bits:
        raise ValueError(f"{what} is a {bits}-bit field: {n!r} does not fit")
    return n


class _Field:
    """``width`` bits at ``shift`` of the little-endian integer at byte ``offset`` (``size`` bytes)."""

    def __init__(self, offset: int, size: int = 1, shift: int = 0, width: int | None = None) -> None:
        self.offset, self.size, self.shift = offset, size, shift
        self.width = 8 * size if width is None else width
        self.mask = ((1 << self.width) - 1) << shift

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        word = int.from_bytes(obj._b[self.offset : self.offset + self.size], "little")
        return (word & self.mask) >> self.shift

    def __set__(self, obj: Any, value: Any) -> None:
        n = _checked(value, self.width, self.name)
        span = slice(self.offset, self.offset + self.size)
        word = (int.from_bytes(obj._b[span], "little") & ~self.mask) | n << self.shift
        obj._b[span] = word.to_bytes(self.size, "little")


class _View:
    def __init__(self, b: bytearray) -> None:
        self._b = b


class _BmRequest(_View):
    """``Packet.bm.Request``: Recipient:2, Reserved:3, Type:2, Dir:1 (from bit 0, as MSVC lays them out)."""

    Recipient = _Field(0, shift=0, width=2)
    Reserved = _Field(0, shift=2, width=3)
    Type = _Field(0, shift=5, width=2)
    Dir = _Field(0, shift=7, width=1)


class _Bm(_View):
    Byte = _Field(0)

    def __init__(self, b: bytearray) -> None:
        super().__init__(b)
        self.Request = _BmRequest(b)


def _word_class(offset: int) -> type:
    class Bytes(_View):
        LowByte = _Field(offset)
        HiByte = _Field(offset + 1)

    class Word(_View):
        Value = _Field(offset, 2)

        def __init__(self, b: bytearray) -> None:
            super().__init__(b)
            self.Bytes = Bytes(b)

    return Word


_WValue, _WIndex = _word_class(2), _word_class(4)


class _Packet(_View):
    bRequest = _Field(1)
    wLength = _Field(6, 2)

    def __init__(self, b: bytearray) -> None:
        super().__init__(b)
        self.bm = _Bm(b)
        self.wValue = _WValue(b)
        self.wIndex = _WIndex(b)


class _Generic(_View):
    @property
    def Bytes(self) -> bytearray:
        """The 8 bytes themselves (``Generic.Bytes[0] = 0xC0`` writes through)."""
        return self._b

    @Bytes.setter
    def Bytes(self, value: Any) -> None:
        data = bytes(value)
        if len(data) != SETUP_SIZE:
            raise ValueError(f"Generic.Bytes is 8 bytes, not {len(data)}")
        self._b[:] = data


class WDF_USB_CONTROL_SETUP_PACKET:
    """WDF_USB_CONTROL_SETUP_PACKET (8 bytes): ``Packet`` and ``Generic`` views of one union."""

    SIZEOF = SETUP_SIZE

    def __init__(self) -> None:
        self._b = bytearray(SETUP_SIZE)
        self.Packet = _Packet(self._b)
        self.Generic = _Generic(self._b)

    def __bytes__(self) -> bytes:
        return bytes(self._b)

    def __repr__(self) -> str:
        p = self.Packet
        return (
            f"WDF_USB_CONTROL_SETUP_PACKET(bmRequestType={p.bm.Byte:#04x}, bRequest={p.bRequest:#04x}, "
            f"wValue={p.wValue.Value:#06x}, wIndex={p.wIndex.Value:#06x}, wLength={p.wLength})"
        )


def _init(packet: WDF_USB_CONTROL_SETUP_PACKET, direction: Any, kind: int, recipient: Any) -> _Packet:
    required(packet, "Packet")
    if not isinstance(packet, WDF_USB_CONTROL_SETUP_PACKET):
        raise TypeError(f"Packet must be a WDF_USB_CONTROL_SETUP_PACKET, not {type(packet).__name__}")
    packet._b[:] = bytes(SETUP_SIZE)  # RtlZeroMemory; wLength is set by the send
    p = packet.Packet
    p.bm.Request.Dir = direction
    p.bm.Request.Type = kind
    p.bm.Request.Recipient = recipient
    return p


def _init_request(
    packet: WDF_USB_CONTROL_SETUP_PACKET,
    direction: Any,
    recipient: Any,
    request: Any,
    value: Any,
    index: Any,
    kind: int,
) -> None:
    p = _init(packet, direction, kind, recipient)
    p.bRequest, p.wValue.Value, p.wIndex.Value = request, value, index


def WDF_USB_CONTROL_SETUP_PACKET_INIT(
    Packet: WDF_USB_CONTROL_SETUP_PACKET, Direction: int, Recipient: int, Request: int, Value: int, Index: int
) -> None:
    """WDF_USB_CONTROL_SETUP_PACKET_INIT: a standard request."""
    _init_request(Packet, Direction, Recipient, Request, Value, Index, BmRequestStandard)


def WDF_USB_CONTROL_SETUP_PACKET_INIT_CLASS(
    Packet: WDF_USB_CONTROL_SETUP_PACKET, Direction: int, Recipient: int, Request: int, Value: int, Index: int
) -> None:
    """WDF_USB_CONTROL_SETUP_PACKET_INIT_CLASS: a class request (HID, CDC ...)."""
    _init_request(Packet, Direction, Recipient, Request, Value, Index, BmRequestClass)


def WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(
    Packet: WDF_USB_CONTROL_SETUP_PACKET, Direction: int, Recipient: int, Request: int, Value: int, Index: int
) -> None:
    """WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR: a vendor request."""
    _init_request(Packet, Direction, Recipient, Request, Value, Index, BmRequestVendor)


def WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE(
    Packet: WDF_USB_CONTROL_SETUP_PACKET, BmRequestRecipient: int, FeatureSelector: int, Index: int, SetFeature: bool
) -> None:
    """WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE: SET_FEATURE (``SetFeature``) or CLEAR_FEATURE."""
    request = USB_REQUEST_SET_FEATURE if SetFeature else USB_REQUEST_CLEAR_FEATURE
    _init_request(Packet, BmRequestHostToDevice, BmRequestRecipient, request, FeatureSelector, Index, BmRequestStandard)


def WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS(
    Packet: WDF_USB_CONTROL_SETUP_PACKET, BmRequestRecipient: int, Index: int
) -> None:
    """WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS: GET_STATUS (two bytes come back)."""
    p = _init(Packet, BmRequestDeviceToHost, BmRequestStandard, BmRequestRecipient)
    p.bRequest, p.wIndex.Value = USB_REQUEST_GET_STATUS, Index


def WdfUsbTargetDeviceSendControlTransferSynchronously(
    UsbDevice: Any,
    Request: Any = None,
    RequestOptions: Any = None,
    SetupPacket: WDF_USB_CONTROL_SETUP_PACKET | None = None,
    MemoryDescriptor: Any = None,
    BytesTransferred: ULONG | None = None,
) -> NTSTATUS:
    """WdfUsbTargetDeviceSendControlTransferSynchronously: send a control request on the
    default pipe and wait. The data stage is ``MemoryDescriptor`` (None: no data stage); the
    packet's ``bm.Request.Dir`` says which way it goes; ``wLength`` sent is the descriptor's
    length. ``BytesTransferred`` gets the data stage's byte count (also on failure: what moved).
    A data stage over 4096 bytes is STATUS_INVALID_PARAMETER (WDF: over 0xFFFF).
    """
    device = get_object(UsbDevice, FxUsbDevice)
    req = get_object(Request, FxRequest) if Request is not None else None
    required(SetupPacket, "SetupPacket")
    if not isinstance(SetupPacket, WDF_USB_CONTROL_SETUP_PACKET):
        return STATUS_INVALID_PARAMETER
    if in_completion_context():  # not at_passive_level() (its C call, without a frame around it)
        return STATUS_INVALID_DEVICE_REQUEST
    status, timeout_us = send_options(RequestOptions)
    if status:
        return status
    status, rb = resolve_descriptor_for_control(MemoryDescriptor)
    if status:
        return status
    request_type, request, value, index, _ = SETUP_PACKET.unpack(SetupPacket._b)  # wLength: the memory's
    read = bool(request_type & 0x80)  # bm.Request.Dir
    if rb.length > CONTROL_MAX or (read and rb.readonly and rb.length):
        return STATUS_INVALID_PARAMETER if rb.length > CONTROL_MAX else STATUS_INVALID_DEVICE_REQUEST
    data = None if read or not rb.length else rb.gather()
    status, actual, buf = control_transfer(
        device, req, RequestOptions, timeout_us, request_type, request, value, index, data, rb.length
    )
    if read and actual:
        rb.scatter(memoryview(buf)[SETUP_SIZE : SETUP_SIZE + actual])
    if BytesTransferred is not None:
        BytesTransferred.value = actual
    return status


def WdfUsbTargetDeviceFormatRequestForControlTransfer(
    UsbDevice: Any,
    Request: Any,
    SetupPacket: WDF_USB_CONTROL_SETUP_PACKET,
    TransferMemory: Any = None,
    TransferOffset: Any = None,
) -> NTSTATUS:
    """WdfUsbTargetDeviceFormatRequestForControlTransfer: format ``Request`` for a control
    transfer on the default pipe, its data stage ``TransferMemory`` (a WDFMEMORY, optionally
    narrowed by a ``WDFMEMORY_OFFSET``; None: no data stage). Send it with ``WdfRequestSend``
    to ``WdfUsbTargetDeviceGetIoTarget(UsbDevice)``; the completion parameters'
    ``Parameters.DeviceControlTransfer`` hold the memory, the packet and the data stage's length."""
    device = get_object(UsbDevice, FxUsbDevice)
    required(SetupPacket, "SetupPacket")
    if not isinstance(SetupPacket, WDF_USB_CONTROL_SETUP_PACKET):
        return STATUS_INVALID_PARAMETER
    rb = RequestBuffer()
    if TransferMemory is not None:
        desc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, TransferMemory, TransferOffset)
        status, rb = resolve_descriptor(desc)
        if status:
            return status
    req = get_object(Request, FxRequest)
    request_type, request, value, index, _ = SETUP_PACKET.unpack(SetupPacket._b)
    read = bool(request_type & 0x80)
    if rb.length > CONTROL_MAX:
        return STATUS_INVALID_PARAMETER
    if read and rb.readonly and rb.length:
        return STATUS_INVALID_DEVICE_REQUEST
    with req.lock:
        if req.pending:
            return STATUS_INVALID_DEVICE_REQUEST  # cannot reformat a request that is still sent
    status = req.validate_target(device)
    if not NT_SUCCESS(status):
        return status
    req.set_memory(rb)
    usb = req.usb
    usb.Type = WdfUsbRequestTypeDeviceControlTransfer
    usb.UsbdStatus = USBD_STATUS(0)
    params = usb.Parameters.DeviceControlTransfer
    params.Buffer, params.Length = rb.memory, 0
    params.SetupPacket = WDF_USB_CONTROL_SETUP_PACKET()
    params.SetupPacket.Generic.Bytes = bytes(SetupPacket._b)  # the caller's packet, as it was
    req.formatted_usb = True
    req.pipe_format = (device, rb, read)
    req.setup = SETUP_PACKET.pack(request_type, request, value, index, rb.length)
    return STATUS_SUCCESS


def control_buffer(setup: bytes, rb: RequestBuffer) -> tuple[Any, bytearray]:
    """A formatted control request's own buffer (setup packet, then the data stage), pinned:
    it is in flight after WdfRequestSend returns, so it cannot be a thread's scratch."""
    buf = bytearray(setup) + bytearray(rb.length)
    if rb.length and not setup[0] & 0x80:
        buf[SETUP_SIZE:] = rb.gather()
    return pin(buf, True), buf


def control_transfer(
    device: FxUsbDevice,
    req: FxRequest | None,
    options: Any,
    timeout_us: int,
    request_type: int,
    request: int,
    value: int,
    index: int,
    data: Any,
    length: int,
) -> tuple[NTSTATUS, int, bytearray]:
    """One control transfer on ``device``'s default pipe, through ``req`` (a caller's request:
    sent, cancellable, completed with the result) or the thread's internal one. Returns the
    NTSTATUS, the data stage's byte count and the buffer holding it (from offset 8)."""
    pipe = device.core.control_pipe
    if req is not None:
        status = _begin(req, device)
        if not NT_SUCCESS(status):
            return status, 0, bytearray()
        xfer = req.transfer  # (made by validate_target)
        assert xfer is not None
    else:
        try:
            xfer = pipe.internal_transfer()
        except EngineError as exc:  # the device is closed
            return outcome(exc.code).status, 0, bytearray()
    state = device.target_state
    status, timeout_us = admit(device, options, xfer, timeout_us)  # a stopped target: wait
    if status:
        return (status if req is None else end_unsent(req, status)), 0, bytearray()
    try:
        code, actual, buf = pipe.control(request_type, request, value, index, data, length, timeout_us, xfer)
    except MemoryError:
        if req is not None:
            req.abandon()
        return STATUS_INSUFFICIENT_RESOURCES, 0, bytearray()
    finally:
        leave(state, xfer)
    return _end(req, code, actual), actual, buf


def _begin(req: Any, device: Any) -> NTSTATUS:
    """A caller's request: mark it sent to ``device``'s default pipe (its transfer on that device)."""
    if not req.begin():
        return STATUS_INVALID_DEVICE_REQUEST  # already pending at a target
    status = req.validate_target(device)
    if not NT_SUCCESS(status):
        req.abandon()
        return status
    with req.lock:
        canceled = req.canceled
    if canceled:
        req.end(STATUS_CANCELLED, 0, USBD_STATUS_SUCCESS)
        return STATUS_CANCELLED
    return NTSTATUS(0)


def _end(req: Any, code: int, actual: int) -> NTSTATUS:
    if req is None and code == 0:
        return STATUS_SUCCESS  # the common case, as the pipe path answers it
    result = outcome(code)
    if req is not None:
        if code == WU_ERR_TIMEOUT:
            with req.lock:
                req.canceled = True  # WDF cancels a request on its time-out
        req.end(result.status, actual, result.usbd_status)
    return result.status


__all__ = [
    "BmRequestClass",
    "BmRequestDeviceToHost",
    "BmRequestHostToDevice",
    "BmRequestStandard",
    "BmRequestToDevice",
    "BmRequestToEndpoint",
    "BmRequestToInterface",
    "BmRequestToOther",
    "BmRequestVendor",
    "USB_FEATURE_ENDPOINT_STALL",
    "USB_FEATURE_REMOTE_WAKEUP",
    "USB_REQUEST_CLEAR_FEATURE",
    "USB_REQUEST_GET_CONFIGURATION",
    "USB_REQUEST_GET_DESCRIPTOR",
    "USB_REQUEST_GET_INTERFACE",
    "USB_REQUEST_GET_STATUS",
    "USB_REQUEST_SET_CONFIGURATION",
    "USB_REQUEST_SET_FEATURE",
    "USB_REQUEST_SET_INTERFACE",
    "WDF_USB_CONTROL_SETUP_PACKET",
    "WDF_USB_CONTROL_SETUP_PACKET_INIT",
    "WDF_USB_CONTROL_SETUP_PACKET_INIT_CLASS",
    "WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE",
    "WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS",
    "WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR",
    "WdfUsbTargetDeviceFormatRequestForControlTransfer",
    "WdfUsbTargetDeviceSendControlTransferSynchronously",
]
