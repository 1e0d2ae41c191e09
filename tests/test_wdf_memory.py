"""wdfusb.wdf memory: WDFMEMORY, offsets, MDLs, the three descriptor kinds, every buffer type, the reference rule."""

from __future__ import annotations

import array
import mmap
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_wdf_helpers import Rig, buffer_desc

from wdfusb.wdf import *


def send(r: Rig, desc: object, request: object = None) -> tuple[int, int]:
    n = ULONG()
    return WdfUsbTargetPipeWriteSynchronously(r.pipes[0x06], request, None, desc, n), n.value


def read_back(r: Rig, size: int) -> bytes:
    buf = bytearray(512 * ((size + 511) // 512))
    n = ULONG()
    assert WdfUsbTargetPipeReadSynchronously(r.pipes[0x88], None, None, buffer_desc(buf), n) == STATUS_SUCCESS
    return bytes(buf[: n.value])


def test_memory_create_and_get_buffer_is_a_writable_view() -> None:
    mem, out = WDFMEMORY(), WDFOBJECT()
    assert WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, 100, mem, out) == STATUS_SUCCESS
    size = SIZE_T()
    buf = WdfMemoryGetBuffer(mem, size)
    assert size.value == 100 and isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.flags.writeable
    buf[3] = 42
    assert WdfMemoryGetBuffer(mem, None)[3] == 42 and out.value[3] == 42  # same memory, no copy
    assert WdfMemoryCreate(None, NonPagedPool, 0, 0, WDFMEMORY(), None) == STATUS_INVALID_PARAMETER
    with pytest.raises(WdfBugCheck):
        WdfMemoryCreate(None, NonPagedPool, 0, 10, None, None)


def test_preallocated_is_zero_copy() -> None:
    backing = bytearray(b"0123456789")
    mem = WDFMEMORY()
    assert WdfMemoryCreatePreallocated(None, backing, 8, mem) == STATUS_SUCCESS
    view = WdfMemoryGetBuffer(mem, None)
    assert view.size == 8
    view[0] = ord("X")
    assert backing[0] == ord("X")
    assert WdfMemoryCreatePreallocated(None, backing, 0, WDFMEMORY()) == STATUS_INVALID_PARAMETER
    assert WdfMemoryCreatePreallocated(None, backing, 11, WDFMEMORY()) == STATUS_INVALID_PARAMETER
    ro = WDFMEMORY()
    assert WdfMemoryCreatePreallocated(None, b"read-only", 9, ro) == STATUS_SUCCESS
    assert not WdfMemoryGetBuffer(ro, None).flags.writeable
    assert WdfMemoryCopyFromBuffer(ro, 0, b"x", 1) == STATUS_ACCESS_VIOLATION


def test_copy_from_and_to_buffer_with_offsets() -> None:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 8, mem, None) == STATUS_SUCCESS
    assert WdfMemoryCopyFromBuffer(mem, 2, b"abcd", 4) == STATUS_SUCCESS
    out = bytearray(3)
    assert WdfMemoryCopyToBuffer(mem, 3, out, 3) == STATUS_SUCCESS and bytes(out) == b"bcd"
    assert WdfMemoryCopyFromBuffer(mem, 6, b"abcd", 4) == STATUS_INVALID_BUFFER_SIZE
    assert WdfMemoryCopyFromBuffer(mem, 8, b"a", 1) == STATUS_INVALID_BUFFER_SIZE
    assert WdfMemoryCopyFromBuffer(mem, 0, b"a", 0) == STATUS_INVALID_PARAMETER
    assert WdfMemoryCopyToBuffer(mem, 6, bytearray(4), 4) == STATUS_BUFFER_TOO_SMALL
    assert WdfMemoryCopyToBuffer(mem, 8, bytearray(1), 1) == STATUS_BUFFER_TOO_SMALL
    assert WdfMemoryCopyToBuffer(mem, 0, bytearray(1), 0) == STATUS_INVALID_PARAMETER


BUFFER_TYPES = {
    "bytes": lambda data: bytes(data),
    "bytearray": lambda data: bytearray(data),
    "memoryview": lambda data: memoryview(bytearray(data)),
    "numpy": lambda data: np.frombuffer(data, dtype=np.uint8).copy(),
    "numpy-uint32": lambda data: np.frombuffer(data, dtype=np.uint32).copy(),
    "array.array": lambda data: array.array("B", data),
    "array.array-H": lambda data: array.array("H", data),
}


@pytest.mark.parametrize("kind", [*sorted(BUFFER_TYPES), "mmap"])
def test_every_buffer_type_writes_and_reads(rig: Rig, kind: str) -> None:
    data = bytes((i * 7) & 0xFF for i in range(1024))
    if kind == "mmap":
        buf: object = mmap.mmap(-1, 1024)
        buf[:] = data  # type: ignore[index]
    else:
        buf = BUFFER_TYPES[kind](data)
    assert send(rig, buffer_desc(buf)) == (STATUS_SUCCESS, 1024)
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(data)
    if kind != "bytes":  # read back into the same kind of buffer
        target = BUFFER_TYPES.get(kind, lambda d: mmap.mmap(-1, 1024))(bytes(1024))
        n = ULONG()
        st = WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, buffer_desc(target), n)
        assert st == STATUS_SUCCESS and n.value == 1024
        assert bytes(memoryview(target).cast("B")) == data


def test_non_contiguous_buffer_is_invalid_parameter(rig: Rig) -> None:
    a = np.zeros(64, dtype=np.uint8)[::2]
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(d, a, 32)
    assert send(rig, d)[0] == STATUS_INVALID_PARAMETER


def test_handle_descriptor_without_and_with_offsets(rig: Rig) -> None:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 100, mem, None) == STATUS_SUCCESS
    buf = WdfMemoryGetBuffer(mem, None)
    buf[:] = np.arange(100, dtype=np.uint8)
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, None)
    assert send(rig, d) == (STATUS_SUCCESS, 100)
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(10, 20))
    assert send(rig, d) == (STATUS_SUCCESS, 20)
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(90, 0))  # length 0: to the end
    assert send(rig, d) == (STATUS_SUCCESS, 10)
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(0, 0))  # both 0: everything
    assert send(rig, d) == (STATUS_SUCCESS, 100)
    expected = bytes(buf) + bytes(buf[10:30]) + bytes(buf[90:]) + bytes(buf)
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(expected)
    assert read_back(rig, len(expected)) == expected
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(2**64 - 1, 2))  # overflow
    assert send(rig, d)[0] == STATUS_INVALID_DEVICE_REQUEST


def test_read_into_memory_with_offsets(rig: Rig) -> None:
    data = bytes(range(200, 255))
    assert send(rig, buffer_desc(data))[0] == STATUS_SUCCESS
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 1024 + 8, mem, None) == STATUS_SUCCESS
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, WDFMEMORY_OFFSET(8, 1024))
    n = ULONG()
    assert WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, d, n) == STATUS_SUCCESS
    buf = WdfMemoryGetBuffer(mem, None)
    assert n.value == len(data) and bytes(buf[8 : 8 + n.value]) == data and not buf[:8].any()


def test_mdl_single_is_zero_copy_and_chained_in_order(rig: Rig) -> None:
    base = bytearray(b"AAAABBBBCCCCDDDD")
    mdl = MDL(base, 4, 8)
    assert MmGetMdlByteCount(mdl) == 8 and MmGetMdlByteOffset(mdl) == 4
    assert bytes(MmGetMdlVirtualAddress(mdl)) == b"BBBBCCCC"
    MmGetSystemAddressForMdlSafe(mdl, 0)[0] = ord("b")
    assert base[4] == ord("b")  # a view, not a copy
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, 8)
    assert send(rig, d) == (STATUS_SUCCESS, 8)
    second = IoAllocateMdl(bytearray(b"xyz"), 3, False, False, None)
    third = MDL(np.frombuffer(b"0123456789", dtype=np.uint8), 5)
    assert second is not None
    mdl.Next, second.Next = second, third
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, 15)
    assert send(rig, d) == (STATUS_SUCCESS, 15)
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, mdl, 12)  # a prefix of the chain
    assert send(rig, d) == (STATUS_SUCCESS, 12)
    expected = b"bBBBCCCC" + b"bBBBCCCCxyz5678" + b"bBBBCCCCxyz5"
    assert rig.vdev.endpoint(0x06).crc32 == zlib.crc32(expected)
    # read into a chain: scattered in order
    a, b2 = bytearray(10), bytearray(1014)
    rmdl = MDL(a)
    rmdl.Next = MDL(b2)
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, rmdl, 1024)
    n = ULONG()
    assert WdfUsbTargetPipeReadSynchronously(rig.pipes[0x88], None, None, d, n) == STATUS_SUCCESS
    assert bytes(a + b2)[: n.value] == expected and n.value == len(expected)
    assert IoAllocateMdl(bytearray(2), 3) is None
    IoFreeMdl(second)
    WDF_MEMORY_DESCRIPTOR_INIT_MDL(d, second, 3)
    assert send(rig, d)[0] == STATUS_INVALID_PARAMETER


def test_memory_referenced_by_a_request_outlives_its_delete(rig: Rig) -> None:
    mem, req = WDFMEMORY(), WDFREQUEST()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 32, mem, None) == STATUS_SUCCESS
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    WdfMemoryGetBuffer(mem, None)[:] = 5
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, None)
    assert send(rig, d, req) == (STATUS_SUCCESS, 32)
    WdfObjectDelete(mem)  # the request still references it: deferred
    assert WdfMemoryGetBuffer(mem, None)[0] == 5
    cp = WDF_REQUEST_COMPLETION_PARAMS()
    WdfRequestGetCompletionParams(req, cp)
    assert cp.Parameters.Usb.Completion.Parameters.PipeWrite.Buffer is mem.value
    reuse = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(reuse, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    assert WdfRequestReuse(req, reuse) == STATUS_SUCCESS  # drops the reference: now it goes
    with pytest.raises(WdfBugCheck):
        WdfMemoryGetBuffer(mem, None)


@pytest.mark.parametrize("release", ["delete", "reformat"])
def test_reference_released_by_request_delete_or_reformat(rig: Rig, release: str) -> None:
    mem, req = WDFMEMORY(), WDFREQUEST()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 8, mem, None) == STATUS_SUCCESS
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    d = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(d, mem, None)
    assert send(rig, d, req)[0] == STATUS_SUCCESS
    WdfObjectDelete(mem)
    assert WdfMemoryGetBuffer(mem, None).size == 8
    if release == "delete":
        WdfObjectDelete(req)
    else:
        assert send(rig, buffer_desc(b"other"), req)[0] == STATUS_SUCCESS
    with pytest.raises(WdfBugCheck):
        WdfMemoryGetBuffer(mem, None)


def test_memory_parented_to_a_request_goes_with_it() -> None:
    req = WDFREQUEST()
    assert WdfRequestCreate(None, None, req) == STATUS_SUCCESS
    attrs = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(attrs)
    attrs.ParentObject = req
    mem = WDFMEMORY()
    assert WdfMemoryCreate(attrs, NonPagedPool, 0, 8, mem, None) == STATUS_SUCCESS
    WdfObjectDelete(req)
    with pytest.raises(WdfBugCheck):
        WdfMemoryGetBuffer(mem, None)


def test_seed_example_runs() -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "seed_write.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "status = STATUS_SUCCESS(0x00000000)" in out.stdout
    assert "bytesWritten = 64" in out.stdout and "CRC matches" in out.stdout
