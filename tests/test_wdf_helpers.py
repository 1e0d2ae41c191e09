"""Shared fixtures for the wdfusb.wdf tests (imported by the test_wdf_* modules)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from wdfusb import VirtualDevice
from wdfusb.wdf import (
    NT_SUCCESS,
    WDF_MEMORY_DESCRIPTOR,
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER,
    WDF_NO_OBJECT_ATTRIBUTES,
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS,
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE,
    WDF_USB_PIPE_INFORMATION,
    WDF_USB_PIPE_INFORMATION_INIT,
    WDFUSBDEVICE,
    WdfObjectDelete,
    WdfUsbInterfaceGetConfiguredPipe,
    WdfUsbInterfaceGetNumConfiguredPipes,
    WdfUsbTargetDeviceCreate,
    WdfUsbTargetDeviceGetInterface,
    WdfUsbTargetDeviceSelectConfig,
)


@dataclass
class Rig:
    """A configured virtual device: ``pipes[address]`` are WDFUSBPIPE handles."""

    vdev: Any
    device: WDFUSBDEVICE
    pipes: dict[int, Any]


def open_rig(speed: str | None = None) -> Rig:
    vdev = VirtualDevice(speed=speed)
    dev = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(vdev, WDF_NO_OBJECT_ATTRIBUTES, dev) == 0
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(dev, WDF_NO_OBJECT_ATTRIBUTES, params))
    iface = WdfUsbTargetDeviceGetInterface(dev, 0)
    pipes = {}
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        info = WDF_USB_PIPE_INFORMATION()
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
        pipes[info.EndpointAddress] = pipe
    return Rig(vdev, dev, pipes)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = open_rig()
    yield r
    for ep in (0x06, 0x02):
        r.vdev.endpoint(ep).nak(0)
    if r.device.value is not None and not r.device.value.is_deleted:
        WdfObjectDelete(r.device)


def buffer_desc(buf: Any, length: int | None = None) -> WDF_MEMORY_DESCRIPTOR:
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, buf, len(memoryview(buf).cast("B")) if length is None else length)
    return desc
