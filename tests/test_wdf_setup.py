"""wdfusb.wdf: device -> interfaces -> pipes, structures, constants, handles and bug checks."""

from __future__ import annotations

import pytest
from test_wdf_helpers import Rig, open_rig

import wdfusb.wdf as wdf
from wdfusb import VirtualDevice
from wdfusb.wdf import *


def test_star_import_gives_the_contract_names() -> None:
    ns: dict[str, object] = {}
    exec("from wdfusb.wdf import *", ns)  # noqa: S102
    for name in (
        "WdfUsbTargetPipeWriteSynchronously",
        "WdfUsbTargetPipeReadSynchronously",
        "WdfMemoryCreate",
        "WDF_MEMORY_DESCRIPTOR_INIT_BUFFER",
        "WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT",
        "WDF_REL_TIMEOUT_IN_MS",
        "WDF_ABS_TIMEOUT_IN_SEC",
        "NT_SUCCESS",
        "STATUS_IO_TIMEOUT",
        "USBD_STATUS_STALL_PID",
        "WdfBugCheck",
        "ULONG",
        "SIZE_T",
        "WDFMEMORY",
        "WDFREQUEST",
        "WDFUSBDEVICE",
        "NonPagedPool",
        "WDF_NO_OBJECT_ATTRIBUTES",
        "MDL",
        "WdfRequestCancelSentRequest",
        "WdfUsbTargetPipeResetSynchronously",
    ):
        assert name in ns, name
    assert set(wdf.__all__) <= set(dir(wdf))


def test_status_values_are_the_real_ones() -> None:
    assert STATUS_SUCCESS == 0 and STATUS_UNSUCCESSFUL == 0xC0000001
    assert STATUS_INFO_LENGTH_MISMATCH == 0xC0000004 and STATUS_INVALID_PARAMETER == 0xC000000D
    assert STATUS_NO_SUCH_DEVICE == 0xC000000E and STATUS_INVALID_DEVICE_REQUEST == 0xC0000010
    assert STATUS_INSUFFICIENT_RESOURCES == 0xC000009A and STATUS_DEVICE_NOT_CONNECTED == 0xC000009D
    assert STATUS_IO_TIMEOUT == 0xC00000B5 and STATUS_CANCELLED == 0xC0000120
    assert STATUS_REQUEST_NOT_ACCEPTED == 0xC00000D0 and STATUS_DEVICE_REMOVED == 0xC00002B6
    assert STATUS_INVALID_BUFFER_SIZE == 0xC0000206
    assert "STATUS_IO_TIMEOUT" in repr(STATUS_IO_TIMEOUT) and "C00000B5" in repr(STATUS_IO_TIMEOUT)
    assert NT_SUCCESS(STATUS_SUCCESS) and not NT_SUCCESS(STATUS_CANCELLED)


def test_enum_and_flag_values() -> None:
    assert (
        WdfUsbPipeTypeInvalid,
        WdfUsbPipeTypeControl,
        WdfUsbPipeTypeIsochronous,
        WdfUsbPipeTypeBulk,
        WdfUsbPipeTypeInterrupt,
    ) == (0, 1, 2, 3, 4)
    assert (
        WdfMemoryDescriptorTypeInvalid,
        WdfMemoryDescriptorTypeBuffer,
        WdfMemoryDescriptorTypeMdl,
        WdfMemoryDescriptorTypeHandle,
    ) == (0, 1, 2, 3)
    assert (
        WDF_REQUEST_SEND_OPTION_TIMEOUT,
        WDF_REQUEST_SEND_OPTION_SYNCHRONOUS,
        WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE,
        WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET,
    ) == (1, 2, 4, 8)
    assert (NonPagedPool, PagedPool, NonPagedPoolNx) == (0, 1, 512)
    assert WdfRequestTypeUsb == 0x40 and WdfUsbRequestTypePipeWrite == 5 and WdfUsbRequestTypePipeRead == 6


def test_struct_sizes_after_init() -> None:
    o = WDF_REQUEST_SEND_OPTIONS()
    assert o.Size == 0
    WDF_REQUEST_SEND_OPTIONS_INIT(o, WDF_REQUEST_SEND_OPTION_SYNCHRONOUS)
    assert (o.Size, o.Flags, o.Timeout) == (16, 2, 0)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(o, WDF_REL_TIMEOUT_IN_SEC(1))
    assert o.Flags == 3 and o.Timeout == -10_000_000
    info = WDF_USB_PIPE_INFORMATION()
    WDF_USB_PIPE_INFORMATION_INIT(info)
    assert info.Size == 20
    p = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(p)
    assert (p.Size, p.Type) == (32, WdfUsbTargetDeviceSelectConfigTypeSingleInterface)
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(p, 0, None)
    assert p.Type == WdfUsbTargetDeviceSelectConfigTypeMultiInterface
    r = WDF_REQUEST_REUSE_PARAMS()
    WDF_REQUEST_REUSE_PARAMS_INIT(r, WDF_REQUEST_REUSE_NO_FLAGS, STATUS_SUCCESS)
    assert r.Size == 24
    a = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(a)
    assert a.Size == 56 and a.ParentObject is None
    c = WDF_REQUEST_COMPLETION_PARAMS()
    WDF_REQUEST_COMPLETION_PARAMS_INIT(c)
    assert c.Size == 72 and c.Type == WdfRequestTypeNoFormat


def test_timeout_macros() -> None:
    assert WDF_REL_TIMEOUT_IN_MS(200) == -2_000_000
    assert WDF_REL_TIMEOUT_IN_US(5) == -50
    assert WDF_ABS_TIMEOUT_IN_SEC(2) == 20_000_000
    assert WDF_ABS_TIMEOUT_IN_MS(3) == 30_000 and WDF_ABS_TIMEOUT_IN_US(7) == 70
    import time

    now_1601 = time.time_ns() // 100 + 116_444_736_000_000_000
    assert abs(KeQuerySystemTime() - now_1601) < 10_000_000


def test_pipes_of_the_default_profile(rig: Rig) -> None:
    assert sorted(rig.pipes) == [0x02, 0x03, 0x06, 0x81, 0x88]
    types = {a: WdfUsbTargetPipeGetType(p) for a, p in rig.pipes.items()}
    assert types == {
        0x06: WdfUsbPipeTypeBulk,
        0x88: WdfUsbPipeTypeBulk,
        0x02: WdfUsbPipeTypeInterrupt,
        0x81: WdfUsbPipeTypeInterrupt,
        0x03: WdfUsbPipeTypeIsochronous,
    }
    assert WdfUsbTargetPipeIsOutEndpoint(rig.pipes[0x06]) and not WdfUsbTargetPipeIsInEndpoint(rig.pipes[0x06])
    assert WdfUsbTargetPipeIsInEndpoint(rig.pipes[0x88])
    info = WDF_USB_PIPE_INFORMATION()
    WdfUsbTargetPipeGetInformation(rig.pipes[0x02], info)
    assert (info.MaximumPacketSize, info.EndpointAddress, info.PipeType, info.SettingIndex) == (64, 0x02, 4, 0)
    assert info.MaximumTransferSize > 0
    assert WdfUsbTargetPipeGetIoTarget(rig.pipes[0x06]) is rig.pipes[0x06]


def test_interface_queries(rig: Rig) -> None:
    assert WdfUsbTargetDeviceGetNumInterfaces(rig.device) == 1
    iface = WdfUsbTargetDeviceGetInterface(rig.device, 0)
    assert WdfUsbTargetDeviceGetInterface(rig.device, 1) is None
    assert WdfUsbInterfaceGetInterfaceNumber(iface) == 0
    assert WdfUsbInterfaceGetConfiguredSettingIndex(iface) == 0
    assert WdfUsbInterfaceGetNumSettings(iface) == 1 and WdfUsbInterfaceGetNumEndpoints(iface, 0) == 5
    assert WdfUsbInterfaceGetNumConfiguredPipes(iface) == 5
    assert WdfUsbInterfaceGetConfiguredPipe(iface, 5, None) is None
    bad = WDF_USB_PIPE_INFORMATION()  # Size 0: not initialised
    assert WdfUsbInterfaceGetConfiguredPipe(iface, 0, bad) is None and bad.EndpointAddress == 0
    assert WdfUsbInterfaceGetConfiguredPipe(iface, 0, None) is not None


def test_device_descriptor(rig: Rig) -> None:
    d = USB_DEVICE_DESCRIPTOR()
    WdfUsbTargetDeviceGetDeviceDescriptor(rig.device, d)
    assert d.bLength == 18 and d.bDescriptorType == 1 and d.bNumConfigurations == 1
    assert d.idVendor == 0x1209 and len(bytes(d)) == 18


def test_select_config_multiple_interfaces_and_pairs() -> None:
    vdev = VirtualDevice(speed=None)
    dev = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(vdev, None, dev) == STATUS_SUCCESS
    iface = WdfUsbTargetDeviceGetInterface(dev, 0)
    assert WdfUsbInterfaceGetNumConfiguredPipes(iface) == 0  # nothing before select config
    p = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(p, 0, None)
    assert WdfUsbTargetDeviceSelectConfig(dev, None, p) == STATUS_SUCCESS
    assert p.Types.MultiInterface.NumberOfConfiguredInterfaces == 1
    assert WdfUsbInterfaceGetNumConfiguredPipes(iface) == 5
    pairs = [WDF_USB_INTERFACE_SETTING_PAIR(iface, 0)]
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(p, 1, pairs)
    assert p.Type == WdfUsbTargetDeviceSelectConfigTypeInterfacesPairs
    assert WdfUsbTargetDeviceSelectConfig(dev, None, p) == STATUS_SUCCESS
    pairs[0].SettingIndex = 1  # no such setting
    assert WdfUsbTargetDeviceSelectConfig(dev, None, p) == STATUS_INVALID_PARAMETER
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(p, 2, [WDF_USB_INTERFACE_SETTING_PAIR(iface, 0)] * 2)
    assert WdfUsbTargetDeviceSelectConfig(dev, None, p) == STATUS_INVALID_PARAMETER  # count != interfaces
    WdfObjectDelete(dev)


def test_select_config_parameter_checks(rig: Rig) -> None:
    p = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, p) == STATUS_INFO_LENGTH_MISMATCH
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(p)
    p.Type = 99
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, p) == STATUS_INVALID_PARAMETER
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_DECONFIG(p)
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, p) == STATUS_NOT_SUPPORTED
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(p)
    assert WdfUsbTargetDeviceSelectConfig(rig.device, None, p) == STATUS_SUCCESS
    assert p.Types.SingleInterface.NumberConfiguredPipes == 5
    assert p.Types.SingleInterface.ConfiguredUsbInterface is WdfUsbTargetDeviceGetInterface(rig.device, 0)


# ---- bug checks -----------------------------------------------------------------------


def test_bugcheck_wrong_handle_type(rig: Rig) -> None:
    iface = WdfUsbTargetDeviceGetInterface(rig.device, 0)
    with pytest.raises(WdfBugCheck) as exc:
        WdfUsbTargetPipeGetType(iface)
    assert exc.value.code == 0x10D and exc.value.subcode == WDF_INVALID_HANDLE
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetPipeWriteSynchronously(rig.device, None, None, None, None)
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 8, mem, None) == STATUS_SUCCESS
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetPipeWriteSynchronously(rig.pipes[0x06], mem, None, None, None)  # memory as the request


@pytest.mark.parametrize("garbage", [None, 0, 42, "pipe", object(), 3.5, b"\0" * 8])
def test_bugcheck_garbage_handle(rig: Rig, garbage: object) -> None:
    with pytest.raises(WdfBugCheck) as exc:
        WdfUsbTargetPipeWriteSynchronously(garbage, None, None, None, None)
    assert exc.value.parameters[0] == WDF_INVALID_HANDLE


def test_bugcheck_deleted_handle() -> None:
    mem = WDFMEMORY()
    assert WdfMemoryCreate(None, NonPagedPool, 0, 16, mem, None) == STATUS_SUCCESS
    WdfObjectDelete(mem)
    with pytest.raises(WdfBugCheck, match="deleted"):
        WdfMemoryGetBuffer(mem, None)
    with pytest.raises(WdfBugCheck):
        WdfObjectDelete(mem)


def test_bugcheck_children_of_a_deleted_device() -> None:
    r = open_rig()
    iface = WdfUsbTargetDeviceGetInterface(r.device, 0)
    pipe = r.pipes[0x06]
    attrs = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(attrs)
    attrs.ParentObject = r.device
    mem, req = WDFMEMORY(), WDFREQUEST()
    assert WdfMemoryCreate(attrs, NonPagedPool, 0, 16, mem, None) == STATUS_SUCCESS
    assert WdfRequestCreate(attrs, None, req) == STATUS_SUCCESS
    WdfObjectDelete(r.device)
    for call in (
        lambda: WdfUsbTargetPipeGetType(pipe),
        lambda: WdfUsbInterfaceGetInterfaceNumber(iface),
        lambda: WdfMemoryGetBuffer(mem, None),
        lambda: WdfRequestGetStatus(req),
        lambda: WdfUsbTargetDeviceGetNumInterfaces(r.device),
    ):
        with pytest.raises(WdfBugCheck):
            call()


def test_pipes_cannot_be_deleted_by_the_driver(rig: Rig) -> None:
    WdfObjectDelete(rig.pipes[0x06])  # ignored, as in WDF (the object is the framework's)
    assert WdfUsbTargetPipeGetType(rig.pipes[0x06]) == WdfUsbPipeTypeBulk


def test_cleanup_and_destroy_callbacks_run() -> None:
    seen: list[str] = []
    attrs = WDF_OBJECT_ATTRIBUTES()
    WDF_OBJECT_ATTRIBUTES_INIT(attrs)
    attrs.EvtCleanupCallback = lambda obj: seen.append("cleanup")
    attrs.EvtDestroyCallback = lambda obj: seen.append("destroy")
    mem = WDFMEMORY()
    assert WdfMemoryCreate(attrs, PagedPool, 0x6D656D31, 4, mem, None) == STATUS_SUCCESS
    WdfObjectDelete(mem.value)  # the handle value works as well as the box
    assert seen == ["cleanup", "destroy"]


def test_attributes_with_wrong_size() -> None:
    attrs = WDF_OBJECT_ATTRIBUTES()  # not initialised
    assert WdfMemoryCreate(attrs, NonPagedPool, 0, 4, WDFMEMORY(), None) == STATUS_INFO_LENGTH_MISMATCH
    assert WdfRequestCreate(attrs, None, WDFREQUEST()) == STATUS_INFO_LENGTH_MISMATCH


def test_device_create_rejects_a_non_device() -> None:
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetDeviceCreate(object(), None, WDFUSBDEVICE())
    with pytest.raises(WdfBugCheck) as exc:
        WdfUsbTargetDeviceCreate(VirtualDevice(speed=None), None, None)
    assert exc.value.subcode == WDF_REQUIRED_PARAMETER_IS_NULL
