"""Finding libusb: the wheel's by default, WDFUSB_LIBUSB to override, a clear error when none loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import libusb_package

PROBE = """
import json, wdfusb
from wdfusb import _engine
out = {"virtual": None, "error": None, "path": None, "version": None}
v = wdfusb.VirtualDevice(speed=None)
with wdfusb.open(v) as d:
    out["virtual"] = d.pipe(0x06).write(b"still works")
try:
    wdfusb.list_devices()
    out["path"], out["version"] = _engine.libusb_path(), _engine.libusb_version()
except wdfusb.LibusbNotFoundError as e:
    out["error"] = str(e)
    out["status"] = int(e.status)
print(json.dumps(out))
"""


def probe(env_value: str | None) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("WDFUSB_LIBUSB", None)
    if env_value is not None:
        env["WDFUSB_LIBUSB"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_default_is_the_libusb_package_wheel() -> None:
    out = probe(None)
    assert out["path"] == str(libusb_package.get_library_path())
    assert str(out["version"]).startswith("1.0.")


def test_override_picks_another_library(tmp_path: Path) -> None:
    copy = tmp_path / "libusb-override.so"
    shutil.copy(str(libusb_package.get_library_path()), copy)
    out = probe(str(copy))
    assert out["path"] == str(copy)


def test_missing_library_names_every_path_and_virtual_still_works(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-libusb.so")
    out = probe(missing)
    assert out["virtual"] == len(b"still works")
    assert out["path"] is None
    assert missing in str(out["error"]) and "WDFUSB_LIBUSB" in str(out["error"])
    assert out["status"] == 0xC0000135


def test_a_library_that_is_not_libusb_is_refused(tmp_path: Path) -> None:
    import ctypes.util

    libm = ctypes.util.find_library("m") or "libm.so.6"
    out = probe(libm)
    assert "not a usable libusb-1.0" in str(out["error"])


def test_candidates_without_override_start_with_the_wheel(monkeypatch: object) -> None:
    from wdfusb import _engine

    saved = os.environ.pop("WDFUSB_LIBUSB", None)
    try:
        assert _engine.libusb_candidates()[0] == str(libusb_package.get_library_path())
    finally:
        if saved is not None:
            os.environ["WDFUSB_LIBUSB"] = saved
