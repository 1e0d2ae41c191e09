"""Builds wdfusb's private extension module ``wdfusb._native`` with cffi (API mode, out-of-line).

The shim's public header ``csrc/wdfusb_shim.h`` is the cffi ``cdef`` verbatim, so
the declarations Python sees and the C sources cannot drift. The package version is
compiled in (``WU_VERSION``) and checked when wdfusb is imported.

Extra C flags come from ``WDFUSB_CFLAGS`` / ``WDFUSB_LDFLAGS`` (the sanitizer build uses them).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
SOURCES = ["engine.c", "ring.c", "platform.c", "backend_libusb.c", "backend_virtual.c", "hotplug.c"]


def package_version() -> str:
    text = (HERE / "wdfusb" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise RuntimeError("wdfusb/__init__.py has no __version__")
    return match.group(1)


def make_ffi(absolute: bool = False) -> FFI:
    """The builder; ``absolute=True`` for ``ffi.compile()`` (which runs in its temporary directory)."""

    def path(p: Path) -> str:
        return str(p) if absolute else str(p.relative_to(HERE))

    ffi = FFI()
    ffi.cdef((CSRC / "wdfusb_shim.h").read_text())
    extra_compile = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    libraries: list[str] = []
    if sys.platform == "win32":
        extra_compile = ["/O2"]
    else:
        libraries = ["dl", "pthread", "m"] if sys.platform.startswith("linux") else ["pthread", "m"]
        extra_compile.append("-D_GNU_SOURCE")
    extra_compile += shlex.split(os.environ.get("WDFUSB_CFLAGS", ""))
    ffi.set_source(
        "wdfusb._native",
        '#include "shim.h"\n',
        sources=[path(CSRC / s) for s in SOURCES],
        include_dirs=[path(CSRC)],
        define_macros=[("WU_VERSION", f'"{package_version()}"')],
        extra_compile_args=extra_compile,
        extra_link_args=shlex.split(os.environ.get("WDFUSB_LDFLAGS", "")),
        libraries=libraries,
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    make_ffi(absolute=True).compile(tmpdir=str(HERE / "build" / "ffi"), verbose=True)
