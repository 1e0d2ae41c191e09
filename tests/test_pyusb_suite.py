"""pyusb's own test suite against wdfusb's pyusb backend, on the "pyusb-benchmark" virtual device.

pyusb ships its tests in its sdist (not in the wheel): they are fetched once, for the pyusb
version installed, into wdfusb's cache. pyusb's ``get_suite()`` functions pick their backends
themselves and quietly drop every hardware test when no device is found, so the hardware suites
are built here, with wdfusb's backend, and the number of tests that ran is asserted (a run that
executes nothing fails). Its isochronous cases move their data too (the device's third
alternate setting loops isochronous OUT back to IN).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
from collections.abc import Iterator
from pathlib import Path

import pytest
import usb

import wdfusb
import wdfusb.pyusb

HARDWARE = ("test_backend", "test_integration", "test_control", "test_legacy")
PURE = ("test_find", "test_util", "test_interop")


def pyusb_tests_dir() -> Path:
    """pyusb's tests/ of the installed version, from its sdist (downloaded once)."""
    cache = Path(os.environ.get("WDFUSB_CACHE", Path.home() / ".cache" / "wdfusb")) / f"pyusb-{usb.__version__}"
    tests = cache / "tests"
    if not (tests / "devinfo.py").exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                 f"pyusb=={usb.__version__}", "-d", tmp],
                check=True, timeout=300,
            )  # fmt: skip
            (sdist,) = Path(tmp).glob("pyusb-*.tar.gz")
            with tarfile.open(sdist) as tar:
                members = [m for m in tar.getmembers() if "/tests/" in m.name and m.isfile()]
                for m in members:
                    m.name = m.name.split("/tests/", 1)[1]
                tests.mkdir(parents=True, exist_ok=True)
                tar.extractall(tests, members, filter="data")
    return tests


@pytest.fixture(scope="module")
def pyusb_tests() -> Iterator[dict[str, object]]:
    """pyusb's test modules, loaded from its tests/ under names of their own (wdfusb has a
    test_control too); their own imports (utils, devinfo) resolve in that directory."""
    tests = pyusb_tests_dir()
    sys.path.insert(0, str(tests))
    loaded = {}
    try:
        for name in (*HARDWARE, *PURE, "devinfo"):
            spec = importlib.util.spec_from_file_location(f"pyusb_tests_{name}", tests / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        yield loaded
    finally:
        sys.path.remove(str(tests))
        for name in ("devinfo", "utils"):
            sys.modules.pop(name, None)


def run(suite: unittest.TestSuite) -> unittest.TestResult:
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    assert result.wasSuccessful(), [str(e[1]) for e in result.errors + result.failures]
    return result


def test_pyusbs_hardware_suites_pass_on_the_benchmark_device(pyusb_tests: dict[str, object]) -> None:
    m = pyusb_tests
    with wdfusb.VirtualDevice("high", profile="pyusb-benchmark") as vdev:
        backend = wdfusb.pyusb.get_backend(vdev)
        devinfo = m["devinfo"]

        def find() -> object:
            dev = usb.core.find(backend=backend, idVendor=devinfo.ID_VENDOR, idProduct=devinfo.ID_PRODUCT)  # type: ignore[attr-defined]
            assert dev is not None
            return dev

        suite = unittest.TestSuite()
        suite.addTest(m["test_backend"].BackendTest(backend))  # type: ignore[attr-defined]
        integration = m["test_integration"]
        for case in (integration.DeviceTest, integration.ConfigurationTest,  # type: ignore[attr-defined]
                     integration.InterfaceTest, integration.EndpointTest):  # type: ignore[attr-defined]  # fmt: skip
            suite.addTest(case(find()))
        suite.addTest(m["test_control"].ControlTest(find()))  # type: ignore[attr-defined]
        wdfusb.pyusb.install(vdev)  # the legacy API finds devices through pyusb's default backend
        try:
            suite.addTest(m["test_legacy"].LegacyTest())  # type: ignore[attr-defined]
            result = run(suite)
        finally:
            wdfusb.pyusb.uninstall()
        assert result.testsRun == 7
        # the tests moved data through the device: bulk, interrupt and isochronous both ways
        # (each pair loops OUT back to IN, so what came back is what went out), EP0 both ways
        for ep in (0x01, 0x02, 0x03):
            received = vdev.endpoint(ep).received_bytes
            assert received > 0 and vdev.endpoint(ep | 0x80).sent_bytes == received, hex(ep)
        assert vdev.function.buffer  # pyusb's vendor buffer requests reached the device


def test_pyusbs_pure_suites_pass(pyusb_tests: dict[str, object]) -> None:
    suite = unittest.TestSuite(m.get_suite() for m in (pyusb_tests[n] for n in PURE))  # type: ignore[attr-defined]
    expected = suite.countTestCases()
    assert expected >= 10
    assert run(suite).testsRun == expected
