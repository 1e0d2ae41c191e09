"""The WDF control path on the virtual device: WDF_USB_CONTROL_SETUP_PACKET (a union, its INIT
functions) and WdfUsbTargetDeviceSendControlTransferSynchronously with WDF's return codes."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from test_wdf_helpers import Rig, buffer_desc, new_memory

from wdfusb import VirtualDevice
from wdfusb.wdf import *


def send(r: Rig, packet: WDF_USB_CONTROL_SETUP_PACKET, desc: object = None, **kw: object) -> tuple[int, int]:
    n = ULONG(12345)
    st = WdfUsbTargetDeviceSendControlTransferSynchronously(
        r.device, kw.get("request"), kw.get("options"), packet, desc, n
    )
    return st, n.value


def vendor(direction: int, request: int, value: int = 0, index: int = 0) -> WDF_USB_CONTROL_SETUP_PACKET:
    p = WDF_USB_CONTROL_SETUP_PACKET()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(p, direction, BmRequestToDevice, request, value, index)
    return p


# ---- the setup packet ---------------------------------------------------------------------------


def test_the_setup_packet_is_one_union() -> None:
    p = WDF_USB_CONTROL_SETUP_PACKET()
    p.Packet.bm.Request.Dir = BmRequestDeviceToHost
    p.Packet.bm.Request.Type = BmRequestClass
    p.Packet.bm.Request.Recipient = BmRequestToInterface
    p.Packet.bRequest = 0x01
    p.Packet.wValue.Value = 0x0304
    p.Packet.wIndex.Bytes.LowByte = 0x02
    p.Packet.wLength = 64
    assert bytes(p.Generic.Bytes) == bytes([0xA1, 0x01, 0x04, 0x03, 0x02, 0x00, 0x40, 0x00])
    assert p.Packet.bm.Byte == 0xA1 and p.Packet.wValue.Bytes.HiByte == 0x03 and p.Packet.wIndex.Value == 2
    p.Generic.Bytes[0] = 0x40  # the other view writes through
    assert (p.Packet.bm.Request.Dir, p.Packet.bm.Request.Type, p.Packet.bm.Request.Recipient) == (0, 2, 0)
    p.Packet.bm.Byte = 0x1C  # Reserved is bits 2-4
    assert (p.Packet.bm.Request.Reserved, p.Packet.bm.Request.Recipient) == (7, 0)
    with pytest.raises(ValueError):
        p.Packet.bm.Request.Type = 4  # a 2-bit field
    with pytest.raises(ValueError):
        p.Packet.wValue.Value = 0x10000
    with pytest.raises(TypeError):
        p.Packet.bRequest = 1.5


def test_init_functions_zero_the_packet_and_set_what_they_say() -> None:
    p = WDF_USB_CONTROL_SETUP_PACKET()
    p.Generic.Bytes = b"\xff" * 8
    WDF_USB_CONTROL_SETUP_PACKET_INIT(
        p, BmRequestDeviceToHost, BmRequestToDevice, USB_REQUEST_GET_DESCRIPTOR, 0x0100, 0
    )
    assert bytes(p) == bytes([0x80, 0x06, 0x00, 0x01, 0, 0, 0, 0])  # wLength: the send sets it
    WDF_USB_CONTROL_SETUP_PACKET_INIT_CLASS(p, BmRequestHostToDevice, BmRequestToInterface, 0x0A, 0x0400, 1)
    assert bytes(p) == bytes([0x21, 0x0A, 0x00, 0x04, 1, 0, 0, 0])
    WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(p, BmRequestDeviceToHost, BmRequestToDevice, 0x5C, 0, 0)
    assert bytes(p) == bytes([0xC0, 0x5C, 0, 0, 0, 0, 0, 0])
    WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE(p, BmRequestToEndpoint, USB_FEATURE_ENDPOINT_STALL, 0x06, True)
    assert bytes(p) == bytes([0x02, 0x03, 0, 0, 0x06, 0, 0, 0])
    WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE(p, BmRequestToEndpoint, USB_FEATURE_ENDPOINT_STALL, 0x06, False)
    assert p.Packet.bRequest == USB_REQUEST_CLEAR_FEATURE
    WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS(p, BmRequestToEndpoint, 0x88)
    assert bytes(p) == bytes([0x82, 0x00, 0, 0, 0x88, 0, 0, 0])


# ---- WdfUsbTargetDeviceSendControlTransferSynchronously ---------------------------------------


def test_descriptors_and_status_through_wdf(rig: Rig) -> None:
    p = WDF_USB_CONTROL_SETUP_PACKET()
    WDF_USB_CONTROL_SETUP_PACKET_INIT(
        p, BmRequestDeviceToHost, BmRequestToDevice, USB_REQUEST_GET_DESCRIPTOR, 0x0100, 0
    )
    p.Packet.wLength = 999  # the framework sends the memory's length, and leaves the packet alone
    mem = new_memory(bytes(18))
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(desc, mem, None)
    assert send(rig, p, desc) == (STATUS_SUCCESS, 18)
    assert p.Packet.wLength == 999
    got = bytes(WdfMemoryGetBuffer(mem, None))
    dd = USB_DEVICE_DESCRIPTOR()
    WdfUsbTargetDeviceGetDeviceDescriptor(rig.device, dd)
    assert got[8:12] == dd.idVendor.to_bytes(2, "little") + dd.idProduct.to_bytes(2, "little")
    status = np.zeros(1, np.uint16)  # any writable buffer
    WDF_USB_CONTROL_SETUP_PACKET_INIT_GET_STATUS(p, BmRequestToEndpoint, 0x06)
    rig.vdev.endpoint(0x06).stall()
    assert send(rig, p, buffer_desc(status)) == (STATUS_SUCCESS, 2) and status[0] == 1
    WDF_USB_CONTROL_SETUP_PACKET_INIT_FEATURE(p, BmRequestToEndpoint, USB_FEATURE_ENDPOINT_STALL, 0x06, False)
    assert send(rig, p) == (STATUS_SUCCESS, 0)  # no data stage
    assert not rig.vdev.endpoint(0x06).halted


def test_vendor_requests_out_and_in(rig: Rig) -> None:
    data = bytes(range(200))
    assert send(rig, vendor(BmRequestHostToDevice, 0x5B), buffer_desc(data)) == (STATUS_SUCCESS, 200)
    back = bytearray(256)  # the device returns what wLength asks for: the descriptor's length
    assert send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(back, 200)) == (STATUS_SUCCESS, 200)
    assert bytes(back[:200]) == data and back[200:] == bytes(56)


def test_a_stall_and_the_next_request(rig: Rig) -> None:
    st, n = send(rig, vendor(BmRequestDeviceToHost, 0x77), buffer_desc(bytearray(4)))
    assert not NT_SUCCESS(st) and n == 0
    assert send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(bytearray(4))) == (STATUS_SUCCESS, 4)


def test_return_codes(rig: Rig) -> None:
    out = vendor(BmRequestHostToDevice, 0x5B)
    assert send(rig, out, buffer_desc(bytes(4097)))[0] == STATUS_INVALID_PARAMETER  # over 4096: never sent
    assert send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(bytes(4)))[0] == STATUS_INVALID_DEVICE_REQUEST
    o = WDF_REQUEST_SEND_OPTIONS()  # Size 0
    assert send(rig, out, buffer_desc(b"x"), options=o)[0] == STATUS_INFO_LENGTH_MISMATCH
    assert send(rig, out, 42)[0] == STATUS_INVALID_PARAMETER  # not a descriptor
    with completion_routine_context():
        assert send(rig, out, buffer_desc(b"x"))[0] == STATUS_INVALID_DEVICE_REQUEST
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetDeviceSendControlTransferSynchronously(rig.device, None, None, None, None, None)
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetDeviceSendControlTransferSynchronously(rig.pipes[0x06], None, None, out, None, None)
    assert rig.vdev.endpoint(0).transfers == 0  # none of them reached EP0


def test_time_out_and_cancel_of_a_sent_request(rig: Rig) -> None:
    rig.vdev.endpoint(0).nak(float("inf"))
    o = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(o, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_MS(50))
    assert send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(bytearray(8)), options=o) == (
        STATUS_IO_TIMEOUT,
        0,
    )
    req = WDFREQUEST()
    assert WdfRequestCreate(None, WdfUsbTargetDeviceGetIoTarget(rig.device), req) == STATUS_SUCCESS
    result: dict[str, int] = {}
    t = threading.Thread(
        target=lambda: result.update(
            s=send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(bytearray(8)), request=req)[0]
        )
    )
    t.start()
    deadline = time.monotonic() + 5
    while not req.value.pending and time.monotonic() < deadline:
        time.sleep(0.001)
    assert WdfRequestCancelSentRequest(req) is True
    t.join(5)
    assert result["s"] == STATUS_CANCELLED and WdfRequestGetStatus(req) == STATUS_CANCELLED
    rig.vdev.endpoint(0).nak(0)
    WDF_REQUEST_REUSE_PARAMS_INIT(params := WDF_REQUEST_REUSE_PARAMS(), 0, STATUS_SUCCESS)
    assert WdfRequestReuse(req, params) == STATUS_SUCCESS
    assert send(rig, vendor(BmRequestDeviceToHost, 0x5C), buffer_desc(bytearray(8)), request=req)[0] == 0


# ---- strings and the configuration descriptor -----------------------------------------------------


def test_query_string_lengths_and_overflow(rig: Rig) -> None:
    dd = USB_DEVICE_DESCRIPTOR()
    WdfUsbTargetDeviceGetDeviceDescriptor(rig.device, dd)
    want = rig.vdev.product
    n = USHORT()
    assert WdfUsbTargetDeviceQueryString(rig.device, None, None, None, n, dd.iProduct, 0x0409) == STATUS_SUCCESS
    assert n.value == len(want)  # WCHARs, no terminator
    full = np.zeros(n.value, np.uint16)
    assert WdfUsbTargetDeviceQueryString(rig.device, None, None, full, n, dd.iProduct, 0x0409) == STATUS_SUCCESS
    assert full.tobytes().decode("utf-16-le") == want
    short, n = bytearray(2 * 6), USHORT(6)  # a bytearray of twice the count
    assert (
        WdfUsbTargetDeviceQueryString(rig.device, None, None, short, n, dd.iProduct, 0x0409) == STATUS_BUFFER_OVERFLOW
    )
    assert n.value == len(want) and short.decode("utf-16-le") == want[:6]
    st = WdfUsbTargetDeviceQueryString(rig.device, None, None, None, USHORT(), 0x42, 0x0409)
    assert not NT_SUCCESS(st)  # the device stalls a string it does not have
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetDeviceQueryString(rig.device, None, None, None, None, 1, 0x0409)
    assert WdfUsbTargetDeviceQueryString(rig.device, None, None, bytes(8), USHORT(4), 1, 0x0409) == (
        STATUS_INVALID_PARAMETER
    )  # read-only


def test_alloc_and_query_string(rig: Rig) -> None:
    mem, n = WDFMEMORY(), USHORT(99)
    assert WdfUsbTargetDeviceAllocAndQueryString(rig.device, WDF_NO_OBJECT_ATTRIBUTES, mem, n, 3, 0x0409) == 0
    size = SIZE_T()
    assert bytes(WdfMemoryGetBuffer(mem, size)).decode("utf-16-le") == rig.vdev.serial
    assert n.value == len(rig.vdev.serial) and size.value == 2 * n.value
    WdfObjectDelete(mem)
    assert not NT_SUCCESS(WdfUsbTargetDeviceAllocAndQueryString(rig.device, None, mem, n, 0x42, 0x0409))
    assert mem.value is None and n.value == 0


def test_retrieve_config_descriptor(rig: Rig) -> None:
    n = USHORT()
    assert WdfUsbTargetDeviceRetrieveConfigDescriptor(rig.device, None, n) == STATUS_BUFFER_TOO_SMALL
    total = n.value
    assert total > 9
    head, n = bytearray(9), USHORT(9)
    assert WdfUsbTargetDeviceRetrieveConfigDescriptor(rig.device, head, n) == STATUS_BUFFER_TOO_SMALL
    assert n.value == total and head[1] == 2 and int.from_bytes(head[2:4], "little") == total
    whole = np.zeros(total + 10, np.uint8)
    n = USHORT(total + 10)
    assert WdfUsbTargetDeviceRetrieveConfigDescriptor(rig.device, whole, n) == STATUS_SUCCESS
    assert n.value == total and whole[:9].tobytes() == bytes(head)


# ---- the asynchronous path: FormatRequestForControlTransfer + WdfRequestSend ----------------------


def device_request(r: Rig) -> WDFREQUEST:
    req = WDFREQUEST()
    assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, WdfUsbTargetDeviceGetIoTarget(r.device), req) == 0
    return req


def test_a_formatted_control_request_completes_with_its_parameters(rig: Rig) -> None:
    target = WdfUsbTargetDeviceGetIoTarget(rig.device)
    out_mem, in_mem = new_memory(bytes(range(48))), new_memory(bytes(64))
    seen: list[tuple[int, int, int, bytes, Any]] = []
    done = threading.Event()

    def routine(Request: Any, Target: Any, Params: WDF_REQUEST_COMPLETION_PARAMS, Context: Any) -> None:
        usb = Params.Parameters.Usb.Completion
        ct = usb.Parameters.DeviceControlTransfer
        seen.append((Params.IoStatus.Status, usb.Type, ct.Length, bytes(ct.SetupPacket), ct.Buffer))
        if len(seen) == 2:
            done.set()

    req = device_request(rig)
    packet = vendor(BmRequestHostToDevice, 0x5B)
    assert WdfUsbTargetDeviceFormatRequestForControlTransfer(rig.device, req, packet, out_mem, None) == 0
    WdfRequestSetCompletionRoutine(req, routine, None)
    assert WdfRequestSend(req, target, None) is True
    assert wait_for_completions(5)
    req2 = device_request(rig)
    offsets = WDFMEMORY_OFFSET()
    offsets.BufferOffset, offsets.BufferLength = 8, 40
    packet_in = vendor(BmRequestDeviceToHost, 0x5C)
    assert WdfUsbTargetDeviceFormatRequestForControlTransfer(rig.device, req2, packet_in, in_mem, offsets) == 0
    WdfRequestSetCompletionRoutine(req2, routine, None)
    assert WdfRequestSend(req2, target, None) is True
    assert done.wait(5) and wait_for_completions(5)
    (st1, type1, len1, setup1, buf1), (st2, _, len2, setup2, _) = seen
    assert (st1, type1, len1, st2, len2) == (0, WdfUsbRequestTypeDeviceControlTransfer, 48, 0, 40)
    assert setup1[:2] == b"\x40\x5b" and setup2[:2] == b"\xc0\x5c" and buf1 is out_mem.value
    back = bytes(WdfMemoryGetBuffer(in_mem, None))
    assert back[8:48] == bytes(range(40)) and back[:8] == bytes(8)  # the data stage landed at the offset


def test_a_formatted_control_request_sent_synchronously_and_cancelled(rig: Rig) -> None:
    target = WdfUsbTargetDeviceGetIoTarget(rig.device)
    req, mem = device_request(rig), new_memory(bytes(16))
    sync = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(sync, WDF_REQUEST_SEND_OPTION_SYNCHRONOUS)
    assert (
        WdfUsbTargetDeviceFormatRequestForControlTransfer(rig.device, req, vendor(BmRequestDeviceToHost, 0x5C), mem)
        == 0
    )
    assert WdfRequestSend(req, target, sync) is True and WdfRequestGetInformation(req) == 16
    rig.vdev.endpoint(0).nak(float("inf"))
    req2 = device_request(rig)
    assert (
        WdfUsbTargetDeviceFormatRequestForControlTransfer(rig.device, req2, vendor(BmRequestDeviceToHost, 0x5C), mem)
        == 0
    )
    assert WdfRequestSend(req2, target, None) is True
    assert WdfRequestCancelSentRequest(req2) is True
    assert wait_for_completions(5)
    assert WdfRequestGetStatus(req2) == STATUS_CANCELLED
    rig.vdev.endpoint(0).nak(0)
    big = new_memory(bytes(4097))
    assert (
        WdfUsbTargetDeviceFormatRequestForControlTransfer(rig.device, req2, vendor(BmRequestDeviceToHost, 0x5C), big)
        == STATUS_INVALID_PARAMETER
    )
    assert not WdfRequestSend(req2, rig.pipes[0x06], None)  # formatted for the device, not for a pipe


@pytest.mark.parametrize("speed,high", [("full", 0), ("high", WDF_USB_DEVICE_TRAIT_AT_HIGH_SPEED)])
def test_retrieve_information(speed: str, high: int) -> None:
    from test_wdf_helpers import open_rig

    r = open_rig(speed)
    try:
        info = WDF_USB_DEVICE_INFORMATION()
        assert WdfUsbTargetDeviceRetrieveInformation(r.device, info) == STATUS_INFO_LENGTH_MISMATCH  # Size 0
        WDF_USB_DEVICE_INFORMATION_INIT(info)
        assert WdfUsbTargetDeviceRetrieveInformation(r.device, info) == STATUS_SUCCESS
        assert info.Traits == high  # bus powered, no remote wake-up (bmAttributes 0x80)
        assert info.UsbdVersionInformation.Supported_USB_Version == (0x0110 if speed == "full" else 0x0200)
    finally:
        WdfObjectDelete(r.device)
        r.vdev.close()


def test_cycle_port_synchronously(rig: Rig) -> None:
    """FxUsbDevice::CyclePort: the I/O sent is cancelled, the device re-enumerates, and the old
    target is left with the device-gone status; a new target on the device works."""
    rig.vdev.endpoint(0x06).nak(float("inf"))
    request = buffer_desc(bytearray(512))
    sent: list[int] = []
    t = threading.Thread(
        target=lambda: sent.append(WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, request, None))
    )
    t.start()
    deadline = time.monotonic() + 5
    while rig.vdev._native.live_transfers() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with completion_routine_context():
        assert WdfUsbTargetDeviceCyclePortSynchronously(rig.device) == STATUS_INVALID_DEVICE_REQUEST
    address = rig.vdev.address
    assert WdfUsbTargetDeviceCyclePortSynchronously(rig.device) == STATUS_SUCCESS
    t.join(5)
    assert sent == [STATUS_CANCELLED] and rig.vdev.address != address
    assert WdfUsbTargetDeviceIsConnectedSynchronous(rig.device) == STATUS_DEVICE_DOES_NOT_EXIST
    assert not NT_SUCCESS(WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], None, None, request, None))
    assert WdfUsbTargetDeviceCyclePortSynchronously(rig.device) == STATUS_DEVICE_NOT_CONNECTED  # nothing to cycle
    again = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(rig.vdev, WDF_NO_OBJECT_ATTRIBUTES, again) == STATUS_SUCCESS
    assert WdfUsbTargetDeviceIsConnectedSynchronous(again) == STATUS_SUCCESS
    WdfObjectDelete(again)


def test_reset_port_synchronously(rig: Rig) -> None:
    rig.vdev.endpoint(0x88).stall()
    assert WdfUsbTargetDeviceResetPortSynchronously(rig.device) == STATUS_SUCCESS
    assert not rig.vdev.endpoint(0x88).halted
    with completion_routine_context():
        assert WdfUsbTargetDeviceResetPortSynchronously(rig.device) == STATUS_INVALID_DEVICE_REQUEST
    rig.vdev.unplug()
    assert not NT_SUCCESS(WdfUsbTargetDeviceResetPortSynchronously(rig.device))


def test_create_with_parameters() -> None:
    """FxUsbTargetDeviceCreate with the driver's contract version: the size is checked first, as WDF does."""
    vdev = VirtualDevice("high")
    try:
        config = WDF_USB_DEVICE_CREATE_CONFIG()
        device = WDFUSBDEVICE()
        assert WdfUsbTargetDeviceCreateWithParameters(vdev, config, None, device) == STATUS_INFO_LENGTH_MISMATCH
        assert device.value is None
        with pytest.raises(WdfBugCheck):
            WdfUsbTargetDeviceCreateWithParameters(vdev, None, None, device)
        with pytest.raises(WdfBugCheck):
            WdfUsbTargetDeviceCreateWithParameters(object(), config, None, device)
        WDF_USB_DEVICE_CREATE_CONFIG_INIT(config, USBD_CLIENT_CONTRACT_VERSION_602)
        assert (config.Size, config.USBDClientContractVersion) == (8, 0x602)
        config.USBDClientContractVersion = -1
        assert WdfUsbTargetDeviceCreateWithParameters(vdev, config, None, device) == STATUS_INVALID_PARAMETER
        config.USBDClientContractVersion = USBD_CLIENT_CONTRACT_VERSION_602
        with completion_routine_context():
            assert WdfUsbTargetDeviceCreateWithParameters(vdev, config, None, device) == STATUS_INVALID_DEVICE_REQUEST
        assert WdfUsbTargetDeviceCreateWithParameters(vdev, config, None, device) == STATUS_SUCCESS
        assert WdfUsbTargetDeviceIsConnectedSynchronous(device) == STATUS_SUCCESS
        dd = USB_DEVICE_DESCRIPTOR()
        WdfUsbTargetDeviceGetDeviceDescriptor(device, dd)
        assert (dd.idVendor, dd.idProduct) == (vdev.vid, vdev.pid)
        WdfObjectDelete(device)
    finally:
        vdev.close()
