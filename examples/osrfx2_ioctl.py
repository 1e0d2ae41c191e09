"""The USB calls of Microsoft's kmdf_fx2 sample (``usb/kmdf_fx2/driver/ioctl.c``), ported line by
line to ``wdfusb.wdf`` and run against the virtual OSR USB-FX2 board
(``VirtualDevice(profile="osrfx2")``).

Each function keeps the sample's name, its locals and the order of its WDF calls; a ``BAR_GRAPH_STATE``
or ``SWITCH_STATE`` is the one byte the board sends. Run it: ``python examples/osrfx2_ioctl.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wdfusb import VirtualDevice
from wdfusb.wdf import *

# osrusbfx2.h: the board's vendor requests and the driver's control time-out
USBFX2LK_READ_7SEGMENT_DISPLAY = 0xD4
USBFX2LK_READ_SWITCHES = 0xD6
USBFX2LK_READ_BARGRAPH_DISPLAY = 0xD7
USBFX2LK_SET_BARGRAPH_DISPLAY = 0xD8
USBFX2LK_IS_HIGH_SPEED = 0xD9
USBFX2LK_REENUMERATE = 0xDA
USBFX2LK_SET_7SEGMENT_DISPLAY = 0xDB
DEFAULT_CONTROL_TRANSFER_TIMEOUT = WDF_REL_TIMEOUT_IN_SEC(5)


@dataclass
class DEVICE_CONTEXT:
    """The sample's device context: the USB device and its three pipes."""

    UsbDevice: WDFUSBDEVICE
    InterruptPipe: Any = None
    BulkReadPipe: Any = None
    BulkWritePipe: Any = None


def _send_options() -> WDF_REQUEST_SEND_OPTIONS:
    sendOptions = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(sendOptions, WDF_REQUEST_SEND_OPTION_TIMEOUT)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(sendOptions, DEFAULT_CONTROL_TRANSFER_TIMEOUT)
    return sendOptions


def _read_byte(DevContext: DEVICE_CONTEXT, Request: int, State: bytearray) -> NTSTATUS:
    """GetBarGraphState / GetSevenSegmentState / GetSwitchState: one byte, device to host."""
    controlSetupPacket = WDF_USB_CONTROL_SETUP_PACKET()
    sendOptions = _send_options()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(
        controlSetupPacket, BmRequestDeviceToHost, BmRequestToDevice, Request, 0, 0
    )
    State[0] = 0  # set the buffer to 0, the board will OR in everything that is set
    memDesc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(memDesc, State, 1)
    bytesTransferred = ULONG()
    return WdfUsbTargetDeviceSendControlTransferSynchronously(
        DevContext.UsbDevice, WDF_NO_HANDLE, sendOptions, controlSetupPacket, memDesc, bytesTransferred
    )


def _write_byte(DevContext: DEVICE_CONTEXT, Request: int, State: bytearray) -> NTSTATUS:
    """SetBarGraphState / SetSevenSegmentState: one byte, host to device."""
    controlSetupPacket = WDF_USB_CONTROL_SETUP_PACKET()
    sendOptions = _send_options()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(
        controlSetupPacket, BmRequestHostToDevice, BmRequestToDevice, Request, 0, 0
    )
    memDesc = WDF_MEMORY_DESCRIPTOR()
    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(memDesc, State, 1)
    bytesTransferred = ULONG()
    return WdfUsbTargetDeviceSendControlTransferSynchronously(
        DevContext.UsbDevice, None, sendOptions, controlSetupPacket, memDesc, bytesTransferred
    )


def GetBarGraphState(DevContext: DEVICE_CONTEXT, BarGraphState: bytearray) -> NTSTATUS:
    return _read_byte(DevContext, USBFX2LK_READ_BARGRAPH_DISPLAY, BarGraphState)


def SetBarGraphState(DevContext: DEVICE_CONTEXT, BarGraphState: bytearray) -> NTSTATUS:
    return _write_byte(DevContext, USBFX2LK_SET_BARGRAPH_DISPLAY, BarGraphState)


def GetSevenSegmentState(DevContext: DEVICE_CONTEXT, SevenSegment: bytearray) -> NTSTATUS:
    return _read_byte(DevContext, USBFX2LK_READ_7SEGMENT_DISPLAY, SevenSegment)


def SetSevenSegmentState(DevContext: DEVICE_CONTEXT, SevenSegment: bytearray) -> NTSTATUS:
    return _write_byte(DevContext, USBFX2LK_SET_7SEGMENT_DISPLAY, SevenSegment)


def GetSwitchState(DevContext: DEVICE_CONTEXT, SwitchState: bytearray) -> NTSTATUS:
    return _read_byte(DevContext, USBFX2LK_READ_SWITCHES, SwitchState)


def ReenumerateDevice(DevContext: DEVICE_CONTEXT) -> NTSTATUS:
    controlSetupPacket = WDF_USB_CONTROL_SETUP_PACKET()
    sendOptions = _send_options()
    WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(
        controlSetupPacket, BmRequestHostToDevice, BmRequestToDevice, USBFX2LK_REENUMERATE, 0, 0
    )
    return WdfUsbTargetDeviceSendControlTransferSynchronously(
        DevContext.UsbDevice, WDF_NO_HANDLE, sendOptions, controlSetupPacket, None, None
    )


def ResetPipe(Pipe: Any) -> NTSTATUS:
    return WdfUsbTargetPipeResetSynchronously(Pipe, WDF_NO_HANDLE, None)


def open_board(board: VirtualDevice) -> DEVICE_CONTEXT:
    """OsrFxEvtDevicePrepareHardware's USB part: create the device, select the configuration, find the pipes."""
    ctx = DEVICE_CONTEXT(WDFUSBDEVICE())
    status = WdfUsbTargetDeviceCreate(board, WDF_NO_OBJECT_ATTRIBUTES, ctx.UsbDevice)
    assert NT_SUCCESS(status), status
    configParams = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(configParams)
    status = WdfUsbTargetDeviceSelectConfig(ctx.UsbDevice, WDF_NO_OBJECT_ATTRIBUTES, configParams)
    assert NT_SUCCESS(status), status
    iface = WdfUsbTargetDeviceGetInterface(ctx.UsbDevice, 0)
    pipeInfo = WDF_USB_PIPE_INFORMATION()
    for index in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        WDF_USB_PIPE_INFORMATION_INIT(pipeInfo)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, index, pipeInfo)
        if pipeInfo.PipeType == WdfUsbPipeTypeInterrupt:
            ctx.InterruptPipe = pipe
        elif pipeInfo.PipeType == WdfUsbPipeTypeBulk and WdfUsbTargetPipeIsInEndpoint(pipe):
            ctx.BulkReadPipe = pipe
        elif pipeInfo.PipeType == WdfUsbPipeTypeBulk:
            ctx.BulkWritePipe = pipe
    return ctx


def main() -> None:
    with VirtualDevice(profile="osrfx2", speed="high") as board:
        ctx = open_board(board)
        bars, segment, switches = bytearray([0b10100101]), bytearray([0x3F]), bytearray(1)
        assert NT_SUCCESS(SetBarGraphState(ctx, bars)) and NT_SUCCESS(SetSevenSegmentState(ctx, segment))
        bars[0] = segment[0] = 0
        assert NT_SUCCESS(GetBarGraphState(ctx, bars)) and NT_SUCCESS(GetSevenSegmentState(ctx, segment))
        board.set_switch(0x81)
        assert NT_SUCCESS(GetSwitchState(ctx, switches))
        print(f"bar graph 0x{bars[0]:02X}, 7-segment 0x{segment[0]:02X}, switches 0x{switches[0]:02X}: 3 bytes read")
        assert NT_SUCCESS(ResetPipe(ctx.BulkWritePipe)) and NT_SUCCESS(ReenumerateDevice(ctx))
        WdfObjectDelete(ctx.UsbDevice)


if __name__ == "__main__":
    main()
