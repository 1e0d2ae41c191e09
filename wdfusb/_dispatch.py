"""The completion dispatcher: the one thread that runs completion routines.

Asynchronous transfers (``Transfer.submit(..., tag=...)``) are completed by the
engine's event threads, which queue them; this module's thread — "wdfusb-completions",
started on first use, a daemon — takes them off the queue (waiting in C with the GIL
released, no polling) and calls each submitter's callback with ``(status, actual)``.

The thread is in *completion context* (owned by C, see :mod:`wdfusb._engine.completions`):
the engine refuses any blocking call from it (``WU_ERR_WRONG_CONTEXT``, the host's "IRQL
above PASSIVE_LEVEL"), the WDF layer returns ``STATUS_INVALID_DEVICE_REQUEST`` first, and
:func:`wait_idle` refuses (it would wait for this very thread). An exception raised by a
callback is never lost: it is kept and re-raised by :func:`raise_pending`
(``wdfusb.wdf.wait_for_completions`` calls it) — unless the submitter gave an ``on_error``.

A *listener* (:func:`listen`) is a callback for a tag that stays: a streaming ring's notes
(``wu_ring_notify``: one of its transfers came back) arrive with it as often as C posts them
and run here like completion routines; a listener is no pending transfer (:func:`wait_idle`
does not wait for it).

After ``os.fork()`` the child starts a new thread on first use; the parent's pending
transfers are not the child's (C refuses every device opened before the fork).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable

from ._engine import Transfer, in_completion_context, new_batch, next_completions, set_completion_context

Callback = Callable[[int, int], None]
ErrorSink = Callable[[BaseException], None]

_lock = threading.Lock()
_idle = threading.Condition(_lock)
_pending: dict[int, tuple[Transfer, Callback, ErrorSink | None]] = {}
_listeners: dict[int, Callback] = {}
_errors: list[BaseException] = []
_tags = itertools.count(1)
_thread: threading.Thread | None = None


def in_completion_routine() -> bool:
    """True on a thread that runs completion routines (the dispatcher thread among them)."""
    return bool(in_completion_context())


def submit(
    xfer: Transfer,
    ep: int,
    ep_type: int,
    buf: object,
    length: int,
    flags: int,
    timeout_us: int,
    callback: Callback,
    on_error: ErrorSink | None = None,
) -> int:
    """Start ``xfer`` asynchronously; ``callback(status, actual)`` runs on the dispatcher thread.

    Returns the engine status of the submit (the callback runs only if it is 0).
    """
    _ensure_thread()
    tag = next(_tags)
    with _lock:
        _pending[tag] = (xfer, callback, on_error)
    rc = xfer.submit(ep, ep_type, buf, length, flags, timeout_us, tag)
    if rc != 0:
        with _lock:
            _pending.pop(tag, None)
            _idle.notify_all()
    return rc


def listen(callback: Callback) -> int:
    """A tag of its own for ``callback``, run on the dispatcher thread with ``(status, actual)``
    each time a completion with that tag is taken off the queue, until :func:`unlisten`."""
    _ensure_thread()
    tag = next(_tags)
    with _lock:
        _listeners[tag] = callback
    return tag


def unlisten(tag: int) -> None:
    """Forget the listener of ``tag`` (a completion with it that is still queued is ignored)."""
    with _lock:
        _listeners.pop(tag, None)


def pending_count() -> int:
    """Asynchronous transfers submitted whose callback has not finished."""
    with _lock:
        return len(_pending)


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until every submitted transfer's callback has run; False on time-out.

    Refused (``RuntimeError``) on a thread that runs completion routines: it would wait for
    itself, and no later routine in the process would run."""
    if in_completion_context():
        raise RuntimeError("waiting for completions inside a completion routine would wait for itself")
    with _lock:
        return _idle.wait_for(lambda: not _pending, timeout)


def raise_pending() -> None:
    """Re-raise the oldest exception a completion routine raised (and forget it)."""
    with _lock:
        if not _errors:
            return
        exc = _errors.pop(0)
    raise exc


def _ensure_thread() -> None:
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_run, name="wdfusb-completions", daemon=True)
        _thread.start()


def _run() -> None:
    set_completion_context(True)
    batch = new_batch()
    while True:
        for tag, status, actual in next_completions(batch):
            with _lock:
                entry = _pending.get(tag)
                listener = _listeners.get(tag) if entry is None else None
            if entry is None:
                if listener is not None:
                    try:
                        listener(status, actual)
                    except BaseException as exc:  # noqa: BLE001 - kept for the caller, never lost
                        _keep(exc, None)
                    del listener
                continue
            xfer, callback, on_error = entry
            try:
                callback(status, actual)
            except BaseException as exc:  # noqa: BLE001 - kept for the caller, never lost
                _keep(exc, on_error)
            finally:
                xfer.dispatched()  # unless the routine sent it again
                del entry, xfer, callback, on_error  # hold nothing once a waiter may go on
                with _lock:
                    _pending.pop(tag, None)
                    _idle.notify_all()


def _keep(exc: BaseException, on_error: ErrorSink | None) -> None:
    if on_error is not None:
        try:
            on_error(exc)
            return
        except BaseException as again:  # noqa: BLE001 - the sink failed: keep both
            exc = again
    with _lock:
        _errors.append(exc)


def _after_fork_in_child() -> None:
    """The parent's thread and pending transfers are not the child's."""
    global _lock, _idle, _thread
    _lock = threading.Lock()
    _idle = threading.Condition(_lock)
    _pending.clear()
    _listeners.clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
