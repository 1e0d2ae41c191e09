"""An open ``wu_device``: a real device through libusb, or the virtual device.

The native device lives exactly as long as this object: :meth:`NativeDevice.close` ends
its I/O (C cancels and drains every transfer, then refuses all calls), and the memory is
released only when the object is collected, so a handle read by any thread at any time
is valid. Whether the device is still usable is C's to say (:attr:`NativeDevice.status`).
"""

from __future__ import annotations

from .libusb import ensure_libusb
from .native import WU_OK, CData, ffi, lib


class NativeDevice:
    __slots__ = ("__weakref__", "_h", "is_virtual")

    def __init__(self, handle: CData) -> None:
        self._h = handle
        self.is_virtual = bool(lib.wu_device_is_virtual(handle))

    @classmethod
    def open_libusb(cls, bus: int, address: int) -> tuple[int, NativeDevice | None]:
        ensure_libusb()
        out = ffi.new("wu_device **")
        rc = lib.wu_libusb_open(bus, address, out)
        return rc, (cls(out[0]) if rc == WU_OK else None)

    @classmethod
    def create_virtual(
        cls,
        speed: int,
        endpoints: list[tuple[int, int, int, int, int, int]],
        loopback_capacity: int,
        descriptors: bytes,
        n_alts: int = 1,
    ) -> NativeDevice:
        eps = ffi.new("wu_vep_config[]", max(1, len(endpoints)))
        for i, (addr, typ, maxp, interval, role, alt) in enumerate(endpoints):
            eps[i].address, eps[i].type, eps[i].max_packet = addr, typ, maxp
            eps[i].interval, eps[i].role, eps[i].alt = interval, role, alt
        blob = ffi.new("uint8_t[]", descriptors)
        cfg = ffi.new(
            "wu_vdev_config *",
            {
                "speed": speed,
                "endpoints": eps,
                "n_endpoints": len(endpoints),
                "loopback_capacity": loopback_capacity,
                "descriptors": blob,
                "descriptors_len": len(descriptors),
                "n_alts": n_alts,
            },
        )
        out = ffi.new("wu_device **")
        rc = lib.wu_virtual_create(cfg, out)
        if rc != WU_OK:
            from ..errors import error_for

            raise error_for(rc, context="creating the virtual device")
        return cls(out[0])

    @property
    def handle(self) -> CData:
        return self._h

    @property
    def status(self) -> int:
        """``WU_OK`` while the device is usable, else why not (closed, opened before a fork)."""
        return int(lib.wu_device_check(self._h))

    @property
    def closed(self) -> bool:
        return self.status != WU_OK

    def speed(self) -> int:
        rc = int(lib.wu_device_speed(self._h))
        return rc if rc >= 0 else 0

    def get_descriptor(self, dtype: int, index: int = 0, langid: int = 0, length: int = 4096) -> tuple[int, bytes]:
        buf = ffi.new("uint8_t[]", length)
        n = lib.wu_device_get_descriptor(self._h, dtype, index, langid, buf, length)
        return (n, b"") if n < 0 else (WU_OK, bytes(ffi.buffer(buf, n)))

    def get_configuration(self) -> tuple[int, int]:
        out = ffi.new("int *")
        rc = lib.wu_device_get_configuration(self._h, out)
        return rc, out[0]

    def set_configuration(self, value: int) -> int:
        return int(lib.wu_device_set_configuration(self._h, value))

    def claim_interface(self, iface: int) -> int:
        return int(lib.wu_device_claim_interface(self._h, iface))

    def release_interface(self, iface: int) -> int:
        return int(lib.wu_device_release_interface(self._h, iface))

    def set_altsetting(self, iface: int, alt: int) -> int:
        return int(lib.wu_device_set_altsetting(self._h, iface, alt))

    def reset_port(self) -> int:
        """Cancel and drain every transfer, then reset the device's port (GIL released)."""
        return int(lib.wu_device_reset_port(self._h))

    def cycle_port(self) -> int:
        """Cancel and drain every transfer, then take the device off the bus and back (GIL
        released): it re-enumerates as a new attachment; this one is gone."""
        return int(lib.wu_device_cycle_port(self._h))

    def clear_halt(self, ep: int) -> int:
        return int(lib.wu_device_clear_halt(self._h, ep))

    def kernel_driver_active(self, iface: int) -> int:
        """1 if a kernel driver is bound to interface ``iface``, 0 if not, else an engine code."""
        return int(lib.wu_device_kernel_driver(self._h, iface, lib.WU_KDRIVER_ACTIVE))

    def detach_kernel_driver(self, iface: int) -> int:
        return int(lib.wu_device_kernel_driver(self._h, iface, lib.WU_KDRIVER_DETACH))

    def attach_kernel_driver(self, iface: int) -> int:
        return int(lib.wu_device_kernel_driver(self._h, iface, lib.WU_KDRIVER_ATTACH))

    def cancel(self, ep: int = -1, owner: int = 0, retire: bool = False) -> int:
        """Cancel newest first and drain every transfer in flight on ``ep`` (-1: all) of
        ``owner`` (0: all); ``retire`` also refuses their later submits."""
        return int(lib.wu_device_cancel(self._h, ep, owner, retire))

    def abort(self, ep: int) -> int:
        """Cancel every transfer in flight on ``ep`` and wait until they are back."""
        return self.cancel(ep)

    def live_transfers(self) -> int:
        return int(lib.wu_device_live_transfers(self._h))

    def close(self) -> None:
        """Cancel and drain every transfer, then release the device. Idempotent; any thread."""
        lib.wu_device_close(self._h)

    def __del__(self) -> None:
        h, self._h = self._h, ffi.NULL
        if h:
            lib.wu_device_free(h)

    # virtual device only
    def ep_stats(self, ep: int) -> dict[str, int]:
        st = ffi.new("wu_vep_stats *")
        rc = lib.wu_virtual_ep_stats(self._h, ep, st)
        if rc != WU_OK:
            from ..errors import error_for

            raise error_for(rc, context=f"endpoint 0x{ep:02X}")
        return {
            "received_bytes": st.received_bytes,
            "sent_bytes": st.sent_bytes,
            "transfers": st.transfers,
            "crc32": st.crc32,
            "halted": st.halted,
            "loopback_dropped": st.loopback_dropped,
            "zero_length_packets": st.zero_length_packets,
            "source": st.source,
        }

    def stall(self, ep: int) -> int:
        return int(lib.wu_virtual_stall(self._h, ep))

    def source(self, ep: int, pattern: int) -> int:
        return int(lib.wu_virtual_source(self._h, ep, pattern))

    def nak(self, ep: int, seconds: float) -> int:
        return int(lib.wu_virtual_nak(self._h, ep, seconds))

    def unplug(self) -> int:
        return int(lib.wu_virtual_unplug(self._h))

    def set_switch(self, value: int) -> int:
        return int(lib.wu_virtual_set_switch(self._h, value))

    def get_switch(self) -> tuple[int, int]:
        out = ffi.new("uint8_t *")
        rc = int(lib.wu_virtual_get_switch(self._h, out))
        return rc, int(out[0])

    def set_function(self, on: bool) -> int:
        return int(lib.wu_virtual_set_function(self._h, 1 if on else 0))

    def next_request(self, slot: CData, timeout_us: int) -> int:
        """Wait (GIL released) for a control request the function answers; it lands in ``slot``
        (a ``wu_vrequest *``; its ``id`` is the last one handed out, which is not handed out again)."""
        return int(lib.wu_virtual_next_request(self._h, timeout_us, slot))

    def answer(self, request_id: int, result: int, data: bytes = b"") -> int:
        return int(lib.wu_virtual_answer(self._h, request_id, result, data, len(data)))
