"""Devices that come and go, attacked: re-enumeration storms under streams, close racing reconnect
and port cycles, a fork while a watch runs. Every count is checked against the device's own."""

from __future__ import annotations

import os
import random
import sys
import threading
import zlib

import pytest
from background import in_thread, joined, wait_until

import wdfusb
from wdfusb.virtual import EndpointSpec

SINK = [EndpointSpec(0x02, "bulk", 512, 0, "sink"), EndpointSpec(0x06, "bulk", 512, 0, "loopback_out"),
        EndpointSpec(0x88, "bulk", 512, 0, "loopback_in")]  # fmt: skip
WAIT = 30.0


def test_re_enumeration_storm_under_a_writer_and_a_reader(counts: None) -> None:
    """Each attachment's streams end with the device-gone status and exactly the bytes that
    attachment took or gave; reconnect after every storm finds the device again."""
    rng = random.Random(11)
    with wdfusb.VirtualDevice("high", serial="storm", endpoints=SINK) as v, wdfusb.open(v) as dev:
        for _ in range(8):
            native = v._native
            w = dev.pipe(0x06).writer(depth=4, chunk=16 << 10)
            r = dev.pipe(0x88).reader(depth=4, chunk=16 << 10)
            data = rng.randbytes(1 << 20)
            wt, wout = in_thread(lambda w=w, data=data: [w.write(data) for _ in range(256)])
            rt, rout = in_thread(lambda r=r: r.read(256 << 20))  # ~5 s at high speed: still moving
            wait_until(lambda native=native: native.ep_stats(0x88)["sent_bytes"] > 0, WAIT)
            for _ in range(rng.randint(1, 5)):  # one re-enumeration, then more on the new attachments
                v.reenumerate()
            joined(wt, WAIT)
            joined(rt, WAIT)
            (werr,), (rerr,) = wout, rout
            assert isinstance(werr, wdfusb.DeviceGoneError), werr
            assert isinstance(rerr, wdfusb.DeviceGoneError), rerr
            took, gave = native.ep_stats(0x06), native.ep_stats(0x88)
            assert werr.bytes_transferred == w.bytes_written == took["received_bytes"]
            assert took["crc32"] == zlib.crc32((data * 256)[: w.bytes_written])
            assert rerr.bytes_transferred == r.bytes_read == gave["sent_bytes"] == len(rerr.data)
            w.close()
            r.close()
            dev.reconnect(timeout=WAIT)
            assert dev.pipe(0x02).write(b"x" * 512, timeout=5) == 512


def test_close_while_reconnect_waits_ends_it_and_stays_closed(counts: None) -> None:
    with wdfusb.VirtualDevice("high", serial="closing", endpoints=SINK) as v:
        dev = wdfusb.open(v)
        v.unplug()  # gone, never back: reconnect waits
        t, out = in_thread(lambda: dev.reconnect(timeout=WAIT))
        threading.Timer(0.2, dev.close).start()
        joined(t, 5)
        (err,) = out
        assert isinstance(err, wdfusb.DeviceGoneError) and dev.closed
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.reconnect(timeout=1)


def test_close_racing_the_reconnect_of_a_returning_device(counts: None) -> None:
    """Whichever wins, a closed Device stays closed and no attachment stays open behind it."""
    for seed in range(20):
        with wdfusb.VirtualDevice("high", serial=f"race{seed}", endpoints=SINK) as v:
            dev = wdfusb.open(v)
            t, out = in_thread(lambda dev=dev: dev.reconnect(timeout=WAIT))
            threading.Timer(0.001 * (seed % 5), v.reenumerate).start()
            threading.Timer(0.001 * (seed % 7), dev.close).start()
            joined(t, 10)
            wait_until(lambda dev=dev: dev.closed, 5)
            (result,) = out
            assert result is None or isinstance(result, wdfusb.DeviceGoneError), result
            assert dev.closed and dev._core.closed


def test_cycle_port_from_two_threads_and_against_close(counts: None) -> None:
    with wdfusb.VirtualDevice("high", serial="cycles", endpoints=SINK) as v:
        dev = wdfusb.open(v)
        a = in_thread(lambda: dev.cycle_port(timeout=WAIT))
        b = in_thread(lambda: dev.cycle_port(timeout=WAIT))
        for t, _ in (a, b):
            joined(t, WAIT)
        results = a[1] + b[1]
        # each cycle either moved this Device to a new attachment, or found its attachment already gone
        assert all(r is None or isinstance(r, (wdfusb.DeviceGoneError, wdfusb.UsbTimeoutError)) for r in results)
        assert any(r is None for r in results), results
        if not dev.closed and dev._core.native.status != 0:
            dev.reconnect(timeout=WAIT)
        assert dev.pipe(0x02).write(b"y" * 512, timeout=5) == 512
        c = in_thread(lambda: dev.cycle_port(timeout=WAIT))
        dev.close()
        joined(c[0], WAIT)
        (r,) = c[1]
        assert r is None or isinstance(r, wdfusb.DeviceGoneError), r
        assert dev.closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
@pytest.mark.skipif("TSAN_OPTIONS" in os.environ, reason="TSan starts no thread in a forked threaded process")
def test_a_fork_while_a_watch_runs() -> None:
    """The child starts from a clean slate: its own watch sees its own virtual device come and go,
    and the parent's watch goes on."""
    seen: list[str] = []
    with wdfusb.watch(vid=0x1209, callback=lambda e: seen.append(e.kind)) as parent_watch:
        with wdfusb.VirtualDevice(serial="parent"):
            wait_until(lambda: seen == ["arrived"], WAIT)
            pid = os.fork()
            if pid == 0:  # the child: only this thread, no exceptions out of here
                code = 1
                try:
                    with wdfusb.watch(serial="child") as w:
                        v = wdfusb.VirtualDevice(serial="child")
                        first = w.get(10)
                        v.close()
                        second = w.get(10)
                    code = 0 if (first and first.kind, second and second.kind) == ("arrived", "left") else 2
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        wait_until(lambda: seen == ["arrived", "left"], WAIT)
    assert parent_watch.get(0) is None
