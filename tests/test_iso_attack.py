"""Adversarial isochronous tests: each one is an attack on the isochronous path that broke it,
and failed before its fix."""

from __future__ import annotations

import pytest

import wdfusb

ISO_ALT, OUT, IN, MAXP = 2, 0x03, 0x83, 16  # the "pyusb-benchmark" device's isochronous pair


def opened(speed: str | None = "high") -> tuple[wdfusb.VirtualDevice, wdfusb.Device]:
    v = wdfusb.VirtualDevice(speed, profile="pyusb-benchmark")  # type: ignore[arg-type]
    dev = wdfusb.open(v)
    dev.set_alt_setting(0, ISO_ALT)
    return v, dev


def test_streaming_an_isochronous_pipe_names_the_call_of_its_direction() -> None:
    """A stream writer on the isochronous OUT pipe pointed at read_iso ("stream to" is no
    "write" verb): the hint follows the pipe's direction."""
    v, dev = opened(None)
    with v, dev:
        with pytest.raises(ValueError, match=r"isochronous \(use write_iso\)"):
            dev.pipe(OUT).writer(depth=2, chunk=MAXP)
        with pytest.raises(ValueError, match=r"isochronous \(use read_iso\)"):
            dev.pipe(IN).reader(depth=2, chunk=MAXP)
