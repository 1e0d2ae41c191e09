"""The completion dispatcher: the one thread that runs completion routines.

Asynchronous transfers (``Transfer.submit(..., tag=...)``) are completed by the
engine's event threads, which queue them; this module's thread — "wdfusb-completions",
started on first use, a daemon — takes them off the queue (waiting in C with the GIL
released, no polling) and calls each submitter's callback with ``(status, actual)``.

While a callback runs, the thread is in *completion context*: the engine refuses any
synchronous transfer from it (``WU_ERR_WRONG_CONTEXT``, the host's "IRQL above
PASSIVE_LEVEL"), and :func:`in_completion_routine` is true so the WDF layer returns
``STATUS_INVALID_DEVICE_REQUEST`` first. An exception raised by a callback is never
lost: it is kept and re-raised by :func:`raise_pending` (``wdfusb.wdf.wait_for_completions``
calls it) — unless the submitter gave an ``on_error``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from ._engine import Transfer, ffi, lib

Callback = Callable[[int, int], None]
ErrorSink = Callable[[BaseException], None]


class _DispatchState(threading.local):
    active = False  # True on the dispatcher thread only (set in _run)


_local = _DispatchState()
_lock = threading.Lock()
_idle = threading.Condition(_lock)
_pending: dict[int, tuple[Transfer, Callback, ErrorSink | None]] = {}
_errors: list[BaseException] = []
_tags = itertools.count(1)
_thread: threading.Thread | None = None


def in_completion_routine() -> bool:
    """True on the dispatcher thread while it runs completion routines."""
    return _local.active


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
    xfer.dispatch_tag = tag
    rc = xfer.submit(ep, ep_type, buf, length, flags, timeout_us, tag)
    if rc != 0:
        xfer.dispatch_tag = 0
        with _lock:
            _pending.pop(tag, None)
            _idle.notify_all()
    return rc


def pending_count() -> int:
    """Asynchronous transfers submitted whose callback has not finished."""
    with _lock:
        return len(_pending)


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until every submitted transfer's callback has run; False on time-out."""
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
    lib.wu_set_completion_context(1)
    _local.active = True
    batch = ffi.new("wu_completion[]", 64)
    while True:
        n = lib.wu_cq_wait(-1, batch, 64)
        for c in batch[0:n]:
            with _lock:
                entry = _pending.get(c.tag)
            if entry is None:
                continue
            xfer, callback, on_error = entry
            try:
                callback(int(c.status), int(c.actual))
            except BaseException as exc:  # noqa: BLE001 - kept for the caller, never lost
                _keep(exc, on_error)
            finally:
                xfer.dispatched()  # unless the routine sent it again
                with _lock:
                    _pending.pop(c.tag, None)
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
