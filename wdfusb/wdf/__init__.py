"""``wdfusb.wdf``: the Windows Driver Framework's USB I/O-target model, name for name.

``from wdfusb.wdf import *`` gives every WDF name wdfusb implements: functions with the C
parameter order, caller-allocated structures with the C field names and their ``_INIT``
helpers, enum and flag constants, NTSTATUS and USBD_STATUS values. Out parameters are boxes
(``ULONG()``, ``SIZE_T()``, ``WDFMEMORY()`` ...; read ``.value``); a handle argument may be the
box or its ``.value``; optional pointers are ``None``. Functions return ``NTSTATUS``; an
invalid handle raises :class:`WdfBugCheck` (WDF's bug check), never crashes.

Porting the seed's example::

    status = WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, writeSize, wdfMemory, None)
    writeBuffer = WdfMemoryGetBuffer(wdfMemory, bufferSize)
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(writeBufDesc, writeBuffer, writeSize)
    status = WdfUsbTargetPipeWriteSynchronously(pipeHandle, None, None, writeBufDesc, bytesWritten)
"""

from __future__ import annotations

from . import (
    _async,
    _control,
    _handles,
    _memory,
    _ntstatus,
    _queue,
    _queue_config,
    _queue_split,
    _queue_state,
    _reader,
    _received,
    _request,
    _strings,
    _structs,
    _transfer,
    _usbdevice,
    _usbpipe,
    _waitlock,
)
from ._async import *  # noqa: F403
from ._context import at_passive_level as at_passive_level
from ._context import completion_routine_context as completion_routine_context
from ._context import in_completion_routine as in_completion_routine
from ._context import mark_event_thread as mark_event_thread
from ._control import *  # noqa: F403
from ._handles import *  # noqa: F403
from ._memory import *  # noqa: F403
from ._ntstatus import *  # noqa: F403
from ._queue import *  # noqa: F403
from ._queue_config import *  # noqa: F403
from ._queue_split import *  # noqa: F403
from ._queue_state import *  # noqa: F403
from ._reader import *  # noqa: F403
from ._received import *  # noqa: F403
from ._request import *  # noqa: F403
from ._strings import *  # noqa: F403
from ._structs import *  # noqa: F403
from ._transfer import *  # noqa: F403
from ._usbdevice import *  # noqa: F403
from ._usbpipe import *  # noqa: F403
from ._waitlock import *  # noqa: F403

_PREFIXES = ("Wdf", "WDF", "STATUS_", "USBD_", "Io", "Mm", "Ke", "NonPagedPool", "PagedPool", "USB_", "BmRequest")
_EXTRA = {
    "NTSTATUS",
    "NT_SUCCESS",
    "USBD_STATUS",
    "ULONG",
    "USHORT",
    "SIZE_T",
    "MDL",
    "IRP",
    "IO_STATUS_BLOCK",
    "completion_routine_context",
    "in_completion_routine",
    "mark_event_thread",
    "at_passive_level",
    "wait_for_completions",
    "post_write",
    "post_read",
    "post_device_control",
    "WriteSplitter",
    "PVOID",
    "PMDL",
}
_INTERNAL = {"USB_TYPE_TO_PIPE_TYPE", "USBD_STATUS_NAMES", "NTSTATUS_NAMES"}


def _public(module: object) -> set[str]:
    return {n for n in vars(module) if (n.startswith(_PREFIXES) or n in _EXTRA) and n not in _INTERNAL}


_MODULES = (
    _ntstatus,
    _handles,
    _structs,
    _memory,
    _request,
    _usbpipe,
    _usbdevice,
    _transfer,
    _control,
    _strings,
    _async,
    _queue,
    _queue_config,
    _queue_split,
    _queue_state,
    _reader,
    _received,
    _waitlock,
)
__all__ = sorted(set().union(*(_public(m) for m in _MODULES)) | (_EXTRA & set(globals())))
