"""Caller-allocated WDF structures, their INIT helpers, enums and the time-out macros.

Every structure has the C field names; its ``_INIT`` function zeroes it and sets
``Size`` to the C ``sizeof`` on x64, as the header's FORCEINLINE helper does.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from ._handles import require_integer
from ._ntstatus import NTSTATUS, STATUS_SUCCESS, USBD_STATUS

# ---- WDF_USB_PIPE_TYPE (wdfusb.h) -------------------------------------------------
WdfUsbPipeTypeInvalid = 0
WdfUsbPipeTypeControl = 1
WdfUsbPipeTypeIsochronous = 2
WdfUsbPipeTypeBulk = 3
WdfUsbPipeTypeInterrupt = 4
USB_TYPE_TO_PIPE_TYPE = {
    0: WdfUsbPipeTypeControl,
    1: WdfUsbPipeTypeIsochronous,
    2: WdfUsbPipeTypeBulk,
    3: WdfUsbPipeTypeInterrupt,
}

# ---- WDF_USB_REQUEST_TYPE ---------------------------------------------------------------
WdfUsbRequestTypeInvalid = 0
WdfUsbRequestTypeNoFormat = 1
WdfUsbRequestTypeDeviceString = 2
WdfUsbRequestTypeDeviceControlTransfer = 3
WdfUsbRequestTypeDeviceUrb = 4
WdfUsbRequestTypePipeWrite = 5
WdfUsbRequestTypePipeRead = 6
WdfUsbRequestTypePipeAbort = 7
WdfUsbRequestTypePipeReset = 8
WdfUsbRequestTypePipeUrb = 9

# ---- WDF_REQUEST_TYPE (wdfrequest.h): the IRP major codes ----------------------------
WdfRequestTypeCreate = 0x0
WdfRequestTypeClose = 0x2
WdfRequestTypeRead = 0x3
WdfRequestTypeWrite = 0x4
WdfRequestTypeDeviceControl = 0xE
WdfRequestTypeDeviceControlInternal = 0xF
WdfRequestTypePnp = 0x1B
WdfRequestTypeOther = 0x1C
WdfRequestTypeUsb = 0x40
WdfRequestTypeNoFormat = 0xFF

# ---- WDF_IO_TARGET_SENT_IO_ACTION and WDF_IO_TARGET_STATE (wdfiotarget.h) ------------------
WdfIoTargetSentIoUndefined = 0
WdfIoTargetCancelSentIo = 1
WdfIoTargetWaitForSentIoToComplete = 2
WdfIoTargetLeaveSentIoPending = 3
WdfIoTargetStateUndefined = 0
WdfIoTargetStarted = 1
WdfIoTargetStopped = 2
WdfIoTargetClosed = 4

# ---- WdfUsbTargetDeviceSelectConfigType -------------------------------------------------
WdfUsbTargetDeviceSelectConfigTypeInvalid = 0
WdfUsbTargetDeviceSelectConfigTypeDeconfig = 1
WdfUsbTargetDeviceSelectConfigTypeSingleInterface = 2
WdfUsbTargetDeviceSelectConfigTypeMultiInterface = 3
WdfUsbTargetDeviceSelectConfigTypeInterfacesPairs = 4
WdfUsbTargetDeviceSelectConfigTypeInterfacesDescriptor = 5
WdfUsbTargetDeviceSelectConfigTypeUrb = 6

# ---- pool types (wdm.h POOL_TYPE) ---------------------------------------------------------
NonPagedPool = 0
PagedPool = 1
NonPagedPoolMustSucceed = 2
NonPagedPoolCacheAligned = 4
PagedPoolCacheAligned = 5
NonPagedPoolNx = 512
VALID_POOL_TYPES = frozenset({0, 1, 2, 4, 5, 6, 512, 516})

# ---- WDF_REQUEST_SEND_OPTIONS_FLAGS --------------------------------------------------------
WDF_REQUEST_SEND_OPTION_TIMEOUT = 0x00000001
WDF_REQUEST_SEND_OPTION_SYNCHRONOUS = 0x00000002
WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE = 0x00000004
WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET = 0x00000008
WDF_REQUEST_SEND_OPTION_IMPERSONATE_CLIENT = 0x00010000
WDF_REQUEST_SEND_OPTION_IMPERSONATION_IGNORE_FAILURE = 0x00020000
# kernel-mode valid mask (FxValidateRequestOptions)
WDF_REQUEST_SEND_OPTIONS_VALID_FLAGS = (
    WDF_REQUEST_SEND_OPTION_TIMEOUT
    | WDF_REQUEST_SEND_OPTION_SYNCHRONOUS
    | WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE
    | WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET
)

# ---- WDF_REQUEST_REUSE_FLAGS -------------------------------------------------------------
WDF_REQUEST_REUSE_NO_FLAGS = 0x00000000
WDF_REQUEST_REUSE_SET_NEW_IRP = 0x00000001
WDF_REQUEST_REUSE_VALID_FLAGS = WDF_REQUEST_REUSE_SET_NEW_IRP

# ---- time-outs (wdfcore.h): 100 ns units; negative = relative, positive = absolute ---------
WDF_TIMEOUT_TO_SEC = 10_000_000
WDF_TIMEOUT_TO_MS = 10_000
WDF_TIMEOUT_TO_US = 10
_EPOCH_1601_TO_1970 = 116_444_736_000_000_000  # 100 ns intervals


def WDF_REL_TIMEOUT_IN_SEC(Time: int) -> int:
    """WDF_REL_TIMEOUT_IN_SEC: a relative time-out (negative, 100 ns units)."""
    return -require_integer(Time, "Time") * WDF_TIMEOUT_TO_SEC


def WDF_REL_TIMEOUT_IN_MS(Time: int) -> int:
    """WDF_REL_TIMEOUT_IN_MS: a relative time-out (negative, 100 ns units)."""
    return -require_integer(Time, "Time") * WDF_TIMEOUT_TO_MS


def WDF_REL_TIMEOUT_IN_US(Time: int) -> int:
    """WDF_REL_TIMEOUT_IN_US: a relative time-out (negative, 100 ns units)."""
    return -require_integer(Time, "Time") * WDF_TIMEOUT_TO_US


def WDF_ABS_TIMEOUT_IN_SEC(Time: int) -> int:
    """WDF_ABS_TIMEOUT_IN_SEC: seconds in 100 ns units; add to ``KeQuerySystemTime()`` for an absolute time."""
    return require_integer(Time, "Time") * WDF_TIMEOUT_TO_SEC


def WDF_ABS_TIMEOUT_IN_MS(Time: int) -> int:
    """WDF_ABS_TIMEOUT_IN_MS: milliseconds in 100 ns units (see WDF_ABS_TIMEOUT_IN_SEC)."""
    return require_integer(Time, "Time") * WDF_TIMEOUT_TO_MS


def WDF_ABS_TIMEOUT_IN_US(Time: int) -> int:
    """WDF_ABS_TIMEOUT_IN_US: microseconds in 100 ns units (see WDF_ABS_TIMEOUT_IN_SEC)."""
    return require_integer(Time, "Time") * WDF_TIMEOUT_TO_US


def KeQuerySystemTime() -> int:
    """KeQuerySystemTime: the system time in 100 ns units since 1601-01-01 (UTC)."""
    return time.time_ns() // 100 + _EPOCH_1601_TO_1970


KeQuerySystemTimePrecise = KeQuerySystemTime


def timeout_to_seconds(timeout: int) -> float | None:
    """The wait a WDF time-out value means: None = no time-out; relative or absolute -> seconds left."""
    if timeout == 0:
        return None
    if timeout < 0:
        return -timeout / WDF_TIMEOUT_TO_SEC
    return max(0.0, (timeout - KeQuerySystemTime()) / WDF_TIMEOUT_TO_SEC)


# ---- structures ---------------------------------------------------------------------


class WDF_REQUEST_SEND_OPTIONS:
    """WDF_REQUEST_SEND_OPTIONS: ULONG Size, ULONG Flags, LONGLONG Timeout (sizeof 16)."""

    SIZEOF = 16

    def __init__(self) -> None:
        self.Size = 0
        self.Flags = 0
        self.Timeout = 0


def WDF_REQUEST_SEND_OPTIONS_INIT(Options: WDF_REQUEST_SEND_OPTIONS, Flags: int) -> None:
    """WDF_REQUEST_SEND_OPTIONS_INIT."""
    Options.Size = WDF_REQUEST_SEND_OPTIONS.SIZEOF
    Options.Flags = require_integer(Flags, "Flags")
    Options.Timeout = 0


def WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(Options: WDF_REQUEST_SEND_OPTIONS, Timeout: int) -> None:
    """WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT: set the TIMEOUT flag and the value (100 ns units)."""
    timeout = require_integer(Timeout, "Timeout")
    Options.Flags |= WDF_REQUEST_SEND_OPTION_TIMEOUT
    Options.Timeout = timeout


class WDF_REQUEST_REUSE_PARAMS:
    """WDF_REQUEST_REUSE_PARAMS: Size, Flags, Status, NewIrp (sizeof 24 on x64)."""

    SIZEOF = 24

    def __init__(self) -> None:
        self.Size = 0
        self.Flags = 0
        self.Status: NTSTATUS = STATUS_SUCCESS
        self.NewIrp: Any = None


def WDF_REQUEST_REUSE_PARAMS_INIT(Params: WDF_REQUEST_REUSE_PARAMS, Flags: int, Status: int) -> None:
    """WDF_REQUEST_REUSE_PARAMS_INIT."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_REQUEST_REUSE_PARAMS.SIZEOF
    Params.Flags = require_integer(Flags, "Flags")
    Params.Status = NTSTATUS(require_integer(Status, "Status"))


def WDF_REQUEST_REUSE_PARAMS_SET_NEW_IRP(Params: WDF_REQUEST_REUSE_PARAMS, NewIrp: Any) -> None:
    """WDF_REQUEST_REUSE_PARAMS_SET_NEW_IRP."""
    Params.Flags |= WDF_REQUEST_REUSE_SET_NEW_IRP
    Params.NewIrp = NewIrp


class _PipeTransferParams:
    """Parameters.PipeWrite / Parameters.PipeRead: Buffer (WDFMEMORY or None), Length, Offset."""

    def __init__(self) -> None:
        self.Buffer: Any = None
        self.Length = 0
        self.Offset = 0


class _ControlTransferParams:
    """Parameters.DeviceControlTransfer: Buffer (WDFMEMORY or None), SetupPacket (the caller's, as
    formatted), Length (the data stage's bytes, set at completion)."""

    def __init__(self) -> None:
        self.Buffer: Any = None
        self.SetupPacket: Any = None
        self.Length = 0


class _UsbParameters:
    def __init__(self) -> None:
        self.PipeWrite = _PipeTransferParams()
        self.PipeRead = self.PipeWrite  # one union: the same fields at the same offsets
        self.DeviceControlTransfer = _ControlTransferParams()


class WDF_USB_REQUEST_COMPLETION_PARAMS:
    """WDF_USB_REQUEST_COMPLETION_PARAMS: UsbdStatus, Type, Parameters.PipeWrite/PipeRead."""

    def __init__(self) -> None:
        self.UsbdStatus = USBD_STATUS(0)
        self.Type = WdfUsbRequestTypeInvalid
        self.Parameters = _UsbParameters()


class IO_STATUS_BLOCK:
    """IO_STATUS_BLOCK: Status, Information."""

    def __init__(self) -> None:
        self.Status: NTSTATUS = STATUS_SUCCESS
        self.Information = 0


class _UsbCompletion:
    def __init__(self) -> None:
        self.Completion: WDF_USB_REQUEST_COMPLETION_PARAMS | None = None


class _CompletionParameters:
    def __init__(self) -> None:
        self.Usb = _UsbCompletion()


class WDF_REQUEST_COMPLETION_PARAMS:
    """WDF_REQUEST_COMPLETION_PARAMS (sizeof 72 on x64): Type, IoStatus, Parameters.Usb.Completion."""

    SIZEOF = 72

    def __init__(self) -> None:
        self.Size = 0
        self.Type = WdfRequestTypeNoFormat
        self.IoStatus = IO_STATUS_BLOCK()
        self.Parameters = _CompletionParameters()


def WDF_REQUEST_COMPLETION_PARAMS_INIT(Params: WDF_REQUEST_COMPLETION_PARAMS) -> None:
    """WDF_REQUEST_COMPLETION_PARAMS_INIT."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_REQUEST_COMPLETION_PARAMS.SIZEOF
    Params.Type = WdfRequestTypeNoFormat


class WDF_USB_PIPE_INFORMATION:
    """WDF_USB_PIPE_INFORMATION (sizeof 20 on x64)."""

    SIZEOF = 20

    def __init__(self) -> None:
        self.Size = 0
        self.MaximumPacketSize = 0
        self.EndpointAddress = 0
        self.Interval = 0
        self.SettingIndex = 0
        self.PipeType = WdfUsbPipeTypeInvalid
        self.MaximumTransferSize = 0


def WDF_USB_PIPE_INFORMATION_INIT(Info: WDF_USB_PIPE_INFORMATION) -> None:
    """WDF_USB_PIPE_INFORMATION_INIT."""
    Info.__init__()  # type: ignore[misc]
    Info.Size = WDF_USB_PIPE_INFORMATION.SIZEOF


class WDF_USB_INTERFACE_SETTING_PAIR:
    """WDF_USB_INTERFACE_SETTING_PAIR: UsbInterface (WDFUSBINTERFACE), SettingIndex."""

    def __init__(self, UsbInterface: Any = None, SettingIndex: int = 0) -> None:
        self.UsbInterface = UsbInterface
        self.SettingIndex = SettingIndex


class _SingleInterface:
    def __init__(self) -> None:
        self.NumberConfiguredPipes = 0
        self.ConfiguredUsbInterface: Any = None


class _MultiInterface:
    def __init__(self) -> None:
        self.NumberInterfaces = 0
        self.Pairs: list[WDF_USB_INTERFACE_SETTING_PAIR] | None = None
        self.NumberOfConfiguredInterfaces = 0


class _SelectConfigTypes:
    def __init__(self) -> None:
        self.SingleInterface = _SingleInterface()
        self.MultiInterface = _MultiInterface()


class WDF_USB_DEVICE_SELECT_CONFIG_PARAMS:
    """WDF_USB_DEVICE_SELECT_CONFIG_PARAMS (sizeof 32 on x64): Size, Type, Types.SingleInterface/MultiInterface."""

    SIZEOF = 32

    def __init__(self) -> None:
        self.Size = 0
        self.Type = WdfUsbTargetDeviceSelectConfigTypeInvalid
        self.Types = _SelectConfigTypes()


def WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(
    Params: WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
) -> None:
    """WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS.SIZEOF
    Params.Type = WdfUsbTargetDeviceSelectConfigTypeSingleInterface


def WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(
    Params: WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
    NumberInterfaces: int = 0,
    SettingPairs: list[WDF_USB_INTERFACE_SETTING_PAIR] | None = None,
) -> None:
    """WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES: pairs, or None = every interface, setting 0."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS.SIZEOF
    if SettingPairs is not None and NumberInterfaces != 0:
        Params.Type = WdfUsbTargetDeviceSelectConfigTypeInterfacesPairs
        Params.Types.MultiInterface.NumberInterfaces = NumberInterfaces
        Params.Types.MultiInterface.Pairs = SettingPairs
    else:
        Params.Type = WdfUsbTargetDeviceSelectConfigTypeMultiInterface


def WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_DECONFIG(
    Params: WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
) -> None:
    """WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_DECONFIG."""
    Params.__init__()  # type: ignore[misc]
    Params.Size = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS.SIZEOF
    Params.Type = WdfUsbTargetDeviceSelectConfigTypeDeconfig


class USB_DEVICE_DESCRIPTOR:
    """USB_DEVICE_DESCRIPTOR (usbspec.h), 18 bytes."""

    SIZEOF = 18
    _FORMAT = "<BBHBBBBHHHBBBB"
    _FIELDS = (
        "bLength",
        "bDescriptorType",
        "bcdUSB",
        "bDeviceClass",
        "bDeviceSubClass",
        "bDeviceProtocol",
        "bMaxPacketSize0",
        "idVendor",
        "idProduct",
        "bcdDevice",
        "iManufacturer",
        "iProduct",
        "iSerialNumber",
        "bNumConfigurations",
    )

    def __init__(self) -> None:
        for name in self._FIELDS:
            setattr(self, name, 0)

    def _fill(self, blob: bytes) -> None:
        data = bytes(blob[:18]).ljust(18, b"\0")
        for name, value in zip(self._FIELDS, struct.unpack(self._FORMAT, data), strict=True):
            setattr(self, name, value)

    def __bytes__(self) -> bytes:
        return struct.pack(self._FORMAT, *(getattr(self, n) for n in self._FIELDS))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}=0x{getattr(self, n):X}" for n in self._FIELDS)
        return f"USB_DEVICE_DESCRIPTOR({fields})"
