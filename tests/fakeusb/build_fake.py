"""Build the fake libusb (tests/fakeusb/fakeusb.c) into build/fakeusb/libfakeusb.so.

    python tests/fakeusb/build_fake.py      # prints the library's path

Rebuilt only when the source is newer than the library; the new library is written
under a temporary name and renamed into place, so concurrent builds never see half a
file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = HERE / "fakeusb.c"
OUT_DIR = ROOT / "build" / "fakeusb"
LIBRARY = OUT_DIR / "libfakeusb.so"
CFLAGS = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-pthread"]
CFLAGS += ["-fvisibility=hidden"]


def build(force: bool = False) -> Path:
    """The path of an up-to-date libfakeusb.so (compiled with ``$CC``, default gcc)."""
    if not force and LIBRARY.exists() and LIBRARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return LIBRARY
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise RuntimeError(f"the fake libusb needs a C compiler: {cc!r} not found (set CC)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".libfakeusb-", suffix=".so", dir=OUT_DIR)
    os.close(fd)
    try:
        res = subprocess.run([cc, *CFLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"building the fake libusb failed:\n{res.stdout}{res.stderr}")
        os.replace(tmp, LIBRARY)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return LIBRARY


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
