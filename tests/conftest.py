"""Shared fixtures: virtual devices and the devices opened on them."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from test_wdf_helpers import Rig, open_rig

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import WdfObjectDelete

# A job started in the background of a non-interactive shell inherits SIGINT ignored, and
# so would every child the Ctrl-C tests start (a Python started that way never raises
# KeyboardInterrupt). A handler here is reset to the default in children: they get Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def vdev() -> Iterator[wdfusb.VirtualDevice]:
    """An unpaced virtual device (pure software cost)."""
    v = wdfusb.VirtualDevice(speed=None)
    yield v
    v.close()


@pytest.fixture
def dev(vdev: wdfusb.VirtualDevice) -> Iterator[wdfusb.Device]:
    with wdfusb.open(vdev) as d:
        yield d


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test leaves no native transfer behind."""
    import gc

    gc.collect()  # what earlier tests left to the cycle collector goes first
    before = _engine.Transfer.live
    yield
    gc.collect()
    assert _engine.Transfer.live <= before, "a test leaked native transfers"


@pytest.fixture
def rig() -> Iterator[Rig]:
    """A configured virtual device for the WDF tests (``tests/test_wdf_helpers.py``); NAKs
    are lifted and the WDFUSBDEVICE deleted afterwards (if the test did not)."""
    r = open_rig()
    yield r
    for ep in (0x06, 0x02):
        r.vdev.endpoint(ep).nak(0)
    if r.device.value is not None and not r.device.value.is_deleted:
        WdfObjectDelete(r.device)
