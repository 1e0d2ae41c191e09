"""The seed's example — fill a buffer, write it to a bulk OUT pipe — in the Pythonic API.

Compare with ``seed_write.py``, the same program in WDF names. Runs on the built-in
virtual device; pass ``VID:PID`` (hex) to use a real device and its first bulk OUT pipe.
"""

from __future__ import annotations

import sys
import zlib

import numpy as np

import wdfusb

SMALL_BUF_LEN = 64


def fill_my_buffer(buffer: np.ndarray) -> None:
    buffer[:] = np.arange(buffer.size, dtype=np.uint8)


def main(target: str = "virtual:high") -> int:
    write_buffer = np.empty(SMALL_BUF_LEN, dtype=np.uint8)
    fill_my_buffer(write_buffer)
    with wdfusb.open(target) as device:
        pipe = next(p for p in device.pipes if p.type == "bulk" and p.is_out)
        try:
            bytes_written = pipe.write(write_buffer, timeout=5.0)
        except wdfusb.UsbError as e:
            print(f"write failed: {e} ({e.bytes_transferred} bytes written)")
            return 1
        print(f"bytes_written = {bytes_written}")
        if isinstance(device.source, wdfusb.VirtualDevice):
            ep = device.source.endpoint(pipe.address)
            ok = ep.crc32 == zlib.crc32(write_buffer.tobytes())
            print(f"device received {ep.received_bytes} bytes, CRC {'matches' if ok else 'DIFFERS'}")
            return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:2]))
