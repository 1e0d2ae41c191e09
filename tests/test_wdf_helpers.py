"""Shared fixtures for the wdfusb.wdf tests (imported by the test_wdf_* modules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
    WDFMEMORY,
    WDFREQUEST,
    WDFUSBDEVICE,
    NonPagedPool,
    WdfMemoryCreate,
    WdfMemoryGetBuffer,
    WdfRequestCreate,
    WdfUsbInterfaceGetConfiguredPipe,
    WdfUsbInterfaceGetNumConfiguredPipes,
    WdfUsbTargetDeviceCreate,
    WdfUsbTargetDeviceGetInterface,
    WdfUsbTargetDeviceSelectConfig,
    WdfUsbTargetPipeGetIoTarget,
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


def buffer_desc(buf: Any, length: int | None = None) -> WDF_MEMORY_DESCRIPTOR:
    desc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(desc, buf, len(memoryview(buf).cast("B")) if length is None else length)
    return desc


def new_request(pipe: Any) -> WDFREQUEST:
    """A request created for ``pipe``'s I/O target."""
    req = WDFREQUEST()
    assert WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, WdfUsbTargetPipeGetIoTarget(pipe), req) == 0
    return req


def new_memory(data: bytes) -> WDFMEMORY:
    """A WDFMEMORY holding ``data`` (one byte for empty data: WDF has no empty memory)."""
    mem = WDFMEMORY()
    assert WdfMemoryCreate(WDF_NO_OBJECT_ATTRIBUTES, NonPagedPool, 0, max(len(data), 1), mem, None) == 0
    WdfMemoryGetBuffer(mem, None)[: len(data)] = np.frombuffer(data, np.uint8)
    return mem
