"""Shared fixtures: virtual devices and the devices opened on them; the hypothesis profiles."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from test_wdf_helpers import Rig, open_rig

import wdfusb
from wdfusb import _engine
from wdfusb.wdf import WdfObjectDelete

# Hypothesis: "ci" (the default) draws the same examples on every run and machine (derandomized,
# no example database), so a failure is the code's, reproducible from the printed blob; "explore"
# (HYPOTHESIS_PROFILE=explore, `make explore`) searches at random with many more examples.
_HYPOTHESIS = {"deadline": None, "print_blob": True, "suppress_health_check": [HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", derandomize=True, database=None, max_examples=200, **_HYPOTHESIS)
# derandomize is set, not inherited: with CI=true hypothesis's own default is derandomized
settings.register_profile("explore", derandomize=False, max_examples=5000, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
    # an awaited transfer's waiter may go on while the completion thread is still finishing its
    # callback (and holds the transfer until then): wait for that thread first
    from wdfusb import _dispatch

    if _dispatch.pending_count():
        _dispatch.wait_idle(10)
    gc.collect()
    assert _engine.Transfer.live <= before, "a test leaked native transfers"


@pytest.fixture
def counts() -> Iterator[None]:
    """No native transfer and no native object of the test is left afterwards."""
    from background import native_counts_unchanged

    yield from native_counts_unchanged(5.0)


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
