"""Flash an OSR USB-FX2 board mid-stream, reconnect, and finish the stream where the board stopped.

The board's firmware loops bulk OUT 0x06 back to bulk IN 0x88. This script streams 16 MiB through
the loop: a writer thread sends, the main thread reads the data back and checks it. Part of the way
through, it sends the board's REENUMERATE request (0xDA, what a firmware update ends with). The
board answers, leaves the bus and comes back with a new address. Both streams then end with
``DeviceGoneError``, and each error carries the exact count of bytes it moved. ``dev.reconnect()``
finds the board again by its serial number, with the same ``Device`` and ``Pipe`` objects. The
stream then resumes from the last byte that came back: whatever was in the old board's loop went
with it. Run it: ``python examples/osrfx2_flash_and_reconnect.py`` (the virtual board; give
``--serial`` to use a real one).
"""

from __future__ import annotations

import argparse
import threading
import zlib

import numpy as np

import wdfusb

REENUMERATE = 0xDA
CHUNK = 64 << 10


def send(pipe: wdfusb.Pipe, data: memoryview, sent: list[int]) -> None:
    """The writer thread: all of ``data``, or up to where the board left (``sent`` gets the count)."""
    w = pipe.writer(depth=4, chunk=CHUNK, timeout=5)
    try:
        w.write(data)
        w.flush()
    except wdfusb.DeviceGoneError:
        pass  # the error's count is w.bytes_written: every byte the board accepted
    finally:
        w.cancel()
        sent.append(w.bytes_written)
        w.close()


def loop_through(dev: wdfusb.Device, data: np.ndarray, start: int, crc: int, flash_at: int | None) -> tuple[int, int]:
    """Send data[start:] and read it back; returns how far the read-back got and the CRC-32 of
    everything read back so far (``crc``: of the bytes before ``start``)."""
    sent: list[int] = []
    writer = threading.Thread(target=send, args=(dev.pipe(0x06), memoryview(data[start:]), sent))
    writer.start()
    got = start
    reader = dev.pipe(0x88).reader(depth=4, chunk=CHUNK, timeout=5)
    try:
        for chunk in reader:
            n = len(chunk)
            if not np.array_equal(np.frombuffer(chunk, np.uint8), data[got : got + n]):
                raise SystemExit(f"bytes {got}..{got + n} came back wrong")
            crc = zlib.crc32(chunk, crc)
            got += n
            if flash_at is not None and got >= flash_at:
                dev.control_write(0x40, REENUMERATE, 0, 0, b"", timeout=5)  # the board answers, then leaves
                flash_at = None
            if got == len(data):
                break
    except wdfusb.DeviceGoneError:
        print("  the board left the bus")
    finally:
        reader.close()
        writer.join()
    print(f"  sent {sent[0]} bytes from offset {start}, {got - start} came back")
    return got, crc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", help="a real board's serial number (default: a virtual board)")
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args()
    board = None if args.serial else wdfusb.VirtualDevice("high", profile="osrfx2", serial="fx2-lab-1")
    data = np.random.default_rng(7).integers(0, 256, args.mib << 20, dtype=np.uint8)
    with wdfusb.open(board) if board is not None else wdfusb.open(serial=args.serial) as dev:
        address, serial = (board.address if board is not None else None), dev.serial_number
        got, crc = loop_through(dev, data, 0, 0, flash_at=len(data) // 3)
        print(f"flashed after {got} bytes; reconnecting to serial {serial!r}")
        dev.reconnect(timeout=30)
        if board is not None:
            print(f"  back at address {board.address} (was {address})")
        while got < len(data):
            got, crc = loop_through(dev, data, got, crc, flash_at=None)
    if crc != zlib.crc32(data):
        raise SystemExit("the bytes read back differ from the bytes sent")
    print(f"{got} bytes looped through the board across the flash: CRC matches (0x{crc:08x})")
    if board is not None:
        board.close()


if __name__ == "__main__":
    main()
