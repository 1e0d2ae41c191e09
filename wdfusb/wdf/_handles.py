"""Framework objects, their handles, parent/child lifetimes and the bug check.

A WDF handle is opaque; here it is the framework object itself (an :class:`FxObject`),
and the caller receives it in a *box* (``WDFMEMORY()``, ``WDFREQUEST()`` ...) whose
``.value`` holds it, the way C receives it through a ``WDFMEMORY*``. Every function
accepts the box or its ``.value``.

Handles are type-checked like ``FxObjectHandleGetPtr``: a wrong-type, deleted or
foreign handle raises :class:`WdfBugCheck` (bug check ``WDF_VIOLATION``, 0x10D); it
never crashes the process.

Lifetimes follow WDF: an object is deleted with its parent (``WDF_OBJECT_ATTRIBUTES.
ParentObject``; default parent: the driver, i.e. never). ``WdfObjectDelete`` on an
object that something still references (memory held by a request) runs the cleanup
callback and deletes its children at once, but the object itself stays usable until
the last reference is released — WDF's reference rule, and never a use-after-free.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._ntstatus import NTSTATUS, STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS

# bug check code and WDF_BUGCHECK_CODES subcodes (wdfbugcodes.h)
WDF_VIOLATION = 0x10D
WDF_VERIFIER_FATAL_ERROR = 0x3
WDF_REQUIRED_PARAMETER_IS_NULL = 0x4
WDF_INVALID_HANDLE = 0x5
WDF_REQUEST_FATAL_ERROR = 0x6
WDF_OBJECT_ERROR = 0x7
WDF_QUEUE_FATAL_ERROR = 0xA
WDF_REQUEST_FATAL_ERROR_NO_MORE_STACK_LOCATIONS = 0x1
WDF_REQUEST_FATAL_ERROR_NULL_IRP = 0x2
WDF_REQUEST_FATAL_ERROR_REQUEST_ALREADY_SENT = 0x3

# WDF_EXECUTION_LEVEL / WDF_SYNCHRONIZATION_SCOPE (wdfobject.h)
WdfExecutionLevelInvalid = 0
WdfExecutionLevelInheritFromParent = 1
WdfExecutionLevelPassive = 2
WdfExecutionLevelDispatch = 3
WdfSynchronizationScopeInvalid = 0
WdfSynchronizationScopeInheritFromParent = 1
WdfSynchronizationScopeDevice = 2
WdfSynchronizationScopeQueue = 3
WdfSynchronizationScopeNone = 4

WDF_NO_OBJECT_ATTRIBUTES = None
WDF_NO_HANDLE = None
WDF_NO_CONTEXT = None
WDF_NO_SEND_OPTIONS = None

LOCK = threading.RLock()  # guards object state (lifetimes, references, request state)


class WdfBugCheck(Exception):  # noqa: N818 - the WDF term
    """A WDF bug check (``KeBugCheckEx``): the driver broke a rule the framework cannot survive.

    ``code`` is the bug check code (``WDF_VIOLATION``, 0x10D) and ``parameters`` its four
    parameters; ``parameters[0]`` is the ``WDF_BUGCHECK_CODES`` subcode (e.g.
    ``WDF_INVALID_HANDLE``).
    """

    def __init__(self, message: str, subcode: int, p2: Any = 0, p3: Any = 0, p4: Any = 0) -> None:
        super().__init__(f"BUGCHECK 0x{WDF_VIOLATION:X} (0x{subcode:X}): {message}")
        self.code = WDF_VIOLATION
        self.parameters = (subcode, p2, p3, p4)

    @property
    def subcode(self) -> int:
        return int(self.parameters[0])


class FxObject:
    """A framework object; the handle value of every WDF handle."""

    HANDLE_TYPE = "WDFOBJECT"
    NO_DELETE_DDI = False  # objects the framework owns (interfaces, pipes): WdfObjectDelete is ignored

    def __init__(self, parent: FxObject | None = None, attributes: WDF_OBJECT_ATTRIBUTES | None = None) -> None:
        self._parent: FxObject | None = None
        self._children: list[FxObject] = []
        self._refs = 0
        self._delete_requested = False
        self._deleted = False
        self._cleanup: Callable[[Any], Any] | None = None
        self._destroy: Callable[[Any], Any] | None = None
        if attributes is not None:
            self._cleanup = attributes.EvtCleanupCallback
            self._destroy = attributes.EvtDestroyCallback
        if parent is not None:
            with LOCK:
                self._parent = parent
                parent._children.append(self)

    def __repr__(self) -> str:
        state = " (deleted)" if self._deleted else (" (delete pending)" if self._delete_requested else "")
        return f"<{self.HANDLE_TYPE} 0x{id(self):x}{state}>"

    @property
    def is_deleted(self) -> bool:
        return self._deleted

    def reference(self) -> None:
        """WdfObjectReference: keep the object alive past a WdfObjectDelete."""
        with LOCK:
            self._refs += 1

    def release(self) -> None:
        """WdfObjectDereference: drop a reference; the last one completes a pending delete."""
        with LOCK:
            if self._refs <= 0:
                raise WdfBugCheck(f"{self!r} dereferenced more often than referenced", WDF_OBJECT_ERROR, self)
            self._refs -= 1
            finish = self._refs == 0 and self._delete_requested and not self._deleted
        if finish:
            self._finish_delete()

    def delete(self, force: bool = False) -> None:
        """WdfObjectDelete: clean up, delete the children, then the object once unreferenced."""
        with LOCK:
            if self._delete_requested or (self.NO_DELETE_DDI and not force):
                return
            self._delete_requested = True
            children = list(self._children)
        self._before_delete()
        for child in reversed(children):
            child.delete(force=True)
        if self._cleanup is not None:
            self._cleanup(self)
        with LOCK:
            finish = self._refs == 0 and not self._deleted
        if finish:
            self._finish_delete()

    def _before_delete(self) -> None:
        """Hook: runs first when a delete is requested (e.g. a request checks it is not pending)."""

    def _dispose(self) -> None:
        """Hook: release what the object owns; runs once, when the object really goes."""

    def _finish_delete(self) -> None:
        with LOCK:
            if self._deleted:
                return
            self._deleted = True
            parent, self._parent = self._parent, None
            if parent is not None and self in parent._children:
                parent._children.remove(self)
        self._dispose()
        if self._destroy is not None:
            self._destroy(self)


class WDFOBJECT:
    """A handle box: the C ``WDFOBJECT`` variable; ``.value`` holds the handle (or None)."""

    _OBJECT: type[FxObject] = FxObject

    def __init__(self, value: FxObject | None = None) -> None:
        self.value: Any = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"

    def __bool__(self) -> bool:
        return self.value is not None


class ULONG:
    """An out-box for a ``ULONG`` (``PULONG`` parameter): read ``.value``."""

    def __init__(self, value: int = 0) -> None:
        self.value = require_integer(value, "value")

    def __repr__(self) -> str:
        return f"ULONG({self.value})"

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (ULONG, int)):
            return self.value == int(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


class SIZE_T(ULONG):
    """An out-box for a ``size_t`` (``PSIZE_T`` parameter): read ``.value``."""

    def __repr__(self) -> str:
        return f"SIZE_T({self.value})"


class WDF_OBJECT_ATTRIBUTES:
    """WDF_OBJECT_ATTRIBUTES (wdfobject.h); ``sizeof`` on x64 is 56."""

    SIZEOF = 56

    def __init__(self) -> None:
        self.Size = 0
        self.EvtCleanupCallback: Callable[[Any], Any] | None = None
        self.EvtDestroyCallback: Callable[[Any], Any] | None = None
        self.ExecutionLevel = WdfExecutionLevelInvalid
        self.SynchronizationScope = WdfSynchronizationScopeInvalid
        self.ParentObject: Any = None
        self.ContextSizeOverride = 0
        self.ContextTypeInfo: Any = None


def WDF_OBJECT_ATTRIBUTES_INIT(Attributes: WDF_OBJECT_ATTRIBUTES) -> None:
    """WDF_OBJECT_ATTRIBUTES_INIT: zero the structure, set Size and the inherit-from-parent defaults."""
    Attributes.__init__()  # type: ignore[misc]
    Attributes.Size = WDF_OBJECT_ATTRIBUTES.SIZEOF
    Attributes.ExecutionLevel = WdfExecutionLevelInheritFromParent
    Attributes.SynchronizationScope = WdfSynchronizationScopeInheritFromParent


T = TypeVar("T", bound=FxObject)


def unbox(handle: Any) -> Any:
    """The handle value of a box, or the argument itself."""
    return handle.value if isinstance(handle, WDFOBJECT) else handle


def get_object(handle: Any, cls: type[T], expected: str | None = None) -> T:
    """FxObjectHandleGetPtr: the object behind ``handle``, or a bug check."""
    obj = handle.value if isinstance(handle, WDFOBJECT) else handle  # unbox(), inlined
    if isinstance(obj, cls) and not obj._deleted:
        return obj  # the common case: every check below would pass
    name = expected or cls.HANDLE_TYPE
    if obj is None:
        raise WdfBugCheck(f"NULL handle where a {name} is required", WDF_INVALID_HANDLE, None, name)
    if not isinstance(obj, FxObject):
        raise WdfBugCheck(f"{obj!r} is not a WDF handle (expected {name})", WDF_INVALID_HANDLE, obj, name)
    if obj.is_deleted:
        raise WdfBugCheck(f"{obj!r} was deleted (expected {name})", WDF_INVALID_HANDLE, obj, name)
    if not isinstance(obj, cls):
        raise WdfBugCheck(f"{obj!r} is a {obj.HANDLE_TYPE}, expected {name}", WDF_INVALID_HANDLE, obj, name)
    return obj


def integer(value: Any) -> int | None:
    """A C integer parameter or field (ULONG, size_t, LONGLONG ...): an ``int`` or a numpy integer
    as an ``int``; None for anything else — a float, a bool, a string, None — never truncated."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def require_integer(value: Any, what: str) -> int:
    """:func:`integer`, or a ``TypeError`` naming the parameter (for calls that return no NTSTATUS)."""
    n = integer(value)
    if n is None:
        raise TypeError(f"{what} must be an integer, not {type(value).__name__} {value!r}")
    return n


def required(value: Any, what: str) -> None:
    """FxPointerNotNull: a NULL required pointer is a bug check."""
    if value is None:
        raise WdfBugCheck(f"required parameter {what} is NULL", WDF_REQUIRED_PARAMETER_IS_NULL, what)


def store(box: Any, what: str, value: Any, box_type: type[Any]) -> None:
    """Write an out parameter into the caller's box."""
    required(box, what)
    if not isinstance(box, box_type):
        raise TypeError(f"{what} must be a {box_type.__name__}() box, not {type(box).__name__}")
    box.value = value


def validate_attributes(attributes: WDF_OBJECT_ATTRIBUTES | None) -> tuple[NTSTATUS, FxObject | None]:
    """FxValidateObjectAttributes: (status, parent object)."""
    if attributes is None:
        return STATUS_SUCCESS, None
    if not isinstance(attributes, WDF_OBJECT_ATTRIBUTES):
        raise TypeError(f"attributes must be WDF_OBJECT_ATTRIBUTES or None, not {type(attributes).__name__}")
    if integer(attributes.Size) != WDF_OBJECT_ATTRIBUTES.SIZEOF:
        return STATUS_INFO_LENGTH_MISMATCH, None
    if attributes.ParentObject is None:
        return STATUS_SUCCESS, None
    return STATUS_SUCCESS, get_object(attributes.ParentObject, FxObject)


def WdfObjectDelete(Object: Any) -> None:
    """WdfObjectDelete: delete an object and its children.

    Interfaces and pipes belong to their WDFUSBDEVICE; as in WDF, deleting them is
    ignored. Memory still referenced by a request stays valid until the request is
    deleted, reused or reformatted, then goes.
    """
    get_object(Object, FxObject).delete()


def WdfObjectReference(Handle: Any) -> None:
    """WdfObjectReference (WdfObjectReferenceActual)."""
    get_object(Handle, FxObject).reference()


def WdfObjectDereference(Handle: Any) -> None:
    """WdfObjectDereference (WdfObjectDereferenceActual)."""
    get_object(Handle, FxObject).release()
