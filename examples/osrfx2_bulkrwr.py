"""The bulk read and write paths of Microsoft's kmdf_fx2 sample (``usb/kmdf_fx2/driver/bulkrwr.c``),
ported to ``wdfusb.wdf`` and run against the virtual OSR USB-FX2 board, whose bulk pipes loop
0x06 back to 0x88.

The I/O manager's side is wdfusb's ``post_write``/``post_read`` (what ``WriteFile``/``ReadFile``
on the device would send); the driver's side is the sample's: a parallel default queue whose
``OsrFxEvtIoRead``/``OsrFxEvtIoWrite`` format the request for the bulk pipe with the request's
own memory and send it, and whose completion routine completes it with the bytes moved.
Run it: ``python examples/osrfx2_bulkrwr.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from wdfusb import VirtualDevice
from wdfusb.wdf import *


@dataclass
class DEVICE_CONTEXT:
    UsbDevice: WDFUSBDEVICE
    BulkReadPipe: Any = None
    BulkWritePipe: Any = None


CONTEXTS: dict[int, DEVICE_CONTEXT] = {}


def GetDeviceContext(Device: Any) -> DEVICE_CONTEXT:
    return CONTEXTS[id(Device)]


def OsrFxEvtIoRead(Queue: Any, Request: Any, Length: int) -> None:
    pDevContext = GetDeviceContext(WdfIoQueueGetDevice(Queue))
    pipe = pDevContext.BulkReadPipe
    reqMemory = WDFMEMORY()
    status = WdfRequestRetrieveOutputMemory(Request, reqMemory)
    if NT_SUCCESS(status):
        status = WdfUsbTargetPipeFormatRequestForRead(pipe, Request, reqMemory, None)
    if NT_SUCCESS(status):
        WdfRequestSetCompletionRoutine(Request, EvtRequestReadCompletionRoutine, pipe)
        if WdfRequestSend(Request, WdfUsbTargetPipeGetIoTarget(pipe), WDF_NO_SEND_OPTIONS):
            return
        status = WdfRequestGetStatus(Request)
    WdfRequestCompleteWithInformation(Request, status, 0)


def EvtRequestReadCompletionRoutine(Request: Any, Target: Any, CompletionParams: Any, Context: Any) -> None:
    status = CompletionParams.IoStatus.Status
    usbCompletionParams = CompletionParams.Parameters.Usb.Completion
    bytesRead = usbCompletionParams.Parameters.PipeRead.Length
    WdfRequestCompleteWithInformation(Request, status, bytesRead)


def OsrFxEvtIoWrite(Queue: Any, Request: Any, Length: int) -> None:
    pDevContext = GetDeviceContext(WdfIoQueueGetDevice(Queue))
    pipe = pDevContext.BulkWritePipe
    reqMemory = WDFMEMORY()
    status = WdfRequestRetrieveInputMemory(Request, reqMemory)
    if NT_SUCCESS(status):
        status = WdfUsbTargetPipeFormatRequestForWrite(pipe, Request, reqMemory, None)
    if NT_SUCCESS(status):
        WdfRequestSetCompletionRoutine(Request, EvtRequestWriteCompletionRoutine, pipe)
        if WdfRequestSend(Request, WdfUsbTargetPipeGetIoTarget(pipe), WDF_NO_SEND_OPTIONS):
            return
        status = WdfRequestGetStatus(Request)
    WdfRequestCompleteWithInformation(Request, status, 0)


def EvtRequestWriteCompletionRoutine(Request: Any, Target: Any, CompletionParams: Any, Context: Any) -> None:
    status = CompletionParams.IoStatus.Status
    bytesWritten = CompletionParams.Parameters.Usb.Completion.Parameters.PipeWrite.Length
    WdfRequestCompleteWithInformation(Request, status, bytesWritten)


def main() -> None:
    board = VirtualDevice(speed="high", profile="osrfx2")
    usbDevice = WDFUSBDEVICE()
    assert WdfUsbTargetDeviceCreate(board, WDF_NO_OBJECT_ATTRIBUTES, usbDevice) == STATUS_SUCCESS
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    assert NT_SUCCESS(WdfUsbTargetDeviceSelectConfig(usbDevice, WDF_NO_OBJECT_ATTRIBUTES, params))
    ctx = CONTEXTS[id(usbDevice.value)] = DEVICE_CONTEXT(usbDevice)
    iface = WdfUsbTargetDeviceGetInterface(usbDevice, 0)
    info = WDF_USB_PIPE_INFORMATION()
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipe = WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
        if info.PipeType == WdfUsbPipeTypeBulk:
            if WdfUsbTargetPipeIsInEndpoint(pipe):
                ctx.BulkReadPipe = pipe
            else:
                ctx.BulkWritePipe = pipe

    # OsrFxEvtDeviceAdd: a parallel default queue for reads and writes
    ioQueueConfig = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(ioQueueConfig, WdfIoQueueDispatchParallel)
    ioQueueConfig.EvtIoRead = OsrFxEvtIoRead
    ioQueueConfig.EvtIoWrite = OsrFxEvtIoWrite
    assert WdfIoQueueCreate(usbDevice, ioQueueConfig, WDF_NO_OBJECT_ATTRIBUTES, None) == STATUS_SUCCESS

    total = 0
    for size in (512, 4096, 65536):
        data = os.urandom(size)
        assert post_write(usbDevice, data).wait(5) == (STATUS_SUCCESS, size)  # WriteFile
        back = bytearray(size)
        status, n = post_read(usbDevice, back).wait(5)  # ReadFile
        assert status == STATUS_SUCCESS and n == size and bytes(back) == data, (status, n)
        total += n
    WdfObjectDelete(usbDevice)
    board.close()
    print(f"{total} bytes written through EvtIoWrite and read back through EvtIoRead, all equal")


if __name__ == "__main__":
    main()
