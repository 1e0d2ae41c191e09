"""USB/IP: wdfusb's virtual devices served to any USB stack over TCP (``wdfusb serve``).

:class:`Server` exports :class:`~wdfusb.VirtualDevice` s; a Linux client attaches one with
``usbip attach -r HOST -b 0-1`` and its kernel, libusb, pyusb and every other program see a USB
device. :mod:`wdfusb.usbip.protocol` is the wire format.
"""

from .server import DEFAULT_PORT, Export, Server

__all__ = ["DEFAULT_PORT", "Export", "Server"]
