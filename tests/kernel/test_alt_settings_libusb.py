"""Alternate settings on the real Linux USB stack: the CDC NCM gadget's data interface has setting 0
(no endpoints) and setting 1 (a bulk IN and a bulk OUT), as a network adapter's does. The device
itself answers GET_INTERFACE, so what the host selected is checked at the source."""

from __future__ import annotations

from typing import Any

import gadget
import pytest

import wdfusb
from wdfusb.wdf import *

NCM_VID, NCM_PID = 0x0525, 0xA4A1
DATA = 1  # the data interface
GET_INTERFACE = 0x0A


def device_setting(dev: wdfusb.Device) -> int:
    return dev.control_read(0x81, GET_INTERFACE, 0, DATA, 1, timeout=5)[0]


def test_select_the_data_setting_move_data_and_go_back(ncm_gadget: gadget.NcmGadget) -> None:
    with wdfusb.open(vid=NCM_VID, pid=NCM_PID) as dev:
        assert [p.address for p in dev.pipes] == [0x85] and device_setting(dev) == 0
        dev.set_alt_setting(DATA, 1)
        assert device_setting(dev) == 1
        bulk = {p.address: p for p in dev.pipes if p.type == "bulk"}
        assert sorted(bulk) == [0x02, 0x81] and {p.max_packet for p in bulk.values()} == {
            1024 if ncm_gadget.speed_mbps >= 5000 else 512
        }
        assert bulk[0x02].write(bytes(64), timeout=5) == 64  # f_ncm takes it (and drops a frame that is no NTB)
        dev.set_alt_setting(DATA, 0)
        assert device_setting(dev) == 0 and [p.address for p in dev.pipes] == [0x85]
        with pytest.raises(wdfusb.UsbError):
            bulk[0x02].write(bytes(64), timeout=5)  # its endpoint left the configuration with setting 1


def test_a_port_cycle_restores_the_selected_setting(ncm_gadget: gadget.NcmGadget) -> None:
    """Device.reconnect() re-selects the alternate settings: the re-enumerated device says 1 again."""
    with wdfusb.open(vid=NCM_VID, pid=NCM_PID) as dev:
        dev.set_alt_setting(DATA, 1)
        pipes = list(dev.pipes)
        address = ncm_gadget.devnum
        dev.cycle_port(timeout=60)
        assert ncm_gadget.wait_enumerated().joinpath("devnum").read_text().strip() != str(address)
        assert device_setting(dev) == 1 and dev.pipes == pipes


def test_wdf_select_setting_on_the_data_interface(ncm_gadget: gadget.NcmGadget) -> None:
    device = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(wdfusb.find_device(vid=NCM_VID, pid=NCM_PID), None, device) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_MULTIPLE_INTERFACES(params)
    assert WdfUsbTargetDeviceSelectConfig(device, None, params) == STATUS_SUCCESS
    assert WdfUsbTargetDeviceGetNumInterfaces(device) == 2
    data: Any = WdfUsbTargetDeviceGetInterface(device, DATA)
    assert WdfUsbInterfaceGetNumSettings(data) == 2 and WdfUsbInterfaceGetNumEndpoints(data, 1) == 2
    assert WdfUsbInterfaceGetConfiguredSettingIndex(data) == 0 and WdfUsbInterfaceGetNumConfiguredPipes(data) == 0
    select = WDF_USB_INTERFACE_SELECT_SETTING_PARAMS()
    WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING(select, 1)
    assert WdfUsbInterfaceSelectSetting(data, None, select) == STATUS_SUCCESS
    assert WdfUsbInterfaceGetConfiguredSettingIndex(data) == 1 and WdfUsbInterfaceGetNumConfiguredPipes(data) == 2
    info = WDF_USB_PIPE_INFORMATION()
    WDF_USB_PIPE_INFORMATION_INIT(info)
    pipes = {}
    for i in range(2):
        pipe = WdfUsbInterfaceGetConfiguredPipe(data, i, info)
        pipes[info.EndpointAddress] = pipe
        assert info.PipeType == WdfUsbPipeTypeBulk and info.SettingIndex == 1
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, bytearray(64), 64)
    written = ULONG()
    assert WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written) == STATUS_SUCCESS
    assert written.value == 64
    WDF_USB_INTERFACE_SELECT_SETTING_PARAMS_INIT_SETTING(select, 0)
    assert WdfUsbInterfaceSelectSetting(data, None, select) == STATUS_SUCCESS
    assert WdfUsbInterfaceGetNumConfiguredPipes(data) == 0
    with pytest.raises(WdfBugCheck):
        WdfUsbTargetPipeWriteSynchronously(pipes[0x02], None, None, desc, written)  # the old pipe went with setting 1
    WdfObjectDelete(device)
