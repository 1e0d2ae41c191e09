"""Forwarding received requests (the seed's Remarks): producers post writes to an I/O queue whose
EvtIoWrite forwards each received request to the bulk OUT pipe with
WdfUsbTargetPipeWriteSynchronously(pipe, receivedRequest, NULL, <its input memory>, &bytesWritten).

Several producer threads each post numbered frames; the queue is sequential, so the device sees
whole frames one after another. At the end the device's CRC over everything it received is
compared with the CRC of the frames in the order the driver forwarded them, and each producer's
frames are checked to have reached the device in the order it posted them.

Runs on the built-in virtual device: ``python examples/forward_queue.py``.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

from wdfusb import VirtualDevice
from wdfusb.wdf import *

PRODUCERS = 4
FRAMES_PER_PRODUCER = 250


def open_device(source: VirtualDevice) -> tuple[WDFUSBDEVICE, WDFUSBPIPE]:
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
        if info.EndpointAddress == 0x06:
            return usbDevice, WDFUSBPIPE(pipe)
    raise LookupError("no bulk OUT pipe 0x06")


def main() -> int:
    source = VirtualDevice(speed=None)
    usbDevice, pipeHandle = open_device(source)
    forwarded: list[bytes] = []  # what the driver sent, in order (for the device CRC)

    # ---- the driver: EvtIoWrite forwards the received request itself ----
    def EvtIoWrite(Queue, Request, Length):
        inputMemory = WDFMEMORY()
        status = WdfRequestRetrieveInputMemory(Request, inputMemory)
        if not NT_SUCCESS(status):
            WdfRequestComplete(Request, status)
            return
        writeBufDesc = WDF_MEMORY_DESCRIPTOR()
        WDF_MEMORY_DESCRIPTOR_INIT_HANDLE(writeBufDesc, inputMemory, None)
        bytesWritten = ULONG()
        forwarded.append(bytes(WdfMemoryGetBuffer(inputMemory, None)))
        status = WdfUsbTargetPipeWriteSynchronously(pipeHandle, Request, None, writeBufDesc, bytesWritten)
        WdfRequestCompleteWithInformation(Request, status, bytesWritten.value)

    queueConfig = WDF_IO_QUEUE_CONFIG()
    WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE(queueConfig, WdfIoQueueDispatchSequential)
    queueConfig.EvtIoWrite = EvtIoWrite
    queue = WDFQUEUE()
    status = WdfIoQueueCreate(usbDevice, queueConfig, WDF_NO_OBJECT_ATTRIBUTES, queue)
    assert NT_SUCCESS(status), status

    # ---- the producers: post frames, wait for each ----
    posted: dict[int, list[bytes]] = {p: [] for p in range(PRODUCERS)}
    failures: list[str] = []

    def producer(p: int) -> None:
        for n in range(FRAMES_PER_PRODUCER):
            frame = struct.pack("<HI", p, n) + os.urandom(16 + (n * 131 + p * 17) % 1500)
            posted[p].append(frame)
            status, information = post_write(usbDevice, frame).wait(30)  # the device's default queue
            if status != STATUS_SUCCESS or information != len(frame):
                failures.append(f"producer {p} frame {n}: {status!r}, {information}")

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ep = source.endpoint(0x06)
    total = sum(len(f) for frames in posted.values() for f in frames)
    device_ok = ep.crc32 == zlib.crc32(b"".join(forwarded)) and ep.received_bytes == total
    per_producer_ok = all(
        [f for f in forwarded if struct.unpack_from("<H", f)[0] == p] == posted[p] for p in range(PRODUCERS)
    )
    print(f"{PRODUCERS} producers posted {sum(map(len, posted.values()))} frames, {total} bytes")
    print(f"device received {ep.received_bytes} bytes in {ep.transfers} transfers, crc32 0x{ep.crc32:08x}")
    print(
        f"crc over forwarded frames {'matches' if device_ok else 'DIFFERS'}; per-producer order "
        f"{'kept' if per_producer_ok else 'BROKEN'}"
    )
    for f in failures[:5]:
        print(f)
    WdfObjectDelete(usbDevice)  # deletes the queue with it
    return 0 if device_ok and per_producer_ok and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
