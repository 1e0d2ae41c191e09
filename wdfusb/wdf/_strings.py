"""The device's descriptors through WDF: WdfUsbTargetDeviceQueryString,
WdfUsbTargetDeviceAllocAndQueryString and WdfUsbTargetDeviceRetrieveConfigDescriptor, with the
rules of ``FxUsbDevice::GetString`` / ``GetConfigDescriptor``:

* a string is read with GET_DESCRIPTOR(STRING, StringIndex) and ``LangID`` as given; without
  request options the framework gives it 2 seconds;
* ``String`` None: ``NumCharacters`` gets the string's length in WCHARs (no terminator) and the
  call succeeds; a buffer shorter than the string gets what fits and STATUS_BUFFER_OVERFLOW,
  with ``NumCharacters`` = the whole length; a descriptor with an odd or too small bLength is
  STATUS_DEVICE_DATA_ERROR;
* the configuration descriptor comes from the copy read at open: no buffer, or one shorter than
  wTotalLength, is STATUS_BUFFER_TOO_SMALL with the length needed (a short buffer is filled).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _engine
from ._context import at_passive_level
from ._control import control_transfer
from ._handles import ULONG, get_object, integer, required, validate_attributes
from ._memory import WDFMEMORY, FxMemory
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL,
    STATUS_DEVICE_DATA_ERROR,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)
from ._request import FxRequest
from ._transfer import send_options
from ._usbdevice import FxUsbDevice

DEFAULT_STRING_TIMEOUT_US = 2_000_000  # FxUsbDevice::GetString without request options
USB_STRING_DESCRIPTOR_TYPE = 0x03


class USHORT(ULONG):
    """An out-box for a ``USHORT`` (``PUSHORT`` parameter): read ``.value``."""

    def __init__(self, value: int = 0) -> None:
        super().__init__(value)
        if not 0 <= self.value <= 0xFFFF:
            raise ValueError(f"a USHORT is 0..0xFFFF, not {value!r}")

    def __repr__(self) -> str:
        return f"USHORT({self.value})"


def _get_string(
    device: FxUsbDevice,
    req: FxRequest | None,
    options: Any,
    timeout_us: int,
    chars: int | None,
    index: int,
    langid: int,
) -> tuple[NTSTATUS, int, bytes]:
    """FxUsbDevice::GetString: (status, the string's length in WCHARs, the UTF-16LE bytes read)."""
    length = 2 if chars is None else min(2 + 2 * max(chars, 0), 0xFF)  # a descriptor is at most 255 bytes
    status, actual, buf = control_transfer(
        device, req, options, timeout_us, 0x80, 0x06, USB_STRING_DESCRIPTOR_TYPE << 8 | index, langid, None, length
    )
    if not NT_SUCCESS(status):
        return status, 0, b""
    head = bytes(buf[8 : 8 + actual])
    b_length = head[0] if head else 0
    if b_length < 2 or b_length % 2:
        return STATUS_DEVICE_DATA_ERROR, 0, b""
    return STATUS_SUCCESS, (b_length - 2) // 2, head[2:b_length]


def _string_args(StringIndex: Any, LangID: Any) -> tuple[int, int] | None:
    index, langid = integer(StringIndex), integer(LangID)
    if index is None or langid is None or not 0 <= index <= 0xFF or not 0 <= langid <= 0xFFFF:
        return None
    return index, langid


def WdfUsbTargetDeviceQueryString(
    UsbDevice: Any,
    Request: Any,
    RequestOptions: Any,
    String: Any,
    NumCharacters: USHORT,
    StringIndex: int,
    LangID: int = 0,
) -> NTSTATUS:
    """WdfUsbTargetDeviceQueryString: string descriptor ``StringIndex`` into ``String`` (any
    writable buffer of WCHARs: a numpy uint16 array, ``array('H')``, a bytearray of twice the
    count; None to learn the length). ``NumCharacters`` (a ``USHORT()``) holds the buffer's
    capacity in WCHARs and receives the string's length."""
    device = get_object(UsbDevice, FxUsbDevice)
    req = get_object(Request, FxRequest) if Request is not None else None
    required(NumCharacters, "NumCharacters")
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    status, timeout_us = send_options(RequestOptions)
    if status:
        return status
    args = _string_args(StringIndex, LangID)
    if args is None or not isinstance(NumCharacters, USHORT):
        return STATUS_INVALID_PARAMETER
    target = None
    if String is not None:
        try:
            target = np.frombuffer(_engine.byte_view(String, writable=True, flat=True), dtype=np.uint8)
        except (TypeError, ValueError):
            return STATUS_INVALID_PARAMETER
        if target.size < 2 * NumCharacters.value:
            return STATUS_INVALID_PARAMETER  # NumCharacters promises more WCHARs than the buffer holds
    chars = None if target is None else NumCharacters.value
    status, total, text = _get_string(
        device, req, RequestOptions, timeout_us or DEFAULT_STRING_TIMEOUT_US, chars, *args
    )
    if not NT_SUCCESS(status):
        return status
    if target is not None:
        n = 2 * min(NumCharacters.value, total)
        target[: min(n, len(text))] = np.frombuffer(text[:n], dtype=np.uint8)
        if NumCharacters.value < total:
            status = STATUS_BUFFER_OVERFLOW
    NumCharacters.value = total
    return status


def WdfUsbTargetDeviceAllocAndQueryString(
    UsbDevice: Any,
    StringMemoryAttributes: Any,
    StringMemory: WDFMEMORY,
    NumCharacters: USHORT | None,
    StringIndex: int,
    LangID: int = 0,
) -> NTSTATUS:
    """WdfUsbTargetDeviceAllocAndQueryString: the string in a new WDFMEMORY of exactly its
    WCHARs (``StringMemory``'s ``.value``; None for an empty string), its length in
    ``NumCharacters`` (optional)."""
    device = get_object(UsbDevice, FxUsbDevice)
    required(StringMemory, "StringMemory")
    StringMemory.value = None
    if NumCharacters is not None:
        NumCharacters.value = 0
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    status, parent = validate_attributes(StringMemoryAttributes)
    if not NT_SUCCESS(status):
        return status
    args = _string_args(StringIndex, LangID)
    if args is None:
        return STATUS_INVALID_PARAMETER
    status, total, _ = _get_string(device, None, None, DEFAULT_STRING_TIMEOUT_US, None, *args)
    if not NT_SUCCESS(status) or total == 0:
        return status
    try:
        mem = FxMemory(np.zeros(2 * total, dtype=np.uint8), parent, StringMemoryAttributes)
    except MemoryError:
        return STATUS_INSUFFICIENT_RESOURCES
    status, again, text = _get_string(device, None, None, DEFAULT_STRING_TIMEOUT_US, total, *args)
    if status == STATUS_SUCCESS and again > total:
        status = STATUS_BUFFER_OVERFLOW  # the string grew between the two reads
    if not NT_SUCCESS(status):
        mem.delete()
        return status
    mem.array[: len(text[: 2 * total])] = np.frombuffer(text[: 2 * total], dtype=np.uint8)
    StringMemory.value = mem
    if NumCharacters is not None:
        NumCharacters.value = total
    return STATUS_SUCCESS


def WdfUsbTargetDeviceRetrieveConfigDescriptor(
    UsbDevice: Any, ConfigDescriptor: Any, ConfigDescriptorLength: USHORT
) -> NTSTATUS:
    """WdfUsbTargetDeviceRetrieveConfigDescriptor: the whole configuration descriptor (as read
    at open) into ``ConfigDescriptor`` (any writable buffer, or None to learn the length)."""
    device = get_object(UsbDevice, FxUsbDevice)
    required(ConfigDescriptorLength, "ConfigDescriptorLength")
    if not at_passive_level():
        return STATUS_INVALID_DEVICE_REQUEST
    if not isinstance(ConfigDescriptorLength, USHORT):
        return STATUS_INVALID_PARAMETER
    blob = device.core.config_descriptor
    have = ConfigDescriptorLength.value
    ConfigDescriptorLength.value = len(blob)
    if ConfigDescriptor is None:
        return STATUS_BUFFER_TOO_SMALL
    try:
        target = np.frombuffer(_engine.byte_view(ConfigDescriptor, writable=True, flat=True), dtype=np.uint8)
    except (TypeError, ValueError):
        return STATUS_INVALID_PARAMETER
    n = min(have, len(blob), target.size)
    target[:n] = np.frombuffer(blob[:n], dtype=np.uint8)
    return STATUS_BUFFER_TOO_SMALL if have < len(blob) else STATUS_SUCCESS


__all__ = [
    "USB_STRING_DESCRIPTOR_TYPE",
    "USHORT",
    "WdfUsbTargetDeviceAllocAndQueryString",
    "WdfUsbTargetDeviceQueryString",
    "WdfUsbTargetDeviceRetrieveConfigDescriptor",
]
