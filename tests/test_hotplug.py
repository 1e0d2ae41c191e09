"""Devices that come and go, on the virtual device: watch(), wait_for(), reconnect(), port paths and
the errors of a search that matches several devices (CONTRACT §9)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import zlib
from pathlib import Path

import pytest
from background import in_thread, joined, wait_until
from sigint import interrupt_child

import wdfusb
from wdfusb import hotplug
from wdfusb.virtual import EndpointSpec

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SINK = [EndpointSpec(0x02, "bulk", 512, 0, "sink"), EndpointSpec(0x06, "bulk", 512, 0, "loopback_out"),
        EndpointSpec(0x88, "bulk", 512, 0, "loopback_in")]  # fmt: skip


def kinds(w: wdfusb.Watch, n: int) -> list[tuple[str, str | None]]:
    out = []
    for _ in range(n):
        event = w.get(5)
        assert event is not None, f"only {out} in 5 s"
        out.append((event.kind, event.device.serial))
    return out


# ---- watching --------------------------------------------------------------------------------------


def test_watch_reports_virtual_devices_arriving_re_enumerating_and_leaving(counts: None) -> None:
    with wdfusb.watch(vid=0x1209) as w:
        a = wdfusb.VirtualDevice("high", serial="A")
        b = wdfusb.VirtualDevice("high", serial="B", pid=0x0002)
        assert kinds(w, 2) == [("arrived", "A"), ("arrived", "B")]
        address = a.address
        a.reenumerate()
        left, back = w.get(5), w.get(5)
        assert left is not None and back is not None
        assert (left.kind, left.device.address, back.kind, back.device.address) == (
            "left",
            address,
            "arrived",
            a.address,
        )
        assert left.device.port_path == back.device.port_path == f"0-{a.port}" and a.address != address
        a.unplug()
        b.close()
        assert sorted(kinds(w, 2)) == [("left", "A"), ("left", "B")]  # one listing may see both
        a.close()  # closing an unplugged device is not another removal
        assert w.get(0.3) is None
    assert w.get(0) is None and list(w) == []  # closed: iteration ends


def test_watch_filters_and_existing_devices(counts: None) -> None:
    with wdfusb.VirtualDevice(serial="old") as old:
        with wdfusb.watch(serial="new") as only_new, wdfusb.watch(vid=0x1209, existing=True) as every:
            assert kinds(every, 1) == [("arrived", "old")] and [d.serial for d in every.attached] == ["old"]
            with wdfusb.VirtualDevice(serial="new"), wdfusb.VirtualDevice(serial="other", vid=0x1234):
                assert kinds(only_new, 1) == [("arrived", "new")] and kinds(every, 1) == [("arrived", "new")]
            assert kinds(only_new, 1) == [("left", "new")]
            assert only_new.get(0.2) is None  # 'other' never matched
        assert old.port != 0


def test_watch_by_callback_and_from_threads(counts: None) -> None:
    seen: list[str] = []
    with wdfusb.watch(pid=0x0001, callback=lambda e: seen.append(f"{e.kind} {e.device.serial}")) as w:
        devices = [wdfusb.VirtualDevice(serial=f"cb{i}") for i in range(3)]
        # several threads wait for their own device at once; the same counter wakes them all
        waiters = [in_thread(lambda s=f"cb{i}": wdfusb.wait_for(serial=s, timeout=5)) for i in range(3)]
        for t, _ in waiters:
            joined(t, 5)
        assert [r[0].serial for _, r in waiters] == ["cb0", "cb1", "cb2"]
        for d in devices:
            d.close()
        deadline = time.monotonic() + 5
        while len(seen) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sorted(seen) == sorted([f"arrived cb{i}" for i in range(3)] + [f"left cb{i}" for i in range(3)])
    assert w._callback_thread is not None and not w._callback_thread.is_alive()  # close() ended it


def test_watch_is_an_async_iterator_and_a_cancelled_wait_loses_no_event(counts: None) -> None:
    async def main() -> list[str]:
        w = wdfusb.watch(serial="aio")
        waiting = asyncio.ensure_future(w.__anext__())
        await asyncio.sleep(0.15)
        waiting.cancel()  # cancelled while nothing happened
        with pytest.raises(asyncio.CancelledError):
            await waiting
        dev = wdfusb.VirtualDevice(serial="aio")
        asyncio.get_running_loop().call_later(0.1, dev.close)
        got = []
        async for event in w:
            got.append(event.kind)
            if len(got) == 2:
                w.close()
        return got

    assert asyncio.run(main()) == ["arrived", "left"]


def test_without_platform_events_the_watch_lists_on_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where libusb has no hotplug, a change nobody announces is found by the next listing."""
    monkeypatch.setattr(hotplug, "hotplug_events", lambda: False)
    monkeypatch.setattr(hotplug, "POLL_INTERVAL", 0.05)
    with wdfusb.VirtualDevice(serial="quiet") as v, wdfusb.watch(serial="quiet", existing=True) as w:
        assert kinds(w, 1) == [("arrived", "quiet")]
        listed = []
        real = hotplug.attached
        monkeypatch.setattr(hotplug, "attached", lambda: listed.append(1) or real())
        assert w.get(0.3) is None and len(listed) >= 3  # listed again and again, nothing changed
        assert "listing every" in repr(w) and v.port > 0


def test_wait_for(counts: None) -> None:
    with wdfusb.VirtualDevice(serial="here") as here:
        assert wdfusb.wait_for(serial="here", timeout=0).virtual is here  # at once when attached
        made: list[wdfusb.VirtualDevice] = []
        later = threading.Timer(0.2, lambda: made.append(wdfusb.VirtualDevice(serial="later")))
        later.start()
        t0 = time.monotonic()
        info = wdfusb.wait_for(vid=0x1209, serial="later", timeout=5)
        assert info.serial == "later" and 0.15 < time.monotonic() - t0 < 4
        joined(later, 5)
        assert info.virtual is made[0]
        made[0].close()
        with pytest.raises(wdfusb.UsbTimeoutError, match="serial='never'"):
            wdfusb.wait_for(serial="never", timeout=0.2)
        with pytest.raises(ValueError):
            wdfusb.wait_for(serial="here", timeout=-1)


WAIT_CHILD = """
import time, wdfusb
print("blocked", flush=True)
try:
    wdfusb.wait_for(serial="nobody")
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
"""


def test_ctrl_c_ends_a_wait_for() -> None:
    latency, _ = interrupt_child(WAIT_CHILD)
    assert latency < 0.5


# ---- finding one device ------------------------------------------------------------------------------


def test_several_matches_are_an_error_that_lists_them(counts: None) -> None:
    a, b = wdfusb.VirtualDevice(serial="twin-a"), wdfusb.VirtualDevice(serial="twin-b")
    try:
        with pytest.raises(wdfusb.MultipleDevicesError) as many:
            wdfusb.open(vid=0x1209, pid=0x0001)
        text = str(many.value)
        assert text.startswith("2 devices match vid=0x1209, pid=0x0001: give serial= or port=")
        assert f"port 0-{a.port}" in text and "'twin-b'" in text and isinstance(many.value, LookupError)
        with wdfusb.open(port=f"0-{b.port}") as dev:
            assert dev.source is b and dev.port_path == f"0-{b.port}"
        with wdfusb.open(f"0-{a.port}") as dev:  # the CLI's DEVICE syntax
            assert dev.source is a
        assert wdfusb.find_device(serial="twin-a") is a
        with pytest.raises(wdfusb.DeviceNotFoundError):
            wdfusb.find_device(port="0-99999")
    finally:
        a.close()
        b.close()


def test_list_devices_shows_virtual_devices_on_bus_0(counts: None) -> None:
    with wdfusb.VirtualDevice("super", serial="listed") as v:
        (info,) = [d for d in wdfusb.list_devices() if d.virtual is v]
        assert (info.bus, info.address, info.ports, info.speed, info.serial) == (
            0,
            v.address,
            (v.port,),
            "super",
            "listed",
        )
        assert str(info).endswith(f"virtual port 0-{v.port} address {v.address} (super speed)")
        v.unplug()
        assert all(d.virtual is not v for d in wdfusb.list_devices())


# ---- reconnect ---------------------------------------------------------------------------------------


def test_reconnect_after_re_enumeration_keeps_the_device_its_pipes_and_alternate_settings(counts: None) -> None:
    with wdfusb.VirtualDevice(profile="pyusb-benchmark", serial="alt") as v, wdfusb.open(v) as dev:
        dev.set_alt_setting(0, 1)
        pipes = list(dev.pipes)
        old_address = v.address
        v.reenumerate()
        with pytest.raises(wdfusb.DeviceGoneError):
            pipes[0].write(b"x", timeout=1)
        dev.reconnect(timeout=5)
        assert dev.pipes == pipes and v.address != old_address
        assert dev.control_read(0x81, 0x0A, 0, 0, 1) == b"\x01"  # GET_INTERFACE: setting 1 again
        out, back = dev.pipes[0], dev.pipes[1]
        assert out.write(b"again", timeout=1) == 5 and back.read(64, timeout=1) == b"again"


def test_reconnect_waits_until_the_device_has_left_and_is_back(counts: None) -> None:
    """As after the OSR FX2's REENUMERATE: the board answers, stays a while, then re-enumerates."""
    with wdfusb.VirtualDevice("high", serial="slow", endpoints=SINK) as v, wdfusb.open(v) as dev:
        threading.Timer(0.3, v.reenumerate).start()
        t0 = time.monotonic()
        dev.reconnect(timeout=5)
        assert time.monotonic() - t0 >= 0.25
        data = bytes(range(256)) * 64
        assert dev.pipe(0x02).write(data, timeout=1) == len(data)
        assert v.endpoint(0x02).crc32 == zlib.crc32(data)  # the new attachment got exactly these bytes


def test_reconnect_times_out_and_leaves_the_device_as_it_was(counts: None) -> None:
    with wdfusb.VirtualDevice(serial="stays") as v, wdfusb.open(v) as dev:
        with pytest.raises(wdfusb.UsbTimeoutError, match="never left"):
            dev.reconnect(timeout=0.2)
        assert dev.pipe(0x06).write(b"still here", timeout=1) == 10  # nothing was closed
        v.unplug()
        with pytest.raises(wdfusb.UsbTimeoutError, match="never came back"):
            dev.reconnect(timeout=0.2)


def test_removal_during_a_write_ends_it_with_the_bytes_that_moved(counts: None) -> None:
    full_speed_sink = [EndpointSpec(0x02, "bulk", 64, 0, "sink")]
    with wdfusb.VirtualDevice("full", serial="busy", endpoints=full_speed_sink) as v, wdfusb.open(v) as dev:
        old = v._native
        data = bytes(8 << 20)  # ~7 s at full speed: still moving when the device leaves
        t, errors = in_thread(lambda: dev.pipe(0x02).write(data, timeout=30))
        wait_until(lambda: old.ep_stats(0x02)["received_bytes"] > 0)
        received_before = old.ep_stats(0x02)["received_bytes"]
        v.reenumerate()
        joined(t, 5)
        (err,) = errors
        assert isinstance(err, wdfusb.DeviceGoneError) and 0 < received_before <= err.bytes_transferred < len(data)
        dev.reconnect(timeout=5)
        assert dev.pipe(0x02).write(data[:4096], timeout=1) == 4096


def test_a_port_cycle_cancels_what_is_in_flight_then_reconnects(counts: None) -> None:
    """WdfUsbTargetDeviceCyclePortSynchronously's order: CancelSentIo, then the unplug and replug."""
    with wdfusb.VirtualDevice("high", serial="cycled", endpoints=SINK) as v, wdfusb.open(v) as dev:
        dev.set_alt_setting(0, 0)
        old_address, pipes = v.address, list(dev.pipes)
        v.endpoint(0x06).nak(float("inf"))  # a write that stays in flight until it is cancelled
        t, errors = in_thread(lambda: dev.pipe(0x06).write(bytes(4096), timeout=30))
        wait_until(lambda: dev._core.native.live_transfers() == 1)
        with wdfusb.watch(serial="cycled") as w:
            dev.cycle_port(timeout=5)
            assert kinds(w, 2) == [("left", "cycled"), ("arrived", "cycled")]
        joined(t, 5)
        (err,) = errors
        assert isinstance(err, wdfusb.UsbCancelledError) and err.bytes_transferred == 0
        assert v.address != old_address and dev.pipes == pipes and dev.port_path == f"0-{v.port}"
        data = bytes(range(256)) * 16
        assert dev.pipe(0x02).write(data, timeout=1) == len(data)  # the new attachment: no NAK, fresh counters
        assert v.endpoint(0x02).crc32 == zlib.crc32(data) and v.endpoint(0x02).received_bytes == len(data)
        v.unplug()
        with pytest.raises(wdfusb.DeviceGoneError):
            dev.cycle_port(timeout=1)  # nothing to cycle on a port without a device


def test_four_devices_stream_at_once_each_at_its_bus_rate(counts: None) -> None:
    """The many-devices benchmark's short form (benchmarks/many_devices.py): no device waits for another."""
    spec = importlib.util.spec_from_file_location("wdfusb_many_devices", BENCHMARKS / "many_devices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.run(devices=4, seconds=0.5)
    assert all(d["exact"] for d in result["devices"]), result
    assert result["aggregate_ratio"] > 0.9, result  # the benchmark prints the real figure (>= 0.98)
