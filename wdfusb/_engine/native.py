"""The compiled shim (``wdfusb._native``), checked once, and the engine's result codes.

Only the modules of this package call the shim; everything above them sees Python values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__

try:
    from .._native import ffi, lib
except ImportError as exc:
    _package = Path(__file__).resolve().parent.parent
    _hint = "reinstall wdfusb"
    if not any(_package.glob("_native*")):  # e.g. `python -m wdfusb` inside a source checkout
        _hint = (
            f"{_package} has no compiled shim: a source checkout there shadows the installed wdfusb; "
            "run from another directory, or build it in place with `pip install -e .`"
        )
    raise ImportError(f"wdfusb's native module is missing or broken ({exc}); {_hint}") from exc

_built = ffi.string(lib.wu_shim_version()).decode()
if _built != __version__:  # pragma: no cover - a stale build
    raise ImportError(f"wdfusb native module is version {_built}, the package is {__version__}; rebuild it")
if lib.wu_sizeof_check() != 0:  # pragma: no cover - a platform the shim does not know
    raise ImportError("wdfusb native module: the libusb ABI assumptions do not hold on this platform")

CData = Any  # cffi's cdata objects are not typed
NULL = ffi.NULL

# engine results (wdfusb_shim.h enum wu_status); their meaning is wdfusb._status's table
WU_OK = int(lib.WU_OK)
WU_PENDING = int(lib.WU_PENDING)
WU_ERR_INVALID_PARAM = int(lib.WU_ERR_INVALID_PARAM)
WU_ERR_NO_DEVICE = int(lib.WU_ERR_NO_DEVICE)
WU_ERR_NOT_FOUND = int(lib.WU_ERR_NOT_FOUND)
WU_ERR_BUSY = int(lib.WU_ERR_BUSY)
WU_ERR_TIMEOUT = int(lib.WU_ERR_TIMEOUT)
WU_ERR_PIPE = int(lib.WU_ERR_PIPE)
WU_ERR_OVERFLOW = int(lib.WU_ERR_OVERFLOW)
WU_ERR_INTERRUPTED = int(lib.WU_ERR_INTERRUPTED)
WU_ERR_NO_MEM = int(lib.WU_ERR_NO_MEM)
WU_ERR_CANCELLED = int(lib.WU_ERR_CANCELLED)
WU_ERR_WRONG_CONTEXT = int(lib.WU_ERR_WRONG_CONTEXT)
WU_ERR_IN_FLIGHT = int(lib.WU_ERR_IN_FLIGHT)
WU_ERR_FORKED = int(lib.WU_ERR_FORKED)

EP_CONTROL, EP_ISOCHRONOUS, EP_BULK, EP_INTERRUPT = 0, 1, 2, 3
ZLP = int(lib.WU_XFER_ZLP)
XFER_IDLE, XFER_IN_FLIGHT, XFER_DONE = int(lib.WU_XFER_IDLE), int(lib.WU_XFER_IN_FLIGHT), int(lib.WU_XFER_DONE)
SPEEDS = {"none": 0, "low": 1, "full": 2, "high": 3, "super": 4, "super_plus": 5}
SPEED_NAMES = {v: k for k, v in SPEEDS.items()}

SLICE_US = 50_000  # wait slice of every blocking call: bounds the Ctrl-C latency


class EngineError(Exception):
    """A native object could not be made; ``code`` is the engine result saying why."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: engine result {code}")
        self.code = code


def live_objects() -> int:
    """Native devices, transfers and rings not yet freed."""
    return int(lib.wu_live_objects())


def shim_version() -> str:
    return str(ffi.string(lib.wu_shim_version()).decode())
