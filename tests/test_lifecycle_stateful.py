"""The transfer lifecycle under concurrency: a stateful, multi-threaded property test, and
focused regressions for the lifecycle bugs reported against 8602ea8.

The machine
-----------
:class:`LifecycleMachine` is a hypothesis ``RuleBasedStateMachine`` (not a hand-rolled
scheduler: hypothesis draws the operations and their arguments, prints the failing step
list, and ``derandomize=True`` gives CI the same sequence on every run). It drives two
virtual devices, ``speed=None`` and ``speed="high"``, each opened through both layers
(``wdfusb.open`` and ``WdfUsbTargetDeviceCreate``).

Every data-carrying endpoint of a device has one worker thread, a *lane*: 0x06 bulk OUT
(feeds the loopback), 0x02 interrupt OUT (a sink), 0x88 bulk IN (the loopback) and EP0
(control: Gadget Zero's 0x5b write, then a 0x5c read back, through either layer). Every
transfer on an endpoint runs on its lane, so the order of the data on an endpoint is the
lane's job order although the six lanes and the main thread all run at once. Rules that move
data only *enqueue* a job (synchronous write or read through either layer, a StreamWriter,
a WDF request sent asynchronously, a StreamWriter dropped without ``close()``) and return;
the next rules run on the main thread while those jobs are in flight: ``pipe.abort()``,
``StreamWriter.cancel()``, ``WdfRequestCancelSentRequest``, ``Device.close()``,
``WdfObjectDelete(WDFUSBDEVICE)``, ``VirtualDevice.unplug()`` and ``.close()``, dropping a
``Device`` + ``gc.collect()``, short pauses (so the disruptions land at varied points).
A write may also run on two threads at once (the lane and a new thread, making its first
transfers); then every byte both threads write is the same, so the endpoint's stream does not depend
on their interleaving. A *storm* step has two threads write a burst while the main thread
aborts the pipe, or cancels the requests in flight, 200 times.

Invariants, after every step and at teardown:

* no exception but a legitimate one (``DeviceGoneError``, ``UsbCancelledError``,
  ``UsbTimeoutError``; ``WdfBugCheck`` for a handle that was deleted; the NTSTATUS of those
  outcomes), and every one carries a byte count within its buffer;
* byte accounting per endpoint, whenever its lane is idle: the bytes the library reported
  (write's return value, ``bytes_transferred``/``BytesWritten`` of every failure, the
  completion routine's length, ``StreamWriter.bytes_written`` after close/cancel/error, the
  value ``cancel()`` returned) sum to ``received_bytes``, and the CRC-32 of what the library
  says it sent, in order, is the device's ``crc32``. While a lane is busy: the device has at
  least what was reported;
* reads: what reads returned (``readinto``'s buffer, ``UsbTimeoutError.data``, WDF's
  ``BytesRead``) is a prefix of what 0x06 took, nothing reported read is lost, and the bytes
  reported read are the IN endpoint's ``sent_bytes``;
* control: a request that succeeded took effect and one that failed did not, with no bytes
  reported; a 0x5c read returns what the successful 0x5b writes left;
* a handle that was closed (or deleted) before an operation started moves no data;
* after a device is closed under load, the stream the library reported has the device's
  last counted bytes (count and CRC snapshot) as its prefix;
* no hang: every job has a bound, every wait is bounded; a job past its bound dumps the
  stack of every thread (``faulthandler.dump_traceback``) and ends the run;
* at teardown, with everything closed and collected, ``wdfusb._engine.live_objects()`` and
  ``Transfer.live`` are back at their starting values.

The machine runs in a child process (``python tests/test_lifecycle_stateful.py machine``)
under a hard time limit; the test asserts the child exited 0, so a segfault, an abort or a
hang fails with the child's output, the stacks and the steps of the running example
(also kept in a log file as they run, for crashes).

Environment (all optional):

``WDFUSB_EXPLORE=N``  N random examples (``1``: 300) instead of CI's fixed, derandomized ones;
``WDFUSB_SEED``       the seed of an exploration run (printed at its start);
``WDFUSB_STEPS``      steps per example (CI 25, exploring 50);
``WDFUSB_SHRINK=1``   let hypothesis shrink a failure (off by default: races make it slow);
``WDFUSB_OPS``        operations to leave out, e.g. ``-abort,-vclose`` (see ``OPS``), or the
                      only ones to run, e.g. ``write,read,abort``: to look past a known bug;
``WDFUSB_EXPLORE_LIMIT``  the child's hard limit in seconds (CI: 60).

For example: ``WDFUSB_EXPLORE=200 WDFUSB_OPS=-vclose pytest tests/test_lifecycle_stateful.py -k stateful``.

The regressions below (``test_regression_*``) reproduce bugs reported on commit 8602ea8, and
``test_further_*`` two more the machine found; each asserts the correct behaviour and
therefore fails on that code (how is in its docstring). Those that can crash or hang run in
a child process with a hard limit.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the child process runs this file as a script
    sys.path.insert(0, str(HERE))

from background import in_thread, joined  # noqa: E402
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_wdf_helpers import buffer_desc, new_memory, open_rig  # noqa: E402

import wdfusb  # noqa: E402
from wdfusb import _engine  # noqa: E402
from wdfusb.stream import StreamWriter  # noqa: E402
from wdfusb.wdf import *  # noqa: E402

GONE = {int(STATUS_NO_SUCH_DEVICE), int(STATUS_DEVICE_NOT_CONNECTED), int(STATUS_DEVICE_REMOVED)}
LEGIT = (wdfusb.DeviceGoneError, wdfusb.UsbCancelledError, wdfusb.UsbTimeoutError)
# NTSTATUS of the legitimate outcomes; STATUS_INVALID_DEVICE_STATE: formatting for a closed target
LEGIT_STATUS = {int(STATUS_SUCCESS), int(STATUS_CANCELLED), int(STATUS_IO_TIMEOUT), int(STATUS_INVALID_DEVICE_STATE)}
LEGIT_STATUS |= GONE

JOB_BOUND = 5.0  # seconds one lane job may take (the slowest legitimate one takes ~10 ms)
MAIN_BOUND = 12.0  # seconds one step may block the main thread (settling included)
SETTLE_BOUND = 8.0  # seconds for every lane to become idle
HANG_EXIT = 3  # a child's exit code when it found a hang (after dumping every thread)
OUT_EPS, IN_EP = (0x06, 0x02), 0x88
LOOPBACK = 32 << 20
MAX_OFFERED = 20 << 20  # per device and endpoint, so the loopback never drops
SIZES = {
    0x06: [0, 1, 511, 512, 513, 8192, 65536, 200_000],
    0x02: [0, 1, 63, 64, 65, 512, 2048, 4096],
    0x88: [512, 512, 4096, 4096, 16384, 65536, 65536, 131072],
}
STREAM_TOTALS = {0x06: [0, 1000, 4096, 70_000, 131_072], 0x02: [0, 100, 640, 2048, 4096]}
WRITE_TIMEOUTS = [None, 0.001, 0.02, 1.0]
READ_TIMEOUTS = [0.001, 0.005, 0.02]
# the rules, and two kinds of argument: "stale" (operations on handles closed or deleted before
# they start) and "read_size" (reads by pipe.read(size), beside readinto and WDF reads)
OPS = (
    "write", "stream", "stream_drop", "async_request", "read", "abort", "cancel_writer", "cancel_request",
    "open_device", "create_wdf", "close_device", "delete_wdf", "drop_device", "unplug", "vclose", "replace",
    "pause", "settle", "collect", "stale", "storm", "read_size", "control",
)  # fmt: skip
CONTROL_SIZES = [0, 1, 64, 65, 1000, 4096]
CONTROL_TIMEOUTS = [None, 0.001, 1.0]

EXPLORE = os.environ.get("WDFUSB_EXPLORE", "").strip()
EXPLORE_EXAMPLES = (300 if EXPLORE == "1" else int(EXPLORE)) if EXPLORE.isdigit() and int(EXPLORE) > 0 else 0
CI_EXAMPLES = 15
STEPS = int(os.environ.get("WDFUSB_STEPS", "0") or 0) or (50 if EXPLORE_EXAMPLES else 25)


def enabled_ops() -> set[str]:
    spec = [s.strip() for s in os.environ.get("WDFUSB_OPS", "").split(",") if s.strip()]
    unknown = {s.lstrip("-") for s in spec} - set(OPS)
    if unknown:
        raise ValueError(f"WDFUSB_OPS: unknown operations {sorted(unknown)}; known: {', '.join(OPS)}")
    only = {s for s in spec if not s.startswith("-")}
    return (only or set(OPS)) - {s[1:] for s in spec if s.startswith("-")}


ENABLED = enabled_ops()


def payload(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def crc_of_repeated(block: bytes, total: int) -> int:
    crc = 0
    for _ in range(total // len(block)):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(block[: total % len(block)], crc)


def send_options(timeout: float | None) -> WDF_REQUEST_SEND_OPTIONS | None:
    if timeout is None:
        return None
    options = WDF_REQUEST_SEND_OPTIONS()
    WDF_REQUEST_SEND_OPTIONS_INIT(options, WDF_REQUEST_SEND_OPTION_TIMEOUT)
    WDF_REQUEST_SEND_OPTIONS_SET_TIMEOUT(options, WDF_REL_TIMEOUT_IN_US(max(1, round(timeout * 1e6))))
    return options


def make_request(pipe: Any) -> tuple[NTSTATUS, WDFREQUEST]:
    """A request for ``pipe``'s target (the status instead of an assert: the target may be closed)."""
    req = WDFREQUEST()
    status = WdfRequestCreate(WDF_NO_OBJECT_ATTRIBUTES, WdfUsbTargetPipeGetIoTarget(pipe), req)
    return status, req


def wdf_open(vdev: wdfusb.VirtualDevice) -> tuple[NTSTATUS, WDFUSBDEVICE, dict[int, Any]]:
    box = WDFUSBDEVICE()
    status = WdfUsbTargetDeviceCreate(vdev, WDF_NO_OBJECT_ATTRIBUTES, box)
    if not NT_SUCCESS(status):
        return status, box, {}
    params = WDF_USB_DEVICE_SELECT_CONFIG_PARAMS()
    WDF_USB_DEVICE_SELECT_CONFIG_PARAMS_INIT_SINGLE_INTERFACE(params)
    status = WdfUsbTargetDeviceSelectConfig(box, WDF_NO_OBJECT_ATTRIBUTES, params)
    if not NT_SUCCESS(status):
        WdfObjectDelete(box)
        return status, box, {}
    iface = WdfUsbTargetDeviceGetInterface(box, 0)
    pipes = {}
    for i in range(WdfUsbInterfaceGetNumConfiguredPipes(iface)):
        info = WDF_USB_PIPE_INFORMATION()
        WDF_USB_PIPE_INFORMATION_INIT(info)
        pipes[info.EndpointAddress] = WdfUsbInterfaceGetConfiguredPipe(iface, i, info)
    return status, box, pipes


def dump_all_threads(why: str) -> None:
    print(f"\n=== {why}: the stack of every thread ===", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()


def hang(why: str, log: list[str] | None = None) -> None:
    """A bounded wait ran out: print the steps and every thread's stack, end the process."""
    print(f"\nHANG: {why}", file=sys.stderr, flush=True)
    if log is not None:
        print("=== steps of the running example ===\n" + "\n".join(log), file=sys.stderr, flush=True)
    dump_all_threads(why)
    os._exit(HANG_EXIT)


def join_all(threads: list[threading.Thread], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        hang(f"{what}: {stuck} still running after {seconds} s")


# ---- ResourceWarnings from finalizers (any thread) ---------------------------------------

_warned: list[str] = []
_warned_lock = threading.Lock()


def _record_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    if issubclass(category, ResourceWarning):
        with _warned_lock:
            _warned.append(str(message))


def take_warning_naming(number: int) -> str | None:
    """Consume a captured ResourceWarning whose text names ``number``."""
    pattern = re.compile(rf"(?<![\d.]){number}(?![\d.])")
    with _warned_lock:
        for i, text in enumerate(_warned):
            if pattern.search(text.replace(",", "").replace("_", "")):
                return _warned.pop(i)
    return None


# ---- the model ------------------------------------------------------------------------------


def take(vs: Any, items: list[Any], which: int) -> Any:
    """Remove and return entry ``which`` (modulo its length) of one of ``vs``'s lists, or None."""
    with vs.lock:
        return items.pop(which % len(items)) if items else None


class Lane:
    """One worker thread running the jobs of one endpoint of one virtual device, in order."""

    def __init__(self, name: str, machine: LifecycleMachine) -> None:
        self.name = name
        self.machine = machine
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.pending = 0  # queued or running
        self.current: tuple[str, float] | None = None  # (job, deadline)
        self.target: Any = None  # the StreamWriter or WDFREQUEST in flight, for the cancel rules
        self.cancels: list[tuple[Any, int]] = []  # (writer, what cancel() returned)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, what: str, fn: Callable[[], None]) -> None:
        with self.lock:
            self.pending += 1
        self.jobs.put((what, fn))

    def _run(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            what, fn = item
            with self.lock:
                self.current = (what, time.monotonic() + JOB_BOUND)
            try:
                fn()
            except BaseException:  # noqa: BLE001 - a bug of the job or the library: reported
                self.machine.violation(f"{self.name}: job {what} raised:\n{traceback.format_exc()}")
            finally:
                with self.lock:
                    self.current, self.target = None, None
                    self.pending -= 1

    @property
    def idle(self) -> bool:
        with self.lock:
            return self.pending == 0

    def overdue(self) -> str | None:
        with self.lock:
            cur = self.current
        return cur[0] if cur is not None and time.monotonic() > cur[1] else None

    def wait_idle(self, deadline: float) -> bool:
        while not self.idle:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def stop(self) -> None:
        self.jobs.put(None)


class OutStream:
    """What the library reported moved to one OUT endpoint, in order.

    A dropped StreamWriter reports nothing: its bytes are held as unknown and resolved from
    the device's count at the next idle check (where the library must have flushed them or
    named the loss in a ResourceWarning); whatever follows waits in ``after``.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.crc = 0
        self.offered = 0
        self.hold: bytes | None = None
        self.after: list[bytes] = []

    def add(self, moved: bytes) -> None:
        if self.hold is not None:
            self.after.append(moved)
            return
        self.data += moved
        self.crc = zlib.crc32(moved, self.crc)

    @property
    def known(self) -> int:
        return len(self.data) + sum(len(a) for a in self.after)

    def resolve(self, moved: int) -> None:
        assert self.hold is not None
        held, after = self.hold, self.after
        self.hold, self.after = None, []
        self.add(held[:moved])
        for a in after:
            self.add(a)


class VState:
    """One virtual device, the handles opened on it, its lanes and what was reported."""

    def __init__(self, machine: LifecycleMachine, slot: int, speed: str | None, generation: int) -> None:
        self.name = f"v{slot}.{generation}({speed})"
        self.speed = speed
        self.vdev = wdfusb.VirtualDevice(speed=speed, loopback_capacity=LOOPBACK)
        self.status = "live"  # "unplugged", "closed"
        self.lock = threading.Lock()
        self.devices: list[wdfusb.Device] = []
        self.closed_devices: list[wdfusb.Device] = []
        self.wdfs: list[tuple[WDFUSBDEVICE, dict[int, Any]]] = []
        self.deleted_wdfs: list[tuple[WDFUSBDEVICE, dict[int, Any]]] = []
        self.out = {ep: OutStream() for ep in OUT_EPS}
        self.read = bytearray()
        self.read_checked = 0
        self.read_gap = False  # a read lost bytes (reported as a violation): stop comparing
        self.snapshot: dict[int, tuple[int, int]] | None = None  # taken just before a close under load
        self.lanes = {ep: Lane(f"{self.name}-0x{ep:02X}", machine) for ep in (*OUT_EPS, IN_EP, 0)}  # 0: EP0
        self.ep0 = bytearray(4096)  # the device's 0x5b/0x5c buffer, as the requests reported to succeed left it

    def pick_device(self, stale: bool, which: int) -> tuple[wdfusb.Device, bool] | None:
        with self.lock:
            pools = [(self.closed_devices, True), (self.devices, False)]
            for pool, is_stale in pools if stale else pools[::-1]:
                if pool:
                    return pool[which % len(pool)], is_stale
        return None

    def pick_wdf(self, stale: bool, which: int) -> tuple[WDFUSBDEVICE, dict[int, Any], bool] | None:
        with self.lock:
            pools = [(self.deleted_wdfs, True), (self.wdfs, False)]
            for pool, is_stale in pools if stale else pools[::-1]:
                if pool:
                    box, pipes = pool[which % len(pool)]
                    return box, pipes, is_stale
        return None

    def record(self, ep: int, moved: bytes) -> None:
        with self.lock:
            self.out[ep].add(moved)

    def record_read(self, data: bytes) -> None:
        with self.lock:
            self.read += data

    def all_idle(self) -> bool:
        return all(lane.idle for lane in self.lanes.values())


# ---- the machine ------------------------------------------------------------------------------

VDEV = st.integers(0, 1)
WHICH = st.integers(0, 3)
SEEDS = st.integers(0, 2**32 - 1)


def op(name: str) -> Any:
    return precondition(lambda self: name in ENABLED)


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        gc.collect()
        self.start_counts = (_engine.live_objects(), _engine.Transfer.live)
        self.log: list[str] = []
        self.failing = False
        self._violations: list[str] = []
        self._vlock = threading.Lock()
        self.generation = 0
        self.logfile = os.environ.get("WDFUSB_STATEFUL_LOG")
        if self.logfile:
            with open(self.logfile, "w") as f:
                f.write(f"# new example; start counts {self.start_counts}\n")
        self.vs = [self.new_vstate(0, None), self.new_vstate(1, "high")]
        for vs in self.vs:  # both layers open on each device from the start
            vs.devices.append(wdfusb.open(vs.vdev))
            status, box, pipes = wdf_open(vs.vdev)
            assert NT_SUCCESS(status), status
            vs.wdfs.append((box, pipes))

    def new_vstate(self, slot: int, speed: str | None) -> VState:
        self.generation += 1
        return VState(self, slot, speed, self.generation)

    # ---- reporting -----------------------------------------------------------------------

    def violation(self, text: str) -> None:
        with self._vlock:
            self._violations.append(text)

    def fail(self, text: str) -> None:
        self.failing = True
        self.report(f"FAILED: {text}")
        raise AssertionError(text)

    def report(self, text: str) -> None:
        """Print a failure with the steps that led to it, as it happens (a replay may not fail)."""
        steps = "\n".join(self.log)
        print(f"\n=== {text}\n=== after these steps:\n{steps}\n", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        line = f"{len(self.log):3d} {text}"
        self.log.append(line)
        if self.logfile:
            with open(self.logfile, "a") as f:
                f.write(line + "\n")
        faulthandler.dump_traceback_later(MAIN_BOUND, exit=True)
        try:
            yield
        except BaseException:
            if not self.failing:
                self.failing = True
                self.report(f"FAILED in step {text!r}:\n{traceback.format_exc()}")
            raise

    def moved_by(self, e: BaseException, limit: int, what: str) -> int:
        """The bytes a failed Pythonic call reports moved; a violation unless it is a legitimate outcome."""
        if isinstance(e, LEGIT):
            n = e.bytes_transferred
            if isinstance(n, int) and 0 <= n <= limit:
                return n
            self.violation(f"{what}: {type(e).__name__} with bytes_transferred={n!r} (buffer {limit})")
            return 0
        self.violation(
            f"{what}: {type(e).__name__} is not a legitimate outcome:\n{''.join(traceback.format_exception(e))}"
        )
        return 0

    def check_status(self, status: int, what: str) -> None:
        if int(status) not in LEGIT_STATUS:
            self.violation(f"{what}: {NTSTATUS(status)!r} is not a legitimate outcome")

    def check_bugcheck(self, e: BaseException, box: WDFUSBDEVICE, what: str) -> None:
        if isinstance(e, WdfBugCheck) and e.subcode == WDF_INVALID_HANDLE and box.value is not None:
            if box.value.is_deleted:
                return  # the handle was deleted (maybe while the job ran): the documented bug check
        self.violation(
            f"{what}: {type(e).__name__} is not a legitimate outcome:\n{''.join(traceback.format_exception(e))}"
        )

    # ---- jobs (run on the lanes) -------------------------------------------------------------

    def job_writes(
        self,
        vs: VState,
        ep: int,
        datas: list[bytes],
        layer: str,
        timeout: float | None,
        stale: bool,
        which: int,
        threads: int = 1,
    ) -> None:
        """A burst of writes (gives a concurrent abort many submissions to land on). With two
        threads — a new one, making its first transfers, beside the lane — every byte of the
        burst is the same, so the endpoint's stream does not depend on how they interleave."""

        def burst() -> None:
            for data in datas:
                self.job_write(vs, ep, data, layer, timeout, stale, which)

        if threads == 1:
            burst()
            return
        helper = threading.Thread(target=burst, name=f"{vs.name}-0x{ep:02X}-twin", daemon=True)
        helper.start()
        burst()
        helper.join(JOB_BOUND - 1)
        if helper.is_alive():
            hang(f"{helper.name}: a write of two concurrent writers is stuck", self.log)

    def job_write(
        self, vs: VState, ep: int, data: bytes, layer: str, timeout: float | None, stale: bool, which: int
    ) -> None:
        what = f"{vs.name} 0x{ep:02X} {layer} write {len(data)} B timeout={timeout}"
        if layer == "pythonic":
            picked = vs.pick_device(stale, which)
            if picked is None:
                return
            dev, stale = picked
            err: BaseException | None = None
            try:
                n = dev.pipe(ep).write(data, timeout=timeout)
                if n != len(data):
                    self.violation(f"{what}: returned {n}, not the whole buffer")
            except BaseException as e:  # noqa: BLE001 - classified
                err, n = e, self.moved_by(e, len(data), what)
            if stale and (err is None or n):
                self.violation(f"{what}: the pipe of a Device closed before the write moved {n} bytes ({err!r})")
            vs.record(ep, data[:n])
            return
        wdf = vs.pick_wdf(stale, which)
        if wdf is None:
            return
        box, pipes, stale = wdf
        lane = vs.lanes[ep]
        moved = ULONG()
        req: WDFREQUEST | None = None
        try:
            pipe = pipes[ep]
            if layer == "wdf_request":
                status, req = make_request(pipe)
                if not NT_SUCCESS(status):
                    self.check_status(status, what + " (WdfRequestCreate)")
                    req = None
                    return
                lane.target = req
            desc = buffer_desc(data) if data else None
            status = WdfUsbTargetPipeWriteSynchronously(pipe, req, send_options(timeout), desc, moved)
            self.check_status(status, what)
            if NT_SUCCESS(status) and moved.value != len(data):
                self.violation(f"{what}: {status!r} with BytesWritten={moved.value}")
            if stale and (NT_SUCCESS(status) or moved.value):
                self.violation(f"{what}: a deleted WDFUSBDEVICE's pipe moved {moved.value} bytes ({status!r})")
        except WdfBugCheck as e:
            self.check_bugcheck(e, box, what)
        except BaseException as e:  # noqa: BLE001
            self.violation(f"{what}: {type(e).__name__}:\n{''.join(traceback.format_exception(e))}")
        finally:
            lane.target = None
            vs.record(ep, data[: moved.value])
            if req is not None and req.value is not None and not req.value.is_deleted:
                WdfObjectDelete(req)

    def job_async(self, vs: VState, ep: int, data: bytes, timeout: float | None, which: int) -> None:
        what = f"{vs.name} 0x{ep:02X} async request {len(data)} B timeout={timeout}"
        wdf = vs.pick_wdf(False, which)
        if wdf is None:
            return
        box, pipes, stale = wdf
        lane = vs.lanes[ep]
        mem = req = None
        moved = 0
        try:
            pipe = pipes[ep]
            status, req = make_request(pipe)
            if not NT_SUCCESS(status):
                self.check_status(status, what + " (WdfRequestCreate)")
                req = None
                return
            mem = new_memory(data) if data else None
            status = WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None)
            if not NT_SUCCESS(status):
                self.check_status(status, what + " (format)")
                return
            done = threading.Event()
            result: list[tuple[int, int]] = []

            def routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
                result.append(
                    (int(Params.IoStatus.Status), Params.Parameters.Usb.Completion.Parameters.PipeWrite.Length)
                )
                done.set()

            WdfRequestSetCompletionRoutine(req, routine, None)
            lane.target = req
            if WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), send_options(timeout)):
                if not done.wait(JOB_BOUND - 1):
                    self.violation(f"{what}: sent, but its completion routine never ran")
                    req = None  # still pending: deleting it would be a bug check
                    return
                status, moved = result[0]
            else:
                status, moved = WdfRequestGetStatus(req), WdfRequestGetInformation(req)
                if moved:
                    self.violation(f"{what}: not sent ({status!r}) but reports {moved} bytes")
            self.check_status(status, what)
            if NT_SUCCESS(status) and moved != len(data):
                self.violation(f"{what}: {NTSTATUS(status)!r} with Length={moved}")
            if stale and moved:
                self.violation(f"{what}: a deleted WDFUSBDEVICE moved {moved} bytes")
        except WdfBugCheck as e:
            self.check_bugcheck(e, box, what)
        except BaseException as e:  # noqa: BLE001
            self.violation(f"{what}: {type(e).__name__}:\n{''.join(traceback.format_exception(e))}")
        finally:
            lane.target = None
            vs.record(ep, data[:moved])
            for obj in (req, mem):
                if obj is not None and obj.value is not None and not obj.value.is_deleted:
                    WdfObjectDelete(obj)

    def _writer(
        self, vs: VState, ep: int, depth: int, chunk: int, timeout: float | None, stale: bool, which: int, what: str
    ) -> tuple[Any, bool] | None:
        picked = vs.pick_device(stale, which)
        if picked is None:
            return None
        dev, stale = picked
        try:
            return dev.pipe(ep).writer(depth=depth, chunk=chunk, timeout=timeout), stale
        except BaseException as e:  # noqa: BLE001
            self.moved_by(e, 0, what + " (creating the writer)")
            return None

    def job_stream(
        self,
        vs: VState,
        ep: int,
        data: bytes,
        cuts: list[int],
        copy: bool,
        depth: int,
        chunk: int,
        timeout: float | None,
        stale: bool,
        which: int,
    ) -> None:
        what = f"{vs.name} 0x{ep:02X} stream {len(data)} B depth={depth} chunk={chunk} copy={copy} timeout={timeout}"
        made = self._writer(vs, ep, depth, chunk, timeout, stale, which, what)
        if made is None:
            return
        w, stale = made
        lane = vs.lanes[ep]
        lane.target = w
        err: BaseException | None = None
        try:
            pos = 0
            for cut in [*cuts, len(data)]:
                piece = data[pos:cut]
                w.write(bytearray(piece) if copy else piece)
                pos = cut
            w.flush()
        except BaseException as e:  # noqa: BLE001
            err = e
        try:
            w.close()
        except BaseException as e:  # noqa: BLE001 - close raises the stream's error if nobody saw it
            if err is None:
                err = e
        lane.target = None
        n = w.bytes_written
        if err is not None:
            reported = self.moved_by(err, len(data), what)
            if isinstance(err, LEGIT) and reported != n:
                self.violation(f"{what}: {type(err).__name__} says {reported} bytes, bytes_written says {n}")
        elif n != len(data):
            self.violation(f"{what}: closed without an error after writing {n} of {len(data)} bytes")
        if stale and (err is None or n):
            self.violation(f"{what}: a StreamWriter of a Device closed before it started sent {n} bytes ({err!r})")
        vs.record(ep, data[:n])

    def job_stream_drop(self, vs: VState, ep: int, data: bytes, depth: int, chunk: int, which: int) -> None:
        what = f"{vs.name} 0x{ep:02X} stream {len(data)} B depth={depth} chunk={chunk}, dropped unclosed"
        with vs.lock:  # what the writer moves is unknown until the next idle check: one at a time
            if vs.out[ep].hold is not None:
                return
            vs.out[ep].hold = data
        made = self._writer(vs, ep, depth, chunk, None, False, which, what)
        if made is None:
            with vs.lock:
                vs.out[ep].hold = None
            return
        w = made[0]
        del made  # the writer's only reference is ``w``
        try:
            w.write(data)
        except BaseException as e:  # noqa: BLE001 - the writer failed and said how much moved: nothing is held
            n = self.moved_by(e, len(data), what)
            with vs.lock:
                vs.out[ep].hold = None
                vs.out[ep].add(data[:n])
        ref = weakref.ref(w)
        del w
        deadline = time.monotonic() + 1
        while ref() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.001)
        if ref() is not None:
            self.violation(f"{what}: the writer was not collected")

    def job_read(self, vs: VState, size: int, kind: str, timeout: float, stale: bool, which: int) -> None:
        what = f"{vs.name} 0x88 {kind} read {size} B timeout={timeout}"
        buf = bytearray(size)
        if kind == "wdf":
            wdf = vs.pick_wdf(stale, which)
            if wdf is None:
                return
            box, pipes, stale = wdf
            got = ULONG()
            try:
                status = WdfUsbTargetPipeReadSynchronously(
                    pipes[IN_EP], None, send_options(timeout), buffer_desc(buf), got
                )
                self.check_status(status, what)
            except WdfBugCheck as e:
                self.check_bugcheck(e, box, what)
            except BaseException as e:  # noqa: BLE001
                self.violation(f"{what}: {type(e).__name__}:\n{''.join(traceback.format_exception(e))}")
            if stale and got.value:
                self.violation(f"{what}: a deleted WDFUSBDEVICE's pipe read {got.value} bytes")
            vs.record_read(bytes(buf[: got.value]))
            return
        picked = vs.pick_device(stale, which)
        if picked is None:
            return
        dev, stale = picked
        pipe = dev.pipe(IN_EP)
        data = b""
        if kind == "reader":
            vs.record_read(self.reader_read(pipe, buf, timeout, stale, what))
            return
        try:
            if kind == "readinto":
                data = bytes(buf[: pipe.readinto(buf, timeout)])
            else:
                data = pipe.read(size, timeout)
        except BaseException as e:  # noqa: BLE001
            n = self.moved_by(e, size, what)
            if kind == "readinto":
                data = bytes(buf[:n])
            elif n:
                got_data = getattr(e, "data", None)
                if got_data is None or len(got_data) != n:
                    self.violation(
                        f"{what}: {type(e).__name__} reports {n} bytes read but gives them back as "
                        f"{'nothing' if got_data is None else f'{len(got_data)} bytes'} (.data): "
                        "they are lost from the stream"
                    )
                    with vs.lock:
                        vs.read_gap = True
                    data = b"\0" * n
                else:
                    data = bytes(got_data)
        if stale and data:
            self.violation(f"{what}: the pipe of a Device closed before the read returned {len(data)} bytes")
        vs.record_read(data)

    def reader_read(self, pipe: Any, buf: bytearray, timeout: float, stale: bool, what: str) -> bytes:
        """A StreamReader's readinto, then ``cancel()`` and the bytes it had taken from the device
        and not handed over yet: together exactly what the IN endpoint sent."""
        try:
            reader = pipe.reader(depth=3, chunk=4096, timeout=timeout)
        except BaseException as e:  # noqa: BLE001
            self.moved_by(e, 0, what)
            return b""
        try:
            try:
                data = bytes(buf[: reader.readinto(buf)])
            except BaseException as e:  # noqa: BLE001
                data = bytes(buf[: self.moved_by(e, len(buf), what)])
            reader.cancel()
            left = reader.buffered
            try:
                data += reader.read(left)
            except BaseException as e:  # noqa: BLE001
                self.violation(f"{what}: the {left} bytes buffered after cancel() were not handed over: {e!r}")
            if reader.bytes_read != len(data) or reader.buffered or reader.in_flight:
                self.violation(
                    f"{what}: bytes_read {reader.bytes_read} for {len(data)} delivered, "
                    f"{reader.buffered} buffered and {reader.in_flight} in flight after cancel()"
                )
            if stale and data:
                self.violation(f"{what}: a reader on a closed Device read {len(data)} bytes")
            return data
        finally:
            reader.close()

    def job_control(
        self, vs: VState, layer: str, n: int, seed: int, timeout: float | None, stale: bool, which: int
    ) -> None:
        """A 0x5b write then a 0x5c read back on EP0: a request that succeeded took effect and one that
        failed did not (the device answers when its STATUS stage completes), and a read returns what
        the successful writes left."""
        what = f"{vs.name} EP0 {layer} control {n} B timeout={timeout}"
        data = payload(seed, n)
        for request_type, request in ((0x40, 0x5B), (0xC0, 0x5C)):
            got, ok = b"", False
            if layer == "wdf":
                wdf = vs.pick_wdf(stale, which)
                if wdf is None:
                    return
                box, _, stale = wdf
                packet = WDF_USB_CONTROL_SETUP_PACKET()
                WDF_USB_CONTROL_SETUP_PACKET_INIT_VENDOR(packet, request_type >> 7, BmRequestToDevice, request, 0, 0)
                buf = bytearray(data) if request_type == 0x40 else bytearray(n)
                moved = ULONG()
                try:
                    status = WdfUsbTargetDeviceSendControlTransferSynchronously(
                        box, None, send_options(timeout), packet, buffer_desc(buf) if n else None, moved
                    )
                    self.check_status(status, what)
                    ok = NT_SUCCESS(status)
                except WdfBugCheck as e:
                    self.check_bugcheck(e, box, what)
                    return
                if moved.value != (n if ok else 0):
                    self.violation(f"{what}: {request:#04x} reports {moved.value} bytes ({'ok' if ok else 'failed'})")
                got = bytes(buf[: moved.value])
            else:
                picked = vs.pick_device(stale, which)
                if picked is None:
                    return
                dev, stale = picked
                try:
                    if request_type == 0x40:
                        dev.control_write(0x40, 0x5B, 0, 0, data, timeout)
                    else:
                        got = dev.control_read(0xC0, 0x5C, 0, 0, n, timeout)
                    ok = True
                except BaseException as e:  # noqa: BLE001
                    if self.moved_by(e, n, what) or getattr(e, "data", b""):
                        self.violation(f"{what}: a failed {request:#04x} reports bytes moved")
            if stale and ok:
                self.violation(f"{what}: {request:#04x} succeeded on a handle closed before it started")
            with vs.lock:
                if ok and request_type == 0x40:
                    vs.ep0[:n] = data
                elif ok and got != bytes(vs.ep0[:n]):
                    self.violation(f"{what}: 0x5c returned what no successful 0x5b left")
            if not ok:
                return

    # ---- rules: data (enqueued, return at once) --------------------------------------------------

    @op("control")
    @rule(
        v=VDEV,
        layer=st.sampled_from(["pythonic", "wdf"]),
        size=st.integers(0, len(CONTROL_SIZES) - 1),
        timeout=st.sampled_from(CONTROL_TIMEOUTS),
        stale=st.booleans(),
        which=WHICH,
        seed=SEEDS,
    )
    def control(self, v: int, layer: str, size: int, timeout: float | None, stale: bool, which: int, seed: int) -> None:
        vs = self.vs[v]
        n = CONTROL_SIZES[size]
        stale = stale and "stale" in ENABLED
        with self.step(f"control {vs.name} {layer} {n} B timeout={timeout} stale={stale}"):
            vs.lanes[0].submit(
                f"{layer} control {n} B", lambda: self.job_control(vs, layer, n, seed, timeout, stale, which)
            )

    def _offer(self, vs: VState, ep: int, n: int) -> bool:
        with vs.lock:
            if vs.out[ep].offered + n > MAX_OFFERED:
                return False
            vs.out[ep].offered += n
            return True

    @op("write")
    @rule(
        v=VDEV,
        ep=st.sampled_from(OUT_EPS),
        size=st.integers(0, 7),
        layer=st.sampled_from(["pythonic", "wdf", "wdf_request"]),
        timeout=st.sampled_from(WRITE_TIMEOUTS),
        repeat=st.sampled_from([1, 1, 4, 32]),
        threads=st.sampled_from([1, 1, 2]),
        stale=st.booleans(),
        which=WHICH,
        seed=SEEDS,
    )
    def write(
        self,
        v: int,
        ep: int,
        size: int,
        layer: str,
        timeout: float | None,
        repeat: int,
        threads: int,
        stale: bool,
        which: int,
        seed: int,
    ) -> None:
        vs = self.vs[v]
        n = SIZES[ep][size]
        repeat = max(1, min(repeat, (1 << 20) // max(n, 1)))
        stale = stale and "stale" in ENABLED
        with self.step(
            f"write {vs.name} 0x{ep:02X} {layer} {threads} thread(s) x {repeat} x {n} B timeout={timeout} stale={stale}"
        ):
            if self._offer(vs, ep, n * repeat * threads):
                if threads == 1:
                    datas = [payload(seed + i, n) for i in range(repeat)]
                else:
                    datas = [bytes([seed & 0xFF]) * n] * repeat
                vs.lanes[ep].submit(
                    f"{layer} write {threads} x {repeat} x {n} B",
                    lambda: self.job_writes(vs, ep, datas, layer, timeout, stale, which, threads),
                )

    @op("stream")
    @rule(
        v=VDEV,
        ep=st.sampled_from(OUT_EPS),
        total=st.integers(0, 4),
        cuts=st.lists(st.floats(0, 1), max_size=3),
        copy=st.booleans(),
        depth=st.integers(1, 4),
        chunk=st.sampled_from([1, 2, 8, 32]),
        timeout=st.sampled_from([None, None, 0.05]),
        stale=st.booleans(),
        which=WHICH,
        seed=SEEDS,
    )
    def stream(
        self,
        v: int,
        ep: int,
        total: int,
        cuts: list[float],
        copy: bool,
        depth: int,
        chunk: int,
        timeout: float | None,
        stale: bool,
        which: int,
        seed: int,
    ) -> None:
        vs = self.vs[v]
        n = STREAM_TOTALS[ep][total]
        chunk *= 512 if ep == 0x06 else 64
        stale = stale and "stale" in ENABLED
        with self.step(
            f"stream {vs.name} 0x{ep:02X} {n} B depth={depth} chunk={chunk} copy={copy} timeout={timeout} stale={stale}"
        ):
            if self._offer(vs, ep, n):
                data = payload(seed, n)
                at = sorted(int(c * n) for c in cuts)
                vs.lanes[ep].submit(
                    f"stream {n} B",
                    lambda: self.job_stream(vs, ep, data, at, copy, depth, chunk, timeout, stale, which),
                )

    @op("stream_drop")
    @rule(
        v=VDEV,
        ep=st.sampled_from(OUT_EPS),
        total=st.integers(1, 4),
        depth=st.integers(1, 4),
        chunk=st.sampled_from([1, 8]),
        which=WHICH,
        seed=SEEDS,
    )
    def stream_drop(self, v: int, ep: int, total: int, depth: int, chunk: int, which: int, seed: int) -> None:
        vs = self.vs[v]
        n = STREAM_TOTALS[ep][total]
        chunk *= 512 if ep == 0x06 else 64
        with self.step(f"stream_drop {vs.name} 0x{ep:02X} {n} B depth={depth} chunk={chunk}"):
            if vs.status != "closed" and self._offer(vs, ep, n):
                data = payload(seed, n)
                vs.lanes[ep].submit(
                    f"dropped stream {n} B", lambda: self.job_stream_drop(vs, ep, data, depth, chunk, which)
                )

    @op("async_request")
    @rule(
        v=VDEV,
        ep=st.sampled_from(OUT_EPS),
        size=st.integers(0, 7),
        timeout=st.sampled_from(WRITE_TIMEOUTS),
        which=WHICH,
        seed=SEEDS,
    )
    def async_request(self, v: int, ep: int, size: int, timeout: float | None, which: int, seed: int) -> None:
        vs = self.vs[v]
        n = SIZES[ep][size]
        with self.step(f"async_request {vs.name} 0x{ep:02X} {n} B timeout={timeout}"):
            if self._offer(vs, ep, n):
                data = payload(seed, n)
                vs.lanes[ep].submit(f"async request {n} B", lambda: self.job_async(vs, ep, data, timeout, which))

    @op("read")
    @rule(
        v=VDEV,
        size=st.integers(0, 7),
        kind=st.sampled_from(["readinto", "read", "wdf", "reader"]),
        timeout=st.sampled_from(READ_TIMEOUTS),
        stale=st.booleans(),
        which=WHICH,
    )
    def read(self, v: int, size: int, kind: str, timeout: float, stale: bool, which: int) -> None:
        vs = self.vs[v]
        n = SIZES[IN_EP][size]
        stale = stale and "stale" in ENABLED
        kind = kind if kind != "read" or "read_size" in ENABLED else "readinto"
        with self.step(f"read {vs.name} {kind} {n} B timeout={timeout} stale={stale}"):
            vs.lanes[IN_EP].submit(f"{kind} read {n} B", lambda: self.job_read(vs, n, kind, timeout, stale, which))

    # ---- rules: disruptions (main thread, while jobs run) ---------------------------------------

    @op("abort")
    @rule(
        v=VDEV,
        ep=st.sampled_from([*OUT_EPS, IN_EP]),
        layer=st.sampled_from(["pythonic", "wdf"]),
        times=st.sampled_from([1, 1, 10, 100]),
        which=WHICH,
    )
    def abort(self, v: int, ep: int, layer: str, times: int, which: int) -> None:
        vs = self.vs[v]
        with self.step(f"abort {vs.name} 0x{ep:02X} {layer} x {times}"):
            if layer == "pythonic":
                picked = vs.pick_device(False, which)
                if picked is not None:
                    pipe = picked[0].pipe(ep)
                    for _ in range(times):
                        try:
                            pipe.abort()
                        except BaseException as e:  # noqa: BLE001
                            self.moved_by(e, 0, f"abort 0x{ep:02X}")
                return
            wdf = vs.pick_wdf(False, which)
            if wdf is not None:
                for _ in range(times):
                    try:
                        self.check_status(WdfUsbTargetPipeAbortSynchronously(wdf[1][ep], None, None), "abort (WDF)")
                    except WdfBugCheck as e:
                        self.check_bugcheck(e, wdf[0], "abort (WDF)")

    @op("storm")
    @rule(
        v=VDEV,
        ep=st.sampled_from(OUT_EPS),
        kind=st.sampled_from(["abort", "cancel_request"]),
        size=st.sampled_from([512, 8192]),
        timeout=st.sampled_from([None, 1.0]),
        seed=SEEDS,
    )
    def storm(self, v: int, ep: int, kind: str, size: int, timeout: float | None, seed: int) -> None:
        """Two threads write a burst while the main thread aborts the pipe (or cancels the
        requests in flight) over and over: many disruptions land on many submissions."""
        vs = self.vs[v]
        n = min(size, SIZES[ep][-1])
        layer = "pythonic" if kind == "abort" else "wdf_request"
        with self.step(f"storm {vs.name} 0x{ep:02X}: 2 threads x 32 x {n} B {layer} writes, {kind} x 200"):
            if kind not in ENABLED or not self._offer(vs, ep, 64 * n):
                return
            datas = [bytes([seed & 0xFF]) * n] * 32
            lane = vs.lanes[ep]
            lane.submit(
                f"storm: {layer} write 2 x 32 x {n} B",
                lambda: self.job_writes(vs, ep, datas, layer, timeout, False, seed, 2),
            )
            time.sleep(0.0005)
            picked = vs.pick_device(False, seed)
            for _ in range(200):
                if kind == "abort":
                    if picked is not None:
                        try:
                            picked[0].pipe(ep).abort()
                        except BaseException as e:  # noqa: BLE001
                            self.moved_by(e, 0, f"abort 0x{ep:02X}")
                else:
                    req = lane.target
                    if isinstance(req, WDFREQUEST):
                        try:
                            WdfRequestCancelSentRequest(req)
                        except WdfBugCheck as e:
                            if not (e.subcode == WDF_INVALID_HANDLE and req.value is not None and req.value.is_deleted):
                                raise
                    time.sleep(0.00002)
                if lane.idle:
                    break

    @op("cancel_writer")
    @rule(v=VDEV, ep=st.sampled_from(OUT_EPS))
    def cancel_writer(self, v: int, ep: int) -> None:
        vs = self.vs[v]
        with self.step(f"cancel_writer {vs.name} 0x{ep:02X}"):
            lane = vs.lanes[ep]
            w = lane.target
            if isinstance(w, StreamWriter):
                n = w.cancel()
                with lane.lock:
                    lane.cancels.append((w, n))

    @op("cancel_request")
    @rule(v=VDEV, ep=st.sampled_from(OUT_EPS))
    def cancel_request(self, v: int, ep: int) -> None:
        vs = self.vs[v]
        with self.step(f"cancel_request {vs.name} 0x{ep:02X}"):
            req = vs.lanes[ep].target
            if isinstance(req, WDFREQUEST):
                try:
                    WdfRequestCancelSentRequest(req)
                except WdfBugCheck as e:
                    if not (e.subcode == WDF_INVALID_HANDLE and req.value is not None and req.value.is_deleted):
                        raise

    @op("open_device")
    @precondition(lambda self: any(len(s.devices) < 3 for s in self.vs))
    @rule(v=VDEV)
    def open_device(self, v: int) -> None:
        vs = self.vs[v]
        with self.step(f"open_device {vs.name}"):
            if len(vs.devices) >= 3:
                return
            try:
                dev = wdfusb.open(vs.vdev)
            except BaseException as e:  # noqa: BLE001
                self.moved_by(e, 0, "wdfusb.open")
                if vs.status == "live":
                    self.violation(f"wdfusb.open of a live virtual device failed: {e!r}")
                return
            with vs.lock:
                vs.devices.append(dev)

    @op("create_wdf")
    @precondition(lambda self: any(len(s.wdfs) < 2 for s in self.vs))
    @rule(v=VDEV)
    def create_wdf(self, v: int) -> None:
        vs = self.vs[v]
        with self.step(f"create_wdf {vs.name}"):
            if len(vs.wdfs) >= 2:
                return
            status, box, pipes = wdf_open(vs.vdev)
            self.check_status(status, "WdfUsbTargetDeviceCreate + SelectConfig")
            if NT_SUCCESS(status):
                with vs.lock:
                    vs.wdfs.append((box, pipes))
            elif vs.status == "live":
                self.violation(f"WdfUsbTargetDeviceCreate on a live virtual device: {status!r}")

    @op("close_device")
    @rule(v=VDEV, which=WHICH)
    def close_device(self, v: int, which: int) -> None:
        vs = self.vs[v]
        with self.step(f"close_device {vs.name} #{which}"):
            dev = take(vs, vs.devices, which)
            if dev is None:
                return
            dev.close()
            with vs.lock:
                vs.closed_devices = [*vs.closed_devices[-2:], dev]

    @op("delete_wdf")
    @rule(v=VDEV, which=WHICH)
    def delete_wdf(self, v: int, which: int) -> None:
        vs = self.vs[v]
        with self.step(f"delete_wdf {vs.name} #{which}"):
            entry = take(vs, vs.wdfs, which)
            if entry is None:
                return
            WdfObjectDelete(entry[0])
            with vs.lock:
                vs.deleted_wdfs = [*vs.deleted_wdfs[-2:], entry]

    @op("drop_device")
    @rule(v=VDEV, which=WHICH)
    def drop_device(self, v: int, which: int) -> None:
        vs = self.vs[v]
        with self.step(f"drop_device {vs.name} #{which} + gc.collect()"):
            if take(vs, vs.devices, which) is None:
                return
            gc.collect()

    @op("unplug")
    @rule(v=VDEV)
    def unplug(self, v: int) -> None:
        vs = self.vs[v]
        with self.step(f"unplug {vs.name}"):
            if vs.status == "live":
                vs.vdev.unplug()
                vs.status = "unplugged"

    @op("vclose")
    @rule(v=VDEV)
    def vclose(self, v: int) -> None:
        vs = self.vs[v]
        with self.step(f"vclose {vs.name}"):
            if vs.status == "closed":
                return
            snap = {}
            for ep in OUT_EPS:  # count and CRC from one look (two would tear while data moves)
                st = vs.vdev.endpoint(ep)._stats()
                snap[ep] = (st["received_bytes"], st["crc32"])
            snap[IN_EP] = (vs.vdev.endpoint(IN_EP).sent_bytes, 0)
            vs.snapshot = snap
            vs.status = "closed"
            vs.vdev.close()

    @op("replace")
    @precondition(lambda self: any(s.status != "live" for s in self.vs))
    @rule(v=VDEV)
    def replace(self, v: int) -> None:
        vs = self.vs[v]
        with self.step(f"replace {vs.name} (settle, check, close everything, new device)"):
            if vs.status == "live":
                return
            self.finalize(vs)
            self.vs[v] = self.new_vstate(v, vs.speed)
            with self.vs[v].lock:
                self.vs[v].devices.append(wdfusb.open(self.vs[v].vdev))

    @op("pause")
    @rule(ms=st.sampled_from([0.2, 1, 5]))
    def pause(self, ms: float) -> None:
        with self.step(f"pause {ms} ms"):
            time.sleep(ms / 1000)

    @op("settle")
    @rule()
    def settle(self) -> None:
        with self.step("settle (wait until every lane is idle)"):
            self.wait_idle(self.vs)

    @op("collect")
    @rule()
    def collect(self) -> None:
        with self.step("gc.collect()"):
            gc.collect()

    # ---- invariants ----------------------------------------------------------------------------

    def wait_idle(self, states: list[VState]) -> None:
        deadline = time.monotonic() + SETTLE_BOUND
        for vs in states:
            for lane in vs.lanes.values():
                if not lane.wait_idle(deadline):
                    hang(f"lane {lane.name} still busy with {lane.current} after {SETTLE_BOUND} s", self.log)

    @invariant()
    def lifecycle_invariants(self) -> None:
        if self.failing:
            return
        faulthandler.dump_traceback_later(MAIN_BOUND, exit=True)
        for vs in self.vs:
            for lane in vs.lanes.values():
                late = lane.overdue()
                if late is not None:
                    hang(f"lane {lane.name}: job {late!r} still running after {JOB_BOUND} s", self.log)
        self.raise_violations()
        for vs in self.vs:
            self.check_accounting(vs)
        self.raise_violations()
        faulthandler.cancel_dump_traceback_later()

    def raise_violations(self) -> None:
        with self._vlock:
            found, self._violations = self._violations, []
        if found:
            self.fail(f"{len(found)} violation(s):\n" + "\n\n".join(found))

    def check_accounting(self, vs: VState) -> None:
        """Exact where a lane is idle, bounds where it is busy (see the module docstring)."""
        for lane in vs.lanes.values():
            with lane.lock:
                idle, cancels = lane.pending == 0, list(lane.cancels)
                if idle:
                    lane.cancels.clear()
            if idle:
                for w, n in cancels:
                    if n != w.bytes_written:
                        self.violation(
                            f"{lane.name}: StreamWriter.cancel() returned {n}, bytes_written is "
                            f"{w.bytes_written} after the writer finished"
                        )
        if vs.status == "closed":
            return  # its counters are gone with it; checked against the snapshot in finalize()
        for ep in OUT_EPS:
            lane, model = vs.lanes[ep], vs.out[ep]
            idle = lane.idle  # read the model before the device: the device only ever gets ahead
            with vs.lock:
                known, length, crc, hold = model.known, len(model.data), model.crc, model.hold
            st = vs.vdev.endpoint(ep)._stats()  # count and CRC from one look
            got, dev_crc = st["received_bytes"], st["crc32"]
            where = f"{vs.name} 0x{ep:02X}"
            if not idle:
                if got < known:
                    self.violation(f"{where}: the library reported {known} bytes moved, the device has {got}")
                continue
            if hold is not None:
                moved = got - known
                if not 0 <= moved <= len(hold):
                    self.violation(f"{where}: a dropped StreamWriter of {len(hold)} bytes moved {moved}?")
                    moved = max(0, min(moved, len(hold)))
                lost = len(hold) - moved
                if lost and take_warning_naming(lost) is None:
                    self.violation(
                        f"{where}: a StreamWriter dropped without close() silently lost {lost} of the "
                        f"{len(hold)} bytes it was given (the device got {moved}; no ResourceWarning "
                        "named the loss)"
                    )
                with vs.lock:
                    model.resolve(moved)
                    length, crc = len(model.data), model.crc
            if got != length or dev_crc != crc:
                self.violation(
                    f"{where}: the library reported {length} bytes (CRC {crc:08x}) moved, "
                    f"the device received {got} (CRC {dev_crc:08x})"
                )
        if vs.vdev.endpoint(IN_EP).loopback_dropped:
            self.violation(f"{vs.name}: the loopback dropped data (test sizing)")
        self.check_reads(vs, exact=vs.lanes[IN_EP].idle)

    def check_reads(self, vs: VState, exact: bool) -> None:
        with vs.lock:
            if vs.read_gap:
                return
            written = vs.out[0x06].data
            n = min(len(vs.read), len(written))
            start, vs.read_checked = vs.read_checked, max(vs.read_checked, n)
            if vs.read[start:n] != written[start:n]:
                bad = next(i for i in range(start, n) if vs.read[i] != written[i])
                self.violation(f"{vs.name}: reads returned bytes that differ from what 0x06 took at offset {bad}")
            read_len, written_len, out_idle = len(vs.read), len(written), vs.out[0x06].hold is None
        if exact and vs.status != "closed":
            sent = vs.vdev.endpoint(IN_EP).sent_bytes
            if sent != read_len:
                self.violation(f"{vs.name}: reads reported {read_len} bytes, the IN endpoint sent {sent}")
            if out_idle and vs.lanes[0x06].idle and read_len > written_len:
                self.violation(f"{vs.name}: reads returned {read_len} bytes, more than the {written_len} written")

    def abandon(self) -> None:
        """After a failure: close everything if every lane comes back soon (so the next example,
        the replay, starts clean), else leave it all: a stuck thread may hold a device lock."""
        faulthandler.dump_traceback_later(MAIN_BOUND, exit=True)
        deadline = time.monotonic() + 2
        if all(lane.wait_idle(deadline) for vs in self.vs for lane in vs.lanes.values()):
            for vs in self.vs:
                for lane in vs.lanes.values():
                    lane.stop()
                for lane in vs.lanes.values():
                    lane.thread.join(1)
                self.close_all(vs)
            self.vs = []
            wait_for_completions(1)
        else:
            for vs in self.vs:
                for lane in vs.lanes.values():
                    lane.stop()
        faulthandler.cancel_dump_traceback_later()

    def close_all(self, vs: VState) -> None:
        for dev in vs.devices + vs.closed_devices:
            dev.close()
        for box, _pipes in vs.wdfs:
            WdfObjectDelete(box)
        vs.devices, vs.closed_devices, vs.wdfs, vs.deleted_wdfs = [], [], [], []
        vs.vdev.close()

    def finalize(self, vs: VState) -> None:
        """Settle, check exactly (or against the snapshot of a device closed under load), close all."""
        self.wait_idle([vs])
        self.check_accounting(vs)
        if vs.status == "closed" and vs.snapshot is not None:
            for ep in OUT_EPS:
                count, crc = vs.snapshot[ep]
                model = vs.out[ep]
                if model.hold is None or count <= len(model.data):
                    if len(model.data) < count:
                        self.violation(
                            f"{vs.name} 0x{ep:02X}: the device had {count} bytes when it was closed, "
                            f"the library reported {len(model.data)}"
                        )
                    elif zlib.crc32(model.data[:count]) != crc:
                        self.violation(
                            f"{vs.name} 0x{ep:02X}: what the library reported does not start with "
                            f"the {count} bytes the device had when it was closed"
                        )
            if not vs.read_gap and len(vs.read) < vs.snapshot[IN_EP][0]:
                self.violation(
                    f"{vs.name}: the IN endpoint had sent {vs.snapshot[IN_EP][0]} bytes when the device "
                    f"was closed, reads reported {len(vs.read)}"
                )
        self.raise_violations()
        for lane in vs.lanes.values():
            lane.stop()
        join_all([lane.thread for lane in vs.lanes.values()], SETTLE_BOUND, f"stopping the lanes of {vs.name}")
        self.close_all(vs)

    def teardown(self) -> None:
        if self.failing:
            self.abandon()
            return
        faulthandler.dump_traceback_later(MAIN_BOUND, exit=True)
        self.log.append("    teardown")
        states, self.vs = self.vs, []
        while states:  # native objects go with their Python owners: hold none of them here
            self.finalize(states.pop())
        if not wait_for_completions(JOB_BOUND):
            self.fail("completion routines still pending at teardown")
        deadline = time.monotonic() + 2
        while True:
            gc.collect()
            counts = (_engine.live_objects(), _engine.Transfer.live)
            if counts == self.start_counts or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        faulthandler.cancel_dump_traceback_later()
        if counts != self.start_counts:
            self.fail(f"(live_objects, Transfer.live) is {counts} after everything was closed, was {self.start_counts}")


def run_machine() -> None:
    """The child's side of test_stateful_transfer_lifecycle."""
    warnings.showwarning = _record_warning
    warnings.simplefilter("always", ResourceWarning)
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("WDFUSB_SHRINK") == "1" else [])
    common = dict(
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    machine: Any = LifecycleMachine
    if EXPLORE_EXAMPLES:
        chosen = int(os.environ.get("WDFUSB_SEED") or random.SystemRandom().randrange(2**32))
        print(
            f"exploring: {EXPLORE_EXAMPLES} examples, {STEPS} steps, WDFUSB_SEED={chosen}, ops={sorted(ENABLED)}",
            flush=True,
        )
        machine = hypothesis_seed(chosen)(LifecycleMachine)
        options = settings(max_examples=EXPLORE_EXAMPLES, derandomize=False, **common)
    else:
        print(f"CI: {CI_EXAMPLES} derandomized examples, {STEPS} steps, ops={sorted(ENABLED)}", flush=True)
        options = settings(max_examples=CI_EXAMPLES, derandomize=True, **common)
    run_state_machine_as_test(machine, settings=options)
    print("machine: every example passed", flush=True)


# ---- running children --------------------------------------------------------------------------


def run_child(scenario: str, limit: float, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run ``scenario`` of this file in a fresh interpreter; (exit code or None if killed, output)."""
    cmd = [sys.executable, "-X", "faulthandler", str(Path(__file__).resolve()), scenario]
    full_env = {**os.environ, **(env or {})}
    try:
        # the parent's working directory and environment: the ASan lane finds its build by a
        # relative PYTHONPATH and preloads the sanitizers, and the child must use the same
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=limit)
        return proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:

        def text(b: Any) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        return None, text(e.stdout) + text(e.stderr) + f"\n[killed after the hard limit of {limit} s]"


def describe(rc: int | None, output: str, tail: int = 250) -> str:
    if rc is None:
        how = "did not finish (hang)"
    elif rc < 0:
        how = f"died of {signal.Signals(-rc).name}"
    elif rc == HANG_EXIT:
        how = "found a hang (stacks below)"
    else:
        how = f"exited {rc}"
    lines = output.splitlines()
    marks = ("=== FAILED", "HANG:", "Fatal Python error", "==ERROR: AddressSanitizer", "Timeout (", "AssertionError")
    first = next((i for i, line in enumerate(lines) if line.startswith(marks) or "AddressSanitizer" in line), None)
    summary = "" if first is None else "first sign of the failure:\n" + "\n".join(lines[first : first + 12]) + "\n\n"
    shown = "\n".join(lines[-tail:])
    return f"the child {how}.\n{summary}its output{' (tail)' if len(lines) > tail else ''}:\n{shown}"


def expect_clean_child(scenario: str, limit: float) -> None:
    rc, output = run_child(scenario, limit)
    if rc != 0:
        pytest.fail(describe(rc, output), pytrace=False)


# ---- the stateful test ----------------------------------------------------------------------------


def test_stateful_transfer_lifecycle(tmp_path: Path) -> None:
    """The machine above, in a child process with a hard limit (see the module docstring)."""
    log = tmp_path / "steps.log"
    limit = float(os.environ.get("WDFUSB_EXPLORE_LIMIT") or (60 + 4 * EXPLORE_EXAMPLES if EXPLORE_EXAMPLES else 60))
    rc, output = run_child("machine", limit, {"WDFUSB_STATEFUL_LOG": str(log)})
    if rc != 0:
        steps = log.read_text() if log.exists() else "(no log)"
        pytest.fail(describe(rc, output) + "\n\nsteps of the last example run (log file):\n" + steps, pytrace=False)


# ---- regressions (commit 8602ea8) -------------------------------------------------------------------


def scenario_abort_while_two_threads_write() -> None:
    v = wdfusb.VirtualDevice(speed="high", loopback_capacity=0)
    dev = wdfusb.open(v)
    pipe = dev.pipe(0x06)
    block = b"x" * 8192
    stop = time.monotonic() + 2.0
    moved = [0, 0]
    bad: list[str] = []

    def writer(i: int) -> None:
        while time.monotonic() < stop:
            try:
                moved[i] += pipe.write(block, timeout=1)
            except LEGIT as e:
                moved[i] += e.bytes_transferred
            except BaseException as e:  # noqa: BLE001
                bad.append(repr(e))
                return

    def aborter() -> None:
        while time.monotonic() < stop:
            pipe.abort()

    threads = [threading.Thread(target=writer, args=(i,), name=f"writer{i}") for i in (0, 1)]
    threads.append(threading.Thread(target=aborter, name="aborter"))
    for t in threads:
        t.daemon = True
        t.start()
    join_all(threads, 6.0, "two writers and an aborter on one pipe")
    assert not bad, bad
    total, ep = sum(moved), v.endpoint(0x06)
    assert ep.received_bytes == total, (ep.received_bytes, total)
    assert ep.crc32 == crc_of_repeated(block, total)
    dev.close()
    v.close()


def test_regression_1_abort_while_two_threads_write_does_not_hang() -> None:
    """Two threads ``write(b"x" * 8192, timeout=1)`` in a loop, a third ``abort()`` in a loop,
    for 2 s at high speed: every thread finishes, and the bytes reported are the device's.

    On 8602ea8: hangs (a writer spins at 100% CPU in ``expire_queued()`` of
    backend_virtual.c holding the device lock; the aborter waits for that lock for ever).
    """
    expect_clean_child("abort_while_two_threads_write", 15)


def scenario_delete_and_close_under_first_transfers() -> None:
    deadline = time.monotonic() + 6
    bad: list[str] = []
    rounds = 0
    while rounds < 3000 and time.monotonic() < deadline and not bad:
        r = open_rig(None)
        pipe = r.pipes[0x88]

        def reader(pipe: Any = pipe) -> None:
            got = ULONG()
            try:
                status = WdfUsbTargetPipeReadSynchronously(
                    pipe, None, send_options(0.001), buffer_desc(bytearray(512)), got
                )
                if int(status) not in {int(STATUS_IO_TIMEOUT), int(STATUS_CANCELLED), *GONE} or got.value:
                    bad.append(f"{status!r} with BytesRead={got.value}")
            except WdfBugCheck:
                pass  # the pipe was deleted first: the documented outcome
            except BaseException as e:  # noqa: BLE001
                bad.append(repr(e))

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        WdfObjectDelete(r.device)
        r.vdev.close()
        join_all(threads, 5, f"round {rounds}: readers after WdfObjectDelete + VirtualDevice.close")
        rounds += 1
    assert not bad, f"round {rounds}: {bad}"
    print(f"{rounds} rounds")


def test_regression_2_delete_and_close_while_threads_start_transfers() -> None:
    """Two threads start their first synchronous transfer (a 1 ms
    ``WdfUsbTargetPipeReadSynchronously`` on 0x88) while the main thread runs
    ``WdfObjectDelete(usbDevice)`` then ``VirtualDevice.close()``; 3,000 rounds (or 6 s).
    Each read returns a time-out, cancelled or device-gone status, or bug-checks on the
    deleted pipe.

    On 8602ea8: SIGSEGV in the first rounds (``wu_xfer_new`` on the freed native device,
    from ``CorePipe._thread_transfer``), or ``MemoryError: wu_xfer_new failed``.
    """
    expect_clean_child("delete_and_close_under_first_transfers", 20)


@pytest.mark.parametrize("speed", [None, "high"])
def test_regression_3a_device_closed_after_the_writers_chunks_finished(speed: str | None) -> None:
    """A StreamWriter queued three whole chunks, they finished on the bus, then its Device was
    closed: ``close()`` either succeeds or raises, and the count it gives is what the device got.

    On 8602ea8: ``DeviceGoneError`` with ``bytes_transferred`` 0 (and ``bytes_written`` 0)
    while the device received all 12,288 bytes (the closed device freed the ring's transfers
    before they were retired).
    """
    v = wdfusb.VirtualDevice(speed=speed, loopback_capacity=0)
    dev = wdfusb.open(v)
    data = payload(3, 3 * 4096)
    try:
        w = dev.pipe(0x06).writer(depth=4, chunk=4096)
        w.write(bytearray(data))  # three whole chunks, submitted at once
        time.sleep(0.05)  # ~0.25 ms of bus time at high speed: all three are due
        dev.close()
        ep = v.endpoint(0x06)
        assert ep.received_bytes == len(data) and ep.crc32 == zlib.crc32(data)
        try:
            w.close()
            reported = w.bytes_written
        except wdfusb.UsbError as e:
            assert isinstance(e, LEGIT), e
            assert e.bytes_transferred == w.bytes_written, (e.bytes_transferred, w.bytes_written)
            reported = e.bytes_transferred
        assert reported == ep.received_bytes, (
            f"reported {reported} bytes written, the device received {ep.received_bytes}"
        )
    finally:
        dev.close()
        v.close()


@pytest.mark.parametrize("speed", [None, "high"])
def test_regression_3b_device_closed_from_another_thread_mid_write(speed: str | None) -> None:
    """A thread streams (copied and zero-copy writes alternately) while the main thread closes
    the Device: the error's ``bytes_transferred`` == ``bytes_written`` == the device's count.

    On 8602ea8: the first trial already reports fewer bytes than the device received (one
    to three 4 KiB chunks short: transfers that were back but not yet retired when the close
    freed them).
    """
    rng = random.Random(7)
    for trial in range(12):
        v = wdfusb.VirtualDevice(speed=speed, loopback_capacity=0)
        dev = wdfusb.open(v)
        w = dev.pipe(0x06).writer(depth=4, chunk=4096)
        piece = payload(trial, 3000)
        copy = trial % 2 == 0

        def run(w: Any = w, piece: bytes = piece, copy: bool = copy) -> int:
            for _ in range(3000):
                w.write(bytearray(piece) if copy else piece * 4)
            w.flush()
            return w.bytes_written

        t, out = in_thread(run)
        time.sleep(0.002 + rng.random() * 0.01)
        dev.close()
        joined(t, 10)
        try:
            w.close()
        except wdfusb.UsbError:
            pass
        got = v.endpoint(0x06).received_bytes
        result = out[0]
        v.close()
        if isinstance(result, BaseException):
            assert isinstance(result, LEGIT), repr(result)
            assert (result.bytes_transferred, w.bytes_written) == (got, got), (
                f"trial {trial} (copy={copy}): {type(result).__name__} says {result.bytes_transferred} bytes, "
                f"bytes_written {w.bytes_written}, the device received {got}"
            )
        else:
            assert result == w.bytes_written == got, (trial, result, w.bytes_written, got)


@pytest.mark.parametrize("speed", [None, "high"])
def test_regression_4_stream_writer_dropped_without_close_is_not_silent(speed: str | None) -> None:
    """A StreamWriter given 10,000 bytes (two 4 KiB chunks in flight, 1,808 buffered) and dropped
    without ``close()``: either the device gets all of it, or a ResourceWarning names the bytes lost.

    On 8602ea8: no warning at all; the device has 8,192 bytes (unpaced) or fewer (high speed).
    """
    v = wdfusb.VirtualDevice(speed=speed, loopback_capacity=0)
    dev = wdfusb.open(v)
    data = payload(4, 10_000)
    try:
        w = dev.pipe(0x06).writer(depth=4, chunk=4096)
        w.write(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del w
            gc.collect()
        ep = v.endpoint(0x06)
        got = ep.received_bytes
        assert ep.crc32 == zlib.crc32(data[:got]), "the device got something other than a prefix"
        lost = len(data) - got
        texts = [str(c.message) for c in caught if issubclass(c.category, ResourceWarning)]
        named = [t for t in texts if re.search(rf"(?<![\d.]){lost}(?![\d.])", t.replace(",", "").replace("_", ""))]
        assert lost == 0 or named, (
            f"the dropped writer silently lost {lost} of {len(data)} bytes (the device got {got}); "
            f"ResourceWarnings: {texts}"
        )
    finally:
        dev.close()
        v.close()


def scenario_wait_for_completions_in_a_routine() -> None:
    r = open_rig(None)
    pipe = r.pipes[0x06]
    target = WdfUsbTargetPipeGetIoTarget(pipe)
    inside: list[tuple[str, Any, float]] = []
    first, second = threading.Event(), threading.Event()

    def waiting_routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        t0 = time.monotonic()
        try:
            inside.append(("returned", wait_for_completions(None), time.monotonic() - t0))
        except Exception as e:  # noqa: BLE001 - refusing by raising is one correct answer
            inside.append(("raised", e, time.monotonic() - t0))
        first.set()

    def later_routine(Request: Any, Target: Any, Params: Any, Context: Any) -> None:
        second.set()

    objs = []
    for routine in (waiting_routine, later_routine):
        status, req = make_request(pipe)
        mem = new_memory(b"w" * 512)
        assert status == STATUS_SUCCESS
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
        WdfRequestSetCompletionRoutine(req, routine, None)
        assert WdfRequestSend(req, target, None)
        objs += [req, mem]
        if routine is waiting_routine:
            assert first.wait(3), "wait_for_completions() inside a completion routine did not return in 3 s (deadlock)"
    kind, value, took = inside[0]
    assert kind == "raised" or not value, f"it returned {value!r} inside a routine that is itself pending"
    assert took < 1, f"it took {took:.2f} s to refuse"
    assert second.wait(3), "a later completion routine never ran"
    assert wait_for_completions(3)
    for obj in objs:
        WdfObjectDelete(obj)
    WdfObjectDelete(r.device)
    r.vdev.close()


def test_regression_5_wait_for_completions_inside_a_completion_routine() -> None:
    """``wait_for_completions()`` called inside a completion routine refuses at once (raises, or
    returns a failure) and later completion routines still run.

    On 8602ea8: deadlock: the call waits for its own routine to finish; the completion thread
    is stuck for ever and no later routine runs (the child reports it after 3 s).
    """
    expect_clean_child("wait_for_completions_in_a_routine", 20)


def test_regression_6a_stream_writer_of_a_closed_device_sends_nothing() -> None:
    """After ``Device.close()``, a StreamWriter made from one of its pipes sends nothing and
    fails with ``DeviceGoneError`` (0 bytes), like ``pipe.write``.

    On 8602ea8: the writer sends all 10,000 bytes and reports success.
    """
    v = wdfusb.VirtualDevice(speed=None, loopback_capacity=0)
    dev = wdfusb.open(v)
    pipe = dev.pipe(0x06)
    dev.close()
    errors: list[BaseException] = []
    try:
        w = pipe.writer(depth=2, chunk=4096)
        try:
            w.write(payload(6, 10_000))
            w.flush()
        finally:
            w.close()
    except wdfusb.UsbError as e:
        errors.append(e)
    got = v.endpoint(0x06).received_bytes
    v.close()
    assert got == 0, f"a StreamWriter of a closed Device sent {got} bytes"
    assert errors and isinstance(errors[0], wdfusb.DeviceGoneError) and errors[0].bytes_transferred == 0, errors


def test_regression_6b_pipe_calls_after_virtual_device_close_are_device_gone() -> None:
    """After ``VirtualDevice.close()``, ``pipe.write``/``pipe.read``/``pipe.writer`` of a Device
    opened on it raise ``DeviceGoneError`` (0 bytes), from the opening thread and a new one.

    On 8602ea8: ``MemoryError: wu_xfer_new failed`` (a pipe's first transfer on a thread is
    created on the closed native device).
    """
    v = wdfusb.VirtualDevice(speed=None)
    dev = wdfusb.open(v)
    v.close()
    calls: dict[str, Callable[[], Any]] = {
        "write": lambda: dev.pipe(0x06).write(b"a" * 100, timeout=1),
        "read": lambda: dev.pipe(0x88).read(512, timeout=0.01),
        "writer": lambda: dev.pipe(0x06).writer(depth=2, chunk=4096).close(),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(wdfusb.DeviceGoneError) as err:
                call()
            assert err.value.bytes_transferred == 0, name
            t, out = in_thread(call)
            joined(t, 5)
            assert isinstance(out[0], wdfusb.DeviceGoneError), f"{name} from a new thread: {out[0]!r}"
    finally:
        dev.close()


def scenario_async_request_after_fork() -> None:
    r = open_rig(None)
    pipe = r.pipes[0x06]

    def send_one(data: bytes, bound: float) -> tuple[bool, Any, float, bool]:
        t0 = time.monotonic()
        status, req = make_request(pipe)
        if not NT_SUCCESS(status):  # refused already when the request is made for the target
            return False, status, time.monotonic() - t0, False
        mem = new_memory(data)
        assert WdfUsbTargetPipeFormatRequestForWrite(pipe, req, mem, None) == STATUS_SUCCESS
        done = threading.Event()
        WdfRequestSetCompletionRoutine(req, lambda *a: done.set(), None)
        t0 = time.monotonic()
        sent = WdfRequestSend(req, WdfUsbTargetPipeGetIoTarget(pipe), None)
        completed = done.wait(bound) if sent else False
        return sent, WdfRequestGetStatus(req), time.monotonic() - t0, completed

    sent, status, _, completed = send_one(b"p" * 512, 3)  # the parent uses the device: its threads run
    assert sent and completed and status == STATUS_SUCCESS
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code (no watchdog thread survives a fork)
        code = 0
        try:
            sent, status, took, completed = send_one(b"c" * 512, 3)
            if sent and not completed:
                print(
                    f"forked child: WdfRequestSend returned True, no completion in {took:.1f} s; status {status!r}",
                    flush=True,
                )
                code = 10
            elif not sent and (NT_SUCCESS(status) or took > 1):
                print(f"forked child: refused with {status!r} after {took:.2f} s", flush=True)
                code = 11
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 12
        sys.stdout.flush()
        os._exit(code)
    deadline = time.monotonic() + 10
    while True:
        done_pid, wstatus = os.waitpid(pid, os.WNOHANG)
        if done_pid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung")
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(wstatus)
    assert code == 0, f"the forked child exited {code}"
    WdfObjectDelete(r.device)
    r.vdev.close()


def test_regression_7_async_request_after_fork_completes_or_fails() -> None:
    """After ``os.fork()``, an asynchronous request on a device opened (and used) before the
    fork either completes or is refused at once with a clear status, in the child.

    On 8602ea8: ``WdfRequestSend`` returns True and the request never completes nor fails
    (the device's event thread did not survive the fork; the engine still thinks it runs).
    """
    expect_clean_child("async_request_after_fork", 25)


# ---- further bugs the machine found on 8602ea8 -------------------------------------------------------


def test_further_a_read_that_times_out_keeps_the_bytes_it_got() -> None:
    """``pipe.read(size)`` that times out after some bytes arrived raises ``UsbTimeoutError``
    whose ``.data`` holds them (CONTRACT §7), so no byte of the stream is lost.

    Found by the machine (a ``read`` step at high speed). On 8602ea8: the error has
    ``bytes_transferred`` 52,736 and no ``.data``: those bytes are gone (``Pipe.read``
    drops its bytearray when ``readinto`` raises).
    """
    v = wdfusb.VirtualDevice(speed="high")
    dev = wdfusb.open(v)
    data = payload(8, 256 << 10)
    try:
        assert dev.pipe(0x06).write(data, timeout=5) == len(data)
        with pytest.raises(wdfusb.UsbTimeoutError) as err:
            dev.pipe(0x88).read(len(data), timeout=0.001)  # ~1 ms of 5 ms of bus time
        n = err.value.bytes_transferred
        assert 0 < n < len(data) and v.endpoint(0x88).sent_bytes == n
        got = getattr(err.value, "data", None)
        assert got is not None, f"UsbTimeoutError says {n} bytes were read and has no .data: they are lost"
        assert bytes(got) == data[:n]
        rest = bytearray(len(data) - n)
        assert dev.pipe(0x88).readinto(rest, timeout=5) == len(rest) and bytes(rest) == data[n:]
    finally:
        dev.close()
        v.close()


def test_further_b_wdf_calls_after_virtual_device_close_return_a_status() -> None:
    """After ``VirtualDevice.close()``, the WDF calls on a WDFUSBDEVICE opened on it return a
    device-gone status (or ``STATUS_INVALID_DEVICE_STATE``) — the WDF layer raises nothing but
    ``WdfBugCheck`` (CONTRACT §2) and it is not an allocation failure.

    Found by the machine (``vclose`` then WDF writes). On 8602ea8: from a thread that did not
    use the pipe yet, ``WdfUsbTargetPipeWriteSynchronously`` raises ``MemoryError: wu_xfer_new
    failed``; ``WdfRequestCreate`` for the pipe returns ``STATUS_INSUFFICIENT_RESOURCES``
    (the root cause of regression 6b, seen through the WDF layer).
    """
    r = open_rig(None)
    r.vdev.close()
    pipe = r.pipes[0x06]
    allowed = {*GONE, int(STATUS_INVALID_DEVICE_STATE)}

    def write() -> tuple[NTSTATUS, int]:
        n = ULONG(99)
        return WdfUsbTargetPipeWriteSynchronously(pipe, None, None, buffer_desc(b"a" * 64), n), n.value

    try:
        t, out = in_thread(write)
        joined(t, 5)
        assert isinstance(out[0], tuple), f"WdfUsbTargetPipeWriteSynchronously raised {out[0]!r}"
        status, n = out[0]
        assert int(status) in allowed and n == 0, (status, n)
        status, _req = make_request(pipe)
        assert int(status) in allowed, f"WdfRequestCreate for a pipe of a closed device: {status!r}"
    finally:
        WdfObjectDelete(r.device)


SCENARIOS: dict[str, Callable[[], None]] = {
    "machine": run_machine,
    "abort_while_two_threads_write": scenario_abort_while_two_threads_write,
    "delete_and_close_under_first_transfers": scenario_delete_and_close_under_first_transfers,
    "wait_for_completions_in_a_routine": scenario_wait_for_completions_in_a_routine,
    "async_request_after_fork": scenario_async_request_after_fork,
}


def child_main(argv: list[str]) -> None:
    faulthandler.enable()
    try:
        SCENARIOS[argv[0]]()
    except BaseException:  # noqa: BLE001 - report, then leave without waiting for stuck threads
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()


if __name__ == "__main__":
    child_main(sys.argv[1:])
