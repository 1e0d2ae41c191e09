"""The data of I/O queues: WDF_IO_QUEUE_CONFIG, WDF_REQUEST_PARAMETERS, the out-boxes of the
received-request functions, and the constants and state flags of wdfio.h."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._ntstatus import NTSTATUS

__all__ = [
    "PMDL",
    "PVOID",
    "STATUS_NO_MORE_ENTRIES",
    "STATUS_WDF_BUSY",
    "STATUS_WDF_PAUSED",
    "WDF_IO_QUEUE_CONFIG",
    "WDF_IO_QUEUE_CONFIG_INIT",
    "WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE",
    "WDF_IO_QUEUE_DRAINED",
    "WDF_IO_QUEUE_IDLE",
    "WDF_IO_QUEUE_PURGED",
    "WDF_IO_QUEUE_READY",
    "WDF_IO_QUEUE_STOPPED",
    "WDF_REQUEST_PARAMETERS",
    "WDF_REQUEST_PARAMETERS_INIT",
    "WdfFalse",
    "WdfIoQueueAcceptRequests",
    "WdfIoQueueDispatchInvalid",
    "WdfIoQueueDispatchManual",
    "WdfIoQueueDispatchMax",
    "WdfIoQueueDispatchParallel",
    "WdfIoQueueDispatchRequests",
    "WdfIoQueueDispatchSequential",
    "WdfIoQueueDriverNoRequests",
    "WdfIoQueueNoRequests",
    "WdfIoQueuePnpHeld",
    "WdfRequestStopActionInvalid",
    "WdfRequestStopActionPurge",
    "WdfRequestStopActionSuspend",
    "WdfRequestStopRequestCancelable",
    "WdfTrue",
    "WdfUseDefault",
]

# WDF_IO_QUEUE_DISPATCH_TYPE (wdfio.h)
WdfIoQueueDispatchInvalid = 0
WdfIoQueueDispatchSequential = 1
WdfIoQueueDispatchParallel = 2
WdfIoQueueDispatchManual = 3
WdfIoQueueDispatchMax = 4
# WDF_TRI_STATE (wdftypes.h)
WdfFalse = 0
WdfTrue = 1
WdfUseDefault = 2
# WDF_REQUEST_STOP_ACTION_FLAGS (wdfio.h)
WdfRequestStopActionInvalid = 0
WdfRequestStopActionSuspend = 0x01
WdfRequestStopActionPurge = 0x2
WdfRequestStopRequestCancelable = 0x10000000


STATUS_NO_MORE_ENTRIES = NTSTATUS(0x8000001A)
STATUS_WDF_PAUSED = NTSTATUS(0xC0200203)  # wdfstatus.h: the queue is not dispatching
STATUS_WDF_BUSY = NTSTATUS(0xC0200204)  # wdfstatus.h: the queue is not accepting (forwarding)

# WDF_IO_QUEUE_STATE (wdfio.h): what WdfIoQueueGetState returns
WdfIoQueueAcceptRequests = 0x01  # new requests are queued
WdfIoQueueDispatchRequests = 0x02  # queued requests are presented
WdfIoQueueNoRequests = 0x04  # nothing waits in the queue
WdfIoQueueDriverNoRequests = 0x08  # the driver owns none of its requests
WdfIoQueuePnpHeld = 0x10  # power-managed and powered down (never, on a host)


def _all(state: int, *flags: int) -> bool:
    return all(state & f for f in flags)


def WDF_IO_QUEUE_IDLE(State: int) -> bool:
    """No request queued and none owned by the driver."""
    return _all(State, WdfIoQueueNoRequests, WdfIoQueueDriverNoRequests)


def WDF_IO_QUEUE_READY(State: int) -> bool:
    """Accepting and dispatching (and not held by power management)."""
    return _all(State, WdfIoQueueDispatchRequests, WdfIoQueueAcceptRequests) and not State & WdfIoQueuePnpHeld


def WDF_IO_QUEUE_STOPPED(State: int) -> bool:
    """Stopped (WdfIoQueueStop finished): accepting, not dispatching, the driver owns none."""
    return not State & WdfIoQueueDispatchRequests and _all(State, WdfIoQueueAcceptRequests, WdfIoQueueDriverNoRequests)


def WDF_IO_QUEUE_DRAINED(State: int) -> bool:
    """Drained: not accepting, dispatching, empty and the driver owns none."""
    return not State & WdfIoQueueAcceptRequests and _all(
        State, WdfIoQueueDispatchRequests, WdfIoQueueNoRequests, WdfIoQueueDriverNoRequests
    )


def WDF_IO_QUEUE_PURGED(State: int) -> bool:
    """Purged: not accepting, empty and the driver owns none."""
    return not State & WdfIoQueueAcceptRequests and _all(State, WdfIoQueueNoRequests, WdfIoQueueDriverNoRequests)


class PVOID:
    """An out-box for a ``PVOID*`` parameter (``WdfRequestRetrieveInputBuffer``): read ``.value``."""

    def __init__(self, value: Any = None) -> None:
        self.value = value


class PMDL(PVOID):
    """An out-box for a ``PMDL*`` parameter (``WdfRequestRetrieveInputWdmMdl``): read ``.value``."""


class _ParallelSettings:
    def __init__(self) -> None:
        self.NumberOfPresentedRequests = 0


class _QueueSettings:
    def __init__(self) -> None:
        self.Parallel = _ParallelSettings()


class WDF_IO_QUEUE_CONFIG:
    """WDF_IO_QUEUE_CONFIG (wdfio.h); ``sizeof`` on x64 is 96.

    Callbacks: ``EvtIoDefault(Queue, Request)``, ``EvtIoWrite(Queue, Request, Length)``,
    ``EvtIoCanceledOnQueue(Queue, Request)`` (a request the driver forwarded here is cancelled
    while it waits). Accepted and never called: the read/ioctl callbacks (producers only post
    writes) and ``EvtIoStop``/``EvtIoResume`` (WDF calls them on power transitions only, and
    a host has none: WdfIoQueueStop/Drain/Purge do not call them, as in WDF).
    """

    SIZEOF = 96

    def __init__(self) -> None:
        self.Size = 0
        self.DispatchType = WdfIoQueueDispatchInvalid
        self.PowerManaged = WdfUseDefault
        self.AllowZeroLengthRequests = False
        self.DefaultQueue = False
        self.EvtIoDefault: Callable[..., Any] | None = None
        self.EvtIoRead: Callable[..., Any] | None = None
        self.EvtIoWrite: Callable[..., Any] | None = None
        self.EvtIoDeviceControl: Callable[..., Any] | None = None
        self.EvtIoInternalDeviceControl: Callable[..., Any] | None = None
        self.EvtIoStop: Callable[..., Any] | None = None
        self.EvtIoResume: Callable[..., Any] | None = None
        self.EvtIoCanceledOnQueue: Callable[..., Any] | None = None
        self.Settings = _QueueSettings()
        self.Driver: Any = None


def WDF_IO_QUEUE_CONFIG_INIT(Config: WDF_IO_QUEUE_CONFIG, DispatchType: int) -> None:
    """WDF_IO_QUEUE_CONFIG_INIT: zero, set Size, PowerManaged=WdfUseDefault, the dispatch type
    (parallel: NumberOfPresentedRequests = -1, unlimited)."""
    Config.__init__()  # type: ignore[misc]
    Config.Size = WDF_IO_QUEUE_CONFIG.SIZEOF
    Config.PowerManaged = WdfUseDefault
    Config.DispatchType = DispatchType
    if DispatchType == WdfIoQueueDispatchParallel:
        Config.Settings.Parallel.NumberOfPresentedRequests = -1


def WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(Config: WDF_IO_QUEUE_CONFIG, DispatchType: int) -> None:
    """WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE: as WDF_IO_QUEUE_CONFIG_INIT, plus DefaultQueue=TRUE."""
    WDF_IO_QUEUE_CONFIG_INIT(Config, DispatchType)
    Config.DefaultQueue = True


class _WriteParameters:
    def __init__(self) -> None:
        self.Length = 0
        self.Key = 0
        self.DeviceOffset = 0


class _DeviceIoControlParameters:
    def __init__(self) -> None:
        self.OutputBufferLength = 0
        self.InputBufferLength = 0
        self.IoControlCode = 0
        self.Type3InputBuffer: Any = None


class _RequestParametersUnion:
    def __init__(self) -> None:
        self.Write = _WriteParameters()
        self.Read = self.Write  # the union: Read and Write have the same layout
        self.DeviceIoControl = _DeviceIoControlParameters()


class WDF_REQUEST_PARAMETERS:
    """WDF_REQUEST_PARAMETERS (wdfrequest.h): Size, MinorFunction, Type, Parameters.Write/Read
    (Length, Key, DeviceOffset) or Parameters.DeviceIoControl (OutputBufferLength,
    InputBufferLength, IoControlCode, Type3InputBuffer); ``sizeof`` on x64 is 40."""

    SIZEOF = 40

    def __init__(self) -> None:
        self.Size = 0
        self.MinorFunction = 0
        self.Type = 0
        self.Parameters = _RequestParametersUnion()


def WDF_REQUEST_PARAMETERS_INIT(Parameters: WDF_REQUEST_PARAMETERS) -> None:
    """WDF_REQUEST_PARAMETERS_INIT: zero and set Size."""
    Parameters.__init__()  # type: ignore[misc]
    Parameters.Size = WDF_REQUEST_PARAMETERS.SIZEOF
