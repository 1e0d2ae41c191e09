"""What a WDFIOTARGET does with the requests sent to it, by its state (FxIoTarget::SubmitLocked).

* **Started**: a request goes to the device.
* **Stopped** (``WdfIoTargetStop``): it waits. An asynchronous send (``WdfRequestSend``) is
  pended, in order, and ``WdfIoTargetStart`` sends it; a synchronous one waits for the start
  within its time-out (``STATUS_IO_TIMEOUT`` when it runs out, nothing sent). A request sent with
  ``WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE`` goes anyway (a pipe reset to a stopped pipe,
  a read beside a stopped continuous reader). A pended request that is cancelled
  (``WdfRequestCancelSentRequest``) completes at once with ``STATUS_CANCELLED``; one whose
  time-out runs out while it is pended completes with ``STATUS_IO_TIMEOUT`` (the time-out counts
  from ``WdfRequestSend``, as KMDF's request timer does).
* **Closed** (its device is gone or deleted): refused with ``STATUS_INVALID_DEVICE_STATE``,
  the requests still pended included.

``WdfIoTargetStop``'s action is for the requests sent through the target that are not back yet
(KMDF's sent list; those sent with ``IGNORE_TARGET_STATE`` are not on it):
``WdfIoTargetCancelSentIo`` cancels them and waits until they are back,
``WdfIoTargetWaitForSentIoToComplete`` waits, ``WdfIoTargetLeaveSentIoPending`` returns at once.
An entry of the list is the request's C transfer: its state stays C's; the list only says which
transfers this target sent. A sender puts its transfer on the list before
it looks at the state, and a stop changes the state before it looks at the list, so no send
slips between the two.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._engine import SLICE_US, Transfer
from ._ntstatus import NTSTATUS, STATUS_INVALID_DEVICE_STATE, STATUS_IO_TIMEOUT, STATUS_SUCCESS, USBD_STATUS_SUCCESS
from ._structs import (
    WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE,
    WdfIoTargetCancelSentIo,
    WdfIoTargetLeaveSentIoPending,
)

Resume = Callable[[NTSTATUS], None]  # a pended send: called with STATUS_SUCCESS to send it, else its failure


class TargetState:
    """One target's started flag, its pended sends and its sent list."""

    __slots__ = ("cond", "draining", "pended", "sent", "started")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = True
        self.pended: deque[tuple[Any, Resume]] = deque()  # (request, resume), in the order sent
        self.sent: set[Transfer] = set()  # the transfers sent through the target, not back yet (GIL-atomic updates)
        self.draining = False  # a WdfIoTargetStop waits for the list to empty: senders notify


def ignores_state(options: Any) -> bool:
    return options is not None and bool(options.Flags & WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE)


def leave(state: TargetState, xfer: Transfer | None) -> None:
    """The transfer is back (or was never sent): off the sent list."""
    state.sent.discard(xfer)
    if state.draining:
        with state.cond:
            state.cond.notify_all()


def admit(target: Any, options: Any, xfer: Transfer, timeout_us: int) -> tuple[NTSTATUS, int]:
    """Before a synchronous send of ``xfer`` to ``target``: on the sent list (unless it ignores
    the target's state), waiting while the target is stopped. Returns the status to go on with
    and the time-out left for the transfer; the caller calls :func:`leave` once it is back."""
    state: TargetState = target.target_state
    if ignores_state(options):
        return STATUS_SUCCESS, timeout_us
    while True:
        state.sent.add(xfer)  # first, then the state: a stop in between cancels or waits for it
        if state.started:
            return STATUS_SUCCESS, timeout_us
        leave(state, xfer)
        status, timeout_us = wait_started(state, lambda: bool(target.target_closed), timeout_us)
        if status:
            return status, 0


def wait_started(state: TargetState, closed: Callable[[], bool], timeout_us: int) -> tuple[NTSTATUS, int]:
    """A synchronous sender at a stopped target: wait for the start. Returns the status to go on
    with and the time-out left for the transfer (0: none)."""
    deadline = time.monotonic() + timeout_us / 1e6 if timeout_us else None
    with state.cond:
        while not state.started:
            if closed():
                return STATUS_INVALID_DEVICE_STATE, 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return STATUS_IO_TIMEOUT, 0
            state.cond.wait(SLICE_US / 1e6 if left is None else min(left, SLICE_US / 1e6))  # Ctrl-C between slices
    if deadline is None:
        return STATUS_SUCCESS, timeout_us
    return STATUS_SUCCESS, max(1, int((deadline - time.monotonic()) * 1e6))


def wait_for_start(target: Any, options: Any, timeout_us: int) -> NTSTATUS:
    """A synchronous request that moves no data (a pipe's abort or reset) at a stopped target:
    it waits for the start too, unless it ignores the target's state."""
    state: TargetState = target.target_state
    if state.started or ignores_state(options):
        return STATUS_SUCCESS
    return wait_started(state, lambda: bool(target.target_closed), timeout_us)[0]


def end_unsent(req: Any, status: NTSTATUS) -> NTSTATUS:
    """A request that never reached the device (its time-out ran out at a stopped target, or the
    target closed meanwhile) completes with ``status``."""
    if status == STATUS_IO_TIMEOUT:
        with req.lock:
            req.canceled = True  # WDF cancels the request on a time-out (FX_REQUEST_CANCELLED_FROM_TIMER)
    req.end(status, 0, USBD_STATUS_SUCCESS)
    return status


def pend(state: TargetState, req: Any, resume: Resume) -> bool:
    """An asynchronous send at a stopped target is pended (True); False: the target runs, send now."""
    with state.cond:
        if state.started:
            return False
        state.pended.append((req, resume))
        return True


class PendedClock:
    """The time-out of an asynchronous send, counted from ``WdfRequestSend`` (KMDF starts the
    request's timer when the request is sent or pended): a timer while the request is pended
    completes it with ``STATUS_IO_TIMEOUT`` if the target is still stopped when it runs out; a
    start before that sends it with the time-out left."""

    __slots__ = ("deadline", "timer")

    def __init__(self, timeout_us: int) -> None:
        self.deadline = time.monotonic() + timeout_us / 1e6 if timeout_us else None
        self.timer: threading.Timer | None = None

    def arm(self, on_expiry: Callable[[], None]) -> None:
        if self.deadline is not None:
            self.timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), on_expiry)
            self.timer.daemon = True
            self.timer.start()

    def stop(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def left_us(self) -> int:
        """The engine's time-out for the send (0: none; at least 1 µs once it has run out)."""
        if self.deadline is None:
            return 0
        return max(1, int((self.deadline - time.monotonic()) * 1e6))


def expire(state: TargetState, req: Any) -> None:
    """A pended request's time-out ran out: off the pended list, completed with
    ``STATUS_IO_TIMEOUT``, unless a start or a cancel took it first."""
    resume = unpend(state, req)
    if resume is not None:
        resume(STATUS_IO_TIMEOUT)


def unpend(state: TargetState, req: Any) -> Resume | None:
    """Take a pended request off (it is being cancelled); its resume, or None if it is not pended."""
    with state.cond:
        for i, (pended, resume) in enumerate(state.pended):
            if pended is req:
                del state.pended[i]
                return resume
    return None


def start(state: TargetState) -> None:
    """WdfIoTargetStart: the target runs; the pended sends go, in order; waiting senders go."""
    with state.cond:
        state.started = True
        pended = list(state.pended)
        state.pended.clear()
        state.cond.notify_all()
    for _req, resume in pended:
        resume(STATUS_SUCCESS)


def stop(state: TargetState, action: int) -> None:
    """WdfIoTargetStop: new sends wait from now on; then the action on the sent list."""
    with state.cond:
        state.started = False
    if action == WdfIoTargetLeaveSentIoPending:
        return
    if action == WdfIoTargetCancelSentIo:
        for xfer in list(state.sent):
            xfer.cancel()  # not submitted yet: the cancel sticks and its submit fails as cancelled
    with state.cond:
        state.draining = True
        try:
            while state.sent:
                state.cond.wait(SLICE_US / 1e6)
        finally:
            state.draining = False


def purge(state: TargetState) -> None:
    """The target closed: every pended send fails with STATUS_INVALID_DEVICE_STATE, and senders
    waiting for a start see it."""
    with state.cond:
        pended = list(state.pended)
        state.pended.clear()
        state.cond.notify_all()
    for _req, resume in pended:
        resume(STATUS_INVALID_DEVICE_STATE)
