"""WDFWAITLOCK: a driver's lock for passive-level code (KMDF's FxWaitLock).

``WdfWaitLockAcquire(Lock, Timeout)`` waits for ever with ``Timeout=None``; a ``Timeout`` box
(any object with ``.value``, as C's ``PLONGLONG``) or an int holds 100 ns units, negative for
relative, 0 to try once: ``STATUS_TIMEOUT`` if the lock was not had in time. Waiting in a
completion routine (above PASSIVE_LEVEL) is a bug check, as WDF's verifier makes it; trying
(``Timeout`` 0) is allowed there. The lock is not recursive: acquiring it twice on one thread
is a bug check, not a deadlock.
"""

from __future__ import annotations

import threading
from typing import Any

from ._context import at_passive_level
from ._handles import WDFOBJECT, FxObject, WdfBugCheck, get_object, integer, required, store, validate_attributes
from ._ntstatus import NT_SUCCESS, NTSTATUS, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, STATUS_TIMEOUT
from ._structs import timeout_to_seconds

__all__ = ["WDFWAITLOCK", "WDF_LOCK_ERROR", "WdfWaitLockAcquire", "WdfWaitLockCreate", "WdfWaitLockRelease"]

WDF_LOCK_ERROR = 0x0A  # WDF_BUGCHECK_CODES: a lock used wrongly


class FxWaitLock(FxObject):
    HANDLE_TYPE = "WDFWAITLOCK"

    def __init__(self, parent: FxObject | None, attributes: Any) -> None:
        super().__init__(parent, attributes)
        self.lock = threading.Lock()
        self.owner: int | None = None


class WDFWAITLOCK(WDFOBJECT):
    """Handle box for a WDFWAITLOCK."""

    _OBJECT = FxWaitLock


def WdfWaitLockCreate(LockAttributes: Any, Lock: WDFWAITLOCK) -> NTSTATUS:
    """WdfWaitLockCreate: a new wait lock (its parent from the attributes, default none)."""
    required(Lock, "Lock")
    Lock.value = None
    status, parent = validate_attributes(LockAttributes)
    if not NT_SUCCESS(status):
        return status
    store(Lock, "Lock", FxWaitLock(parent, LockAttributes), WDFWAITLOCK)
    return STATUS_SUCCESS


def WdfWaitLockAcquire(Lock: Any, Timeout: Any = None) -> NTSTATUS:
    """WdfWaitLockAcquire: STATUS_SUCCESS once held, STATUS_TIMEOUT if not within ``Timeout``."""
    lock = get_object(Lock, FxWaitLock)
    raw = Timeout.value if Timeout is not None and hasattr(Timeout, "value") else Timeout
    if raw is not None and integer(raw) is None:
        return STATUS_INVALID_PARAMETER
    if (raw is None or integer(raw) != 0) and not at_passive_level():
        raise WdfBugCheck(f"{lock!r} waited for above PASSIVE_LEVEL", WDF_LOCK_ERROR, lock)
    me = threading.get_ident()
    if lock.owner == me:
        raise WdfBugCheck(f"{lock!r} acquired twice by one thread (wait locks are not recursive)", WDF_LOCK_ERROR, lock)
    if raw is None:
        got = lock.lock.acquire()
    else:
        wait = timeout_to_seconds(integer(raw) or 0) or 0.0  # (0: try once)
        got = lock.lock.acquire(timeout=wait) if wait > 0 else lock.lock.acquire(blocking=False)
    if not got:
        return STATUS_TIMEOUT
    lock.owner = me
    return STATUS_SUCCESS


def WdfWaitLockRelease(Lock: Any) -> None:
    """WdfWaitLockRelease: release a lock the calling thread holds (else a bug check)."""
    lock = get_object(Lock, FxWaitLock)
    if lock.owner != threading.get_ident():
        raise WdfBugCheck(f"{lock!r} released by a thread that does not hold it", WDF_LOCK_ERROR, lock)
    lock.owner = None
    lock.lock.release()
