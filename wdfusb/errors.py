"""The exception hierarchy of the Pythonic layer, rooted in :class:`OSError`.

Every exception carries ``.status`` (NTSTATUS), ``.usbd_status``, ``.bytes_transferred`` and,
for a read that ended early, ``.data`` (the bytes that arrived); which class is raised comes from
the one status table in :mod:`wdfusb._status`, so the WDF layer's NTSTATUS and the exception
always agree.
"""

from __future__ import annotations

import errno

from ._status import NTSTATUS, USBD_STATUS, Outcome, outcome


class UsbError(OSError):
    """A USB operation failed. Base of every wdfusb error.

    ``data``: the bytes a read received before it failed (a time-out, cancel, stall or
    removal), ``bytes_transferred`` of them; ``b""`` when none arrived and for writes.
    """

    errno_value = errno.EIO

    def __init__(
        self,
        message: str,
        status: int = 0xC0000001,
        usbd_status: int = 0,
        bytes_transferred: int = 0,
        data: bytes = b"",
    ) -> None:
        super().__init__(self.errno_value, message)
        self.status = NTSTATUS(status)
        self.usbd_status = USBD_STATUS(usbd_status)
        self.bytes_transferred = bytes_transferred
        self.data = data

    def __str__(self) -> str:
        return f"{self.strerror} [{self.status!r}, {self.usbd_status!r}, {self.bytes_transferred} bytes transferred]"


class UsbIOError(UsbError):
    """A bus-level transfer error."""


class UsbTimeoutError(UsbError, TimeoutError):
    """The transfer did not complete in time; it was cancelled first."""

    errno_value = errno.ETIMEDOUT


class UsbStallError(UsbError):
    """The endpoint is halted (stall); reset the pipe to clear it."""

    errno_value = errno.EPIPE


class UsbCancelledError(UsbError):
    """The transfer was cancelled (by another thread, an abort or a close)."""

    errno_value = errno.ECANCELED


class UsbOverflowError(UsbError):
    """The device sent more data than the buffer holds (babble)."""

    errno_value = errno.EOVERFLOW


class UsbAccessError(UsbError, PermissionError):
    """No permission to open the device."""

    errno_value = errno.EACCES


class UsbBusyError(UsbError):
    """The device or interface is in use by someone else."""

    errno_value = errno.EBUSY


class DeviceGoneError(UsbError):
    """The device was unplugged or closed."""

    errno_value = errno.ENODEV


class DeviceNotFoundError(UsbError, LookupError):
    """No device matched the search."""

    errno_value = errno.ENODEV


class MultipleDevicesError(UsbError, LookupError):
    """Several devices matched where one was asked for (the message lists them)."""

    errno_value = errno.EINVAL


class LibusbNotFoundError(UsbError):
    """No libusb library could be loaded; the message lists every path tried."""

    errno_value = errno.ENOENT


_CLASSES: dict[str, type[UsbError]] = {
    cls.__name__: cls
    for cls in (
        UsbError,
        UsbIOError,
        UsbTimeoutError,
        UsbStallError,
        UsbCancelledError,
        UsbOverflowError,
        UsbAccessError,
        UsbBusyError,
        DeviceGoneError,
    )
}


def error_for(code: int, bytes_transferred: int = 0, context: str = "", data: bytes = b"") -> UsbError:
    """The exception for an engine result code (libusb error number or ``WU_ERR_*``); ``data``:
    the bytes a failed read received."""
    out: Outcome = outcome(code)
    cls = _CLASSES.get(out.kind or "UsbError", UsbError)
    text = f"{context}: {out.text}" if context else out.text
    return cls(text, out.status, out.usbd_status, bytes_transferred, data)


def error_for_status(status: int, usbd_status: int = 0, bytes_transferred: int = 0, context: str = "") -> UsbError:
    """The exception for an NTSTATUS (as the WDF layer returns it)."""
    from ._status import ENGINE_STATUS

    for code, out in ENGINE_STATUS.items():
        if code and int(out.status) == NTSTATUS(status) and (not usbd_status or int(out.usbd_status) == usbd_status):
            return error_for(code, bytes_transferred, context)
    name = NTSTATUS(status).name
    return UsbError(f"{context}: {name}" if context else name, status, usbd_status, bytes_transferred)
