"""The native module: built, loadable, version-checked, and its CRC agrees with zlib."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

import wdfusb
from wdfusb import _engine


def test_native_module_exports_only_ffi_and_lib() -> None:
    import wdfusb._native as native

    public = {n for n in dir(native) if not n.startswith("_")}
    assert public == {"ffi", "lib"}


def test_version_compiled_in_matches_package() -> None:
    assert _engine.ffi.string(_engine.lib.wu_shim_version()).decode() == wdfusb.__version__


def test_version_mismatch_refuses_import() -> None:
    code = (
        "import importlib, wdfusb, wdfusb._engine.native as e\n"
        "wdfusb.__version__ = '0.0.0-stale'\n"
        "try:\n    importlib.reload(e)\nexcept ImportError as x:\n    print('refused:', x)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused:" in out.stdout and "0.0.0-stale" in out.stdout, out.stderr


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 4095, 1 << 20])
def test_shim_crc32_equals_zlib(size: int) -> None:
    data = os.urandom(size)
    assert _engine.crc32(data) == zlib.crc32(data)
    assert _engine.crc32(data[size // 2 :], _engine.crc32(data[: size // 2])) == zlib.crc32(data)


def test_sizeof_check_passes() -> None:
    assert _engine.lib.wu_sizeof_check() == 0
