"""NTSTATUS and USBD_STATUS values, and the one table that maps engine results to them.

The C engine reports libusb's error numbers (and a few of its own, ``WU_ERR_*``).
Everything above it — the WDF layer's NTSTATUS returns and the Pythonic layer's
exceptions — is derived from :data:`ENGINE_STATUS` below, so there is exactly one
place that decides what a stall, a time-out or an unplug means.
"""

from __future__ import annotations

from typing import NamedTuple


class NTSTATUS(int):
    """An NTSTATUS value: an ``int`` whose repr shows its name and hex value."""

    def __new__(cls, value: int = 0) -> NTSTATUS:
        return super().__new__(cls, int(value) & 0xFFFFFFFF)

    @property
    def name(self) -> str:
        return _NT_NAMES.get(int(self), "NTSTATUS")

    def __repr__(self) -> str:
        return f"{self.name}(0x{int(self):08X})"

    __str__ = __repr__


def NT_SUCCESS(status: int) -> bool:
    """True for success and informational values (the top bit clear), as in ntdef.h."""
    return (int(status) & 0x80000000) == 0


class USBD_STATUS(int):
    """A USBD_STATUS value (usb.h), with its name in repr."""

    def __new__(cls, value: int = 0) -> USBD_STATUS:
        return super().__new__(cls, int(value) & 0xFFFFFFFF)

    @property
    def name(self) -> str:
        return _USBD_NAMES.get(int(self), "USBD_STATUS")

    def __repr__(self) -> str:
        return f"{self.name}(0x{int(self):08X})"

    __str__ = __repr__


_NT_VALUES = {
    "STATUS_SUCCESS": 0x00000000,
    "STATUS_TIMEOUT": 0x00000102,
    "STATUS_PENDING": 0x00000103,
    "STATUS_BUFFER_OVERFLOW": 0x80000005,
    "STATUS_DEVICE_BUSY": 0x80000011,
    "STATUS_UNSUCCESSFUL": 0xC0000001,
    "STATUS_NOT_IMPLEMENTED": 0xC0000002,
    "STATUS_ACCESS_VIOLATION": 0xC0000005,
    "STATUS_INFO_LENGTH_MISMATCH": 0xC0000004,
    "STATUS_INVALID_HANDLE": 0xC0000008,
    "STATUS_INVALID_PARAMETER": 0xC000000D,
    "STATUS_NO_SUCH_DEVICE": 0xC000000E,
    "STATUS_INVALID_DEVICE_REQUEST": 0xC0000010,
    "STATUS_ACCESS_DENIED": 0xC0000022,
    "STATUS_BUFFER_TOO_SMALL": 0xC0000023,
    "STATUS_INTEGER_OVERFLOW": 0xC0000095,
    "STATUS_INSUFFICIENT_RESOURCES": 0xC000009A,
    "STATUS_DEVICE_DATA_ERROR": 0xC000009C,
    "STATUS_DEVICE_NOT_CONNECTED": 0xC000009D,
    "STATUS_IO_TIMEOUT": 0xC00000B5,
    "STATUS_NOT_SUPPORTED": 0xC00000BB,
    "STATUS_DEVICE_DOES_NOT_EXIST": 0xC00000C0,
    "STATUS_REQUEST_NOT_ACCEPTED": 0xC00000D0,
    "STATUS_CANCELLED": 0xC0000120,
    "STATUS_DLL_NOT_FOUND": 0xC0000135,
    "STATUS_PIPE_BROKEN": 0xC000014B,
    "STATUS_INVALID_DEVICE_STATE": 0xC0000184,
    "STATUS_IO_DEVICE_ERROR": 0xC0000185,
    "STATUS_INVALID_BUFFER_SIZE": 0xC0000206,
    "STATUS_NOT_FOUND": 0xC0000225,
    "STATUS_DEVICE_REMOVED": 0xC00002B6,
}

_USBD_VALUES = {
    "USBD_STATUS_SUCCESS": 0x00000000,
    "USBD_STATUS_PENDING": 0x40000000,
    "USBD_STATUS_CRC": 0xC0000001,
    "USBD_STATUS_BTSTUFF": 0xC0000002,
    "USBD_STATUS_DATA_TOGGLE_MISMATCH": 0xC0000003,
    "USBD_STATUS_STALL_PID": 0xC0000004,
    "USBD_STATUS_DEV_NOT_RESPONDING": 0xC0000005,
    "USBD_STATUS_PID_CHECK_FAILURE": 0xC0000006,
    "USBD_STATUS_UNEXPECTED_PID": 0xC0000007,
    "USBD_STATUS_DATA_OVERRUN": 0xC0000008,
    "USBD_STATUS_DATA_UNDERRUN": 0xC0000009,
    "USBD_STATUS_BUFFER_OVERRUN": 0xC000000C,
    "USBD_STATUS_BUFFER_UNDERRUN": 0xC000000D,
    "USBD_STATUS_NOT_ACCESSED": 0xC000000F,
    "USBD_STATUS_FIFO": 0xC0000010,
    "USBD_STATUS_XACT_ERROR": 0xC0000011,
    "USBD_STATUS_BABBLE_DETECTED": 0xC0000012,
    "USBD_STATUS_DATA_BUFFER_ERROR": 0xC0000013,
    "USBD_STATUS_ENDPOINT_HALTED": 0xC0000030,
    "USBD_STATUS_INVALID_URB_FUNCTION": 0x80000200,
    "USBD_STATUS_INVALID_PARAMETER": 0x80000300,
    "USBD_STATUS_ERROR_BUSY": 0x80000400,
    "USBD_STATUS_INVALID_PIPE_HANDLE": 0x80000600,
    "USBD_STATUS_NO_BANDWIDTH": 0x80000700,
    "USBD_STATUS_INTERNAL_HC_ERROR": 0x80000800,
    "USBD_STATUS_ERROR_SHORT_TRANSFER": 0x80000900,
    "USBD_STATUS_NOT_SUPPORTED": 0xC0000E00,
    "USBD_STATUS_INSUFFICIENT_RESOURCES": 0xC0001000,
    "USBD_STATUS_TIMEOUT": 0xC0006000,
    "USBD_STATUS_DEVICE_GONE": 0xC0007000,
    "USBD_STATUS_CANCELED": 0xC0010000,
}

_NT_NAMES = {v: k for k, v in _NT_VALUES.items()}
_USBD_NAMES = {v: k for k, v in _USBD_VALUES.items()}

# Module-level constants: STATUS_SUCCESS, USBD_STATUS_STALL_PID, ...
globals().update({k: NTSTATUS(v) for k, v in _NT_VALUES.items()})
globals().update({k: USBD_STATUS(v) for k, v in _USBD_VALUES.items()})
NTSTATUS_NAMES: dict[str, NTSTATUS] = {k: NTSTATUS(v) for k, v in _NT_VALUES.items()}
USBD_STATUS_NAMES: dict[str, USBD_STATUS] = {k: USBD_STATUS(v) for k, v in _USBD_VALUES.items()}


class Outcome(NamedTuple):
    """What an engine result means: the NTSTATUS, the USBD status and a short phrase."""

    status: NTSTATUS
    usbd_status: USBD_STATUS
    kind: str  # names the exception class of the Pythonic layer (see errors.py)
    text: str


def _o(nt: str, usbd: str, kind: str, text: str) -> Outcome:
    return Outcome(NTSTATUS(_NT_VALUES[nt]), USBD_STATUS(_USBD_VALUES[usbd]), kind, text)


# Engine result (libusb error number or WU_ERR_*) -> meaning. The one table.
ENGINE_STATUS: dict[int, Outcome] = {
    0: _o("STATUS_SUCCESS", "USBD_STATUS_SUCCESS", "", "success"),
    -1: _o("STATUS_IO_DEVICE_ERROR", "USBD_STATUS_XACT_ERROR", "UsbIOError", "I/O error on the bus"),
    -2: _o("STATUS_INVALID_PARAMETER", "USBD_STATUS_INVALID_PARAMETER", "UsbError", "invalid parameter"),
    -3: _o("STATUS_ACCESS_DENIED", "USBD_STATUS_NOT_ACCESSED", "UsbAccessError", "access denied"),
    -4: _o("STATUS_DEVICE_NOT_CONNECTED", "USBD_STATUS_DEVICE_GONE", "DeviceGoneError", "device gone"),
    -5: _o("STATUS_NOT_FOUND", "USBD_STATUS_INVALID_PIPE_HANDLE", "UsbError", "not found"),
    -6: _o("STATUS_DEVICE_BUSY", "USBD_STATUS_ERROR_BUSY", "UsbBusyError", "resource busy"),
    -7: _o("STATUS_IO_TIMEOUT", "USBD_STATUS_CANCELED", "UsbTimeoutError", "timed out"),
    -8: _o("STATUS_DEVICE_DATA_ERROR", "USBD_STATUS_BABBLE_DETECTED", "UsbOverflowError", "overflow (babble)"),
    -9: _o("STATUS_UNSUCCESSFUL", "USBD_STATUS_STALL_PID", "UsbStallError", "endpoint stalled"),
    -10: _o("STATUS_CANCELLED", "USBD_STATUS_CANCELED", "UsbCancelledError", "interrupted"),
    -11: _o("STATUS_INSUFFICIENT_RESOURCES", "USBD_STATUS_INSUFFICIENT_RESOURCES", "UsbError", "out of memory"),
    -12: _o("STATUS_NOT_SUPPORTED", "USBD_STATUS_NOT_SUPPORTED", "UsbError", "not supported"),
    -99: _o("STATUS_UNSUCCESSFUL", "USBD_STATUS_INTERNAL_HC_ERROR", "UsbIOError", "unknown error"),
    -100: _o("STATUS_CANCELLED", "USBD_STATUS_CANCELED", "UsbCancelledError", "cancelled"),
    -101: _o(
        "STATUS_INVALID_DEVICE_REQUEST",
        "USBD_STATUS_SUCCESS",
        "UsbError",
        "synchronous call from the event thread or a completion routine",
    ),
    -102: _o("STATUS_DLL_NOT_FOUND", "USBD_STATUS_SUCCESS", "UsbError", "libusb is not loaded"),
    -103: _o(
        "STATUS_INVALID_DEVICE_REQUEST",
        "USBD_STATUS_PENDING",
        "UsbError",
        "the request is already pending at a target",
    ),
    -104: _o(
        "STATUS_INVALID_DEVICE_STATE",
        "USBD_STATUS_DEVICE_GONE",
        "DeviceGoneError",
        "the device was opened before os.fork(); open it again in this process",
    ),
}


def outcome(code: int) -> Outcome:
    """The meaning of an engine result; unknown codes are an I/O error."""
    return ENGINE_STATUS.get(code, ENGINE_STATUS[-99])
