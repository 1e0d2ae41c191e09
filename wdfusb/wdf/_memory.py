"""WDFMEMORY, WDFMEMORY_OFFSET, the MDL stand-in and WDF_MEMORY_DESCRIPTOR.

Memory objects wrap a numpy ``uint8`` array (``WdfMemoryCreate``) or any caller
buffer without copying (``WdfMemoryCreatePreallocated``). Each is pinned once with
cffi (:func:`wdfusb._engine.pin`) and the pin lives as long as the object, so a
transfer never sees freed memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._engine import address_of, pin
from ._handles import (
    SIZE_T,
    WDFOBJECT,
    FxObject,
    get_object,
    integer,
    require_integer,
    required,
    store,
    validate_attributes,
)
from ._ntstatus import (
    NT_ERROR,
    NT_SUCCESS,
    NTSTATUS,
    STATUS_ACCESS_VIOLATION,
    STATUS_BUFFER_TOO_SMALL,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
)

ULONG_MAX = 0xFFFFFFFF

# WDF_MEMORY_DESCRIPTOR_TYPE (wdfmemory.h)
WdfMemoryDescriptorTypeInvalid = 0
WdfMemoryDescriptorTypeBuffer = 1
WdfMemoryDescriptorTypeMdl = 2
WdfMemoryDescriptorTypeHandle = 3


def _byte_view(buffer: Any) -> np.ndarray:
    """A flat uint8 numpy view of any buffer-protocol object, no copy (read-only if the buffer is)."""
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.c_contiguous:
            raise ValueError("a non-contiguous array cannot be used as a buffer")
        return buffer.reshape(-1).view(np.uint8)
    mv = memoryview(buffer)
    if not mv.c_contiguous:
        raise ValueError("a non-contiguous buffer cannot be used as a buffer")
    return np.frombuffer(mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv, dtype=np.uint8)


class FxMemory(FxObject):
    """A WDFMEMORY: a buffer, its size and its pin."""

    HANDLE_TYPE = "WDFMEMORY"

    def __init__(self, array: np.ndarray, parent: FxObject | None, attributes: Any, owner: Any = None) -> None:
        super().__init__(parent, attributes)
        self.array = array  # exactly the memory's bytes
        self.size = int(array.size)
        self.readonly = not array.flags.writeable
        self.cdata = pin(array, writable=not self.readonly)
        self._owner = owner  # the caller's object (preallocated), kept alive

    def _dispose(self) -> None:
        self.cdata = None
        self._owner = None


class WDFMEMORY(WDFOBJECT):
    """Handle box for a WDFMEMORY."""

    _OBJECT = FxMemory


def WdfMemoryCreate(
    Attributes: Any,
    PoolType: int,
    PoolTag: int,
    BufferSize: int,
    Memory: WDFMEMORY,
    Buffer: Any = None,
) -> NTSTATUS:
    """WdfMemoryCreate: allocate ``BufferSize`` bytes (a numpy uint8 array) as a WDFMEMORY.

    ``Buffer``, if given, is an out-box (any object with a ``.value``) that receives the
    numpy array, like the C ``PVOID* Buffer``.
    """
    required(Memory, "Memory")
    status, parent = validate_attributes(Attributes)
    size = integer(BufferSize)
    if size is None or size <= 0:
        return STATUS_INVALID_PARAMETER
    Memory.value = None
    if not NT_SUCCESS(status):
        return status
    try:
        mem = FxMemory(np.zeros(size, dtype=np.uint8), parent, Attributes)
    except (MemoryError, ValueError, OverflowError):
        return STATUS_INSUFFICIENT_RESOURCES
    store(Memory, "Memory", mem, WDFMEMORY)
    if Buffer is not None:
        Buffer.value = mem.array
    return STATUS_SUCCESS


def WdfMemoryCreatePreallocated(
    Attributes: Any,
    Buffer: Any,
    BufferSize: int,
    Memory: WDFMEMORY,
) -> NTSTATUS:
    """WdfMemoryCreatePreallocated: a WDFMEMORY over the caller's buffer, without copying.

    Any buffer-protocol object works; a read-only one (``bytes``) gives read-only
    memory (it can be written to a device, not read into). ``BufferSize`` larger than
    the buffer, or a non-contiguous buffer, is ``STATUS_INVALID_PARAMETER`` (C cannot
    tell; Python can).
    """
    required(Buffer, "Buffer")
    required(Memory, "Memory")
    status, parent = validate_attributes(Attributes)
    size = integer(BufferSize)
    if size is None or size == 0:
        return STATUS_INVALID_PARAMETER
    Memory.value = None
    if not NT_SUCCESS(status):
        return status
    try:
        view = _byte_view(Buffer)
    except (TypeError, ValueError, BufferError):
        return STATUS_INVALID_PARAMETER
    if size < 0 or size > view.size:
        return STATUS_INVALID_PARAMETER
    try:
        mem = FxMemory(view[:size], parent, Attributes, owner=Buffer)
    except MemoryError:
        return STATUS_INSUFFICIENT_RESOURCES
    store(Memory, "Memory", mem, WDFMEMORY)
    return STATUS_SUCCESS


def WdfMemoryGetBuffer(Memory: Any, BufferSize: SIZE_T | None = None) -> np.ndarray:
    """WdfMemoryGetBuffer: the memory's bytes as a numpy uint8 view (no copy; writable unless read-only)."""
    mem = get_object(Memory, FxMemory)
    if BufferSize is not None:
        BufferSize.value = mem.size
    return mem.array


class WDFMEMORY_OFFSET:
    """WDFMEMORY_OFFSET: BufferOffset, BufferLength (size_t each: an int or a numpy integer; sizeof 16)."""

    def __init__(self, BufferOffset: int = 0, BufferLength: int = 0) -> None:
        self.BufferOffset = BufferOffset
        self.BufferLength = BufferLength

    def __repr__(self) -> str:
        return f"WDFMEMORY_OFFSET(BufferOffset={self.BufferOffset}, BufferLength={self.BufferLength})"


def _copy(src: np.ndarray, src_off: int, dst: np.ndarray, dst_off: int, dst_len: int) -> NTSTATUS:
    """IFxMemory::_CopyPtrToPtr's checks, then the copy."""
    src_size, copy_len = src.size, dst.size
    if src_off:
        if not 0 < src_off < src_size:  # a negative offset is a huge size_t
            return STATUS_BUFFER_TOO_SMALL
        src_size -= src_off
    if dst_off:
        if not 0 < dst_off < copy_len:
            return STATUS_INVALID_BUFFER_SIZE
        copy_len -= dst_off
    if dst_len:
        if dst_len > copy_len:
            return STATUS_INVALID_BUFFER_SIZE
        copy_len = dst_len
    if copy_len > src_size:
        return STATUS_BUFFER_TOO_SMALL
    dst[dst_off : dst_off + copy_len] = src[src_off : src_off + copy_len]
    return STATUS_SUCCESS


def WdfMemoryCopyFromBuffer(
    DestinationMemory: Any, DestinationOffset: int, Buffer: Any, NumBytesToCopyFrom: int
) -> NTSTATUS:
    """WdfMemoryCopyFromBuffer: copy ``NumBytesToCopyFrom`` bytes of ``Buffer`` into the memory at an offset."""
    mem = get_object(DestinationMemory, FxMemory)
    required(Buffer, "Buffer")
    n, offset = integer(NumBytesToCopyFrom), integer(DestinationOffset)
    if n is None or offset is None or n <= 0:
        return STATUS_INVALID_PARAMETER
    if mem.readonly:
        return STATUS_ACCESS_VIOLATION
    try:
        src = _byte_view(Buffer)
    except (TypeError, ValueError, BufferError):
        return STATUS_INVALID_PARAMETER
    if src.size < n:  # C would read past the caller's buffer
        return STATUS_BUFFER_TOO_SMALL
    return _copy(src[:n], 0, mem.array, offset, n)


def WdfMemoryCopyToBuffer(SourceMemory: Any, SourceOffset: int, Buffer: Any, NumBytesToCopyTo: int) -> NTSTATUS:
    """WdfMemoryCopyToBuffer: copy ``NumBytesToCopyTo`` bytes from the memory at an offset into ``Buffer``."""
    mem = get_object(SourceMemory, FxMemory)
    required(Buffer, "Buffer")
    n, offset = integer(NumBytesToCopyTo), integer(SourceOffset)
    if n is None or offset is None or n <= 0:
        return STATUS_INVALID_PARAMETER
    try:
        dst = _byte_view(Buffer)
    except (TypeError, ValueError, BufferError):
        return STATUS_INVALID_PARAMETER
    if not dst.flags.writeable or dst.size < n:  # C would write past (or into read-only) memory
        return STATUS_INVALID_PARAMETER
    return _copy(mem.array, offset, dst[:n], 0, n)


# ---- MDL -----------------------------------------------------------------------------


class MDL:
    """A memory descriptor list entry over any buffer: ``MDL(buffer, offset=0, length=None)``.

    Like IoAllocateMdl, it describes ``length`` bytes starting ``offset`` bytes into
    ``buffer`` without copying; ``Next`` chains entries (a chained MDL is transferred
    as the concatenation of its entries, in order).
    """

    def __init__(self, buffer: Any, offset: int = 0, length: int | None = None) -> None:
        view = _byte_view(buffer)
        offset = require_integer(offset, "offset")
        if length is not None:
            length = require_integer(length, "length")
        if offset < 0 or offset > view.size:
            raise ValueError(f"MDL offset {offset} outside a buffer of {view.size} bytes")
        if length is None:
            length = view.size - offset
        if length < 0 or offset + length > view.size:
            raise ValueError(f"MDL of {length} bytes at {offset} exceeds a buffer of {view.size} bytes")
        self.Next: MDL | None = None
        self.ByteOffset = offset
        self.ByteCount = length
        self.array = view[offset : offset + length]
        self._owner = buffer
        self.freed = False

    def __repr__(self) -> str:
        return f"<MDL {self.ByteCount} bytes at +{self.ByteOffset}{' ->' if self.Next else ''}>"

    def chain(self) -> list[MDL]:
        out: list[MDL] = []
        m: MDL | None = self
        while m is not None:
            if m in out:
                raise ValueError("the MDL chain loops")
            out.append(m)
            m = m.Next
        return out


def IoAllocateMdl(
    VirtualAddress: Any, Length: int, SecondaryBuffer: bool = False, ChargeQuota: bool = False, Irp: Any = None
) -> MDL | None:
    """IoAllocateMdl: an MDL for the first ``Length`` bytes of ``VirtualAddress`` (a buffer); None on failure."""
    if integer(Length) is None:
        return None
    try:
        return MDL(VirtualAddress, 0, Length)
    except (TypeError, ValueError, BufferError):
        return None


def IoFreeMdl(Mdl: MDL) -> None:
    """IoFreeMdl: release the MDL (it no longer keeps its buffer)."""
    Mdl.freed = True


def MmBuildMdlForNonPagedPool(MemoryDescriptorList: MDL) -> None:
    """MmBuildMdlForNonPagedPool: nothing to do for a host buffer."""


def MmGetMdlByteCount(Mdl: MDL) -> int:
    """MmGetMdlByteCount: the bytes this entry describes."""
    return Mdl.ByteCount


def MmGetMdlByteOffset(Mdl: MDL) -> int:
    """MmGetMdlByteOffset: the entry's offset into its buffer."""
    return Mdl.ByteOffset


def MmGetMdlVirtualAddress(Mdl: MDL) -> np.ndarray:
    """MmGetMdlVirtualAddress: the described bytes (a numpy uint8 view, no copy)."""
    return Mdl.array


def MmGetSystemAddressForMdlSafe(Mdl: MDL, Priority: int = 0) -> np.ndarray:
    """MmGetSystemAddressForMdlSafe: the described bytes (a numpy uint8 view, no copy)."""
    return Mdl.array


# ---- WDF_MEMORY_DESCRIPTOR -----------------------------------------------------------------


# The union's members keep their zero values as class attributes, so creating them (every
# WDF_MEMORY_DESCRIPTOR_INIT_* call zeroes the descriptor) runs no __init__.
class _BufferType:
    Buffer: Any = None
    Length: int = 0
    # (Buffer, Length, what they resolved to) when they are bytes and an int: immutable, so the
    # same two objects always resolve the same way; a script re-sends one descriptor per transfer
    _resolved: tuple[Any, Any, tuple[NTSTATUS, RequestBuffer]] | None = None


class _MdlType:
    Mdl: MDL | None = None
    BufferLength: int = 0


class _HandleType:
    Memory: Any = None
    Offsets: WDFMEMORY_OFFSET | None = None


class _DescriptorUnion:
    def __init__(self) -> None:
        self.BufferType = _BufferType()
        self.MdlType = _MdlType()
        self.HandleType = _HandleType()


class WDF_MEMORY_DESCRIPTOR:
    """WDF_MEMORY_DESCRIPTOR: Type and u.BufferType / u.MdlType / u.HandleType (sizeof 24 on x64)."""

    def __init__(self) -> None:
        self.Type = WdfMemoryDescriptorTypeInvalid
        self.u = _DescriptorUnion()


def WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(Descriptor: WDF_MEMORY_DESCRIPTOR, Buffer: Any, BufferLength: int) -> None:
    """WDF_MEMORY_DESCRIPTOR_INIT_BUFFER: describe ``BufferLength`` bytes of any buffer-protocol object."""
    Descriptor.__init__()  # type: ignore[misc]
    Descriptor.Type = WdfMemoryDescriptorTypeBuffer
    Descriptor.u.BufferType.Buffer = Buffer
    Descriptor.u.BufferType.Length = BufferLength


def WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(
    Descriptor: WDF_MEMORY_DESCRIPTOR, Memory: Any, Offsets: WDFMEMORY_OFFSET | None
) -> None:
    """WDF_MEMORY_DESCRIPTOR_INIT_HANDLE: describe a WDFMEMORY, optionally a WDFMEMORY_OFFSET window of it."""
    Descriptor.__init__()  # type: ignore[misc]
    Descriptor.Type = WdfMemoryDescriptorTypeHandle
    Descriptor.u.HandleType.Memory = Memory
    Descriptor.u.HandleType.Offsets = Offsets


def WDF_MEMORY_DESCRIPTOR_INIT_MDL(Descriptor: WDF_MEMORY_DESCRIPTOR, Mdl: MDL | None, BufferLength: int) -> None:
    """WDF_MEMORY_DESCRIPTOR_INIT_MDL: describe ``BufferLength`` bytes of an MDL (chain)."""
    Descriptor.__init__()  # type: ignore[misc]
    Descriptor.Type = WdfMemoryDescriptorTypeMdl
    Descriptor.u.MdlType.Mdl = Mdl
    Descriptor.u.MdlType.BufferLength = BufferLength


class RequestBuffer:
    """FxRequestBuffer: what a validated descriptor resolves to.

    ``array`` is the object to pin (any buffer-protocol object: a numpy view, or the caller's
    bytes/bytearray/ndarray itself), ``cdata`` its pin (set once pinned; a WDFMEMORY's own);
    ``offset``/``length`` are what the engine moves; ``memory`` (a WDFMEMORY to reference)
    and ``mem_offset`` feed the completion parameters; ``pieces`` is set for a chained MDL
    (gathered before a write, scattered after a read); ``keep`` holds the caller's object.

    The fields' defaults are class attributes, so ``RequestBuffer()`` runs no ``__init__``
    (one is made per transfer) and a descriptor sets only what it describes.
    """

    array: Any = None
    cdata: Any = None
    offset: int = 0
    length: int = 0
    memory: FxMemory | None = None
    mem_offset: int = 0
    pieces: list[np.ndarray] | None = None
    readonly: bool = False
    keep: Any = None
    prepared: tuple[Any, Any] | None = None  # the engine's arguments, once known for good (bytes)

    def gather(self) -> Any:
        """The described bytes as one buffer (a view where it can be; a chained MDL's pieces
        are joined in order)."""
        if not self.length:
            return b""
        if self.pieces is not None:
            return np.concatenate(self.pieces)[: self.length].data
        array, start, end = self.array, self.offset, self.offset + self.length
        if type(array) is bytes or type(array) is bytearray:
            return array if start == 0 and end == len(array) else memoryview(array)[start:end]
        return _byte_view(array)[start:end].data  # a memoryview (what a bytearray slice takes)

    def scatter(self, data: Any) -> None:
        """Copy ``data`` (at most ``length`` bytes) into the described memory, from its start."""
        array = self.array
        if self.pieces is None and type(array) is bytearray:
            array[self.offset : self.offset + len(data)] = data
            return
        src = np.frombuffer(data, dtype=np.uint8)
        if self.pieces is None:
            _byte_view(array)[self.offset : self.offset + src.size] = src
            return
        pos = 0
        for piece in self.pieces:
            n = min(piece.size, src.size - pos)
            if n <= 0:
                break
            piece[:n] = src[pos : pos + n]
            pos += n

    def pointer(self) -> Any:
        """The engine's buffer argument: None, the pinned cdata, or a pointer into it."""
        if self.cdata is None:
            return None
        return self.cdata if self.offset == 0 else address_of(self.cdata, self.offset)


def _pinnable(buffer: Any) -> tuple[Any, int, bool]:
    """(what to pin, its size in bytes, read-only?) for any buffer-protocol object, as :func:`_byte_view`
    sees it (and raising what it raises).

    bytes, bytearray and a C-contiguous ndarray without Python objects are pinned as they are:
    their flat uint8 view would cover exactly the same bytes, and making it costs more than the
    rest of a transfer's checks. Anything else goes through the view.
    """
    kind = type(buffer)
    if kind is bytes:
        return buffer, len(buffer), True
    if kind is bytearray:
        return buffer, len(buffer), False
    if kind is np.ndarray and buffer.flags.c_contiguous and not buffer.dtype.hasobject:
        return buffer, buffer.nbytes, not buffer.flags.writeable
    view = _byte_view(buffer)
    return view, view.size, not view.flags.writeable


def resolve_descriptor(desc: Any) -> tuple[NTSTATUS, RequestBuffer]:
    """FxRequestBuffer::ValidateMemoryDescriptor (flags 0): check a descriptor and resolve it.

    NULL buffer/MDL/handle with a length, or an unknown Type -> STATUS_INVALID_PARAMETER
    (a NULL one without a length too: WDF passes flags 0; a zero-length packet is MemoryDescriptor=None);
    an invalid WDFMEMORY handle -> bug check; a length larger than what the buffer, the MDL
    chain or the WDFMEMORY (with its offsets) holds -> STATUS_INVALID_DEVICE_REQUEST.
    """
    if not isinstance(desc, WDF_MEMORY_DESCRIPTOR):
        return STATUS_INVALID_PARAMETER, RequestBuffer()
    kind = desc.Type
    if kind == WdfMemoryDescriptorTypeBuffer:
        bt = desc.u.BufferType
        buf, given = bt.Buffer, bt.Length
        seen = bt._resolved
        if seen is not None and seen[0] is buf and seen[1] is given:
            return seen[2]
    rb = RequestBuffer()
    if kind == WdfMemoryDescriptorTypeBuffer:
        length = integer(given)
        if length is None or length < 0 or length > ULONG_MAX:
            return STATUS_INVALID_PARAMETER, rb
        if buf is None:
            return STATUS_INVALID_PARAMETER, rb  # with or without a length (WDF's flags are 0)
        try:
            target, size, readonly = _pinnable(buf)
        except (TypeError, ValueError, BufferError):
            return STATUS_INVALID_PARAMETER, rb
        if length > size:
            return STATUS_INVALID_DEVICE_REQUEST, rb
        rb.array, rb.length, rb.keep, rb.readonly = target, length, buf, readonly
        if type(buf) is bytes and type(given) is int:  # immutable: the same objects, the same answer
            bt._resolved = (buf, given, (STATUS_SUCCESS, rb))
        return STATUS_SUCCESS, rb
    if kind == WdfMemoryDescriptorTypeMdl:
        mdl, length = desc.u.MdlType.Mdl, integer(desc.u.MdlType.BufferLength)
        if length is None or length < 0 or length > ULONG_MAX:
            return STATUS_INVALID_PARAMETER, rb
        if mdl is None or not isinstance(mdl, MDL) or mdl.freed:
            return STATUS_INVALID_PARAMETER, rb
        try:
            chain = mdl.chain()
        except ValueError:
            return STATUS_INVALID_PARAMETER, rb
        # ByteCount is a writable field: it may describe less than the MDL's buffer, never more
        counts: list[int] = []
        for m in chain:
            n = integer(m.ByteCount)
            if n is None or not 0 <= n <= m.array.size:
                return STATUS_INVALID_PARAMETER, rb
            counts.append(n)
        if length > sum(counts):
            return STATUS_INVALID_DEVICE_REQUEST, rb
        rb.length, rb.keep = length, chain
        rb.readonly = any(not m.array.flags.writeable for m in chain)
        if len(chain) == 1 or length <= counts[0]:
            rb.array = chain[0].array
        else:
            rb.pieces = [m.array[:n] for m, n in zip(chain, counts, strict=True)]
        return STATUS_SUCCESS, rb
    if kind == WdfMemoryDescriptorTypeHandle:
        ht = desc.u.HandleType
        if ht.Memory is None:
            return STATUS_INVALID_PARAMETER, rb
        mem = get_object(ht.Memory, FxMemory)
        status, offset, length = memory_window(mem, ht.Offsets)
        if status & NT_ERROR:  # not NT_SUCCESS (inlined: every handle-descriptor transfer runs this)
            return status, rb
        rb.array, rb.cdata, rb.offset, rb.length = mem.array, mem.cdata, offset, length
        rb.memory, rb.mem_offset, rb.readonly = mem, offset, mem.readonly
        return STATUS_SUCCESS, rb
    return STATUS_INVALID_PARAMETER, rb


def resolve_descriptor_for_control(desc: Any) -> tuple[NTSTATUS, RequestBuffer]:
    """:func:`resolve_descriptor` with the flags a control transfer passes
    (MemoryDescriptorNullAllowed | MemoryDescriptorNoBufferAllowed): no descriptor, or one whose
    buffer, MDL or memory is NULL with no length, is a transfer without a data stage."""
    if desc is None:
        return STATUS_SUCCESS, RequestBuffer()
    if isinstance(desc, WDF_MEMORY_DESCRIPTOR):
        u, kind = desc.u, desc.Type
        if kind == WdfMemoryDescriptorTypeBuffer:
            empty = u.BufferType.Buffer is None and u.BufferType.Length == 0
        elif kind == WdfMemoryDescriptorTypeMdl:
            empty = u.MdlType.Mdl is None and u.MdlType.BufferLength == 0
        else:
            empty = kind == WdfMemoryDescriptorTypeHandle and u.HandleType.Memory is None
        if empty:
            return STATUS_SUCCESS, RequestBuffer()
    return resolve_descriptor(desc)


def memory_window(mem: FxMemory, offsets: WDFMEMORY_OFFSET | None) -> tuple[NTSTATUS, int, int]:
    """IFxMemory::ValidateMemoryOffsets + FxRequestBuffer::GetBufferLength: (status, offset, length).

    No offsets, or both zero: the whole memory; BufferLength zero: from BufferOffset to the
    end; else BufferLength bytes at BufferOffset. Offset + length beyond the memory is
    ``STATUS_INVALID_DEVICE_REQUEST`` (WDF itself returns STATUS_INTEGER_OVERFLOW here; the
    project contract makes every too-long descriptor STATUS_INVALID_DEVICE_REQUEST).
    """
    if offsets is None:
        return STATUS_SUCCESS, 0, mem.size
    if not isinstance(offsets, WDFMEMORY_OFFSET):
        return STATUS_INVALID_PARAMETER, 0, 0
    off, length = integer(offsets.BufferOffset), integer(offsets.BufferLength)
    if off is None or length is None or off < 0 or length < 0:  # a float, bool, str or None is no size_t
        return STATUS_INVALID_PARAMETER, 0, 0
    if off + length > mem.size:
        return STATUS_INVALID_DEVICE_REQUEST, 0, 0
    if length == 0:
        length = mem.size - off
    return STATUS_SUCCESS, off, length
