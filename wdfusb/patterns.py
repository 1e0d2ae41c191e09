"""The data patterns a source sends, to check a captured stream byte for byte.

``"zeros"``; ``"mod63"`` (Gadget Zero's ``pattern=1``: byte j of each packet is j % 63, every
packet full); ``"counter"`` (a little-endian uint32 count across the stream: bytes 4k..4k+3
hold k). The virtual device's sources produce the same (``VirtualEndpoint.source``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PATTERNS = ("zeros", "mod63", "counter")


def expected(pattern: str, offset: int, n: int, max_packet: int = 512) -> np.ndarray:
    """Bytes ``offset .. offset + n`` of the stream of ``pattern`` (uint8 array)."""
    index = np.arange(offset, offset + n, dtype=np.uint64)
    if pattern == "zeros":
        return np.zeros(n, dtype=np.uint8)
    if pattern == "mod63":
        return ((index % np.uint64(max_packet)) % np.uint64(63)).astype(np.uint8)
    if pattern == "counter":
        words = (index // np.uint64(4)) & np.uint64(0xFFFFFFFF)
        return ((words >> ((index % np.uint64(4)) * np.uint64(8))) & np.uint64(0xFF)).astype(np.uint8)
    raise ValueError(f"unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")


def first_mismatch(data: Any, pattern: str, offset: int, max_packet: int = 512) -> int | None:
    """The stream offset of the first byte of ``data`` (which starts at ``offset``) that is not
    ``pattern``'s, or None when all match. Checks a block at a time (any size of data)."""
    got = np.frombuffer(data, dtype=np.uint8)
    for start in range(0, len(got), _BLOCK):
        block = got[start : start + _BLOCK]
        bad = np.flatnonzero(block != expected(pattern, offset + start, len(block), max_packet))
        if len(bad):
            return offset + start + int(bad[0])
    return None


_BLOCK = 1 << 20


__all__ = ["PATTERNS", "expected", "first_mismatch"]
