"""The fake-libusb lane: wdfusb's libusb backend (csrc/backend_libusb.c) against a scripted
fake libusb (fakeusb.c), loaded through WDFUSB_LIBUSB. No QEMU, no USB hardware.

Why a second interpreter: the engine loads libusb once per process and never again, so
these tests cannot share an interpreter with the rest of the unit suite (which loads the
real libusb, or none). The lane therefore runs in a fresh one:

* In any ordinary pytest run (``make unit``, ``make fakeusb``, ``pytest tests``) this
  directory's tests are collected as usual and each reports the outcome of its twin in a
  child interpreter. The first of them builds ``build/fakeusb/libfakeusb.so`` and runs
  ``python -m pytest <every selected test of the module>`` once, with
  ``WDFUSB_LIBUSB=<the fake>`` and ``WDFUSB_FAKEUSB_CHILD=1``; a failure is shown with the
  child's own report. A child that crashes or hangs (a per-test watchdog,
  ``WDFUSB_FAKEUSB_TEST_TIMEOUT`` seconds, dumps every thread's stack and exits) fails the
  test it was running, with its stderr, and a new child runs the tests left.
* In the child (``WDFUSB_FAKEUSB_CHILD=1``) the tests run for real. Running
  ``WDFUSB_FAKEUSB_CHILD=1 WDFUSB_LIBUSB=build/fakeusb/libfakeusb.so pytest tests/fakeusb``
  by hand does the same without the parent.

The fixtures below do nothing in the parent, so nothing there touches libusb.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_fake  # noqa: E402

CHILD = os.environ.get("WDFUSB_FAKEUSB_CHILD") == "1"
TEST_TIMEOUT_S = float(os.environ.get("WDFUSB_FAKEUSB_TEST_TIMEOUT", "120"))
LANE_TIMEOUT_S = 1800.0
_REPORT = os.environ.get("WDFUSB_FAKEUSB_REPORT")


def _in_lane(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().parent == HERE


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakeusb: the libusb backend against the fake libusb (tests/fakeusb, runs in a child interpreter)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_lane(item):
            item.add_marker(pytest.mark.fakeusb)


# ---- the parent: run the module in a child interpreter, report each test's outcome ----------------

_selected: dict[Path, list[str]] = {}
_results: dict[Path, dict[str, dict[str, str]]] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        if _in_lane(item):
            _selected.setdefault(Path(str(item.path)), []).append(item.name)


def _run_child(config: pytest.Config, module: Path, names: list[str], all_selected: bool) -> dict[str, dict[str, str]]:
    """Run ``names`` of ``module`` in child interpreters until each has an outcome."""
    lib = build_fake.build()
    results: dict[str, dict[str, str]] = {}
    left = list(names)
    deadline = time.monotonic() + LANE_TIMEOUT_S
    while left:
        fd, report = tempfile.mkstemp(prefix="fakeusb-report-", suffix=".json", dir=build_fake.OUT_DIR)
        os.close(fd)
        env = dict(os.environ, WDFUSB_LIBUSB=str(lib), WDFUSB_FAKEUSB_CHILD="1", WDFUSB_FAKEUSB_REPORT=report)
        targets = [str(module)] if all_selected and left == names else [f"{module}::{n}" for n in left]
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
        cmd += [f"--rootdir={config.rootpath}"] + ([f"-c={config.inipath}"] if config.inipath else []) + targets
        timed_out = False
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=max(1.0, deadline - time.monotonic())
            )
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            timed_out, rc = True, -9
            stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        try:
            data = json.loads(Path(report).read_text() or "{}")
        except (OSError, ValueError):
            data = {}
        stacks_file = Path(report + ".stacks")
        stacks = stacks_file.read_text(errors="replace") if stacks_file.exists() else ""
        for leftover in (Path(report), stacks_file):
            leftover.unlink(missing_ok=True)
        results.update(data.get("results", {}))
        running = data.get("running")
        missing = [n for n in left if n not in results]
        if not missing:
            break
        why = "timed out" if timed_out else f"exited with status {rc}"
        tail = f"\n---- child stdout (tail) ----\n{stdout[-6000:]}\n---- child stderr (tail) ----\n{stderr[-12000:]}"
        if stacks.strip():
            tail += f"\n---- every thread's stack when the watchdog fired ({TEST_TIMEOUT_S:g} s) ----\n{stacks}"
        if running in missing:
            results[running] = {
                "outcome": "failed",
                "text": f"the fake-libusb interpreter {why} during this test{tail}",
            }
        else:  # died outside any test (collection, start-up): nothing more will run
            for n in missing:
                results[n] = {"outcome": "failed", "text": f"the fake-libusb interpreter {why} before this test{tail}"}
        if timed_out:
            for n in left:
                results.setdefault(n, {"outcome": "failed", "text": "not run: the lane's time limit was reached"})
        left = [n for n in left if n not in results]
    return results


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if CHILD or not _in_lane(pyfuncitem):
        return None
    module = Path(str(pyfuncitem.path))
    if module not in _results:
        names = _selected.get(module, [pyfuncitem.name])
        all_selected = len(names) == len([i for i in pyfuncitem.session.items if Path(str(i.path)) == module])
        _results[module] = _run_child(pyfuncitem.config, module, names, all_selected)
    res = _results[module].get(pyfuncitem.name)
    if res is None:
        pytest.fail("the fake-libusb interpreter reported nothing for this test", pytrace=False)
    if res["outcome"] == "skipped":
        pytest.skip(res["text"])
    if res["outcome"] != "passed":
        pytest.fail(f"[in the fake-libusb interpreter]\n{res['text']}", pytrace=False)
    return True


# ---- the child: a report the parent reads, a watchdog per test ------------------------------------

_child_results: dict[str, dict[str, str]] = {}
_child_running: str | None = None


def _write_report() -> None:
    if not _REPORT:
        return
    tmp = _REPORT + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"results": _child_results, "running": _child_running}, f)
    os.replace(tmp, _REPORT)


def _name(nodeid: str) -> str:
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


if CHILD:

    def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
        global _child_running
        _child_running = _name(nodeid)
        _write_report()

    def pytest_runtest_logreport(report: pytest.TestReport) -> None:
        name = _name(report.nodeid)
        cur = _child_results.get(name, {"outcome": "passed", "text": ""})
        if report.failed:
            text = f"({report.when}) {report.longreprtext}"
            for title, content in report.sections:
                text += f"\n---- {title} ----\n{content}"
            cur = {"outcome": "failed", "text": (cur["text"] + "\n" if cur["outcome"] == "failed" else "") + text}
        elif report.skipped and cur["outcome"] == "passed":
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            cur = {"outcome": "skipped", "text": reason}
        if report.when == "teardown":
            _child_results[name] = cur
            _write_report()
        else:
            _child_results[name] = cur

    # pytest captures stderr: the watchdog writes the stacks where the parent looks for them
    _stacks = open(_REPORT + ".stacks", "w") if _REPORT else sys.__stderr__

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        faulthandler.dump_traceback_later(TEST_TIMEOUT_S, exit=True, file=_stacks)  # a hang: every stack, exit
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()


# ---- fixtures (no-ops in the parent) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def fake() -> Any:
    """The fake libusb's control (fakectl.Fake); None in the parent."""
    if not CHILD:
        return None
    import fakectl

    from wdfusb import _engine

    path = os.environ["WDFUSB_LIBUSB"]
    _engine.ensure_libusb()
    assert _engine.libusb_path() == path, "the shim did not load the fake libusb"
    return fakectl.Fake(path)


@pytest.fixture
def gz(fake: Any) -> Iterator[Any]:
    """Gadget Zero (0525:a4a0) opened and configured: bulk OUT 0x01, bulk IN 0x81; None in the parent."""
    if fake is None:  # the parent interpreter: the test runs in the child
        yield None
        return
    import fakectl

    import wdfusb

    with wdfusb.open(vid=fakectl.GZ_VID, pid=fakectl.GZ_PID) as dev:
        yield dev


@pytest.fixture(autouse=True)
def lane_guard(fake: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts on a reset fake and must leave nothing behind: no transfer in flight
    in the fake, native objects back to their starting count, no handle open, no interface
    claimed, no device list unfreed, no misuse of libusb."""
    if fake is None:
        yield
        return
    from wdfusb import _engine
    from wdfusb.wdf import wait_for_completions

    fake.wait(lambda: fake.in_flight() == 0, 10, "nothing in flight before the test")
    assert fake.reset() == 0
    # what an earlier test's threads still held goes first (native objects go with their owners)
    settle_by = time.monotonic() + 5
    gc.collect()
    while _engine.live_objects() and time.monotonic() < settle_by:
        time.sleep(0.01)
        gc.collect()
    before = _engine.live_objects()
    yield
    assert wait_for_completions(10)
    # native objects are freed with their Python objects (closing ends their I/O): let go of
    # the test's fixture values (a Device the test used) before counting
    request.node.funcargs.clear()
    problems = []
    deadline = time.monotonic() + 10
    while True:
        gc.collect()
        g = fake.glob()
        live = _engine.live_objects()
        settled = g["in_flight"] == 0 and live == before and g["open_handles"] == 0
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if g["in_flight"]:
        problems.append(f"{g['in_flight']} transfer(s) still in flight in the fake")
    if live != before:
        problems.append(f"wdfusb._engine.live_objects() is {live}, was {before} before the test")
    for key in ("open_handles", "claimed", "device_lists"):
        if g[key]:
            problems.append(f"{key} = {g[key]} after the test")
    if fake.violations():
        problems.append(f"libusb misuse counted by the fake: {fake.violations()}")
    assert not problems, "; ".join(problems)
