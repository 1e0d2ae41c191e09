"""The libusb event thread handles events only while something needs it (csrc/backend_libusb.c).

Its demand: asynchronous transfers and armed stream rings' transfers in flight, and hotplug
holds (a watch). With none, it leaves libusb's event handling and waits, so that a synchronous
transfer completes on its own thread (in the fake: it handles events itself, never waiting as
an event waiter for the thread to hand its completion over). Runs in a child interpreter of its
own (conftest.py): the thread is not started before the first test here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import threading
import time

import fakectl as fk
import pytest

import wdfusb
import wdfusb.hotplug
from wdfusb import _dispatch, _engine
from wdfusb.wdf import wait_for_completions

IDLE, HANDLING = 0, 1


def state() -> tuple[int, int]:
    return _engine.libusb_event_thread_state()


def settled(want: int = IDLE, seconds: float = 5.0) -> tuple[int, int]:
    """The thread's (state, demand) once it is in state ``want``; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (now := state())[0] != want and time.monotonic() < deadline:
        time.sleep(0.001)
    assert now[0] == want, f"the event thread is {now}, not in state {want}"
    return now


def handed_over(fake: fk.Fake, fn: object, n: int = 50) -> int:
    """How many of ``n`` synchronous calls of ``fn`` had their completion run on another thread
    than theirs (the event thread handed it over)."""
    before = fake.handed_over()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return int(fake.handed_over() - before)


def test_the_thread_idles_once_the_async_transfer_is_back(fake: fk.Fake, gz: wdfusb.Device) -> None:
    pipe = gz.pipe(0x01)
    assert state() == (-1, 0), "no asynchronous transfer yet: the thread is not started"
    assert handed_over(fake, lambda: pipe.write(bytes(512), timeout=5)) == 0
    asyncio.run(pipe.write_async(bytes(512), timeout=5))
    assert settled(IDLE) == (IDLE, 0)
    # idle: every synchronous write handles its own events, none is handed over by the thread
    assert handed_over(fake, lambda: pipe.write(bytes(512), timeout=5)) == 0
    assert state() == (IDLE, 0)


def test_a_pending_async_transfer_keeps_it_handling_events(fake: fk.Fake, gz: wdfusb.Device) -> None:
    pipe = gz.pipe(0x01)
    fake.hold(fk.GZ_OUT, 1)
    x = pipe._core.new_transfer()
    done = threading.Event()
    assert _dispatch.submit(x, 0x01, pipe._core.type, _engine.pin(bytes(64)), 64, 0, 0, lambda s, n: done.set()) == 0
    assert settled(HANDLING) == (HANDLING, 1)
    fake.hold(fk.GZ_OUT, 0)  # nobody waits for it: the thread completes it
    assert done.wait(5)
    assert settled(IDLE) == (IDLE, 0)
    x.free()


def test_a_transfer_submitted_as_the_thread_goes_idle_is_not_lost(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """1000 awaited writes, each one submitted about when the last one's completion sends the
    thread idle (random gaps and completion delays): each one completes (no lost wake-up)."""
    pipe = gz.pipe(0x01)
    rng = random.Random(15)
    idles = _engine.lib.wu_libusb_event_thread_idles()

    async def main() -> None:
        for i in range(1000):
            fake.set_complete_delay_us(rng.choice((0, 0, 20, 200)))
            gap = rng.choice((0, 0, 0.00005, 0.0005))
            if gap:
                await asyncio.sleep(gap)
            assert await asyncio.wait_for(pipe.write_async(bytes(i % 700), timeout=5), 10) == i % 700

    asyncio.run(main())
    assert settled(IDLE) == (IDLE, 0)
    assert _engine.lib.wu_libusb_event_thread_idles() - idles > 100, "it went idle between the writes"
    assert fake.stats(fk.GZ_OUT)["bytes"] == sum(i % 700 for i in range(1000))


def test_concurrent_submitters_and_sync_writers_end_with_no_demand(fake: fk.Fake, gz: wdfusb.Device) -> None:
    """Threads submitting asynchronously (some cancelled at once, some after a random wait)
    while another writes synchronously: every callback comes, the count ends at 0."""
    out, inp = gz.pipe(0x01), gz.pipe(0x81)
    fake.set_rate(fk.GZ_OUT, 50 << 20)
    callbacks = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def submitter(seed: int) -> None:
        rng = random.Random(seed)
        xs = [out._core.new_transfer() for _ in range(4)]
        try:
            for _ in range(150):
                evs = []
                for x in xs:
                    ev = threading.Event()

                    def cb(status: int, actual: int, ev: threading.Event = ev) -> None:
                        with lock:
                            callbacks.append(status)
                        ev.set()

                    rc = _dispatch.submit(x, 0x01, out._core.type, _engine.pin(bytes(4096)), 4096, 0, 0, cb)
                    if rc == _engine.WU_ERR_CANCELLED:  # the last cancel came after it was back: it stuck
                        rc = _dispatch.submit(x, 0x01, out._core.type, _engine.pin(bytes(4096)), 4096, 0, 0, cb)
                    assert rc == 0
                    evs.append(ev)
                    if rng.random() < 0.5:
                        if rng.random() < 0.5:
                            time.sleep(rng.random() * 0.0002)
                        x.cancel()
                for ev in evs:
                    assert ev.wait(10), "a completion never came"
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            for x in xs:
                x.free()

    def sync_writer() -> None:
        try:
            for _ in range(300):
                inp.read(512, timeout=5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=sync_writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a thread hung"
    assert not errors, errors
    assert wait_for_completions(10)
    assert len(callbacks) == 3 * 150 * 4
    assert settled(IDLE) == (IDLE, 0)


def done(into: list[int]) -> _dispatch.Callback:
    return lambda status, actual: into.append(status)


def test_close_while_the_thread_goes_idle(fake: fk.Fake) -> None:
    """A device closed with asynchronous transfers pending (held, or just completing), again
    and again: close cancels and drains them, every callback comes, nothing hangs."""
    rng = random.Random(7)
    for i in range(60):
        with wdfusb.open(vid=fk.GZ_VID, pid=fk.GZ_PID) as dev:
            core = dev.pipe(0x01)._core
            held = i % 2 == 0
            fake.hold(fk.GZ_OUT, 1 if held else 0)
            xs = [core.new_transfer() for _ in range(3)]
            got: list[int] = []
            for x in xs:
                rc = _dispatch.submit(x, 0x01, core.type, _engine.pin(bytes(1024)), 1024, 0, 0, done(got))
                assert rc == 0
            time.sleep(rng.random() * 0.001)
        assert wait_for_completions(10)
        assert len(got) == 3
        for x in xs:
            x.free()
        fake.hold(fk.GZ_OUT, 0)
    assert settled(IDLE) == (IDLE, 0)


def test_an_awaited_stream_holds_the_thread_while_it_waits(fake: fk.Fake, gz: wdfusb.Device) -> None:
    async def main() -> None:
        async with gz.pipe(0x81).reader(depth=2, chunk=512) as r:
            assert len(await asyncio.wait_for(r.read_async(1024), 10)) == 1024
            fake.hold(fk.GZ_IN, 1)
            reading = asyncio.create_task(r.read_async(4096))
            await asyncio.sleep(0.05)
            assert settled(HANDLING)[1] >= 1, "armed: its reads need the thread"
            fake.hold(fk.GZ_IN, 0)
            assert len(await asyncio.wait_for(reading, 10)) == 4096

    asyncio.run(main())
    assert settled(IDLE) == (IDLE, 0)


def test_a_hotplug_hold_keeps_it_running_then_lets_go(fake: fk.Fake, gz: wdfusb.Device) -> None:
    pipe = gz.pipe(0x01)
    assert _engine.hold_libusb_events(True) == 0
    try:
        assert settled(HANDLING) == (HANDLING, 1)
        taken = handed_over(fake, lambda: pipe.write(bytes(512), timeout=5), 200)
        assert taken > 0, "held: the thread handles events, and takes some of the completions"
    finally:
        assert _engine.hold_libusb_events(False) == 0
    assert settled(IDLE) == (IDLE, 0)
    assert handed_over(fake, lambda: pipe.write(bytes(512), timeout=5), 200) == 0
    assert _engine.hold_libusb_events(False) == _engine.WU_ERR_INVALID_PARAM  # nothing held: refused
    assert state() == (IDLE, 0)


def test_a_watch_with_platform_events_holds_the_thread_until_closed(
    fake: fk.Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wdfusb.hotplug, "hotplug_events", lambda: True)  # (the fake has no hotplug)
    w = wdfusb.watch()
    assert settled(HANDLING) == (HANDLING, 1)
    w2 = wdfusb.watch()
    assert state()[1] == 2
    w.close()
    w.close()  # idempotent: one hold, let go once
    assert state()[1] == 1
    del w2  # collected without close: its hold goes too
    gc.collect()
    assert settled(IDLE) == (IDLE, 0)
    with wdfusb.watch(poll=True):  # a polling watch needs no events
        assert state() == (IDLE, 0)


def test_a_forked_child_starts_with_no_thread_and_no_demand(fake: fk.Fake, gz: wdfusb.Device) -> None:
    assert _engine.hold_libusb_events(True) == 0
    try:
        settled(HANDLING)
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread and demand are not here
            os._exit(0 if state() == (-1, 0) and _engine.hold_libusb_events(False) != 0 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        assert _engine.hold_libusb_events(False) == 0
    assert settled(IDLE) == (IDLE, 0)
