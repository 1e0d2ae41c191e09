"""The switch-pack reader of Microsoft's kmdf_fx2 sample (``usb/kmdf_fx2/driver/interrupt.c``),
ported to ``wdfusb.wdf`` and run against the virtual OSR USB-FX2 board
(``VirtualDevice(profile="osrfx2")``).

``OsrFxConfigContReaderForInterruptEndPoint`` gives the interrupt pipe a continuous reader of one
byte; ``OsrFxEvtUsbInterruptPipeReadComplete`` keeps the switch state it brings; the sample's
``EvtDeviceD0Entry``/``D0Exit`` start and stop the pipe's I/O target. Here the "user" flips the
switches (``VirtualDevice.set_switch``) and the reader sees every change.
Run it: ``python examples/osrfx2_interrupt.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wdfusb import VirtualDevice
from wdfusb.wdf import *


@dataclass
class DEVICE_CONTEXT:
    UsbDevice: WDFUSBDEVICE
    InterruptPipe: Any = None
    CurrentSwitchState: int = 0
    SwitchChanges: list[int] = field(default_factory=list)
    Changed: threading.Event = field(default_factory=threading.Event)


def OsrFxEvtUsbInterruptPipeReadComplete(Pipe: Any, Buffer: Any, NumBytesTransferred: int, Context: Any) -> None:
    pDeviceContext: DEVICE_CONTEXT = Context
    if NumBytesTransferred == 0:  # a zero-length read: nothing to report
        return
    switchState = WdfMemoryGetBuffer(Buffer, None)
    pDeviceContext.CurrentSwitchState = int(switchState[0])
    pDeviceContext.SwitchChanges.append(pDeviceContext.CurrentSwitchState)
    pDeviceContext.Changed.set()  # the sample completes a pending IOCTL_OSRUSBFX2_GET_INTERRUPT_MESSAGE


def OsrFxEvtUsbInterruptReadersFailed(Pipe: Any, Status: NTSTATUS, UsbdStatus: USBD_STATUS) -> bool:
    print(f"interrupt readers failed: {Status!r} {UsbdStatus!r}")
    return True  # the framework resets the pipe and restarts the readers


def OsrFxConfigContReaderForInterruptEndPoint(DeviceContext: DEVICE_CONTEXT) -> NTSTATUS:
    contReaderConfig = WDF_USB_CONTINUOUS_READER_CONFIG()
    WDF_USB_CONTINUOUS_READER_CONFIG_INIT(
        contReaderConfig,
        OsrFxEvtUsbInterruptPipeReadComplete,
        DeviceContext,
        1,  # sizeof(UCHAR)
    )
    contReaderConfig.EvtUsbTargetPipeReadersFailed = OsrFxEvtUsbInterruptReadersFailed
    return WdfUsbTargetPipeConfigContinuousReader(DeviceContext.InterruptPipe, contReaderConfig)


def main() -> None:
    board = VirtualDevice(speed="high", profile="osrfx2")
    usbDevice = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(board, WDF_NO_OBJECT_ATTRIBUTES, usbDevice) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(usbDevice, WDF_NO_OBJECT_ATTRIBUTES, params))
    ctx = DEVICE_CONTEXT(usbDevice)
    iface = WdfUsbTargetDeviceGetInterface(usbDevice, 0)
    info = WDF_USB_PIPE_INFORMATION()
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
        if info.PipeType == WdfUsbPipeTypeInterrupt:
            ctx.InterruptPipe = pipe
    assert OsrFxConfigContReaderForInterruptEndPoint(ctx) == STATUS_SUCCESS

    # OsrFxEvtDeviceD0Entry: start the interrupt pipe's target (and so its readers)
    assert WdfIoTargetStart(WdfUsbTargetPipeGetIoTarget(ctx.InterruptPipe)) == STATUS_SUCCESS
    for switches in (0x01, 0x81, 0xFF, 0x00, 0x5A):
        ctx.Changed.clear()
        board.set_switch(switches)  # the user flips the switches on the board
        deadline = time.monotonic() + 5
        while ctx.CurrentSwitchState != switches:
            assert time.monotonic() < deadline, f"the reader never saw switches 0x{switches:02X}"
            ctx.Changed.wait(0.05)
    # OsrFxEvtDeviceD0Exit: stop it, cancelling the readers
    WdfIoTargetStop(WdfUsbTargetPipeGetIoTarget(ctx.InterruptPipe), WdfIoTargetCancelSentIo)
    WdfObjectDelete(usbDevice)
    board.close()
    print(f"switch states read: {' '.join(f'0x{s:02X}' for s in ctx.SwitchChanges)} "
          f"({len(ctx.SwitchChanges)} bytes)")  # fmt: skip


if __name__ == "__main__":
    main()
