"""wdfusb: the Windows Driver Framework's USB I/O-target model for host-side Python, over libusb.

Two layers:

* :mod:`wdfusb` — the Pythonic API: :func:`open`, :func:`find_device`, :func:`list_devices`,
  :func:`watch` and :func:`wait_for` (devices that come and go), :class:`VirtualDevice`,
  :class:`Device`, :class:`Pipe` with its :class:`StreamWriter` and
  :class:`StreamReader`; seconds, context managers and exceptions rooted in :class:`OSError`.
* :mod:`wdfusb.wdf` — the WDF names one-to-one (``WdfUsbTargetPipeWriteSynchronously`` ...),
  returning NTSTATUS values, so driver code ports line by line.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .device import Device, Pipe, UsbDeviceInfo, find_device, list_devices, open
from .errors import (
    DeviceGoneError,
    DeviceNotFoundError,
    LibusbNotFoundError,
    MultipleDevicesError,
    UsbAccessError,
    UsbBusyError,
    UsbCancelledError,
    UsbError,
    UsbIOError,
    UsbOverflowError,
    UsbStallError,
    UsbTimeoutError,
)
from .hotplug import DeviceEvent, Watch, wait_for, watch
from .reader import StreamReader
from .virtual import VirtualDevice, VirtualEndpoint

if TYPE_CHECKING:
    from .stream import StreamWriter


def __getattr__(name: str) -> Any:
    """``StreamWriter`` is imported on first use: it needs numpy, ``import wdfusb`` does not."""
    if name == "StreamWriter":
        from .stream import StreamWriter

        return StreamWriter
    raise AttributeError(f"module 'wdfusb' has no attribute {name!r}")


__all__ = [
    "Device",
    "DeviceEvent",
    "DeviceGoneError",
    "DeviceNotFoundError",
    "LibusbNotFoundError",
    "MultipleDevicesError",
    "Pipe",
    "StreamReader",
    "StreamWriter",
    "UsbAccessError",
    "UsbBusyError",
    "UsbCancelledError",
    "UsbDeviceInfo",
    "UsbError",
    "UsbIOError",
    "UsbOverflowError",
    "UsbStallError",
    "UsbTimeoutError",
    "VirtualDevice",
    "VirtualEndpoint",
    "Watch",
    "__version__",
    "find_device",
    "list_devices",
    "open",
    "wait_for",
    "watch",
]
