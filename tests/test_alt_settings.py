"""Alternate settings (``Device.set_alt_setting``, ``WdfUsbInterfaceSelectSetting``, SET_INTERFACE)
on the "pyusb-benchmark" profile: the device pyusb's own test suite expects (CONTRACT §6)."""

from __future__ import annotations

import struct

import pytest
from background import in_thread, joined, wait_until

import wdfusb
from wdfusb.wdf import *


def test_the_pyusb_benchmark_device_as_its_tests_expect(counts: None) -> None:
    with wdfusb.VirtualDevice(profile="pyusb-benchmark", speed="full") as v, wdfusb.open(v) as dev:
        d = dev.descriptor
        assert (dev.vid, dev.pid, d.bcd_usb, d.bcd_device, d.max_packet0) == (0x04D8, 0xFA2E, 0x0200, 0x0001, 8)
        assert (dev.manufacturer, dev.product) == ("Travis Robinson", "Benchmark Device") and dev.serial_number
        config = dev.control_read(0x80, 0x06, 0x0200, 0, 255)
        assert len(config) == 78 == struct.unpack_from("<H", config, 2)[0]
        assert (config[7], config[8]) == (0xC0, 50)  # self powered, 100 mA
        assert dev.control_read(0x80, 0x00, 0, 0, 2) == b"\x01\x00"  # GET_STATUS(device): self powered
        settings = dev._core.config.interface(0).settings
        assert [[(e.address, e.type_name, e.max_packet) for e in s.endpoints] for s in settings] == [
            [(0x01, "bulk", 16), (0x81, "bulk", 16)],
            [(0x02, "interrupt", 16), (0x82, "interrupt", 16)],
            [(0x03, "isochronous", 16), (0x83, "isochronous", 16)],
        ]
        data = bytes(range(16))
        dev.control_write(0x40, 0x10, 0, 0, data)  # SET_VENDOR_BUFFER
        assert dev.control_read(0xC0, 0x11, 0, 0, 16) == data  # GET_VENDOR_BUFFER
        assert dev.pipe(0x01).write(data, timeout=1) == 16 and dev.pipe(0x81).read(16, timeout=1) == data
        dev.control_write(0x02, 0x03, 0, 0x01)  # SET_FEATURE(ENDPOINT_HALT) shows in GET_STATUS
        assert dev.control_read(0x82, 0x00, 0, 0x01, 2) == b"\x01\x00"
        dev.control_write(0x02, 0x01, 0, 0x01)
        assert dev.control_read(0x82, 0x00, 0, 0x01, 2) == b"\x00\x00"


def test_set_alt_setting_changes_the_pipes_and_cancels_the_old_ones(counts: None) -> None:
    with wdfusb.VirtualDevice(profile="pyusb-benchmark", speed="full") as v, wdfusb.open(v) as dev:
        old = dev.pipe(0x81)
        t, out = in_thread(lambda: old.read(16))  # nothing to read: it waits
        wait_until(lambda: dev._core.native.live_transfers() > 0)
        dev.set_alt_setting(0, 1)
        joined(t, 5)
        assert isinstance(out[0], wdfusb.UsbCancelledError)  # the switch killed it
        assert [(p.address, p.type) for p in dev.pipes] == [(0x02, "interrupt"), (0x82, "interrupt")]
        assert dev.control_read(0x81, 0x0A, 0, 0, 1) == b"\x01"  # GET_INTERFACE
        assert dev.pipe(0x02).write(b"i" * 16, timeout=1) == 16 and dev.pipe(0x82).read(16, timeout=1) == b"i" * 16
        with pytest.raises(wdfusb.UsbError):
            old.read(16, timeout=1)  # 0x81 is not in the setting any more
        with pytest.raises(KeyError):
            dev.pipe(0x81)
        dev.set_alt_setting(0, 2)
        with pytest.raises(ValueError, match="isochronous"):
            dev.pipe(0x03).write(b"x", timeout=1)
        with pytest.raises(wdfusb.UsbError):
            dev.set_alt_setting(0, 3)
        dev.control_write(0x01, 0x0B, 0, 0)  # SET_INTERFACE(0) on EP0 switches the device as well
        assert dev.control_read(0x81, 0x0A, 0, 0, 1) == b"\x00"
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_write(0x01, 0x0B, 3, 0)


def test_wdf_select_setting(counts: None) -> None:
    with wdfusb.VirtualDevice(profile="pyusb-benchmark", speed="full") as v:
        usb = WDFUSBDEVICE()
        assert WdfUsbTargetDeviceCreate(v, WDF_NO_OBJECT_ATTRIBUTES, usb) == STATUS_SUCCESS
        params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
        WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
        assert WdfUsbTargetDeviceSelectConfig(usb, WDF_NO_OBJECT_ATTRIBUTES, params) == STATUS_SUCCESS
        iface = WdfUsbTargetDeviceGetInterface(usb, 0)
        assert WdfUsbInterfaceGetNumSettings(iface) == 3
        bulk = WdfUsbInterfaceGetConfiguredPipe(iface, 0, None)
        select = WDF_USB_INTERFACE_SELECT_SETTING_PARAMS()
        assert WdfUsbInterfaceSelectSetting(iface, None, select) == STATUS_INFO_LENGTH_MISMATCH  # Size 0
        WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING(select, 5)
        assert WdfUsbInterfaceSelectSetting(iface, None, select) == STATUS_INVALID_PARAMETER
        WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING(select, 1)
        assert WdfUsbInterfaceSelectSetting(iface, WDF_NO_OBJECT_ATTRIBUTES, select) == STATUS_SUCCESS
        assert WdfUsbInterfaceGetConfiguredSettingIndex(iface) == 1
        info = WDF_USB_PIPE_INFORMATION()
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, 0, info)
        assert (info.EndpointAddress, info.PipeType) == (0x02, WdfUsbPipeTypeInterrupt)
        with pytest.raises(WdfBugCheck):
            WdfUsbTargetPipeGetType(bulk)  # the old setting's pipes were deleted
        desc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, b"w" * 16, 16)
        n = ULONG()
        assert WdfUsbTargetPipeWriteSynchronously(pipe, None, None, desc, n) == STATUS_SUCCESS and n.value == 16
        WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_DESCRIPTOR(select, bytes([9, 4, 0, 0, 2, 0xFF, 0, 0, 0]))
        assert WdfUsbInterfaceSelectSetting(iface, None, select) == STATUS_SUCCESS
        assert WdfUsbInterfaceGetConfiguredSettingIndex(iface) == 0
        WdfObjectDelete(usb)
