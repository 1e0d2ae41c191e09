"""The engine: the only package that talks to the compiled shim (``wdfusb._native``).

It turns C calls into Python values: devices (:mod:`.device`), transfers
(:mod:`.transfer`), the streaming ring (:mod:`.ring`), the completion queue and context
(:mod:`.completions`), libusb loading and listing (:mod:`.libusb`), and the device-list
generation that arrivals and removals move (:mod:`.hotplug`). Engine result codes
are plain ints (:mod:`.native`); :mod:`wdfusb._status` says what they mean. Above this
package nothing sees cffi, and no state that C owns is kept again in Python.
"""

from __future__ import annotations

from .completions import (
    completion_context,
    in_completion_context,
    new_batch,
    next_completions,
    set_completion_context,
    wake,
)
from .device import NativeDevice
from .hotplug import ANY as GENERATION_ANY
from .hotplug import (
    bump_generation,
    hold_libusb_events,
    libusb_event_thread_state,
    start_libusb_hotplug,
    wait_generation,
)
from .libusb import (
    DevInfo,
    controller_driver,
    ensure_libusb,
    libusb_candidates,
    libusb_list,
    libusb_path,
    libusb_version,
)
from .native import (
    EP_BULK,
    EP_CONTROL,
    EP_INTERRUPT,
    EP_ISOCHRONOUS,
    SLICE_US,
    SPEED_NAMES,
    SPEEDS,
    WU_ERR_BUSY,
    WU_ERR_CANCELLED,
    WU_ERR_FORKED,
    WU_ERR_IN_FLIGHT,
    WU_ERR_INTERRUPTED,
    WU_ERR_INVALID_PARAM,
    WU_ERR_NO_DEVICE,
    WU_ERR_NO_MEM,
    WU_ERR_NOT_FOUND,
    WU_ERR_OVERFLOW,
    WU_ERR_PIPE,
    WU_ERR_TIMEOUT,
    WU_ERR_WRONG_CONTEXT,
    WU_OK,
    WU_PENDING,
    ZLP,
    CData,
    EngineError,
    ffi,
    lib,
    live_objects,
    shim_version,
)
from .ring import NativeRing, RingInfo
from .transfer import IsoPackets, Transfer, address_of, byte_view, copy_out, crc32, note_bytes, pin

__all__ = [
    "controller_driver",
    "GENERATION_ANY",
    "bump_generation",
    "start_libusb_hotplug",
    "hold_libusb_events",
    "libusb_event_thread_state",
    "wait_generation",
    "EP_BULK",
    "EP_CONTROL",
    "EP_INTERRUPT",
    "EP_ISOCHRONOUS",
    "SLICE_US",
    "SPEEDS",
    "SPEED_NAMES",
    "WU_ERR_BUSY",
    "WU_ERR_CANCELLED",
    "WU_ERR_FORKED",
    "WU_ERR_INTERRUPTED",
    "WU_ERR_INVALID_PARAM",
    "WU_ERR_IN_FLIGHT",
    "WU_ERR_NOT_FOUND",
    "WU_ERR_NO_DEVICE",
    "WU_ERR_NO_MEM",
    "WU_ERR_OVERFLOW",
    "WU_ERR_PIPE",
    "WU_ERR_TIMEOUT",
    "WU_ERR_WRONG_CONTEXT",
    "WU_OK",
    "WU_PENDING",
    "ZLP",
    "CData",
    "DevInfo",
    "EngineError",
    "NativeDevice",
    "NativeRing",
    "RingInfo",
    "IsoPackets",
    "Transfer",
    "address_of",
    "byte_view",
    "completion_context",
    "copy_out",
    "crc32",
    "ensure_libusb",
    "ffi",
    "in_completion_context",
    "lib",
    "libusb_candidates",
    "libusb_list",
    "libusb_path",
    "libusb_version",
    "live_objects",
    "new_batch",
    "next_completions",
    "note_bytes",
    "pin",
    "set_completion_context",
    "shim_version",
    "wake",
]
