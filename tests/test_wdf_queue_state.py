"""Queue states: WdfIoQueueStart / Stop / StopAndPurge / Drain / Purge (and the Synchronously
forms), WdfIoQueueGetState and its macros, and what posting, forwarding, retrieving and
marking cancelable do in each state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_wdf_helpers import Rig
from test_wdf_queue import WAIT, make_queue

from wdfusb.wdf import *

BLOCKED = 0.2  # how long a call must stay blocked to count as waiting (a bound, never a timing claim)


class Held:
    """An EvtIoWrite that keeps every request it is given (the driver owns them)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.arrived = threading.Semaphore(0)

    def __call__(self, queue: Any, request: Any, length: int) -> None:
        self.requests.append(request)
        self.arrived.release()

    def wait(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.arrived.acquire(timeout=WAIT)


def state(queue: WDFQUEUE) -> tuple[int, int, int]:
    waiting, owned = ULONG(), ULONG()
    return WdfIoQueueGetState(queue, waiting, owned), waiting.value, owned.value


def calls() -> tuple[list[tuple[Any, Any]], Callable[[Any, Any], None]]:
    seen: list[tuple[Any, Any]] = []
    return seen, lambda q, ctx: seen.append((q.value, ctx))


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


@pytest.fixture
def held() -> Iterator[Held]:
    yield Held()


def test_a_new_queue_is_ready_and_idle(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    flags, waiting, owned = state(queue)
    ready = WdfIoQueueAcceptRequests | WdfIoQueueDispatchRequests
    assert flags == ready | WdfIoQueueNoRequests | WdfIoQueueDriverNoRequests
    assert (waiting, owned) == (0, 0)
    assert WDF_IO_QUEUE_READY(flags) and WDF_IO_QUEUE_IDLE(flags)
    assert not (WDF_IO_QUEUE_STOPPED(flags) or WDF_IO_QUEUE_DRAINED(flags) or WDF_IO_QUEUE_PURGED(flags))
    assert WdfIoQueueGetState(queue, None, None) == flags


def test_stop_keeps_new_requests_and_start_presents_them(rig: Rig) -> None:
    queue = make_queue(rig, lambda q, r, n: WdfRequestComplete(r, STATUS_SUCCESS))
    seen, stopped = calls()
    WdfIoQueueStop(queue, stopped, "ctx")
    assert seen == [(queue.value, "ctx")]  # the driver owned nothing: at once
    op = post_write(queue, b"abc")
    flags, waiting, owned = state(queue)
    assert WDF_IO_QUEUE_STOPPED(flags) and (waiting, owned) == (1, 0) and not op.done
    WdfIoQueueStart(queue)
    assert op.wait(WAIT) == (STATUS_SUCCESS, 0)
    assert WDF_IO_QUEUE_READY(state(queue)[0])


def test_stop_completes_once_the_driver_completes_what_it_owns(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    first = post_write(queue, b"1")
    held.wait()
    seen, stopped = calls()
    WdfIoQueueStop(queue, stopped, 7)
    second = post_write(queue, b"2")  # accepted, not presented
    assert seen == [] and state(queue)[1:] == (1, 1)
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    assert seen == [(queue.value, 7)]  # on the completing thread, exactly once
    assert first.wait(WAIT) == (STATUS_SUCCESS, 0) and not second.done and len(held.requests) == 1
    WdfIoQueueStart(queue)
    held.wait()
    WdfRequestComplete(held.requests[1], STATUS_SUCCESS)
    assert second.wait(WAIT) == (STATUS_SUCCESS, 0) and len(seen) == 1


def test_stop_synchronously_waits_for_the_driver(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    op = post_write(queue, b"x")
    held.wait()
    t = in_thread(lambda: WdfIoQueueStopSynchronously(queue))
    t.join(BLOCKED)
    assert t.is_alive()  # the driver still owns a request
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    t.join(WAIT)
    assert not t.is_alive() and op.done
    assert WDF_IO_QUEUE_STOPPED(state(queue)[0])


def test_drain_refuses_new_requests_and_presents_the_waiting_ones(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    first, second = post_write(queue, b"1"), post_write(queue, b"2")
    held.wait()
    seen, drained = calls()
    WdfIoQueueDrain(queue, drained, None)
    assert post_write(queue, b"3").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    held.wait()  # the waiting one is still presented
    assert seen == []
    WdfRequestComplete(held.requests[1], STATUS_SUCCESS)
    assert seen == [(queue.value, None)]
    assert first.wait(WAIT)[0] == second.wait(WAIT)[0] == STATUS_SUCCESS
    assert WDF_IO_QUEUE_DRAINED(state(queue)[0])
    WdfIoQueueStart(queue)
    post_write(queue, b"4")
    held.wait()
    WdfRequestComplete(held.requests[2], STATUS_SUCCESS)


def test_purge_cancels_what_waits_and_what_is_cancelable_then_waits_for_the_rest(rig: Rig, held: Held) -> None:
    stops: list[int] = []
    queue = make_queue(rig, held, WdfIoQueueDispatchParallel, presented=2, EvtIoStop=lambda q, r, f: stops.append(f))
    cancelable, plain, waiting = post_write(queue, b"a"), post_write(queue, b"b"), post_write(queue, b"c")
    held.wait(2)
    routine_ran: list[Any] = []

    def evt_cancel(r: Any) -> None:
        routine_ran.append(r.value)
        WdfRequestComplete(r, STATUS_CANCELLED)

    WdfRequestMarkCancelable(held.requests[0], evt_cancel)
    t = in_thread(lambda: WdfIoQueuePurgeSynchronously(queue))
    assert cancelable.wait(WAIT) == (STATUS_CANCELLED, 0) and routine_ran == [held.requests[0].value]
    assert waiting.wait(WAIT) == (STATUS_CANCELLED, 0)
    t.join(BLOCKED)
    assert t.is_alive() and not plain.done  # the driver still owns one that is not cancelable
    # marking it cancelable now cancels it at once
    assert WdfRequestMarkCancelableEx(held.requests[1], evt_cancel) == STATUS_CANCELLED
    WdfRequestComplete(held.requests[1], STATUS_SUCCESS)
    t.join(WAIT)
    assert not t.is_alive() and plain.wait(WAIT) == (STATUS_SUCCESS, 0)
    assert stops == []  # EvtIoStop belongs to power transitions
    flags = state(queue)[0]
    assert WDF_IO_QUEUE_PURGED(flags) and not WDF_IO_QUEUE_READY(flags)
    assert post_write(queue, b"d").wait(WAIT) == (STATUS_INVALID_DEVICE_STATE, 0)  # closed until started
    WdfIoQueueStart(queue)
    later = post_write(queue, b"e")
    held.wait()
    WdfRequestMarkCancelable(held.requests[2], evt_cancel)  # no purge any more: just marked
    assert WdfRequestUnmarkCancelable(held.requests[2]) == STATUS_SUCCESS
    WdfRequestComplete(held.requests[2], STATUS_SUCCESS)
    assert later.wait(WAIT) == (STATUS_SUCCESS, 0)


def test_stop_and_purge_cancels_what_waits_but_keeps_accepting(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    first, second = post_write(queue, b"1"), post_write(queue, b"2")
    held.wait()
    seen, done = calls()
    WdfIoQueueStopAndPurge(queue, done, "c")
    assert second.wait(WAIT) == (STATUS_CANCELLED, 0) and seen == []
    third = post_write(queue, b"3")  # accepted (stopped, not purged shut)
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    assert seen == [(queue.value, "c")] and first.wait(WAIT) == (STATUS_SUCCESS, 0)
    assert state(queue)[1:] == (1, 0) and not third.done
    WdfIoQueueStart(queue)
    held.wait()
    WdfRequestComplete(held.requests[1], STATUS_SUCCESS)
    assert third.wait(WAIT) == (STATUS_SUCCESS, 0)
    WdfIoQueueStopAndPurgeSynchronously(queue)  # nothing owned: returns at once
    assert WDF_IO_QUEUE_STOPPED(state(queue)[0])


def test_forwarding_to_a_queue_that_does_not_accept_is_busy(rig: Rig, held: Held) -> None:
    target = make_queue(rig, lambda q, r, n: WdfRequestComplete(r, STATUS_SUCCESS))
    source = make_queue(rig, held)
    op = post_write(source, b"x")
    held.wait()
    WdfIoQueueDrain(target, None, None)
    assert WdfRequestForwardToIoQueue(held.requests[0], target) == STATUS_WDF_BUSY
    assert state(source)[2] == 1  # still the driver's
    WdfIoQueueStart(target)
    assert WdfRequestForwardToIoQueue(held.requests[0], target) == STATUS_SUCCESS
    assert op.wait(WAIT) == (STATUS_SUCCESS, 0)


def test_a_stopped_manual_queue_is_paused(rig: Rig) -> None:
    queue = make_queue(rig, None, WdfIoQueueDispatchManual)
    op = post_write(queue, b"m")
    WdfIoQueueStop(queue, None, None)
    out = WDFREQUEST()
    assert WdfIoQueueRetrieveNextRequest(queue, out) == STATUS_WDF_PAUSED and out.value is None
    WdfIoQueueStart(queue)
    assert WdfIoQueueRetrieveNextRequest(queue, out) == STATUS_SUCCESS
    WdfRequestComplete(out, STATUS_SUCCESS)
    assert op.wait(WAIT) == (STATUS_SUCCESS, 0)
    assert WdfIoQueueRetrieveNextRequest(queue, out) == STATUS_NO_MORE_ENTRIES


def test_a_second_pending_callback_is_a_bug_check(rig: Rig, held: Held) -> None:
    queue = make_queue(rig, held)
    post_write(queue, b"x")
    held.wait()
    seen, cb = calls()
    WdfIoQueueStop(queue, cb, 1)
    with pytest.raises(WdfBugCheck) as info:
        WdfIoQueueStop(queue, cb, 2)
    assert info.value.subcode == WDF_QUEUE_FATAL_ERROR
    WdfIoQueueStop(queue, None, None)  # without a callback: nothing to collide with
    WdfIoQueueDrain(queue, cb, 3)  # the other slot is free
    with pytest.raises(WdfBugCheck):
        WdfIoQueuePurge(queue, cb, 4)
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    assert sorted(ctx for _, ctx in seen) == [1, 3]


def test_waiting_for_the_queue_from_its_own_callback_is_a_bug_check(rig: Rig) -> None:
    def evt(q: Any, r: Any, n: int) -> None:
        WdfIoQueueStopSynchronously(q)  # would wait for the request this callback holds

    queue = make_queue(rig, evt)
    with pytest.raises(WdfBugCheck) as info:
        post_write(queue, b"x").wait(WAIT)  # the callback's exception reaches the producer
    assert info.value.subcode == WDF_VERIFIER_FATAL_ERROR
    WdfIoQueueStopSynchronously(queue)  # from outside a callback it is fine


def test_only_a_forwarded_request_cancelled_on_a_queue_reaches_evt_io_canceled_on_queue(rig: Rig, held: Held) -> None:
    cancelled_on_queue: list[Any] = []

    def evt_canceled(q: Any, r: Any) -> None:
        cancelled_on_queue.append(r.value)
        WdfRequestComplete(r, STATUS_CANCELLED)

    target = make_queue(rig, held, EvtIoCanceledOnQueue=evt_canceled)
    source_held = Held()
    source = make_queue(rig, source_held)
    WdfIoQueueStop(target, None, None)  # requests wait in the target
    direct = post_write(target, b"direct")
    assert direct.cancel() and direct.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert cancelled_on_queue == []  # never presented: completed by the framework
    forwarded = post_write(source, b"fwd")
    source_held.wait()
    request = source_held.requests[0].value
    assert WdfRequestForwardToIoQueue(source_held.requests[0], target) == STATUS_SUCCESS
    assert forwarded.cancel() and forwarded.wait(WAIT) == (STATUS_CANCELLED, 0)
    assert cancelled_on_queue == [request]


def waiting_in(rig: Rig, held: Held, call: Callable[[WDFQUEUE], None]) -> tuple[WDFQUEUE, Any, threading.Thread]:
    """A sequential queue whose driver holds one request while another waits; ``call(queue)``
    runs in a thread. Returns the queue, the waiting request's IoOperation, the thread."""
    queue = make_queue(rig, held)
    post_write(queue, b"x")
    held.wait()
    waiting = post_write(queue, b"y")
    return queue, waiting, in_thread(lambda: call(queue))


def test_drain_synchronously_waits_for_the_waiting_and_the_owned(rig: Rig, held: Held) -> None:
    _, waiting, t = waiting_in(rig, held, WdfIoQueueDrainSynchronously)
    t.join(BLOCKED)
    assert t.is_alive()
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)
    held.wait()  # the waiting one is presented, and owned now
    assert t.is_alive() and not waiting.done
    WdfRequestComplete(held.requests[1], STATUS_SUCCESS)
    t.join(WAIT)
    assert not t.is_alive() and waiting.wait(WAIT) == (STATUS_SUCCESS, 0)


def test_deleting_the_queue_ends_a_synchronous_wait(rig: Rig, held: Held) -> None:
    queue, waiting, t = waiting_in(rig, held, WdfIoQueuePurgeSynchronously)
    assert waiting.wait(WAIT) == (STATUS_CANCELLED, 0)
    t.join(BLOCKED)
    assert t.is_alive()  # the driver still owns one
    WdfObjectDelete(queue)
    t.join(WAIT)
    assert not t.is_alive()
    WdfRequestComplete(held.requests[0], STATUS_SUCCESS)  # still the driver's to complete
    with pytest.raises(WdfBugCheck):
        WdfIoQueueStart(queue)
