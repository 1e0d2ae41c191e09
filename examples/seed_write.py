"""The seed's example (WdfUsbTargetPipeWriteSynchronously), ported line by line to wdfusb.wdf.

Runs on the built-in virtual device: ``python examples/seed_write.py``.
"""

from __future__ import annotations

import zlib

from wdfusb import VirtualDevice
from wdfusb.wdf import *

SMALL_BUF_LEN = 64


def FillMyBuffer(buffer, size):
    buffer[:size] = [i & 0xFF for i in range(size)]


def open_bulk_out_pipe(source: VirtualDevice) -> WDFUSBPIPE:
    """The path from a device to its bulk OUT pipe (CONTRACT §3)."""
    usbDevice = WDFUSBDEVICE()
    status = WdfUsbTargetDeviceCreate(source, WDF_NO_OBJECT_ATTRIBUTES, usbDevice)
    assert NT_SUCCESS(status), status
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    status = WdfUsbTargetDeviceSelectConfig(usbDevice, WDF_NO_OBJECT_ATTRIBUTES, params)
    assert NT_SUCCESS(status), status
    usbInterface = WdfUsbTargetDeviceGetInterface(usbDevice, 0)
    info = WDF_USB_PIPE_INFORMATION()
    WDF_USB_PIPE_INFORMATION_INIT(info)
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(usbInterface)):
        pipe = WdfUsbInterfaceGetConfiguredPipe(usbInterface, i, info)
        if info.PipeType == WdfUsbPipeTypeBulk and WdfUsbTargetPipeIsOutEndpoint(pipe):
            return WDFUSBPIPE(pipe)
    raise LookupError("no bulk OUT pipe")


def main() -> int:
    source = VirtualDevice(speed=None)
    pipeHandle = open_bulk_out_pipe(source)

    # ---- the seed's example, line by line ----
    # fmt: off
    writeBufDesc = WDF_MEMORY_DESCRIPTOR()
    wdfMemory = WDFMEMORY()
    bytesWritten = ULONG()
    bufferSize = SIZE_T()

    writeSize = SMALL_BUF_LEN
    status = WdfMemoryCreate(
                             WDF_NO_OBJECT_ATTRIBUTES,
                             NonPagedPool,
                             0,
                             writeSize,
                             wdfMemory,
                             None
                             )
    if not NT_SUCCESS(status):
        return status

    writeBuffer = WdfMemoryGetBuffer(
                                     wdfMemory,
                                     bufferSize
                                     )

    FillMyBuffer(
                 writeBuffer,
                 writeSize
                 )

    WDF_MEMORY_DESCRIPTOR_INIT_BUFFER(
                                      writeBufDesc,
                                      writeBuffer,
                                      writeSize
                                      )

    status = WdfUsbTargetPipeWriteSynchronously(
                                                pipeHandle,
                                                None,
                                                None,
                                                writeBufDesc,
                                                bytesWritten
                                                )
    # fmt: on
    # ---- end of the seed's example ----

    print(f"status = {status!r}")
    print(f"bytesWritten = {bytesWritten.value}")
    crc_ok = source.endpoint(0x06).crc32 == zlib.crc32(bytes(writeBuffer))
    print(f"device received {source.endpoint(0x06).received_bytes} bytes, CRC {'matches' if crc_ok else 'MISMATCH'}")
    return 0 if NT_SUCCESS(status) and bytesWritten.value == writeSize and crc_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
