"""WDFQUEUE and received requests: the framework's side of *forwarding* a request.

A WDF driver does not only create requests; it *receives* them in I/O queues and forwards
them to an I/O target (the seed's "forward an I/O request that your driver received in an
I/O queue"). On the host there is no I/O manager, so wdfusb plays it:

* :func:`post_write` (``post_write(Queue, data) -> IoOperation``) is the producer's side
  (any thread): it wraps ``data`` (any buffer-protocol object, not copied) in a received
  write request and queues it. The :class:`IoOperation` it returns is the producer's IRP:
  ``op.wait(timeout)`` returns ``(NTSTATUS, information)`` once the driver completed the
  request (``TimeoutError`` if not in time; an exception the driver's callback raised is
  re-raised here), ``op.done`` polls, ``op.cancel()`` is ``IoCancelIrp``.
* ``WdfIoQueueCreate`` starts the queue's dispatch thread(s): a sequential queue presents
  one request at a time (the next only after the driver completed the current one or
  forwarded it to another queue); a parallel queue presents up to
  ``Settings.Parallel.NumberOfPresentedRequests`` at once (0 or -1: up to
  :data:`PARALLEL_WORKERS`), each ``EvtIoWrite(Queue, Request, Length)`` on its own worker.

Received requests are :class:`FxReceivedRequest` objects (a WDFREQUEST). Their IRP belongs
to the I/O manager, not to the framework, so ``ValidateTarget`` cannot replace it: like a
real I/O manager IRP it is allocated with the device stack's depth *plus one* location (the
driver's own), i.e. ``StackSize = WDFUSBDEVICE stack size + 1``, deep enough to be
forwarded to any pipe of that device. ``post_write(..., stack_size=n)`` makes a shallower
one (as from a stack the target is not part of): forwarding it returns
``STATUS_REQUEST_NOT_ACCEPTED``.

Rules enforced (each a :class:`WdfBugCheck`, as WDF's verifier would):

* ``WdfRequestComplete*`` on a request whose input WDFMEMORY is still referenced by *another*
  request (formatted with it and not yet deleted, reused or reformatted) — the seed's rule;
* completing a request that is still pending at an I/O target, still marked cancelable, that
  the driver created itself (``WdfRequestCreate``) or that was already completed (its handle
  is gone: ``WDF_INVALID_HANDLE``).

Completion releases the request's own format (a received request forwarded with its own
input memory may be completed right after the send returns), deletes the request and its
input memory, and wakes the producer.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .._timeout import seconds
from ._handles import (
    LOCK,
    WDFOBJECT,
    FxObject,
    get_object,
    integer,
    require_integer,
    required,
    store,
    validate_attributes,
)
from ._memory import MDL, WDFMEMORY, FxMemory, WdfMemoryCreatePreallocated
from ._ntstatus import (
    NT_SUCCESS,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
)
from ._queue_config import (
    STATUS_NO_MORE_ENTRIES,
    STATUS_WDF_PAUSED,
    WDF_IO_QUEUE_CONFIG,
    WdfIoQueueDispatchManual,
    WdfIoQueueDispatchParallel,
    WdfIoQueueDispatchSequential,
)
from ._request import IRP, FxRequest
from ._structs import WdfRequestTypeDeviceControl, WdfRequestTypeRead, WdfRequestTypeWrite
from ._usbdevice import FxUsbDevice

__all__ = [
    "PARALLEL_WORKERS",
    "WDFQUEUE",
    "IoOperation",
    "WdfIoQueueCreate",
    "WdfIoQueueGetDevice",
    "WdfDeviceConfigureRequestDispatching",
    "WdfIoQueueRetrieveNextRequest",
    "WdfRequestGetIoQueue",
    "post_device_control",
    "post_read",
    "post_write",
]

IN_QUEUE_CALLBACK = threading.local()  # .active: this thread runs an EvtIoXxx callback

#: worker threads of a parallel queue whose NumberOfPresentedRequests is unlimited
PARALLEL_WORKERS = 8

# bug check parameter 2 of the WDF_REQUEST_FATAL_ERROR checks made here (local values, not wdfbugcodes.h)
FATAL_COMPLETE_WHILE_MEMORY_REFERENCED = 0x101
FATAL_COMPLETE_WHILE_SENT = 0x102
FATAL_COMPLETE_WHILE_CANCELABLE = 0x103
FATAL_COMPLETE_DRIVER_CREATED = 0x104
FATAL_NOT_OWNED_BY_DRIVER = 0x105


# ---- the producer's side --------------------------------------------------------------------


class IoOperation:
    """A posted write, seen from the producer (its IRP): wait for, poll or cancel it."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._event = threading.Event()
        self.status: NTSTATUS | None = None
        self.information = 0
        self.exception: BaseException | None = None
        self._request: FxReceivedRequest | None = None

    def __repr__(self) -> str:
        state = f"{self.status!r}, {self.information}" if self.done else "pending"
        return f"<IoOperation {self.length} bytes: {state}>"

    @property
    def done(self) -> bool:
        """True once the driver completed the request."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> tuple[NTSTATUS, int]:
        """Wait for completion: ``(status, information)``. ``TimeoutError`` if not done in
        ``timeout`` seconds (``None``, ``math.inf``: for ever); re-raises an exception the driver's
        callback raised for it."""
        if not self._event.wait(seconds(timeout)):
            raise TimeoutError(f"{self!r} not completed within {timeout} s")
        if self.exception is not None:
            raise self.exception
        assert self.status is not None
        return self.status, self.information

    def cancel(self) -> bool:
        """IoCancelIrp: cancel the request. Still queued: it is completed with
        ``STATUS_CANCELLED``; owned by the driver: its cancel routine (if marked cancelable)
        runs, and a transfer it is forwarded in is cancelled (later sends of it fail with
        ``STATUS_CANCELLED``). False if it was already completed."""
        req = self._request
        if req is None or self.done:
            return False
        return req.io_cancel()

    def _finish(self, status: NTSTATUS, information: int, exc: BaseException | None = None) -> None:
        self.status, self.information, self.exception = status, information, exc
        self._request = None
        self._event.set()


class FxReceivedRequest(FxRequest):
    """A WDFREQUEST the framework presented from a queue: an I/O-manager IRP, input memory, an IoOperation."""

    FROM_IO = True

    def __init__(
        self,
        queue: FxIoQueue,
        data: Any,
        length: int,
        stack_size: int,
        op: IoOperation,
        kind: int = WdfRequestTypeWrite,
        output: Any = None,
        output_length: int = 0,
        ioctl: int = 0,
    ) -> None:
        super().__init__(None, None, IRP(stack_size), irp_owned=False)  # the I/O manager's IRP: never replaced
        self.queue: FxIoQueue | None = queue
        self.kind, self.ioctl = kind, ioctl
        self.length = length  # a write's (input) or a read's (output) length
        self.output_length = output_length
        self.op = op
        self.input_memory = self._describe(data, length) if kind != WdfRequestTypeRead else None
        self.output_memory = self._describe(output, output_length)
        self.mdls: dict[bool, MDL] = {}  # by output: the MDL RetrieveInput/OutputWdmMdl hands out
        self.irp_cancel = False  # Irp->Cancel
        self.cancel_routine: Callable[[Any], Any] | None = None
        self.owned = False  # presented to the driver (not in a queue)
        self.presented = False  # presented at least once (then a cancel on a queue calls EvtIoCanceledOnQueue)
        self.completed = False

    def _describe(self, data: Any, length: int) -> FxMemory | None:
        """A WDFMEMORY (the request's child) over the producer's buffer, or None for none."""
        if not length:
            return None
        box = WDFMEMORY()
        status = WdfMemoryCreatePreallocated(_child_attributes(self), data, length, box)
        if not NT_SUCCESS(status):
            raise ValueError(f"cannot describe the posted buffer ({status!r})")
        memory: FxMemory = box.value
        return memory

    def io_cancel(self) -> bool:
        with LOCK:
            if self.completed:
                return False
            self.irp_cancel = True
            queue = self.queue
            in_queue = queue is not None and not self.owned and queue.remove(self)
        if in_queue:
            assert queue is not None
            self.cancel_on_queue(queue)
            return True
        self.cancel_for_driver()
        self.cancel()  # a forwarded transfer in flight is cancelled; later sends return STATUS_CANCELLED
        return True

    def cancel_on_queue(self, queue: FxIoQueue) -> None:
        """A request taken out of ``queue`` by a cancel or a purge: a request the driver had
        (and forwarded here) goes to EvtIoCanceledOnQueue, any other is completed cancelled."""
        if queue.config.EvtIoCanceledOnQueue is not None and self.presented:
            with LOCK:
                self.owned = True
            queue.owned_add(self)
            queue.config.EvtIoCanceledOnQueue(WDFQUEUE(queue), _request_box(self))
        else:
            self.finish(STATUS_CANCELLED, 0)

    def cancel_for_driver(self) -> None:
        """Run the request's cancel routine, if the driver marked it cancelable (once)."""
        with LOCK:
            routine, self.cancel_routine = self.cancel_routine, None
        if routine is not None:
            routine(_request_box(self))

    def finish(self, status: NTSTATUS, information: int, exc: BaseException | None = None) -> None:
        """The completion itself (rules already checked): release, delete, wake the producer."""
        with LOCK:
            if self.completed:
                return
            self.completed = True
            queue, self.queue = self.queue, None
            owned, self.owned = self.owned, False
            self.cancel_routine = None
        self.release_format()
        if queue is not None and owned:
            queue.owned_done(self)
        op = self.op
        self.delete()  # deletes the input memory with it (its child)
        op._finish(NTSTATUS(status), int(information), exc)
        if queue is not None:
            queue.settle()  # a Stop/Drain/Purge may have waited for this one


def _request_box(req: FxRequest) -> Any:
    """The handle box a callback receives for a request."""
    from ._request import WDFREQUEST

    return WDFREQUEST(req)


def _child_attributes(parent: FxObject) -> Any:
    from ._handles import WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES_INIT

    attrs = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(attrs)
    attrs.ParentObject = parent
    return attrs


_default_queues: weakref.WeakKeyDictionary[FxUsbDevice, FxIoQueue] = weakref.WeakKeyDictionary()
# WdfDeviceConfigureRequestDispatching: the queue a device hands each kind of request to
_dispatching: weakref.WeakKeyDictionary[FxUsbDevice, dict[int, FxIoQueue]] = weakref.WeakKeyDictionary()


def post_write(Queue: Any, data: Any, length: int | None = None, stack_size: int | None = None) -> IoOperation:
    """The I/O manager's side of a write (wdfusb's own helper, not a WDF name): post ``data``
    (any buffer-protocol object, used without copying; keep it unchanged until done) to a
    WDFQUEUE, or to a WDFUSBDEVICE's default queue, from any thread. Returns the
    :class:`IoOperation` to wait for, poll or cancel.

    ``length`` (default: all of ``data``) is the write's length; ``stack_size`` overrides the
    IRP's stack locations (default: the device's stack size + 1).
    Posting to a device without a default queue completes with STATUS_INVALID_DEVICE_REQUEST.
    """
    n = _posted(data, length)
    return _post(Queue, WdfRequestTypeWrite, stack_size, data, n)


def post_read(Queue: Any, buffer: Any, length: int | None = None, stack_size: int | None = None) -> IoOperation:
    """A read, posted like :func:`post_write`: the driver's ``EvtIoRead(Queue, Request, Length)``
    fills ``buffer`` (writable, used without copying) through the request's output memory;
    ``wait()`` returns ``(status, bytes read)``."""
    n = _posted(buffer, length, writable=True)
    return _post(Queue, WdfRequestTypeRead, stack_size, None, 0, buffer, n)


def post_device_control(
    Queue: Any, ioctl_code: int, input: Any = None, output: Any = None, stack_size: int | None = None
) -> IoOperation:
    """A device-control request (``DeviceIoControl``), posted like :func:`post_write`: the driver's
    ``EvtIoDeviceControl(Queue, Request, OutputBufferLength, InputBufferLength, IoControlCode)``
    gets ``input`` and ``output`` (buffers or None) as its input and output memory."""
    code = require_integer(ioctl_code, "ioctl_code")
    n_in, n_out = _posted(input, None), _posted(output, None, writable=True)
    return _post(Queue, WdfRequestTypeDeviceControl, stack_size, input, n_in, output, n_out, code)


def _posted(data: Any, length: int | None, writable: bool = False) -> int:
    """The length of a posted buffer (all of it, or ``length``), checked."""
    view = memoryview(data).cast("B") if data is not None else memoryview(b"")
    if writable and data is not None and view.readonly:
        raise TypeError(f"cannot read into a read-only buffer ({type(data).__name__})")
    n = view.nbytes if length is None else require_integer(length, "length")
    if n < 0 or n > view.nbytes:
        raise ValueError(f"length {n} outside a buffer of {view.nbytes} bytes")
    return n


_HANDLERS = {
    WdfRequestTypeWrite: "EvtIoWrite",
    WdfRequestTypeRead: "EvtIoRead",
    WdfRequestTypeDeviceControl: "EvtIoDeviceControl",
}


def _post(
    Queue: Any,
    kind: int,
    stack_size: int | None,
    data: Any,
    length: int,
    output: Any = None,
    output_length: int = 0,
    ioctl: int = 0,
) -> IoOperation:
    """Queue a received request of ``kind`` to a WDFQUEUE or a device's queue for it."""
    obj = Queue.value if isinstance(Queue, WDFOBJECT) else Queue
    if isinstance(obj, FxUsbDevice):
        with LOCK:
            queue = _dispatching.get(obj, {}).get(kind) or _default_queues.get(obj)
        if queue is None or queue.is_deleted:
            get_object(obj, FxUsbDevice)
            op = IoOperation(0)
            op._finish(STATUS_INVALID_DEVICE_REQUEST, 0)
            return op
    else:
        queue = get_object(Queue, FxIoQueue)
    depth = queue.device.stack_size + 1 if stack_size is None else require_integer(stack_size, "stack_size")
    op = IoOperation(output_length if kind == WdfRequestTypeRead else length)
    try:
        if kind == WdfRequestTypeRead:
            req = FxReceivedRequest(queue, None, output_length, depth, op, kind, output, output_length)
        else:
            req = FxReceivedRequest(queue, data, length, depth, op, kind, output, output_length, ioctl)
    except MemoryError:
        op._finish(STATUS_INSUFFICIENT_RESOURCES, 0)
        return op
    op._request = req
    if kind != WdfRequestTypeDeviceControl and req.length == 0 and not queue.config.AllowZeroLengthRequests:
        req.finish(STATUS_SUCCESS, 0)  # the framework completes zero-length reads and writes itself
        return op
    if getattr(queue.config, _HANDLERS[kind]) is None and queue.config.EvtIoDefault is None:
        if queue.config.DispatchType != WdfIoQueueDispatchManual:
            req.finish(STATUS_INVALID_DEVICE_REQUEST, 0)  # no handler for this kind of request
            return op
    queue.enqueue(req)
    return op


# ---- the queue ----------------------------------------------------------------------------------


class FxIoQueue(FxObject):
    """A WDFQUEUE: pending requests, the ones presented to the driver, the dispatch threads.

    Deleting it (or its device) completes the requests still waiting in it with
    STATUS_CANCELLED and waits until its callbacks have returned; requests the driver owns stay
    the driver's to complete.
    """

    HANDLE_TYPE = "WDFQUEUE"

    def __init__(self, device: FxUsbDevice, config: WDF_IO_QUEUE_CONFIG, parent: FxObject, attributes: Any) -> None:
        super().__init__(parent, attributes)
        self.device = device
        self.config = config
        self.cond = threading.Condition(LOCK)
        self.pending: collections.deque[FxReceivedRequest] = collections.deque()
        self.driver_owned: set[FxReceivedRequest] = set()
        self.stopping = False  # being deleted
        self.accepting = True  # WdfIoQueueAcceptRequests: new requests are queued (else refused)
        self.dispatching = True  # WdfIoQueueDispatchRequests: queued requests are presented
        self.cancel_dispatched = False  # a purge runs: requests marked cancelable are cancelled at once
        # (callback, context) of a pending WdfIoQueueStop and of a pending WdfIoQueueDrain/Purge
        self.idle_complete: tuple[Callable[[Any, Any], Any], Any] | None = None
        self.purge_complete: tuple[Callable[[Any, Any], Any], Any] | None = None
        self.errors: list[BaseException] = []
        dispatch = config.DispatchType
        if dispatch == WdfIoQueueDispatchSequential:
            self.limit, workers = 1, 1
        elif dispatch == WdfIoQueueDispatchParallel:
            n = integer(config.Settings.Parallel.NumberOfPresentedRequests) or 0  # WdfIoQueueCreate checked it
            self.limit = n if n > 0 else 1 << 30
            workers = min(self.limit, PARALLEL_WORKERS)
        else:
            self.limit, workers = 0, 0  # manual: the driver retrieves requests itself
        self.threads = [
            threading.Thread(target=self._worker, name=f"wdfusb-queue-{i}", daemon=True) for i in range(workers)
        ]
        for t in self.threads:
            t.start()

    # -- queue state (all under LOCK) --
    def enqueue(self, req: FxReceivedRequest) -> None:
        with self.cond:
            if self.stopping or self._delete_requested or not self.accepting:
                stopped = True
            else:
                stopped = False
                req.queue = self
                self.pending.append(req)
                self.cond.notify()
        if stopped:
            req.finish(STATUS_INVALID_DEVICE_STATE, 0)

    def requeue(self, req: FxReceivedRequest) -> None:
        """A request the driver gave back (WdfRequestStopAcknowledge): first in line again."""
        with self.cond:
            req.queue = self
            self.pending.appendleft(req)
            self.cond.notify()
        self.settle()

    def remove(self, req: FxReceivedRequest) -> bool:
        with self.cond:
            try:
                self.pending.remove(req)
            except ValueError:
                return False
            return True

    def owned_add(self, req: FxReceivedRequest) -> None:
        with self.cond:
            self.driver_owned.add(req)

    def owned_done(self, req: FxReceivedRequest) -> None:
        with self.cond:
            self.driver_owned.discard(req)
            self.cond.notify_all()

    def settle(self) -> None:
        """Run the Stop / Drain-or-Purge completion callback whose condition holds now: Stop's
        once the driver owns no request, Drain's and Purge's once the queue is empty too.
        Called without the lock, by whoever changed the counts (or the call that asked)."""
        fire = []
        with self.cond:
            if self.idle_complete is not None and not self.driver_owned:
                fire.append(self.idle_complete)
                self.idle_complete = None
            if self.purge_complete is not None and not self.driver_owned and not self.pending:
                fire.append(self.purge_complete)
                self.purge_complete = None
        for callback, context in fire:
            try:
                callback(WDFQUEUE(self), context)
            except Exception as exc:  # noqa: BLE001 - kept, like an exception after a completion
                self.errors.append(exc)

    def take(self) -> FxReceivedRequest | None:
        """Remove the next request and hand it to the driver (None if none)."""
        with self.cond:
            if not self.pending:
                return None
            req = self.pending.popleft()
            req.owned = req.presented = True
            self.driver_owned.add(req)
            return req

    def _worker(self) -> None:
        while True:
            with self.cond:
                while not self.stopping and not (
                    self.dispatching and self.pending and len(self.driver_owned) < self.limit
                ):
                    self.cond.wait()
                if self.stopping:
                    return
                req = self.take()
            if req is not None:
                self._present(req)

    def _present(self, req: FxReceivedRequest) -> None:
        config = self.config
        IN_QUEUE_CALLBACK.active = True
        try:
            queue, box = WDFQUEUE(self), _request_box(req)
            if req.kind == WdfRequestTypeWrite and config.EvtIoWrite is not None:
                config.EvtIoWrite(queue, box, req.length)
            elif req.kind == WdfRequestTypeRead and config.EvtIoRead is not None:
                config.EvtIoRead(queue, box, req.length)
            elif req.kind == WdfRequestTypeDeviceControl and config.EvtIoDeviceControl is not None:
                config.EvtIoDeviceControl(queue, box, req.output_length, req.length, req.ioctl)
            elif config.EvtIoDefault is not None:
                config.EvtIoDefault(queue, box)
        except BaseException as exc:  # noqa: BLE001 - handed to the producer, never lost
            with LOCK:
                done = req.completed
            if not done:
                # the driver crashed holding the request: force-complete it so the producer learns why
                try:
                    req.cancel()
                finally:
                    req.finish(STATUS_UNSUCCESSFUL, 0, exc)
            else:
                self.errors.append(exc)  # raised after the request was completed: kept, see ``errors``
        finally:
            IN_QUEUE_CALLBACK.active = False

    def _before_delete(self) -> None:
        with self.cond:
            self.stopping = True
            waiting = list(self.pending)
            self.pending.clear()
            self.cond.notify_all()
        for req in waiting:
            req.finish(STATUS_CANCELLED, 0)
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join()
        with LOCK:
            if _default_queues.get(self.device) is self:
                del _default_queues[self.device]


class WDFQUEUE(WDFOBJECT):
    """Handle box for a WDFQUEUE."""

    _OBJECT = FxIoQueue


def WdfIoQueueCreate(
    Device: Any, Config: WDF_IO_QUEUE_CONFIG, QueueAttributes: Any, Queue: WDFQUEUE | None
) -> NTSTATUS:
    """WdfIoQueueCreate: a queue for ``Device`` (the WDFUSBDEVICE standing in for the driver's WDFDEVICE;
    the queue's default parent). Starts its dispatch thread(s).

    ``Config.Size`` wrong -> STATUS_INFO_LENGTH_MISMATCH; unknown DispatchType ->
    STATUS_INVALID_PARAMETER; a sequential/parallel queue without EvtIoWrite or EvtIoDefault, or
    a second default queue -> STATUS_INVALID_DEVICE_REQUEST (WDF: STATUS_WDF_NO_CALLBACK /
    STATUS_WDF_DUPLICATE_DEFAULT_QUEUE... project contract: one status per kind); ``Queue`` may be
    None only for a default queue.
    """
    device = get_object(Device, FxUsbDevice, "WDFDEVICE")
    required(Config, "Config")
    if Queue is not None:
        Queue.value = None
    if integer(Config.Size) != WDF_IO_QUEUE_CONFIG.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH
    dispatch = integer(Config.DispatchType)
    if dispatch not in (WdfIoQueueDispatchSequential, WdfIoQueueDispatchParallel, WdfIoQueueDispatchManual):
        return STATUS_INVALID_PARAMETER
    presented = integer(Config.Settings.Parallel.NumberOfPresentedRequests)
    if dispatch == WdfIoQueueDispatchParallel and (presented is None or presented == 0):
        return STATUS_INVALID_PARAMETER
    handlers = (Config.EvtIoWrite, Config.EvtIoRead, Config.EvtIoDeviceControl, Config.EvtIoDefault)
    if Config.DispatchType != WdfIoQueueDispatchManual and all(h is None for h in handlers):
        return STATUS_INVALID_DEVICE_REQUEST
    if Queue is None and not Config.DefaultQueue:
        return STATUS_INVALID_PARAMETER
    status, parent = validate_attributes(QueueAttributes)
    if not NT_SUCCESS(status):
        return status
    with LOCK:
        existing = _default_queues.get(device)
        if Config.DefaultQueue and existing is not None and not existing.is_deleted:
            return STATUS_INVALID_DEVICE_REQUEST
        config = WDF_IO_QUEUE_CONFIG()
        config.__dict__.update(Config.__dict__)  # the framework keeps its own copy
        queue = FxIoQueue(device, config, parent or device, QueueAttributes)
        if Config.DefaultQueue:
            _default_queues[device] = queue
    from ._removal import purge_on_removal  # (it needs the queue states, which need this module)

    purge_on_removal(queue)
    if Queue is not None:
        store(Queue, "Queue", queue, WDFQUEUE)
    return STATUS_SUCCESS


def WdfDeviceConfigureRequestDispatching(Device: Any, Queue: Any, RequestType: int) -> NTSTATUS:
    """WdfDeviceConfigureRequestDispatching: the device hands every request of ``RequestType``
    (``WdfRequestTypeRead``, ``Write`` or ``DeviceControl``) to ``Queue`` instead of its default
    queue. Another type, a queue of another device, or a type already configured:
    STATUS_INVALID_PARAMETER / STATUS_INVALID_DEVICE_REQUEST."""
    device = get_object(Device, FxUsbDevice, "WDFDEVICE")
    queue = get_object(Queue, FxIoQueue)
    kind = integer(RequestType)
    if kind not in _HANDLERS:
        return STATUS_INVALID_PARAMETER
    if queue.device is not device:
        return STATUS_INVALID_DEVICE_REQUEST
    with LOCK:
        routes = _dispatching.setdefault(device, {})
        if kind in routes and not routes[kind].is_deleted:
            return STATUS_INVALID_DEVICE_REQUEST  # (WDF: STATUS_WDF_BUSY for a second queue)
        routes[kind] = queue
    return STATUS_SUCCESS


def WdfRequestGetIoQueue(Request: Any) -> Any:
    """WdfRequestGetIoQueue: the queue that presented a received request (None for one the
    driver created)."""
    req = get_object(Request, FxRequest)
    queue = req.queue if isinstance(req, FxReceivedRequest) else None
    return WDFQUEUE(queue) if queue is not None else None


def WdfIoQueueGetDevice(Queue: Any) -> FxUsbDevice:
    """WdfIoQueueGetDevice: the device the queue belongs to."""
    return get_object(Queue, FxIoQueue).device


def WdfIoQueueRetrieveNextRequest(Queue: Any, OutRequest: Any) -> NTSTATUS:
    """WdfIoQueueRetrieveNextRequest (manual queues): the next request, or STATUS_NO_MORE_ENTRIES."""
    queue = get_object(Queue, FxIoQueue)
    required(OutRequest, "OutRequest")
    OutRequest.value = None
    if queue.config.DispatchType != WdfIoQueueDispatchManual:
        return STATUS_INVALID_DEVICE_REQUEST
    if not queue.dispatching:
        return STATUS_WDF_PAUSED  # stopped (WdfIoQueueStop): WdfIoQueueStart resumes it
    req = queue.take()
    if req is None:
        return STATUS_NO_MORE_ENTRIES
    OutRequest.value = req
    return STATUS_SUCCESS
