"""Bad input, property-based (hypothesis), over the WDF API on the virtual device.

The only allowed outcomes are an NTSTATUS, ``WdfBugCheck`` or ``TypeError``/``ValueError``:
never a crash, never a byte read outside the buffer (writes: the device's count and CRC-32
are exactly what the descriptor described) and never a byte written outside it (reads:
guard bytes around the target stay untouched).
"""

from __future__ import annotations

import array
import itertools
import mmap
import operator
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wdf_helpers import Rig, open_rig

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import *

EP_OUT, EP_IN = 0x06, 0x88
GUARD = 0xA5
ALLOWED = (WdfBugCheck, TypeError, ValueError)
# examples, deadline and randomness come from the profile (tests/conftest.py: "ci" unless HYPOTHESIS_PROFILE says)
PROPS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# lengths and offsets around every boundary that matters, and some that do not exist
EDGES = [0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63)]


def lengths(size: int) -> st.SearchStrategy[Any]:
    near = [size + d for d in (-1, 0, 1) if size + d >= -1]
    return st.one_of(
        st.sampled_from(EDGES + near),
        st.integers(-5, size + 5),
        st.sampled_from([None, 1.5, 2.0, np.float64(1.0), "8", True, False, np.int64(4), np.uint16(1)]),
    )


def as_int(value: Any) -> int | None:
    """A size_t field or parameter: an int or a numpy integer (never a bool or a float); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = open_rig(None)
    yield r
    WdfObjectDelete(r.device)
    r.vdev.close()


def call(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; an allowed exception is returned, anything else fails the test."""
    try:
        return fn()
    except ALLOWED as e:
        return e


# ---- buffers of every type ----------------------------------------------------------------

DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.uint32, np.float64, np.complex64]
ARRAY_CODES = ["B", "b", "H", "i", "I", "d"]


@st.composite
def buffers(draw: st.DrawFn, max_size: int = 2048) -> tuple[Any, bytes]:
    """(a buffer-protocol object, its bytes)."""
    kind = draw(st.sampled_from(["bytes", "bytearray", "memoryview", "numpy", "numpy2d", "array", "mmap"]))
    n = draw(st.integers(0, max_size))
    raw = draw(st.binary(min_size=n, max_size=n))
    if kind == "bytes":
        return raw, raw
    if kind == "bytearray":
        return bytearray(raw), raw
    if kind == "memoryview":
        start = draw(st.integers(0, n))
        return memoryview(bytearray(raw))[start:], raw[start:]
    if kind in ("numpy", "numpy2d"):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        k = n // dtype.itemsize
        arr = np.frombuffer(raw[: k * dtype.itemsize], dtype=dtype).copy()
        if kind == "numpy2d" and k >= 2 and k % 2 == 0:
            arr = arr.reshape(2, k // 2)
        return arr, arr.tobytes()
    if kind == "array":
        code = draw(st.sampled_from(ARRAY_CODES))
        a = array.array(code)
        a.frombytes(raw[: n // a.itemsize * a.itemsize])
        return a, a.tobytes()
    m = mmap.mmap(-1, max(n, 1))
    m[:n] = raw
    return m, bytes(m[:])


def write_desc(r: Rig, desc: Any, options: Any = None) -> tuple[Any, int, int, int]:
    """Write; returns (status or exception, bytes reported, device bytes before, CRC before)."""
    ep = r.vdev.endpoint(EP_OUT)
    before, crc = ep.received_bytes, ep.crc32
    n = ULONG(99)
    result = call(lambda: WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], None, options, desc, n))
    return result, n.value, before, crc


def check_write(r: Rig, result: Any, n: int, before: int, crc: int, expected: bytes | None) -> None:
    """``expected``: the bytes the descriptor describes, or None if it must be refused."""
    ep = r.vdev.endpoint(EP_OUT)
    assert isinstance(result, (NTSTATUS, *ALLOWED)), result
    if isinstance(result, NTSTATUS) and NT_SUCCESS(result):
        assert expected is not None, "an invalid descriptor was sent"
        assert n == len(expected)
        assert ep.received_bytes == before + len(expected)
        assert ep.crc32 == zlib.crc32(expected, crc), "the device got bytes the descriptor did not describe"
    else:
        assert ep.received_bytes == before, "a refused transfer moved data"
        if isinstance(result, NTSTATUS):
            assert n == 0


@PROPS
@given(buf=buffers(), data=st.data())
def test_buffer_descriptor_writes_exactly_what_it_describes(rig: Rig, buf: tuple[Any, bytes], data: Any) -> None:
    obj, raw = buf
    length = data.draw(lengths(len(raw)))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, obj, length)
    ln = as_int(length)
    valid = ln is not None and 0 <= ln <= len(raw)
    result, n, before, crc = write_desc(rig, desc)
    check_write(rig, result, n, before, crc, raw[:ln] if valid else None)
    if ln is None:
        assert result == STATUS_INVALID_PARAMETER
    if valid and ln:
        assert result == STATUS_SUCCESS


@PROPS
@given(data=st.data())
def test_handle_descriptor_with_offsets(rig: Rig, data: Any) -> None:
    size = data.draw(st.integers(1, 2048))
    raw = data.draw(st.binary(min_size=size, max_size=size))
    mem = WDFMEMORY()
    if data.draw(st.booleans()):
        assert WdfMemoryCreate(None, NonPagedPool, 0, size, mem, None) == STATUS_SUCCESS
        WdfMemoryGetBuffer(mem, None)[:] = np.frombuffer(raw, np.uint8)
    else:
        backing = bytearray(raw + bytes([GUARD]) * 64)  # bytes past the memory must never go out
        assert WdfMemoryCreatePreallocated(None, backing, size, mem) == STATUS_SUCCESS
    offsets = None
    if data.draw(st.booleans()):
        offsets = WDFMEMORY_OFFSET(data.draw(lengths(size)), data.draw(lengths(size)))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, mem, offsets)
    expected: bytes | None = raw
    if offsets is not None:
        off, ln = as_int(offsets.BufferOffset), as_int(offsets.BufferLength)
        if off is None or ln is None or off < 0 or ln < 0 or off + ln > size:
            expected = None
        else:
            expected = raw[off : off + (ln or size - off)]
    result, n, before, crc = write_desc(rig, desc)
    check_write(rig, result, n, before, crc, expected)
    if offsets is not None and None in (as_int(offsets.BufferOffset), as_int(offsets.BufferLength)):
        assert result == STATUS_INVALID_PARAMETER
    WdfObjectDelete(mem)


@st.composite
def mdl_chains(draw: st.DrawFn) -> tuple[MDL, bytes]:
    entries, described = [], b""
    for _ in range(draw(st.integers(1, 4))):
        raw = draw(st.binary(min_size=1, max_size=700))
        off = draw(st.integers(0, len(raw)))
        ln = draw(st.integers(0, len(raw) - off))
        backing = np.frombuffer(raw, np.uint8).copy() if draw(st.booleans()) else bytearray(raw)
        entries.append(MDL(backing, off, ln))
        described += raw[off : off + ln]
    for a, b in itertools.pairwise(entries):
        a.Next = b
    return entries[0], described


@PROPS
@given(chain=mdl_chains(), data=st.data())
def test_mdl_descriptor_writes_exactly_what_it_describes(rig: Rig, chain: tuple[MDL, bytes], data: Any) -> None:
    mdl, described = chain
    length = data.draw(lengths(len(described)))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(desc, mdl, length)
    ln = as_int(length)
    valid = ln is not None and 0 <= ln <= len(described)
    result, n, before, crc = write_desc(rig, desc)
    check_write(rig, result, n, before, crc, described[:ln] if valid else None)
    if ln is None:
        assert result == STATUS_INVALID_PARAMETER


@PROPS
@given(
    raw=st.binary(max_size=64),
    offset=st.sampled_from([-1, 0, 1, 2**32, 2**64]),
    length=st.sampled_from([None, -1, 0, 1, 2**32, 2**64]),
)
def test_mdl_constructor_refuses_what_is_outside_the_buffer(raw: bytes, offset: int, length: int | None) -> None:
    try:
        mdl = MDL(bytearray(raw), offset, length)
    except ValueError:
        return
    assert 0 <= mdl.ByteOffset and mdl.ByteOffset + mdl.ByteCount <= len(raw) and mdl.array.size == mdl.ByteCount
    assert IoAllocateMdl(bytearray(raw), len(raw) + 1) is None


# ---- reads: never a byte outside the target -----------------------------------------------


def guarded(kind: str, before: int, size: int, after: int) -> tuple[Any, Any]:
    """(the whole guarded buffer, the target view of ``size`` bytes inside it)."""
    whole = np.full(before + size + after, GUARD, dtype=np.uint8)
    if kind == "numpy":
        return whole, whole[before : before + size]
    if kind == "memoryview":
        return whole, memoryview(whole)[before : before + size]
    ba = bytearray(whole.tobytes())
    return ba, memoryview(ba)[before : before + size]


def guards_intact(whole: Any, before: int, size: int) -> bool:
    b = bytes(memoryview(whole).cast("B"))
    return set(b[:before] + b[before + size :]) <= {GUARD}


def refill_loopback(r: Rig) -> None:
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, bytes(range(256)) * 16, 4096)
    assert WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], None, None, d, None) == STATUS_SUCCESS


@PROPS
@given(
    kind=st.sampled_from(["numpy", "memoryview", "bytearray"]),
    size=st.sampled_from([0, 1, 511, 512, 513, 1024, 2048]),
    pad=st.integers(1, 64),
    data=st.data(),
)
def test_buffer_reads_stay_inside_the_target(rig: Rig, kind: str, size: int, pad: int, data: Any) -> None:
    refill_loopback(rig)
    whole, target = guarded(kind, pad, size, pad)
    length = data.draw(lengths(size))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, target, length)
    n = ULONG()
    result = call(lambda: WdfUsbTargetPipeReadSynchronously(rig.pipes[EP_IN], None, None, desc, n))
    assert isinstance(result, (NTSTATUS, *ALLOWED)), result
    assert guards_intact(whole, pad, size)
    ln = as_int(length)
    if ln is None:
        assert result == STATUS_INVALID_PARAMETER
    if isinstance(result, NTSTATUS) and NT_SUCCESS(result):
        assert ln is not None and n.value <= ln <= size


@PROPS
@given(size=st.sampled_from([512, 1024, 1536]), pad=st.integers(1, 64), data=st.data())
def test_handle_reads_stay_inside_the_window(rig: Rig, size: int, pad: int, data: Any) -> None:
    refill_loopback(rig)
    whole = bytearray([GUARD]) * (size + 2 * pad)
    mem = WDFMEMORY()
    assert WdfMemoryCreatePreallocated(None, memoryview(whole)[pad:], size, mem) == STATUS_SUCCESS
    off, ln = data.draw(lengths(size)), data.draw(lengths(size))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, mem, WDFMEMORY_OFFSET(off, ln))
    n = ULONG()
    result = call(lambda: WdfUsbTargetPipeReadSynchronously(rig.pipes[EP_IN], None, None, desc, n))
    assert isinstance(result, (NTSTATUS, *ALLOWED)), result
    assert guards_intact(whole, pad, size)
    o, ln_ = as_int(off), as_int(ln)
    if o is None or ln_ is None:
        assert result == STATUS_INVALID_PARAMETER  # a float, bool, str or None is no size_t
    elif isinstance(result, NTSTATUS) and NT_SUCCESS(result) and n.value:
        window = whole[pad + o : pad + o + n.value]
        assert len(window) == n.value  # what was read lies inside the memory
    WdfObjectDelete(mem)


@PROPS
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=4), pad=st.integers(1, 32), data=st.data())
def test_mdl_chain_reads_stay_inside_the_entries(rig: Rig, sizes: list[int], pad: int, data: Any) -> None:
    refill_loopback(rig)
    wholes, entries = [], []
    for s in sizes:
        whole = bytearray([GUARD]) * (s + 2 * pad)
        wholes.append(whole)
        entries.append(MDL(memoryview(whole)[pad : pad + s]))
    for a, b in itertools.pairwise(entries):
        a.Next = b
    length = data.draw(lengths(sum(sizes)))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(desc, entries[0], length)
    result = call(lambda: WdfUsbTargetPipeReadSynchronously(rig.pipes[EP_IN], None, None, desc, ULONG()))
    assert isinstance(result, (NTSTATUS, *ALLOWED)), result
    assert all(guards_intact(w, pad, s) for w, s in zip(wholes, sizes, strict=False))


def test_reads_never_write_into_read_only_buffers(rig: Rig) -> None:
    refill_loopback(rig)
    for ro in (bytes(512), memoryview(bytes(512)), np.zeros(512, np.uint8)[:].copy()):
        if isinstance(ro, np.ndarray):
            ro.flags.writeable = False
        desc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, ro, 512)
        st_ = WdfUsbTargetPipeReadSynchronously(rig.pipes[EP_IN], None, None, desc, None)
        assert st_ == STATUS_INVALID_DEVICE_REQUEST
        assert bytes(memoryview(ro).cast("B")) == bytes(512)


# ---- options, handles -----------------------------------------------------------------------

INTS = st.one_of(st.sampled_from([*EDGES, 16, 1, 2, 3]), st.integers(-(2**70), 2**70))


@PROPS
@given(size=INTS, flags=INTS, timeout=INTS)
def test_request_options_fields(rig: Rig, size: int, flags: int, timeout: int) -> None:
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, 0)
    options.Size, options.Flags, options.Timeout = size, flags, timeout
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, b"abc", 3)
    result, n, before, crc = write_desc(rig, desc, options)
    expected = b"abc"
    if size != 16:
        expected = None  # type: ignore[assignment]
        assert result == STATUS_INFO_LENGTH_MISMATCH
    elif flags & ~WDF_REQUEST_SEND_OPTIONS_VALID_FLAGS:
        expected = None  # type: ignore[assignment]
        assert result == STATUS_INVALID_PARAMETER
    if isinstance(result, NTSTATUS) and not NT_SUCCESS(result):
        assert result in (STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER, STATUS_IO_TIMEOUT), result
    check_write(rig, result, n, before, crc, expected)


CREATED: list[Any] = []  # objects a test made: deleted when it ends (WDF objects live until deleted)
REFERENCED: list[Any] = []  # references a test took: dropped when it ends (else the object outlives its delete)


def handle_zoo(r: Rig) -> list[Any]:
    """Handles of every type, live and deleted, and things that are not handles."""
    mem, dead_mem, req, dead_req = WDFMEMORY(), WDFMEMORY(), WDFREQUEST(), WDFREQUEST()
    CREATED.extend([mem, req])
    for m in (mem, dead_mem):
        assert WdfMemoryCreate(None, NonPagedPool, 0, 8, m, None) == STATUS_SUCCESS
    for q in (req, dead_req):
        assert WdfRequestCreate(None, None, q) == STATUS_SUCCESS
    WdfObjectDelete(dead_mem)
    WdfObjectDelete(dead_req)
    iface = WdfUsbTargetDeviceGetInterface(r.device, 0)
    return [
        None, 0, 1, -1, 2**64, "WDFMEMORY", b"\x00", object(), 1.5, [mem], {},
        mem, mem.value, dead_mem, dead_mem.value, req, req.value, dead_req, dead_req.value,
        r.device, r.device.value, iface, r.pipes[EP_OUT], r.pipes[EP_IN], r.pipes[0x03],
        WdfUsbTargetPipeGetIoTarget(r.pipes[EP_OUT]), WDFMEMORY(), WDFREQUEST(), WDFUSBDEVICE(),
    ]  # fmt: skip


OPS: dict[str, Callable[[Any, Rig], Any]] = {
    "write pipe": lambda h, r: WdfUsbTargetPipeWriteSynchronously(h, None, None, None, None),
    "read pipe": lambda h, r: WdfUsbTargetPipeReadSynchronously(h, None, None, None, None),
    "write request": lambda h, r: WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], h, None, None, None),
    "reset": lambda h, r: WdfUsbTargetPipeResetSynchronously(h, None, None),
    "io target": lambda h, r: WdfUsbTargetPipeGetIoTarget(h),
    "get buffer": lambda h, r: WdfMemoryGetBuffer(h, None),
    "copy from": lambda h, r: WdfMemoryCopyFromBuffer(h, 0, b"ab", 2),
    "handle desc": lambda h, r: WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], None, None, handle_desc(h), None),
    "mdl desc": lambda h, r: WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], None, None, mdl_desc(h), None),
    "buffer desc": lambda h, r: WdfUsbTargetPipeWriteSynchronously(r.pipes[EP_OUT], None, None, buf_desc(h), None),
    "format": lambda h, r: WdfUsbTargetPipeFormatRequestForWrite(r.pipes[EP_OUT], h, None, None),
    "format memory": lambda h, r: WdfUsbTargetPipeFormatRequestForWrite(r.pipes[EP_OUT], new_req(), h, None),
    "send": lambda h, r: WdfRequestSend(h, WdfUsbTargetPipeGetIoTarget(r.pipes[EP_OUT]), None),
    "send target": lambda h, r: WdfRequestSend(new_req(), h, None),
    "cancel": lambda h, r: WdfRequestCancelSentRequest(h),
    "status": lambda h, r: WdfRequestGetStatus(h),
    "reference": lambda h, r: (WdfObjectReference(h), REFERENCED.append(h)),
    "interface": lambda h, r: WdfUsbTargetDeviceGetInterface(h, 0),
}


def handle_desc(h: Any) -> WDF_MEMORY_DESCRIPTOR:
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, h, None)
    return d


def mdl_desc(h: Any) -> WDF_MEMORY_DESCRIPTOR:
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, h, 4)
    return d


def buf_desc(h: Any) -> WDF_MEMORY_DESCRIPTOR:
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, h, 4)
    return d


def new_req() -> WDFREQUEST:
    q = WDFREQUEST()
    assert WdfRequestCreate(None, None, q) == STATUS_SUCCESS
    CREATED.append(q)
    return q


@PROPS
@given(op=st.sampled_from(sorted(OPS)), index=st.integers(0, 28), kind=st.sampled_from([1, 2, 3, 0, 4, -1, None]))
def test_every_handle_in_every_slot(rig: Rig, op: str, index: int, kind: Any) -> None:
    zoo = handle_zoo(rig)
    h = zoo[index % len(zoo)]
    before = rig.vdev.endpoint(EP_OUT).received_bytes
    result = call(lambda: OPS[op](h, rig))
    assert not isinstance(result, BaseException) or isinstance(result, ALLOWED)
    assert wait_for_completions(5)
    # a random descriptor Type is never taken for a real one
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, b"abcd", 4)
    d.Type = kind
    status = call(lambda: WdfUsbTargetPipeWriteSynchronously(rig.pipes[EP_OUT], None, None, d, None))
    assert status == (STATUS_SUCCESS if kind == WdfMemoryDescriptorTypeBuffer else STATUS_INVALID_PARAMETER)
    sent = rig.vdev.endpoint(EP_OUT).received_bytes - before - (4 if kind == WdfMemoryDescriptorTypeBuffer else 0)
    assert sent in (0, 8)  # nothing, or the whole 8-byte WDFMEMORY of the zoo: never a stray byte
    while REFERENCED:
        WdfObjectDereference(REFERENCED.pop())
    while CREATED:
        obj = CREATED.pop()
        if not obj.value.is_deleted:
            WdfObjectDelete(obj)


# ---- the public layers never let a length past the buffer reach the engine --------------------


@PROPS
@given(buf=buffers(max_size=1024))
def test_pythonic_layer_moves_exactly_the_buffer(rig: Rig, buf: tuple[Any, bytes]) -> None:
    obj, raw = buf
    with wdfusb.open(rig.vdev) as dev:
        ep = rig.vdev.endpoint(EP_OUT)
        before, crc = ep.received_bytes, ep.crc32
        result = call(lambda: dev.pipe(EP_OUT).write(obj, timeout=5))
        if isinstance(result, int):
            assert result == len(raw) and ep.received_bytes == before + len(raw)
            assert ep.crc32 == zlib.crc32(raw, crc)
        else:
            assert ep.received_bytes == before


def test_public_layers_refuse_lengths_past_the_buffer(rig: Rig) -> None:
    """The engine trusts its length (``Transfer.run``); every public path checks it first."""
    buf = bytearray(100)
    before = rig.vdev.endpoint(EP_OUT).received_bytes
    for length in (101, 2**32 - 1, 2**32, 2**64 - 1, 2**64):
        d = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, buf, length)
        assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[EP_OUT], None, None, d, None) in (
            STATUS_INVALID_DEVICE_REQUEST,
            STATUS_INVALID_PARAMETER,
        )
        d2 = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_MDL(d2, MDL(buf), length)
        assert WdfUsbTargetPipeWriteSynchronously(rig.pipes[EP_OUT], None, None, d2, None) in (
            STATUS_INVALID_DEVICE_REQUEST,
            STATUS_INVALID_PARAMETER,
        )
        mem = WDFMEMORY()
        assert WdfMemoryCreatePreallocated(None, buf, 100, mem) == STATUS_SUCCESS
        req = new_req()
        assert WdfUsbTargetPipeFormatRequestForWrite(rig.pipes[EP_OUT], req, mem, WDFMEMORY_OFFSET(1, length)) in (
            STATUS_INVALID_DEVICE_REQUEST,
            STATUS_INVALID_PARAMETER,
        )
        WdfObjectDelete(req)
        WdfObjectDelete(mem)
    with wdfusb.open(rig.vdev) as dev:
        with pytest.raises(TypeError):
            dev.pipe(EP_OUT).write(12345)  # a number is not a buffer, nor a length
        big = np.zeros(4, dtype=np.uint64)  # 32 bytes: sent as its raw bytes, never as 4 x something else
        assert dev.pipe(EP_OUT).write(big, timeout=5) == 32
        with dev.pipe(EP_OUT).writer(depth=2, chunk=512) as w:
            assert w.write(np.zeros(3, dtype=np.float64)) == 24
    assert rig.vdev.endpoint(EP_OUT).received_bytes == before + 32 + 24
    assert _engine.Transfer.live >= 0


MDL_TAMPER = """
import sys
sys.path.insert(0, {tests!r})
from test_wdf_helpers import open_rig, buffer_desc
from wdfusb.wdf import *
r = open_rig(None)
assert WdfUsbTargetPipeWriteSynchronously(r.pipes[0x06], None, None, buffer_desc(bytes(8192)), None) == 0
whole = bytearray(b"G" * 4096)
mdl = MDL(memoryview(whole)[16:32])
mdl.ByteCount = 4096  # a driver writes the MDL's public field; the buffer is still 16 bytes
d = WDF_MEMORY_DESCRIPTOR()
WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, {length})
n = ULONG()
status = WdfUsbTargetPipe{op}Synchronously(r.pipes[{ep}], None, None, d, n)
guards = bytes(whole[:16] + whole[32:]) == b"G" * (4096 - 16)
print(int(status), n.value, r.vdev.endpoint(0x06).received_bytes - 8192, guards, flush=True)
"""


@pytest.mark.parametrize("op", ["Write", "Read"])
def test_mdl_with_a_tampered_byte_count_stays_inside_its_buffer(op: str) -> None:
    code = MDL_TAMPER.format(
        tests=str(Path(__file__).parent), length=1024, op=op, ep="0x06" if op == "Write" else "0x88"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"crashed: {out.returncode} {out.stderr[-500:]}"
    _status, n, received, guards = out.stdout.split()
    assert guards == "True"
    assert int(n) <= 16 and (op == "Read" or int(received) <= 16)
