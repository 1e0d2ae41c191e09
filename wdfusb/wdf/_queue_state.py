"""Starting, stopping, draining and purging an I/O queue, and asking for its state.

As in WDF (FxIoQueue): a queue *accepts* new requests (else posting one completes it with
STATUS_INVALID_DEVICE_STATE, and forwarding one returns STATUS_WDF_BUSY, the driver keeps it)
and *dispatches* what it holds (else nothing is presented and WdfIoQueueRetrieveNextRequest
returns STATUS_WDF_PAUSED).

* Stop: accepts, does not dispatch; StopComplete runs once the driver owns none of the queue's
  requests (requests still waiting do not count). StopAndPurge also cancels what waits and
  the driver's cancelable requests.
* Drain: stops accepting, keeps dispatching; DrainComplete runs once nothing waits and the
  driver owns nothing.
* Purge: stops accepting, cancels what waits (STATUS_CANCELLED, or EvtIoCanceledOnQueue for a
  request the driver forwarded here) and every request the driver marked cancelable (its
  cancel routine; marking one cancelable while the purge runs cancels it at once);
  PurgeComplete runs once nothing waits and the driver owns nothing.
* Start: accepts and dispatches again (after any of them).

Completion callbacks are ``EvtIoQueueState(Queue, Context)``; one may run inside the call that
asks for it (nothing to wait for) or on the thread that completes the last request. Asking
for a second Stop (or a second Drain/Purge) callback while one is pending is a WdfBugCheck
(WDF_QUEUE_FATAL_ERROR). The ``...Synchronously`` forms wait; called from an EvtIoXxx
callback they would wait for themselves, which is a WdfBugCheck here (WDF deadlocks).
EvtIoStop and EvtIoResume are not called: WDF calls them on power transitions only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._handles import LOCK, WDF_QUEUE_FATAL_ERROR, WDF_VERIFIER_FATAL_ERROR, WdfBugCheck, get_object
from ._queue import IN_QUEUE_CALLBACK, FxIoQueue, FxReceivedRequest
from ._queue_config import (
    WdfIoQueueAcceptRequests,
    WdfIoQueueDispatchRequests,
    WdfIoQueueDriverNoRequests,
    WdfIoQueueNoRequests,
)

__all__ = [
    "WdfIoQueueDrain",
    "WdfIoQueueDrainSynchronously",
    "WdfIoQueueGetState",
    "WdfIoQueuePurge",
    "WdfIoQueuePurgeSynchronously",
    "WdfIoQueueStart",
    "WdfIoQueueStop",
    "WdfIoQueueStopAndPurge",
    "WdfIoQueueStopAndPurgeSynchronously",
    "WdfIoQueueStopSynchronously",
]

QueueStateCallback = Callable[[Any, Any], Any]


def WdfIoQueueStart(Queue: Any) -> None:
    """WdfIoQueueStart: accept and dispatch again; what waits is presented now."""
    queue = get_object(Queue, FxIoQueue)
    with queue.cond:
        queue.accepting = queue.dispatching = True
        queue.cancel_dispatched = False
        queue.cond.notify_all()


def WdfIoQueueStop(Queue: Any, StopComplete: QueueStateCallback | None, Context: Any) -> None:
    """WdfIoQueueStop: keep accepting, stop presenting; ``StopComplete(Queue, Context)`` once
    the driver owns none of the queue's requests."""
    _stop(get_object(Queue, FxIoQueue), StopComplete, Context, purge=False)


def WdfIoQueueStopSynchronously(Queue: Any) -> None:
    """WdfIoQueueStopSynchronously: WdfIoQueueStop, then wait until the driver owns none."""
    queue = get_object(Queue, FxIoQueue)
    _synchronously(queue, "WdfIoQueueStopSynchronously", lambda cb: _stop(queue, cb, None, purge=False))


def WdfIoQueueStopAndPurge(Queue: Any, StopAndPurgeComplete: QueueStateCallback | None, Context: Any) -> None:
    """WdfIoQueueStopAndPurge: WdfIoQueueStop, and cancel what waits and the driver's cancelable requests."""
    _stop(get_object(Queue, FxIoQueue), StopAndPurgeComplete, Context, purge=True)


def WdfIoQueueStopAndPurgeSynchronously(Queue: Any) -> None:
    """WdfIoQueueStopAndPurgeSynchronously: WdfIoQueueStopAndPurge, then wait."""
    queue = get_object(Queue, FxIoQueue)
    _synchronously(queue, "WdfIoQueueStopAndPurgeSynchronously", lambda cb: _stop(queue, cb, None, purge=True))


def WdfIoQueueDrain(Queue: Any, DrainComplete: QueueStateCallback | None, Context: Any) -> None:
    """WdfIoQueueDrain: refuse new requests, present what waits; ``DrainComplete(Queue, Context)``
    once nothing waits and the driver owns none."""
    _purge(get_object(Queue, FxIoQueue), DrainComplete, Context, cancel=False)


def WdfIoQueueDrainSynchronously(Queue: Any) -> None:
    """WdfIoQueueDrainSynchronously: WdfIoQueueDrain, then wait."""
    queue = get_object(Queue, FxIoQueue)
    _synchronously(queue, "WdfIoQueueDrainSynchronously", lambda cb: _purge(queue, cb, None, cancel=False))


def WdfIoQueuePurge(Queue: Any, PurgeComplete: QueueStateCallback | None, Context: Any) -> None:
    """WdfIoQueuePurge: refuse new requests, cancel what waits and the driver's cancelable
    requests; ``PurgeComplete(Queue, Context)`` once nothing waits and the driver owns none.
    The queue stays closed to new requests until WdfIoQueueStart."""
    _purge(get_object(Queue, FxIoQueue), PurgeComplete, Context, cancel=True)


def WdfIoQueuePurgeSynchronously(Queue: Any) -> None:
    """WdfIoQueuePurgeSynchronously: WdfIoQueuePurge, then wait."""
    queue = get_object(Queue, FxIoQueue)
    _synchronously(queue, "WdfIoQueuePurgeSynchronously", lambda cb: _purge(queue, cb, None, cancel=True))


def WdfIoQueueGetState(Queue: Any, QueueRequests: Any, DriverRequests: Any) -> int:
    """WdfIoQueueGetState: the WDF_IO_QUEUE_STATE flags; ``QueueRequests`` / ``DriverRequests``
    (ULONG boxes or None) receive how many requests wait and how many the driver owns."""
    queue = get_object(Queue, FxIoQueue)
    with queue.cond:
        waiting, owned = len(queue.pending), len(queue.driver_owned)
        state = WdfIoQueueAcceptRequests if queue.accepting and not queue.stopping else 0
        state |= WdfIoQueueDispatchRequests if queue.dispatching else 0
    state |= 0 if waiting else WdfIoQueueNoRequests
    state |= 0 if owned else WdfIoQueueDriverNoRequests
    if QueueRequests is not None:
        QueueRequests.value = waiting
    if DriverRequests is not None:
        DriverRequests.value = owned
    return state


# ---- the state changes ----------------------------------------------------------------------


def _register(queue: FxIoQueue, slot: str, callback: QueueStateCallback | None, context: Any, what: str) -> None:
    """Park a completion callback in ``slot`` (under the queue's lock); one at a time."""
    if callback is None:
        return
    if getattr(queue, slot) is not None:
        raise WdfBugCheck(
            f"{what} on {queue!r} while an earlier one's callback is still pending", WDF_QUEUE_FATAL_ERROR, queue
        )
    setattr(queue, slot, (callback, context))


def _stop(queue: FxIoQueue, callback: QueueStateCallback | None, context: Any, purge: bool) -> None:
    with queue.cond:
        _register(queue, "idle_complete", callback, context, "WdfIoQueueStop")
        queue.accepting = not queue.stopping
        queue.dispatching = False
        waiting, cancelable = _take_cancellable(queue) if purge else ([], [])
    _cancel(queue, waiting, cancelable)


def _purge(queue: FxIoQueue, callback: QueueStateCallback | None, context: Any, cancel: bool) -> None:
    with queue.cond:
        _register(queue, "purge_complete", callback, context, "WdfIoQueuePurge" if cancel else "WdfIoQueueDrain")
        queue.accepting = False
        if cancel:
            queue.cancel_dispatched = True
        waiting, cancelable = _take_cancellable(queue) if cancel else ([], [])
        queue.cond.notify_all()
    _cancel(queue, waiting, cancelable)


def purge_for_removal(queue: FxIoQueue) -> None:
    """Surprise removal (``_removal.py``): WdfIoQueuePurge with nobody waiting for it."""
    if not queue.is_deleted:
        _purge(queue, None, None, cancel=True)


def _take_cancellable(queue: FxIoQueue) -> tuple[list[FxReceivedRequest], list[FxReceivedRequest]]:
    """Under the lock: empty the queue; list the driver's requests marked cancelable."""
    waiting = list(queue.pending)
    queue.pending.clear()
    return waiting, [r for r in queue.driver_owned if r.cancel_routine is not None]


def _cancel(queue: FxIoQueue, waiting: list[FxReceivedRequest], cancelable: list[FxReceivedRequest]) -> None:
    for req in waiting:
        req.cancel_on_queue(queue)
    for req in cancelable:
        req.cancel_for_driver()
    queue.settle()  # nothing to wait for: the callback runs now


def _synchronously(queue: FxIoQueue, what: str, start: Callable[[QueueStateCallback], None]) -> None:
    if getattr(IN_QUEUE_CALLBACK, "active", False):
        raise WdfBugCheck(
            f"{what} from an EvtIoXxx callback: it would wait for the request the callback holds",
            WDF_VERIFIER_FATAL_ERROR,
            queue,
        )
    done = threading.Event()
    start(lambda q, c: done.set())
    while not done.wait(0.05):  # slices: Ctrl-C is seen
        with LOCK:
            if queue.is_deleted:
                return
