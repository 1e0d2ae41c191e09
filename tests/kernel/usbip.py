"""USB/IP in the kernel rig (used INSIDE the rig guest): the kernel's server and client.

* :class:`Usbipd` is a USB/IP server: the ``usbipd`` daemon on a TCP port of its own, and
  ``usbip bind``/``unbind`` (the usbip-host driver takes a local device from its drivers and
  offers it to the network: :meth:`Usbipd.export`).
* :class:`WdfusbServe` is wdfusb's own server, ``wdfusb serve``, exporting a virtual device.
* :func:`attach` is the client: ``usbip attach`` asks a server (any server speaking USB/IP, the
  kernel's or another) for a device; vhci-hcd then plugs it into one of its ports and the guest's
  USB stack enumerates it on a vhci_hcd root hub. :func:`detach` pulls it out again.

vhci-hcd has controllers vhci_hcd.0.. (Debian's 6.1 kernel: 8), each with a high-speed and a
SuperSpeed root hub; their ports are numbered for ``usbip detach -p`` across all of them, as the
status files (vhci_hcd.0/status, status.1, ...) list them. The guest has no network card;
everything goes over loopback (``lo`` is brought up by the rig's init).

Stdlib only. Every step waits for the kernel's own record (sysfs) of what it did.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USB_DEVICES = Path("/sys/bus/usb/devices")
USBIP_HOST = Path("/sys/bus/usb/drivers/usbip-host")
VHCI = Path("/sys/devices/platform")
LOCALHOST = "127.0.0.1"
VDEV_ST_USED = 6  # a vhci port's "sta" column while a remote device is attached (usbip_common.h)


def _run(*cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: {(res.stderr or res.stdout).strip()}")
    return res


def _wait(what: str, ready, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.05)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the client: vhci-hcd


@dataclass(frozen=True)
class VhciPort:
    """One row of vhci-hcd's status files: ``port`` is what ``usbip detach -p`` takes;
    ``busid`` the attached device's name on this machine (``"3-1"``), ``"0-0"`` when free."""

    hub: str  # "hs" or "ss"
    port: int
    status: int
    speed: int
    devid: int  # the remote device: its bus << 16 | its address on the server
    busid: str

    @property
    def used(self) -> bool:
        return self.status == VDEV_ST_USED and self.busid != "0-0"


def vhci_ports() -> list[VhciPort]:
    """Every vhci port of every vhci_hcd controller (status, status.1, ... hold the later ones)."""
    rows: list[VhciPort] = []
    for status in sorted(VHCI.glob("vhci_hcd.0/status*")):
        for line in status.read_text().splitlines()[1:]:
            f = line.split()
            if len(f) >= 7 and f[0] in ("hs", "ss"):
                rows.append(VhciPort(f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4], 16), f[6]))
    return rows


def vhci_buses() -> set[int]:
    """Bus numbers of vhci-hcd's root hubs (what the kernel names usbN under vhci_hcd.*)."""
    return {int(hub.name[3:]) for hub in VHCI.glob("vhci_hcd.*/usb*") if hub.name[3:].isdigit()}


@dataclass(frozen=True)
class Attachment:
    """A remote device attached through vhci-hcd: its vhci port and its USB identity here."""

    port: int  # for usbip detach -p
    remote_busid: str  # its name on the server
    usb_dir: Path  # /sys/bus/usb/devices/<busid>

    @property
    def busid(self) -> str:
        """Its port path here (``"3-1"``): what ``wdfusb.open(port=...)`` takes."""
        return self.usb_dir.name

    @property
    def busnum(self) -> int:
        return int((self.usb_dir / "busnum").read_text())

    @property
    def devnum(self) -> int:
        return int((self.usb_dir / "devnum").read_text())

    def endpoints(self, interface: int = 0) -> dict[int, str]:
        """{endpoint address: "in"/"out"} of an interface, as enumerated here."""
        out = {}
        for ep in Path(f"{self.usb_dir}:1.{interface}").glob("ep_*"):
            out[int((ep / "bEndpointAddress").read_text(), 16)] = (ep / "direction").read_text().strip()
        return out


def attach(host: str, port: int, busid: str, timeout: float = 60.0) -> Attachment:
    """``usbip attach``: import device ``busid`` of the server at ``host``:``port``; returns once the
    device is enumerated here (configured, interface 0 present)."""
    before = {p.port for p in vhci_ports() if p.used}
    _run("usbip", "--tcp-port", str(port), "attach", "-r", host, "-b", busid, timeout=timeout)

    def enumerated() -> Attachment | None:
        for p in vhci_ports():
            if p.used and p.port not in before:
                usb = USB_DEVICES / p.busid
                try:
                    if (usb / "bConfigurationValue").read_text().strip() and Path(f"{usb}:1.0").exists():
                        return Attachment(p.port, busid, usb)
                except OSError:
                    pass
        return None

    return _wait(f"{busid} from {host}:{port} not enumerated on a vhci port", enumerated, timeout)  # type: ignore[no-any-return]


def detach(port: int | Attachment, timeout: float = 30.0) -> None:
    """``usbip detach -p``: the device leaves (a removal here); returns once the port is free."""
    number = port.port if isinstance(port, Attachment) else port
    _run("usbip", "detach", "-p", str(number), timeout=timeout)
    _wait(
        f"vhci port {number} still in use", lambda: not any(p.used and p.port == number for p in vhci_ports()), timeout
    )


def detach_all(timeout: float = 30.0) -> None:
    """Detach whatever is attached (a crashed test's leftovers); errors are ignored."""
    for p in vhci_ports():
        if p.used:
            with contextlib.suppress(RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                detach(p.port, timeout)


# ---------------------------------------------------------------- the kernel's server


class Usbipd:
    """``usbipd`` on its own TCP port (all addresses: usbipd has no option to bind one; the rig guest
    has only loopback), and the local devices it exports. Stop it with :meth:`stop` or ``with``:
    everything exported is given back to its drivers first."""

    def __init__(self, port: int | None = None) -> None:
        self.host = LOCALHOST
        self.port = port or free_tcp_port()
        self.exported: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> Usbipd:
        self.proc = subprocess.Popen(
            ["usbipd", "-4", "--tcp-port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"usbipd exited {self.proc.returncode}: {self.proc.communicate()[0]}")
            with socket.socket() as s:
                return s.connect_ex((self.host, self.port)) == 0

        _wait(f"usbipd not listening on {self.host}:{self.port}", listening, timeout)
        return self

    def export(self, busid: str, timeout: float = 30.0) -> None:
        """``usbip bind -b``: usbip-host takes the local device ``busid`` (its interfaces lose their
        drivers; libusb still lists it, but it is the server's now)."""
        _run("usbip", "bind", "-b", busid, timeout=timeout)
        self.exported.append(busid)
        _wait(f"{busid} not bound to usbip-host", lambda: (USBIP_HOST / busid).exists(), timeout)

    def unexport(self, busid: str, timeout: float = 30.0) -> None:
        """``usbip unbind -b``: the device goes back to the local USB drivers."""
        if busid in self.exported:
            self.exported.remove(busid)
        _run("usbip", "unbind", "-b", busid, timeout=timeout)
        _wait(f"{busid} still bound to usbip-host", lambda: not (USBIP_HOST / busid).exists(), timeout)

    def attach(self, busid: str, timeout: float = 60.0) -> Attachment:
        """Attach exported ``busid`` here, through this server on loopback."""
        return attach(self.host, self.port, busid, timeout)

    def stop(self) -> None:
        for busid in list(self.exported):
            with contextlib.suppress(RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                self.unexport(busid)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        self.proc = None

    def __enter__(self) -> Usbipd:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def exported_and_attached(busid: str, server: Usbipd | None = None) -> Iterator[Attachment]:
    """Export local device ``busid`` through a :class:`Usbipd` (a new one unless given) and attach
    it here over loopback; on the way out (a failed test too) detach it, give it back to its local
    drivers and stop the server, so what follows sees the local device as before."""
    own = server is None
    srv = server or Usbipd().start()
    attached: Attachment | None = None
    try:
        srv.export(busid)
        attached = srv.attach(busid)
        yield attached
    finally:
        try:
            if attached is not None and any(p.used and p.port == attached.port for p in vhci_ports()):
                detach(attached)
        finally:
            if own:
                srv.stop()
            elif busid in srv.exported:
                srv.unexport(busid)


# ---------------------------------------------------------------- wdfusb's own server


class WdfusbServe:
    """``wdfusb serve`` (a virtual device over USB/IP) in a process of its own, attached here
    through vhci-hcd. ``--virtual-fault report`` makes it print, as it stops, what each OUT
    endpoint of the served device received: :meth:`stop` returns that."""

    def __init__(self, python: str, *args: str, serve_args: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "wdfusb", "--virtual-fault", "report", *args, "serve", *serve_args, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"serving (\S+) .*--tcp-port (\d+)", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"wdfusb serve did not start: {line!r} {self.proc.communicate()[1]!r}")
        self.busid, self.port = found.group(1), int(found.group(2))
        self.received: dict[int, int] | None = None
        self.attachment: Attachment | None = attach(LOCALHOST, self.port, self.busid)

    def detach(self) -> None:
        if self.attachment is not None and any(p.used and p.port == self.attachment.port for p in vhci_ports()):
            detach(self.attachment)
        self.attachment = None

    def stop(self) -> dict[int, int]:
        """Detach, stop the server (SIGINT, as Ctrl-C); {OUT endpoint: bytes it received}."""
        if self.received is None:
            try:
                self.detach()
            finally:
                self.proc.send_signal(signal.SIGINT)
                _out, err = self.proc.communicate(timeout=60)
            self.received = {int(ep, 16): int(n) for ep, n in re.findall(r"virtual: 0x(\w+) received (\d+)", err)}
        return self.received

    def __enter__(self) -> WdfusbServe:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
