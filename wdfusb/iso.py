"""Isochronous transfers: packets at the endpoint's rate, no handshake, no retry.

``pipe.write_iso(data, packet_size=None)`` sends ``data`` as packets of ``packet_size`` bytes
(the pipe's max packet size unless given; the last one may be shorter), one per service
interval; ``pipe.read_iso(packets, packet_size=None)`` asks for that many packets. Both return an
:class:`IsoResult` with each packet's requested and actual length and status. A packet that
fails does not fail the transfer (its status says so, as libusb and WinUSB report it); a
time-out, a cancel, Ctrl-C or a removal ends the transfer and raises, ``bytes_transferred``
counting what moved. ``write_iso_async`` / ``read_iso_async`` are the same, awaited (cancelling
the task cancels the transfer and waits until it is back). They run on the one engine path every
transfer takes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from . import _aio
from ._core import CorePipe
from ._engine import EngineError, IsoPackets, address_of, copy_out
from ._status import outcome
from .errors import error_for


@dataclass(frozen=True)
class IsoPacket:
    """One packet of an isochronous transfer."""

    length: int  # requested
    actual: int  # moved
    status: int  # 0, or the engine's code for what went wrong (see ``error``)

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def error(self) -> str | None:
        """What went wrong with the packet, in words (None: nothing)."""
        return None if self.status == 0 else outcome(self.status).text


@dataclass(frozen=True)
class IsoResult:
    """What an isochronous transfer did: its packets and, for a read, their data."""

    packets: tuple[IsoPacket, ...]
    data: bytes  # a read: each packet's bytes, end to end (short packets leave no gaps); a write: b""

    @property
    def bytes_transferred(self) -> int:
        return sum(p.actual for p in self.packets)


def packet_lengths(total: int, packet_size: int) -> list[int]:
    """``total`` bytes as packets of ``packet_size`` (the last one shorter)."""
    if packet_size <= 0:
        raise ValueError("packet_size must be > 0")
    full, rest = divmod(total, packet_size)
    return [packet_size] * full + ([rest] if rest else [])


def packed(buf: Any, results: list[tuple[int, int, int]]) -> bytes:
    """The bytes each packet brought, end to end (each packet sits at its requested offset)."""
    parts, offset = [], 0
    for length, actual, _status in results:
        if actual:
            parts.append(copy_out(address_of(buf, offset), actual))
        offset += length
    return b"".join(parts)


def run(core: CorePipe, buf: Any, packets: IsoPackets, timeout_us: int, context: str, read: bool) -> IsoResult:
    """Move ``packets`` on ``core`` (their bytes in ``buf``, pinned): the result, or the error of
    a transfer that ended early, with the bytes that moved (and a read's data)."""
    rc, actual = core.iso_transfer(buf, packets, timeout_us)
    return _result(rc, actual, buf, packets, context, read)


async def run_async(
    core: CorePipe, buf: Any, packets: IsoPackets, timeout_us: int, context: str, read: bool
) -> IsoResult:
    """:func:`run`, awaited: the transfer on the path every awaited transfer takes. A cancelled
    task's ``CancelledError`` carries ``bytes_transferred`` and, for a read, ``data``."""
    try:
        xfer = core.new_transfer()
    except EngineError as exc:  # the device is closed
        raise error_for(exc.code, 0, context) from None
    rc = xfer.set_iso(packets)
    if rc != 0:
        raise error_for(rc, 0, context)
    try:
        rc, actual = await _aio.complete(core, xfer, buf, packets.total, 0, timeout_us)
    except asyncio.CancelledError as cancelled:
        cancelled.data = packed(buf, packets.results()) if read else b""  # type: ignore[attr-defined]
        raise
    return _result(rc, actual, buf, packets, context, read)


def _result(rc: int, actual: int, buf: Any, packets: IsoPackets, context: str, read: bool) -> IsoResult:
    results = packets.results()
    data = packed(buf, results) if read else b""
    if rc != 0:
        raise error_for(rc, actual, context, data)
    return IsoResult(tuple(IsoPacket(*r) for r in results), data)


__all__ = ["IsoPacket", "IsoResult", "packet_lengths"]
