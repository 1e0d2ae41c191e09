"""USB device gadgets for the wdfusb kernel rig (used INSIDE the rig guest).

Gadgets are made through configfs (/sys/kernel/config/usb_gadget) and bound to
the dummy_hcd UDC, so the same guest's USB host stack enumerates them and
libusb (and so wdfusb) sees a real device under /dev/bus/usb.

* SourceSink: f_sourcesink (VID 0x0525 PID 0xa4a0), bulk IN 0x81 / bulk OUT 0x02;
  with pattern=1 the gadget checks OUT data (byte i of each packet == i % 63,
  i.e. buf[i] == (i % wMaxPacketSize) % 63) and halts the OUT endpoint on error.
* HidGadget: f_hid with interrupt IN + OUT; a guest thread reads /dev/hidgN and
  counts/CRCs the OUT reports.
* FfsGadget: FunctionFS with bulk OUT + bulk IN served by Python threads: mode
  "count" (read everything, count + CRC32), "stop" (never read: host sees NAKs and
  times out), "slow" (small reads with a pause between them).

Stdlib only. Everything is torn down in remove() so the next gadget starts clean.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

CONFIGFS = Path("/sys/kernel/config/usb_gadget")
USB_DEVICES = Path("/sys/bus/usb/devices")
SERIAL = "wdfusb-rig"


def udc_name(index: int = 0) -> str:
    """The ``index``-th UDC (the rig loads dummy_hcd with two: two buses, a gadget on each)."""
    udcs = sorted(os.listdir("/sys/class/udc"))
    if len(udcs) <= index:
        raise RuntimeError(f"no UDC {index} in /sys/class/udc ({udcs}; is dummy_hcd loaded with num=2?)")
    return udcs[index]


def _write(path: Path, value: str | bytes) -> None:
    data = value if isinstance(value, bytes) else value.encode()
    with open(path, "wb", buffering=0) as f:
        f.write(data)


def mod63(size: int, maxp: int) -> bytes:
    """OUT data that f_sourcesink pattern=1 accepts: buf[i] = (i % maxp) % 63."""
    packet = bytes(i % 63 for i in range(maxp))
    return (packet * (size // maxp + 1))[:size]


def find_usb_device(vid: int, pid: int, serial: str | None = None) -> Path | None:
    """The host-side sysfs dir of a configured device with vid:pid, if present."""
    for dev in USB_DEVICES.glob("*"):
        try:
            if int((dev / "idVendor").read_text(), 16) != vid:
                continue
            if int((dev / "idProduct").read_text(), 16) != pid:
                continue
            if serial is not None and (dev / "serial").read_text().strip() != serial:
                continue
            if not (dev / "bConfigurationValue").read_text().strip():
                continue
        except OSError:
            continue
        return dev
    return None


class Gadget:
    """One configfs gadget with a single configuration; subclasses add functions."""

    vid = 0x0525
    pid = 0xA4A0
    product = "wdfusb gadget"

    def __init__(self, name: str, udc: int = 0, serial: str = SERIAL) -> None:
        self.name = name
        self.udc = udc_name(udc)
        self.serial = serial
        self.root = CONFIGFS / name
        self.functions: list[str] = []
        self.usb_dir: Path | None = None
        if self.root.exists():  # left over by a crashed test
            Gadget._remove_tree(self.root)
        self.root.mkdir()
        _write(self.root / "idVendor", f"0x{self.vid:04x}")
        _write(self.root / "idProduct", f"0x{self.pid:04x}")
        _write(self.root / "bcdDevice", "0x0100")
        _write(self.root / "bcdUSB", "0x0200")
        strings = self.root / "strings/0x409"
        strings.mkdir()
        _write(strings / "serialnumber", serial)
        _write(strings / "manufacturer", "wdfusb")
        _write(strings / "product", self.product)
        cfg = self.root / "configs/c.1"
        cfg.mkdir()
        _write(cfg / "MaxPower", "100")
        (cfg / "strings/0x409").mkdir()
        _write(cfg / "strings/0x409/configuration", "wdfusb rig")

    # ---- configfs
    def add_function(self, kind: str, attrs: dict[str, str | bytes] | None = None) -> Path:
        func = self.root / "functions" / kind
        func.mkdir()
        for key, val in (attrs or {}).items():
            _write(func / key, val)
        os.symlink(func, self.root / "configs/c.1" / kind)
        self.functions.append(kind)
        return func

    def bind(self, wait: float | None = 30.0) -> None:
        _write(self.root / "UDC", self.udc)
        if wait:
            self.wait_enumerated(wait)

    def replug(self, wait: float | None = 30.0) -> None:
        """Plug the cable back in after :meth:`unplug`. (soft_connect "connect" does not bring a
        dummy_hcd device back on 6.1: the gadget is unbound, which is quiet after the unplug, and
        bound again.)"""
        _write(self.root / "UDC", "\n")
        self.bind(wait)

    def unplug(self, wait: float | None = 10.0) -> None:
        """Pull the cable: the UDC drops its pull-up (the host sees a disconnect); the function
        stays bound, as a real device's firmware keeps running when its cable is pulled.

        Tests unplug this way while I/O is in flight, never by unbinding: an unbind racing a
        transfer's completion can oops the guest (f_sourcesink's completion logs through the
        composite device's gadget pointer, which the configfs unbind has just cleared)."""
        if (self.root / "UDC").read_text().strip():
            _write(Path("/sys/class/udc") / self.udc / "soft_connect", "disconnect")
        self._wait_gone(wait)

    def unbind(self, wait: float | None = 10.0) -> None:
        """Detach the gadget from the UDC. Unplugs first, so no host I/O races the unbind."""
        if (self.root / "UDC").read_text().strip():
            self.unplug(wait=10.0)
            _write(self.root / "UDC", "\n")
        self._wait_gone(wait)

    def _wait_gone(self, wait: float | None) -> None:
        if wait:
            deadline = time.monotonic() + wait
            while find_usb_device(self.vid, self.pid, self.serial) is not None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name}: device still present after the unplug")
                time.sleep(0.05)
        self.usb_dir = None

    def rebind(self, wait: float = 30.0) -> None:
        self.unbind()
        self.bind(wait)

    def wait_enumerated(self, timeout: float = 30.0) -> Path:
        deadline = time.monotonic() + timeout
        while True:
            dev = find_usb_device(self.vid, self.pid, self.serial)
            if dev is not None and (Path(f"{dev}:1.0")).exists():
                self.usb_dir = dev
                return dev
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} ({self.vid:04x}:{self.pid:04x}) not enumerated within {timeout}s")
            time.sleep(0.05)

    # ---- host-side view
    @property
    def busnum(self) -> int:
        assert self.usb_dir is not None
        return int((self.usb_dir / "busnum").read_text())

    @property
    def devnum(self) -> int:
        assert self.usb_dir is not None
        return int((self.usb_dir / "devnum").read_text())

    @property
    def speed_mbps(self) -> int:
        assert self.usb_dir is not None
        return int((self.usb_dir / "speed").read_text())

    def endpoints(self, interface: int = 0) -> dict[int, dict[str, str | int]]:
        """Host-side endpoint descriptors of an interface: {address: {type, maxp}}."""
        assert self.usb_dir is not None, "not enumerated"
        out: dict[int, dict[str, str | int]] = {}
        for ep in Path(f"{self.usb_dir}:1.{interface}").glob("ep_*"):
            addr = int((ep / "bEndpointAddress").read_text(), 16)
            out[addr] = {
                "type": (ep / "type").read_text().strip(),
                "maxp": int((ep / "wMaxPacketSize").read_text(), 16),
                "direction": (ep / "direction").read_text().strip(),
            }
        return out

    @property
    def ep_out(self) -> int:
        """Host-visible address of interface 0's OUT endpoint (chosen by the UDC)."""
        return next(a for a, e in self.endpoints().items() if e["direction"] == "out")

    @property
    def ep_in(self) -> int:
        """Host-visible address of interface 0's IN endpoint."""
        return next(a for a, e in self.endpoints().items() if e["direction"] == "in")

    # ---- teardown
    def stop_threads(self) -> None:
        """Subclasses stop their guest-side threads here (after unbind)."""

    def remove(self) -> None:
        try:
            self.unbind(wait=10.0)
        except (OSError, TimeoutError):
            pass
        self.stop_threads()
        Gadget._remove_tree(self.root)

    @staticmethod
    def _remove_tree(root: Path) -> None:
        try:
            udc = (root / "UDC").read_text().strip()
            if udc:
                _write(Path("/sys/class/udc") / udc / "soft_connect", "disconnect")
                _write(root / "UDC", "\n")
        except OSError:
            pass
        for cfg in root.glob("configs/*"):
            for entry in cfg.iterdir():
                if entry.is_symlink():
                    entry.unlink()
            for sub in cfg.glob("strings/*"):
                sub.rmdir()
            cfg.rmdir()
        for func in root.glob("functions/*"):
            func.rmdir()
        for sub in root.glob("strings/*"):
            sub.rmdir()
        for sub in root.glob("os_desc/*"):
            if sub.is_symlink():
                sub.unlink()
        root.rmdir()

    def __enter__(self) -> Gadget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class SourceSink(Gadget):
    """f_sourcesink: bulk IN 0x81 sources data, bulk OUT 0x02 sinks (and checks) it."""

    product = "wdfusb SourceSink"

    def __init__(
        self,
        pattern: int = 1,
        bulk_buflen: int = 4096,
        bulk_qlen: int = 32,
        name: str = "wdfusb-sourcesink",
        udc: int = 0,
        serial: str = SERIAL,
    ) -> None:
        super().__init__(name, udc, serial)
        self.pattern = pattern
        self.add_function(
            "SourceSink.0",
            {
                "pattern": str(pattern),
                "bulk_buflen": str(bulk_buflen),
                "bulk_qlen": str(bulk_qlen),
                "isoc_interval": "0",
            },
        )

    @property
    def maxp(self) -> int:
        return int(self.endpoints()[self.ep_out]["maxp"])


class NcmGadget(Gadget):
    """f_ncm (CDC NCM): a communication interface with an interrupt IN endpoint, and a data
    interface whose alternate setting 0 has no endpoints and setting 1 a bulk IN and a bulk OUT
    (the guest has no host-side NCM driver: the interfaces are free to claim)."""

    vid = 0x0525
    pid = 0xA4A1
    product = "wdfusb NCM"

    def __init__(self, name: str = "wdfusb-ncm") -> None:
        super().__init__(name)
        self.function = self.add_function("ncm.usb0")

    def bind(self, wait: float | None = 30.0) -> None:
        """Bind, then bring the gadget's network interface up: f_ncm queues its OUT requests
        (the host's bulk writes complete) only while the link is up."""
        super().bind(wait)
        ifname = (self.function / "ifname").read_text().strip()
        subprocess.run(["ip", "link", "set", ifname, "up"], check=True, timeout=30)


# Vendor page, 64-byte input report and 64-byte output report (f_hid adds IN + OUT endpoints).
HID_REPORT_DESC = bytes.fromhex(
    "06 00 FF 09 01 A1 01"  # Usage Page (Vendor 0xFF00), Usage 1, Collection (Application)
    "15 00 26 FF 00 75 08"  # Logical 0..255, Report Size 8
    "95 40 09 01 81 02"  # Report Count 64, Usage 1, Input (Data,Var,Abs)
    "95 40 09 01 91 02"  # Report Count 64, Usage 1, Output (Data,Var,Abs)
    "C0"  # End Collection
)


class Counter:
    """Bytes/reports/CRC32 of what a guest-side reader consumed. ``bytes`` is published
    last, under the lock, so whoever sees a count also sees the CRC of those bytes."""

    def __init__(self) -> None:
        self.bytes = 0
        self.reads = 0
        self.crc32 = 0
        self.error: str | None = None
        self.lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self.lock:
            self.crc32 = zlib.crc32(data, self.crc32)  # releases the GIL on large reads
            self.reads += 1
            self.bytes += len(data)

    def wait_bytes(self, n: int, timeout: float = 30.0) -> int:
        """Wait until at least ``n`` bytes were consumed; returns the count (read under the
        lock: ``crc32`` then covers exactly those bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.bytes >= n or time.monotonic() >= deadline:
                    return self.bytes
            time.sleep(0.01)


class HidGadget(Gadget):
    """f_hid with interrupt IN and OUT endpoints; OUT reports are consumed by a thread."""

    vid = 0x0525
    pid = 0xA4AC
    product = "wdfusb HID"

    def __init__(self, report_length: int = 64, name: str = "wdfusb-hid") -> None:
        super().__init__(name)
        self.report_length = report_length
        func = self.add_function(
            "hid.usb0",
            {
                "protocol": "0",
                "subclass": "0",
                "report_length": str(report_length),
                "report_desc": HID_REPORT_DESC,
            },
        )
        major, minor = (func / "dev").read_text().strip().split(":")
        self.devpath = Path(f"/dev/hidg{minor}")
        if not self.devpath.exists():
            os.mknod(self.devpath, 0o600 | 0o020000, os.makedev(int(major), int(minor)))
        self.received = Counter()
        self.reports: list[bytes] = []
        self._stop = threading.Event()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None

    def bind(self, wait: float | None = 30.0) -> None:
        """Bind, then open /dev/hidgN (it only opens while bound) and start the reader."""
        super().bind(wait)
        self._stop.clear()
        self._fd = os.open(self.devpath, os.O_RDWR | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._reader, args=(self._fd,), daemon=True)
        self._thread.start()

    def unbind(self, wait: float | None = 10.0) -> None:
        self.stop_threads()
        super().unbind(wait)

    def _reader(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, self.report_length)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ESHUTDOWN, errno.ECONNRESET, errno.EINTR):
                    continue
                self.received.error = str(exc)
                return
            self.received.add(data)
            if len(self.reports) < 1000:
                self.reports.append(data)

    def send(self, report: bytes, timeout: float = 5.0) -> None:
        """Queue one input report (host reads it from the interrupt IN endpoint)."""
        assert self._fd is not None, "not bound"
        _, writable, _ = select.select([], [self._fd], [], timeout)
        if not writable:
            raise TimeoutError("hidg not writable")
        os.write(self._fd, report)

    def stop_threads(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# FunctionFS (include/uapi/linux/usb/functionfs.h)
FFS_DESC_MAGIC_V2, FFS_STR_MAGIC = 3, 2
FFS_HAS_FS, FFS_HAS_HS, FFS_HAS_SS = 1, 2, 4
FFS_DEV = "wdfusb_rig"
_libc = ctypes.CDLL(None, use_errno=True)
FFS_EVENT_NAMES = ["BIND", "UNBIND", "ENABLE", "DISABLE", "SETUP", "SUSPEND", "RESUME"]


def _ffs_descriptors() -> bytes:
    def iface() -> bytes:
        return bytes([9, 4, 0, 0, 2, 0xFF, 0, 0, 1])

    def ep(addr: int, maxp: int) -> bytes:
        return struct.pack("<BBBBHB", 7, 5, addr, 2, maxp, 0)

    ss_comp = bytes([6, 0x30, 0, 0, 0, 0])
    fs = iface() + ep(0x01, 64) + ep(0x82, 64)
    hs = iface() + ep(0x01, 512) + ep(0x82, 512)
    ss = iface() + ep(0x01, 1024) + ss_comp + ep(0x82, 1024) + ss_comp
    body = struct.pack("<III", 3, 3, 5) + fs + hs + ss
    # No FUNCTIONFS_VIRTUAL_ADDR: with dummy_hcd it makes SET_CONFIGURATION fail (-EPIPE).
    # The UDC picks the host-visible addresses: 0x02 (OUT) and 0x81 (IN) on dummy_hcd.
    flags = FFS_HAS_FS | FFS_HAS_HS | FFS_HAS_SS
    head = struct.pack("<III", FFS_DESC_MAGIC_V2, 12 + len(body), flags)
    return head + body


def _ffs_strings() -> bytes:
    lang = struct.pack("<H", 0x0409) + b"wdfusb FunctionFS\0"
    return struct.pack("<IIII", FFS_STR_MAGIC, 16 + len(lang), 1, 1) + lang


class FfsGadget(Gadget):
    """FunctionFS gadget: bulk OUT (file ep1) and bulk IN (ep2), served by threads.

    mode: "count" reads everything (counts + CRC32 in .received), "stop" never
    reads (host writes NAK until they time out), "slow" reads `read_size` bytes
    then sleeps `slow_delay` seconds. The IN endpoint sends mod-63 data
    (`in_size` bytes per write) when in_source=True. Vendor control requests
    are echoed: an OUT request's data is returned by the next IN request; with
    `ctrl_hold` they are left unanswered (kept in `held`)."""

    vid = 0x1D6B
    pid = 0x0105
    product = "wdfusb FunctionFS"

    def __init__(
        self,
        mode: str = "count",
        read_size: int = 65536,
        slow_delay: float = 0.05,
        in_source: bool = True,
        in_size: int = 4096,
        name: str = "wdfusb-ffs",
    ) -> None:
        if mode not in ("count", "stop", "slow"):
            raise ValueError(mode)
        super().__init__(name)
        self.mode, self.read_size, self.slow_delay = mode, read_size, slow_delay
        self.in_size = in_size
        self.add_function(f"ffs.{FFS_DEV}")
        self.mount = Path(f"/run/ffs-{FFS_DEV}")
        self.mount.mkdir(parents=True, exist_ok=True)
        # mount(2) directly: mount(8) would canonicalize a source that exists as a path
        if _libc.mount(FFS_DEV.encode(), str(self.mount).encode(), b"functionfs", 0, None):
            err = ctypes.get_errno()
            raise OSError(err, f"mounting functionfs {FFS_DEV}: {os.strerror(err)}")
        self.received = Counter()
        self.sent = Counter()
        self.events: list[str] = []
        self.ctrl_data = b""
        self.ctrl_hold = False  # True: leave vendor requests unanswered (the host's transfer waits)
        self.held: list[bytes] = []
        self._stop = threading.Event()
        self._ep0 = os.open(self.mount / "ep0", os.O_RDWR)
        os.write(self._ep0, _ffs_descriptors())
        os.write(self._ep0, _ffs_strings())
        self._fds = [os.open(self.mount / f"ep{i}", os.O_RDWR | os.O_NONBLOCK) for i in (1, 2)]
        self._threads = [threading.Thread(target=self._ep0_loop, daemon=True)]
        if mode != "stop":
            self._threads.append(threading.Thread(target=self._out_loop, daemon=True))
        if in_source:
            self._threads.append(threading.Thread(target=self._in_loop, daemon=True))
        for t in self._threads:
            t.start()

    def set_mode(self, mode: str) -> None:
        """Switch count/slow/stop; after "stop" one already queued read may still complete."""
        self.mode = mode

    def _io(self, fn, *args):  # type: ignore[no-untyped-def]
        """Retry while the endpoint is not enabled yet; None once stopping."""
        while not self._stop.is_set():
            try:
                return fn(*args)
            except BlockingIOError:
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno in (errno.ESHUTDOWN, errno.ECONNRESET, errno.EINTR, errno.EAGAIN):
                    time.sleep(0.02)
                    continue
                raise
        return None

    def _out_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.mode == "stop":
                    time.sleep(0.02)
                    continue
                size = self.read_size
                data = self._io(os.read, self._fds[0], size)
                if data is None:
                    return
                self.received.add(data)
                if self.mode == "slow":
                    time.sleep(self.slow_delay)
        except OSError as exc:
            self.received.error = str(exc)

    def _in_loop(self) -> None:
        chunk = bytes(i % 63 for i in range(self.in_size))
        try:
            while not self._stop.is_set():
                n = self._io(os.write, self._fds[1], chunk)
                if n is None:
                    return
                self.sent.add(chunk[:n])
        except OSError as exc:
            self.sent.error = str(exc)

    def _ep0_loop(self) -> None:
        while not self._stop.is_set():
            if self.ctrl_hold and self.held:  # f_fs stalls a pending IN request when ep0 is read
                time.sleep(0.02)
                continue
            ready, _, _ = select.select([self._ep0], [], [], 0.1)
            if not ready:
                continue
            try:
                buf = os.read(self._ep0, 12 * 4)
            except OSError:
                continue
            for off in range(0, len(buf) - 11, 12):
                setup, kind = buf[off : off + 8], buf[off + 8]
                self.events.append(FFS_EVENT_NAMES[kind] if kind < 7 else str(kind))
                if kind == 4:
                    self._setup(setup)

    def _setup(self, setup: bytes) -> None:
        req_type, _req, _val, _idx, length = struct.unpack("<BBHHH", setup)
        if self.ctrl_hold:
            self.held.append(setup)
            return
        try:
            if req_type & 0x80:
                os.write(self._ep0, self.ctrl_data[:length])
            else:
                self.ctrl_data = os.read(self._ep0, length) if length else b""
        except OSError:
            pass

    def stop_threads(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for fd in [*self._fds, self._ep0]:
            os.close(fd)
        _libc.umount2(str(self.mount).encode(), 0)
