"""The virtual device's function: vendor and class control requests answered in Python.

``VirtualDevice.on_control(handler)`` hands every vendor and class request on EP0 to
``handler(request)`` on the device's own thread, as a gadget's function gets its setup packets:

* a device-to-host request returns its data stage (``bytes``-like; the host gets at most
  ``request.length`` bytes, as from a real device);
* a host-to-device request returns ``None`` to take ``request.data``;
* returning :data:`STALL` (or raising) refuses the request: the host sees a stall, and EP0
  takes the next request. An exception is also kept in ``VirtualDevice.function_errors``.

While the handler runs, the host's transfer waits in its STATUS stage (its time-out, cancel and
Ctrl-C work as for any transfer). The handler must not do I/O on its own device: it runs as a
completion context, so a synchronous call from it is refused instead of waiting for itself.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._engine import WU_ERR_PIPE, WU_ERR_TIMEOUT, WU_OK, NativeDevice, ffi, set_completion_context

WAIT_SLICE_US = 50_000  # the thread looks at its stop flag this often


class _Stall:
    def __repr__(self) -> str:
        return "STALL"


STALL: Any = _Stall()  # a handler's answer: refuse the request (the host sees a stall)


@dataclass(frozen=True)
class ControlRequest:
    """One setup packet (and, host-to-device, its data stage) the function answers."""

    request_type: int
    request: int
    value: int
    index: int
    length: int
    data: bytes = b""

    @property
    def device_to_host(self) -> bool:
        return bool(self.request_type & 0x80)

    @property
    def kind(self) -> str:
        """``"standard"``, ``"class"``, ``"vendor"`` or ``"reserved"`` (bits 5-6)."""
        return ("standard", "class", "vendor", "reserved")[(self.request_type >> 5) & 3]


Handler = Callable[[ControlRequest], Any]


class Function:
    """The thread that waits for the device's requests and answers them with ``handler``."""

    def __init__(self, native: NativeDevice, handler: Handler, errors: list[BaseException], name: str) -> None:
        self._native, self.handler, self._errors = native, handler, errors
        self._stop = threading.Event()
        self._after: list[Callable[[], None]] = []  # what the handler asked to happen after its answer
        self._thread = threading.Thread(target=self._run, name=f"{name}-function", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        set_completion_context(True)  # I/O on its own device from here would wait for itself
        slot = ffi.new("wu_vrequest *")
        while not self._stop.is_set():
            rc = self._native.next_request(slot, WAIT_SLICE_US)
            if rc == WU_ERR_TIMEOUT:
                continue
            if rc != WU_OK:
                return  # the device closed or left the bus
            setup = bytes(slot.setup)
            length = int(slot.length)
            request = ControlRequest(
                setup[0],
                setup[1],
                int.from_bytes(setup[2:4], "little"),
                int.from_bytes(setup[4:6], "little"),
                length,
                b"" if setup[0] & 0x80 else bytes(ffi.buffer(slot.data, length)),
            )
            self._native.answer(int(slot.id), *self._answer(request))
            while self._after:
                self._after.pop(0)()

    def _answer(self, request: ControlRequest) -> tuple[int, bytes]:
        try:
            answer = self.handler(request)
            if answer is STALL:
                return WU_ERR_PIPE, b""
            if request.device_to_host:
                return WU_OK, bytes(memoryview(answer if answer is not None else b"").cast("B"))[: request.length]
            return WU_OK, b""
        except Exception as exc:  # noqa: BLE001 - the host sees a stall; the error is kept and said
            self._errors.append(exc)
            warnings.warn(f"virtual device: the control handler raised on {request}: {exc!r}", stacklevel=1)
            return WU_ERR_PIPE, b""

    def on_its_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def after_answer(self, action: Callable[[], None]) -> None:
        """Run ``action`` on this thread once the request being handled is answered."""
        self._after.append(action)

    def stop(self) -> None:
        """Stop answering (the device is closing); waits for the thread."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)


__all__ = ["STALL", "ControlRequest", "Function", "Handler"]
