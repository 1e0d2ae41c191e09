"""The ``wdfusb`` command line (also ``python -m wdfusb``): list, info, write, read, control, bench.

DEVICE is ``VID:PID[:SERIAL]`` (hex), ``BUS/ADDR`` or ``virtual[:full|high|super|none]``
(the built-in virtual device). ENDPOINT is an endpoint address such as ``0x06``.

Exit status (from the NTSTATUS of the failure, see :func:`exit_code_for`):

===  ==============================================================
0    success
1    unexpected internal error
2    usage error (bad option or argument, wrong kind of pipe)
3    device or endpoint not found (also: libusb cannot be loaded)
4    access denied (no permission to open the device)
5    time-out (STATUS_IO_TIMEOUT; the transfer was cancelled first)
6    endpoint stalled (USBD_STATUS_STALL_PID)
7    device gone (unplugged or closed: STATUS_DEVICE_NOT_CONNECTED ...)
8    other I/O error (STATUS_IO_DEVICE_ERROR, overflow, cancelled ...)
9    device or interface busy (claimed by another program or a kernel driver)
130  interrupted (Ctrl-C); transfers in flight were cancelled and reaped
===  ==============================================================

Tests and scripts can hand objects in: ``main(argv, targets={"name": VirtualDevice()})``
(or ``CliRunner().invoke(cli, args, obj={"targets": {...}})``) makes ``name`` a DEVICE.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from typing import Any, BinaryIO, TypeVar

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from . import __version__, bench, patterns
from ._bench_methods import METHODS, streaming_unavailable
from ._core import MAX_TRANSFER_SIZE, CoreDevice
from ._descriptors import TYPE_NAMES, DeviceDescriptor, EndpointInfo, SettingInfo
from ._lookup import SPEED_LABELS, is_remote_bus, read_string
from ._status import NTSTATUS_NAMES, USBD_STATUS_NAMES
from ._virtual_profiles import PROFILES
from .device import Device, Pipe, list_devices, parse_target, parse_virtual
from .device import open as open_device
from .errors import (
    DeviceGoneError,
    DeviceNotFoundError,
    LibusbNotFoundError,
    UsbAccessError,
    UsbBusyError,
    UsbError,
    UsbStallError,
    UsbTimeoutError,
    error_for,
)
from .usbip.server import DEFAULT_PORT as DEFAULT_USBIP_PORT
from .virtual import VirtualDevice

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    """The documented exit statuses of every command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    ACCESS_DENIED = 4
    TIMEOUT = 5
    STALL = 6
    DEVICE_GONE = 7
    IO_ERROR = 8
    BUSY = 9
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "Exit status: 0 ok, 1 internal error, 2 usage, 3 device/endpoint not found, 4 access denied, "
    "5 time-out, 6 stall, 7 device gone, 8 other I/O error, 9 busy, 130 Ctrl-C."
)
_BY_STATUS = {
    int(NTSTATUS_NAMES[name]): code
    for code, names in (
        (ExitCode.TIMEOUT, ("STATUS_IO_TIMEOUT", "STATUS_TIMEOUT")),
        (ExitCode.ACCESS_DENIED, ("STATUS_ACCESS_DENIED",)),
        (ExitCode.BUSY, ("STATUS_DEVICE_BUSY",)),
        (ExitCode.DEVICE_GONE, ("STATUS_DEVICE_NOT_CONNECTED", "STATUS_NO_SUCH_DEVICE", "STATUS_DEVICE_REMOVED")),
        (ExitCode.NOT_FOUND, ("STATUS_NOT_FOUND", "STATUS_DLL_NOT_FOUND")),
    )
    for name in names
}
_STALL_USBD = {int(USBD_STATUS_NAMES[n]) for n in ("USBD_STATUS_STALL_PID", "USBD_STATUS_ENDPOINT_HALTED")}
_BY_CLASS = (
    (UsbStallError, ExitCode.STALL),
    (UsbTimeoutError, ExitCode.TIMEOUT),
    (UsbAccessError, ExitCode.ACCESS_DENIED),
    (UsbBusyError, ExitCode.BUSY),
    (DeviceGoneError, ExitCode.DEVICE_GONE),
)
UDEV_RULE = 'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vid:04x}", ATTR{{idProduct}}=="{pid:04x}", MODE="0666"'


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an exception: from its NTSTATUS (and USBD status for a stall)."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, (DeviceNotFoundError, LibusbNotFoundError, KeyError)):
        return ExitCode.NOT_FOUND
    if isinstance(exc, UsbError):
        if int(exc.usbd_status) in _STALL_USBD:
            return ExitCode.STALL
        if int(exc.status) in _BY_STATUS:
            return _BY_STATUS[int(exc.status)]
        return next((code for cls, code in _BY_CLASS if isinstance(exc, cls)), ExitCode.IO_ERROR)
    if isinstance(exc, (ValueError, click.UsageError)):
        return ExitCode.USAGE
    return ExitCode.ERROR


def _err(text: str) -> None:
    click.echo(f"wdfusb: {text}", err=True)


def _hint(exc: BaseException, source: Any) -> list[str]:
    """Extra lines saying how to fix an access or busy error."""
    if isinstance(exc, UsbAccessError):
        rule = UDEV_RULE.format(vid=getattr(source, "vid", 0x0525), pid=getattr(source, "pid", 0xA4A0))
        return [
            "no permission to open the device; grant it with a udev rule, e.g. in /etc/udev/rules.d/50-wdfusb.rules:",
            f"  {rule}",
            "then run `sudo udevadm control --reload-rules && sudo udevadm trigger` and replug the device",
        ]
    if isinstance(exc, UsbBusyError):
        return ["another program or a kernel driver has claimed the interface; close it or unbind the driver"]
    return []


def guarded(fn: F) -> F:
    """Run a command: map every failure to one clear message and its documented exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            _err("interrupted; nothing is left in flight")
            ctx.exit(exit_code_for(exc))
        except (UsbError, KeyError, ValueError) as exc:
            text = f"{exc.strerror} [{exc.status!r}]" if isinstance(exc, UsbError) else str(exc.args[0])
            _err(f"error: {text}")
            for line in _hint(exc, ctx.obj.get("source")):
                _err(line)
            ctx.exit(exit_code_for(exc))

    return wrapper  # type: ignore[return-value]


# ---- argument parsing -------------------------------------------------------------------------


def parse_endpoint(text: str) -> int:
    """``0x06``, ``6``, ``0x86`` -> an endpoint address."""
    try:
        ep = int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an endpoint address (use e.g. 0x06)") from None
    if not 0 <= ep <= 0xFF:
        raise ValueError(f"{text!r}: an endpoint address is 0x00..0xFF")
    return ep


def parse_timeout(text: str) -> float | None:
    """Seconds > 0, or ``inf``/``none`` (wait for ever) -> seconds or None."""
    if text.lower() in ("none", "inf", "forever"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds (or 'inf')") from None
    if not seconds > 0:
        raise ValueError("the time-out must be > 0 seconds (or 'inf' to wait for ever)")
    return None if seconds == float("inf") else seconds


def _parsed(parse: Callable[[str], Any], default: Any = None) -> Callable[..., Any]:
    """A click callback running ``parse`` (ValueError -> a usage error naming the parameter)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


# ---- devices ------------------------------------------------------------------------------------


def _apply_faults(ctx: click.Context, vdev: VirtualDevice, faults: Sequence[str]) -> None:
    """The hidden ``--virtual-fault`` test hook: ``stall:EP``, ``nak:EP[:SECONDS]``, ``unplug``,
    ``unplug-after:SECONDS``, and ``report`` (at exit, print what each OUT endpoint received)."""
    for fault in faults:
        kind, _, rest = fault.partition(":")
        if kind == "stall":
            vdev.endpoint(int(rest, 0)).stall()
        elif kind == "nak":
            ep, _, secs = rest.partition(":")
            vdev.endpoint(int(ep, 0)).nak(float(secs) if secs else float("inf"))
        elif kind == "unplug":
            vdev.unplug()
        elif kind == "unplug-after":
            timer = threading.Timer(float(rest), vdev.unplug)
            timer.daemon = True
            timer.start()
            ctx.call_on_close(timer.cancel)
        elif kind == "report":
            ctx.call_on_close(functools.partial(_report_received, vdev))
        else:
            raise click.BadParameter(f"unknown fault {fault!r}", param_hint="--virtual-fault")


def _report_received(vdev: VirtualDevice) -> None:
    for ep in vdev.endpoints:
        if not ep.address & 0x80:
            click.echo(f"virtual: 0x{ep.address:02X} received {ep.received_bytes} bytes", err=True)


def resolve(ctx: click.Context, text: str) -> Any:
    """DEVICE -> a source for :func:`wdfusb.open` (the ``targets`` registry first, then
    :func:`~wdfusb.device.parse_target`). A virtual device made here is closed with the command."""
    targets: Mapping[str, Any] = ctx.obj["targets"]
    if text in targets:
        source = targets[text]
    else:
        try:
            source = parse_target(text)
        except ValueError as exc:
            raise click.BadParameter(
                f"{text!r}: {exc}. Use VID:PID[:SERIAL] (hex), BUS/ADDR or virtual[:full|high|super|none]",
                param_hint="DEVICE",
            ) from None
        if isinstance(source, VirtualDevice):
            ctx.call_on_close(source.close)
    if isinstance(source, VirtualDevice):
        _apply_faults(ctx, source, ctx.obj.get("faults", ()))
    ctx.obj["source"] = source
    return source


def _data_pipe(device: Device, ep: int, want_in: bool) -> Pipe:
    """The bulk or interrupt pipe a write (OUT) or read (IN) command uses, or a usage error."""
    pipe = device.pipe(ep)
    if pipe.is_in != want_in or pipe.type not in ("bulk", "interrupt"):
        fits = [p for p in device.pipes if p.is_in == want_in and p.type in ("bulk", "interrupt")]
        raise click.UsageError(
            f"pipe 0x{ep:02X} is a {pipe.type} {'IN' if pipe.is_in else 'OUT'} pipe; "
            f"{'read' if want_in else 'write'} needs a bulk or interrupt {'IN' if want_in else 'OUT'} pipe "
            f"(this device has: {', '.join(f'0x{p.address:02X}' for p in fits) or 'none'})"
        )
    return pipe


def _check_chunk(pipe: Pipe, chunk: int) -> None:
    if chunk % pipe.max_packet:
        hint = f"{chunk} is not a multiple of pipe 0x{pipe.address:02X}'s max packet size ({pipe.max_packet})"
        raise click.BadParameter(hint, param_hint="--chunk")


def _progress(quiet: bool) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())  # fmt: skip
    return Progress(*columns, console=Console(stderr=True, markup=False), disable=quiet)


def _check_writable(path: str | None) -> None:
    """A usage error now for an output file that cannot be written (it is opened and, if it
    did not exist, removed again)."""
    if not path:
        return
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise click.UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not existed:
        os.remove(path)


def _stdout() -> Console:
    console = Console(highlight=False, markup=False)
    if not console.is_terminal:
        console.width = 120
    return console


# ---- list and info ------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="wdfusb")
@click.option("--virtual-fault", "faults", multiple=True, hidden=True, help="test hook: inject a virtual-device fault")
@click.pass_context
def cli(ctx: click.Context, faults: tuple[str, ...]) -> None:
    """wdfusb: WDF-style USB I/O from the command line, over libusb or the built-in virtual device.

    DEVICE is VID:PID[:SERIAL] (hex), BUS/ADDR, a port path BUS-PORT[.PORT...] (as `list` shows),
    or virtual[:full|high|super|none].
    """
    ctx.ensure_object(dict)
    ctx.obj.setdefault("targets", {})
    ctx.obj["faults"] = faults


def device_rows() -> tuple[list[dict[str, Any]], str | None]:
    """What ``list`` shows: every libusb device, then the virtual one; and a warning, if any."""
    rows, warning = [], None
    try:
        devices = sorted(list_devices(virtual=False), key=lambda d: (d.bus, d.ports))
        ids = [(d.vid, d.pid) for d in devices]
        for d in devices:
            names = d.strings()
            target = f"{d.vid:04x}:{d.pid:04x}" if ids.count((d.vid, d.pid)) == 1 else d.port_path
            rows.append({"target": target, "vid": f"{d.vid:04x}", "pid": f"{d.pid:04x}", "bus": d.bus,
                         "address": d.address, "port": d.port_path, "speed": d.speed, **names,
                         "virtual": False, "remote": d.remote})  # fmt: skip
    except UsbError as exc:
        what = "libusb could not be loaded" if isinstance(exc, LibusbNotFoundError) else "listing USB devices failed"
        warning = f"{what}, only the virtual device is listed: {' '.join(str(exc.strerror).split())}"
    with VirtualDevice() as v:
        rows.append({"target": "virtual", "vid": f"{v.vid:04x}", "pid": f"{v.pid:04x}",
                     "bus": None, "address": None, "port": None, "speed": "high", "manufacturer": v.manufacturer,
                     "product": v.product, "serial": v.serial, "virtual": True, "remote": False})  # fmt: skip
    return rows, warning


def idle_usbip_hubs(rows: list[dict[str, Any]]) -> list[str]:
    """Root hubs of USB/IP virtual host controllers with nothing attached (Linux's vhci_hcd has
    several, each a USB 2 and a USB 3 root hub): the table leaves them out, the JSON list keeps them."""
    hubs = [r for r in rows if r["port"] and r["port"] == f"usb{r['bus']}"]
    used = {r["bus"] for r in rows if r["port"] and r not in hubs}
    return [r["port"] for r in hubs if r["bus"] not in used and is_remote_bus(r["bus"])]


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
@click.pass_context
@guarded
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every USB device libusb sees (by bus and port), plus the built-in virtual device. A device
    attached over the network (USB/IP: ``usbip attach``) is marked remote; the table leaves out
    USB/IP root hubs with nothing attached (``--json`` lists them)."""
    rows, warning = device_rows()
    if warning:
        _err(f"warning: {warning}")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="USB devices", title_justify="left", box=box.SIMPLE)
    for col in ("DEVICE", "VID:PID", "port", "bus/addr", "speed", "manufacturer", "product", "serial"):
        table.add_column(col)
    idle = idle_usbip_hubs(rows)
    for r in rows:
        if r["port"] in idle:
            continue
        where = "-" if r["virtual"] else f"{r['bus']}/{r['address']}"
        names = [r[k] or "?" for k in ("manufacturer", "product", "serial")]
        port = (r["port"] or "-") + ("\nremote (usbip)" if r["remote"] else "")
        table.add_row(r["target"], f"{r['vid']}:{r['pid']}", port, where, r["speed"], *names)
    out = _stdout()
    out.print(table)
    if idle:
        out.print(f"not shown: {len(idle)} USB/IP root hubs with nothing attached ({idle[0]} ... {idle[-1]})")
    if any(r["remote"] for r in rows):
        out.print("remote: attached over the network (USB/IP, usbip attach); every transfer is a round trip")
    out.print("the virtual device also runs as virtual:full, virtual:super and virtual:none (unpaced)")


PIPE_TYPES = {t: f"WdfUsbPipeType{name.capitalize()}" for t, name in TYPE_NAMES.items()}
PIPE_FIELDS = ("EndpointAddress", "PipeType", "MaximumPacketSize", "Interval", "SettingIndex", "MaximumTransferSize")


def _pipe_info(index: int, setting: SettingInfo, ep: EndpointInfo) -> dict[str, Any]:
    """WDF_USB_PIPE_INFORMATION of one endpoint (plus its index and direction)."""
    return dict(PipeIndex=index, EndpointAddress=ep.address, Direction="IN" if ep.is_in else "OUT",
                PipeType=PIPE_TYPES[ep.type], MaximumPacketSize=ep.max_packet * ep.mult, Interval=ep.interval,
                SettingIndex=setting.alternate, MaximumTransferSize=MAX_TRANSFER_SIZE)  # fmt: skip


def _setting_info(s: SettingInfo) -> dict[str, Any]:
    codes = {k: f"0x{getattr(s, 'interface_' + k):02X}" for k in ("class", "subclass", "protocol")}
    return {"SettingIndex": s.alternate, **codes, "pipes": [_pipe_info(i, s, ep) for i, ep in enumerate(s.endpoints)]}


def describe(source: Any, text: str) -> dict[str, Any]:
    """What ``info`` shows: device strings, then each interface's settings and their pipes with the
    WDF_USB_PIPE_INFORMATION fields. Opens the device without claiming any interface."""
    rc, core = CoreDevice.open(source)
    if core is None:
        raise error_for(rc, 0, f"open {text}")
    try:
        d, native, cfg = DeviceDescriptor.parse(core.device_descriptor), core.native, core.config
        speed = SPEED_LABELS.get(core.speed, "unknown") if core.speed or not native.is_virtual else "unpaced"
        interfaces = [{"number": i.number, "settings": [_setting_info(s) for s in i.settings]} for i in cfg.interfaces]
        strings = {k: read_string(native, getattr(d, "i_" + k)) for k in ("manufacturer", "product", "serial")}
        usb = f"{d.bcd_usb >> 8:x}.{d.bcd_usb & 0xFF:02x}"
        config = {"value": cfg.value, "attributes": f"0x{cfg.attributes:02X}", "max_power_ma": cfg.max_power_ma}
        head = {"device": text, "vid": f"{d.vid:04x}", "pid": f"{d.pid:04x}", "usb": usb, "speed": speed,
                "remote": bool(getattr(source, "remote", False))}  # fmt: skip
        config["interfaces"] = interfaces
        return {**head, **strings, "num_configurations": d.num_configurations, "configuration": config}
    finally:
        core.close()


@cli.command()
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@click.pass_context
@guarded
def info(ctx: click.Context, device: str, as_json: bool) -> None:
    """Configurations, interfaces, alternate settings and pipes (WDF_USB_PIPE_INFORMATION fields)."""
    data = describe(resolve(ctx, device), device)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    out = _stdout()
    names = " / ".join(str(data[k]) for k in ("manufacturer", "product") if data[k])
    out.print(f"{data['device']}  {data['vid']}:{data['pid']}  {names}  serial {data['serial'] or '-'}")
    remote = ", remote (usbip)" if data["remote"] else ""
    out.print(f"USB {data['usb']}, {data['speed']} speed{remote}, {data['num_configurations']} configuration(s)")
    cfg = data["configuration"]
    out.print(f"Configuration {cfg['value']}: attributes {cfg['attributes']}, {cfg['max_power_ma']} mA")
    for iface in cfg["interfaces"]:
        for s in iface["settings"]:
            title = f"Interface {iface['number']}, SettingIndex {s['SettingIndex']} (class {s['class']})"
            table = Table(title=title, title_justify="left", box=box.SIMPLE)
            for col in PIPE_FIELDS:
                table.add_column(col, justify="left" if col in ("PipeType", "EndpointAddress") else "right")
            for p in s["pipes"]:
                address = f"0x{p['EndpointAddress']:02X} {p['Direction']}"
                table.add_row(address, p["PipeType"], *(str(p[c]) for c in PIPE_FIELDS[2:5]), "0xFFFFFFFF")
            out.print(table)


# ---- write ---------------------------------------------------------------------------------------


def _read_full(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at end of file."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _total_size(f: BinaryIO) -> int | None:
    """The bytes left in a regular file (None for pipes, terminals and streams)."""
    try:
        st = os.fstat(f.fileno())
        return max(0, st.st_size - f.tell()) if stat.S_ISREG(st.st_mode) else None
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is both
        return None


@cli.command()
@click.argument("device")
@click.argument("endpoint", callback=_parsed(parse_endpoint))
@click.argument("file", type=click.File("rb"), default="-")
@click.option("--timeout", default="5", callback=_parsed(parse_timeout), show_default=True,
              help="seconds each transfer may take ('inf': wait for ever)")  # fmt: skip
@click.option("--chunk", default="1M", callback=_parsed(bench.parse_size), show_default=True,
              help="bytes per transfer (a multiple of the pipe's max packet size)")  # fmt: skip
@click.option("--depth", type=int, default=1, show_default=True, help="transfers in flight (>1: the streaming writer)")
@click.option("--zlp", is_flag=True, help="end the data with a zero-length packet if it fills whole packets")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.pass_context
@guarded
def write(ctx: click.Context, device: str, endpoint: int, file: BinaryIO, timeout: float | None, chunk: int,
          depth: int, zlp: bool, quiet: bool) -> None:  # fmt: skip
    """Send FILE (default: standard input) to an OUT pipe. The bytes written are always reported."""
    if depth < 1:
        raise click.BadParameter(f"{depth} (must be >= 1)", param_hint="--depth")
    why = streaming_unavailable() if depth > 1 else None
    if why:
        raise click.BadParameter(f"{depth}: only --depth 1 works in this build ({why})", param_hint="--depth")
    source = resolve(ctx, device)
    written, t0 = 0, time.perf_counter()
    dev = open_device(source)
    try:
        pipe = _data_pipe(dev, endpoint, want_in=False)
        _check_chunk(pipe, chunk)
        with _progress(quiet) as progress:
            task = progress.add_task(f"0x{endpoint:02X}", total=_total_size(file))
            try:
                if depth == 1:
                    advance = functools.partial(progress.update, task)
                    written = _write_sync(pipe, file, chunk, timeout, zlp, lambda n: advance(advance=n))
                else:
                    done = functools.partial(progress.update, task)
                    written = _write_stream(pipe, file, chunk, depth, timeout, zlp, lambda n: done(completed=n))
            except UsbError as exc:
                written = exc.bytes_transferred
                raise
            except KeyboardInterrupt as exc:
                written = int(getattr(exc, "bytes_transferred", 0))  # exact: the engine counted it
                raise
    except (UsbError, KeyboardInterrupt) as exc:
        why = "the interrupt" if isinstance(exc, KeyboardInterrupt) else "the failure"
        _err(f"wrote {written} bytes to pipe 0x{endpoint:02X} before {why}")
        raise
    finally:
        dev.close()
    seconds = time.perf_counter() - t0
    rate = written / seconds / 1e6 if seconds > 0 else 0.0
    click.echo(f"wrote {written} bytes to pipe 0x{endpoint:02X} of {device} in {seconds:.3f} s ({rate:.3f} MB/s)")


def _write_sync(pipe: Pipe, f: BinaryIO, chunk: int, timeout: float | None, zlp: bool,
                advance: Callable[[int], Any]) -> int:  # fmt: skip
    """One transfer per chunk; the last one carries the ZLP (a read-ahead tells which is last)."""
    written = 0
    data = _read_full(f, chunk)
    while True:
        nxt = _read_full(f, chunk) if len(data) == chunk else b""
        last = not nxt
        if data or (zlp and written == 0):
            try:
                n = pipe.write(data, timeout, zlp=zlp and last)
            except UsbError as exc:
                exc.bytes_transferred += written
                raise
            except KeyboardInterrupt as exc:
                exc.bytes_transferred = written + getattr(exc, "bytes_transferred", 0)  # type: ignore[attr-defined]
                raise
            written += n
            advance(n)
        if last:
            return written
        data = nxt


def _write_stream(pipe: Pipe, f: BinaryIO, chunk: int, depth: int, timeout: float | None, zlp: bool,
                  completed: Callable[[int], Any]) -> int:  # fmt: skip
    """``depth`` transfers in flight through the streaming writer (issue 5)."""
    w = pipe.writer(depth=depth, chunk=chunk, timeout=timeout, zlp="end" if zlp else "never")
    try:
        with w:
            while data := _read_full(f, chunk):
                w.write(data)
                completed(w.bytes_written)
            w.flush()
    except KeyboardInterrupt as exc:  # wherever it landed, the writer cancelled and counted everything
        exc.bytes_transferred = w.bytes_written  # type: ignore[attr-defined]
        raise
    written = w.bytes_written
    completed(written)
    return written


# ---- read ---------------------------------------------------------------------------------------


class _Capture:
    """Where the reader's data goes: the output file, the pattern check and the progress bar."""

    def __init__(self, out: BinaryIO, pattern: str | None, max_packet: int, advance: Callable[[int], Any]) -> None:
        self.out, self.pattern, self.max_packet, self.advance = out, pattern, max_packet, advance
        self.offset = 0
        self.mismatch: int | None = None

    def write(self, data: memoryview) -> int:
        if self.pattern and self.mismatch is None:
            self.mismatch = patterns.first_mismatch(data, self.pattern, self.offset, self.max_packet)
        self.out.write(data)
        self.offset += len(data)
        self.advance(len(data))
        return len(data)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("device")
@click.argument("endpoint", callback=_parsed(parse_endpoint))
@click.argument("file", type=click.File("wb"), default="-")
@click.option("--bytes", "nbytes", default=None, callback=_parsed(bench.parse_size),
              help="read exactly this many bytes (a time-out first is an error); default: to a time-out")  # fmt: skip
@click.option("--timeout", default="5", callback=_parsed(parse_timeout), show_default=True,
              help="seconds each read may wait for data ('inf': wait for ever)")  # fmt: skip
@click.option("--chunk", default="64K", callback=_parsed(bench.parse_size), show_default=True,
              help="bytes per read (a multiple of the pipe's max packet size)")  # fmt: skip
@click.option("--depth", type=int, default=8, show_default=True, help="reads in flight")
@click.option("--check", "pattern", type=click.Choice(patterns.PATTERNS), default=None,
              help="check every byte against a source's pattern (Gadget Zero's mod63 ...); a virtual "
              "device's endpoint becomes a source of it (unless it is one)")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.pass_context
@guarded
def read(ctx: click.Context, device: str, endpoint: int, file: BinaryIO, nbytes: int | None, timeout: float | None,
         chunk: int, depth: int, pattern: str | None, quiet: bool) -> None:  # fmt: skip
    """Read an IN pipe into FILE (default: standard output) with DEPTH reads in flight. The bytes
    read are always reported (on standard error)."""
    if depth < 1:
        raise click.BadParameter(f"{depth} (must be >= 1)", param_hint="--depth")
    source = resolve(ctx, device)
    got, t0 = 0, time.perf_counter()
    dev = open_device(source)
    try:
        pipe = _data_pipe(dev, endpoint, want_in=True)
        _check_chunk(pipe, chunk)
        if pattern and isinstance(source, VirtualDevice) and source.endpoint(endpoint).source_pattern is None:
            source.endpoint(endpoint).source(pattern)
        with _progress(quiet) as progress, pipe.reader(depth=depth, chunk=chunk, timeout=timeout) as reader:
            task = progress.add_task(f"0x{endpoint:02X}", total=nbytes)
            capture = _Capture(file, pattern, pipe.max_packet, lambda n: progress.update(task, advance=n))
            try:
                got = reader.read_to(capture, nbytes if nbytes is not None else 1 << 62)
            except UsbTimeoutError as exc:
                got = exc.bytes_transferred
                if nbytes is not None:
                    raise
            except (UsbError, KeyboardInterrupt) as exc:
                got = int(getattr(exc, "bytes_transferred", 0))
                raise
    except (UsbError, KeyboardInterrupt) as exc:
        why = "the interrupt" if isinstance(exc, KeyboardInterrupt) else "the failure"
        _err(f"read {got} bytes from pipe 0x{endpoint:02X} before {why}")
        raise
    finally:
        dev.close()
        file.flush()
    seconds = time.perf_counter() - t0
    rate = got / seconds / 1e6 if seconds > 0 else 0.0
    _err(f"read {got} bytes from pipe 0x{endpoint:02X} of {device} in {seconds:.3f} s ({rate:.3f} MB/s)")
    if capture.mismatch is not None:
        _err(f"error: byte {capture.mismatch} of the stream is not the {pattern} pattern's")
        ctx.exit(ExitCode.IO_ERROR)


# ---- control ------------------------------------------------------------------------------------


def parse_byte_field(text: str) -> int:
    """``0xC0``, ``192`` -> an integer (the setup packet checks its range)."""
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a number (use e.g. 0xC0)") from None


def parse_hex(text: str) -> bytes:
    """``"01 02 ff"``, ``"0102ff"``, ``"01:02:ff"`` -> bytes."""
    try:
        return bytes.fromhex(text.replace(":", " ").replace(",", " "))
    except ValueError:
        raise ValueError(f"{text!r} is not hex bytes (use e.g. '01 02 ff')") from None


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("device")
@click.argument("request_type", callback=_parsed(parse_byte_field))
@click.argument("request", callback=_parsed(parse_byte_field))
@click.option("--value", default="0", callback=_parsed(parse_byte_field), show_default=True, help="wValue")
@click.option("--index", default="0", callback=_parsed(parse_byte_field), show_default=True, help="wIndex")
@click.option("--length", default="0", callback=_parsed(parse_byte_field), show_default=True,
              help="bytes to read (device-to-host requests)")  # fmt: skip
@click.option("--data", default="", callback=_parsed(parse_hex), help="hex bytes to send (host-to-device requests)")
@click.option("--timeout", default="5", callback=_parsed(parse_timeout), show_default=True,
              help="seconds the request may take ('inf': wait for ever)")  # fmt: skip
@click.pass_context
@guarded
def control(ctx: click.Context, device: str, request_type: int, request: int, value: int, index: int, length: int,
            data: bytes, timeout: float | None) -> None:  # fmt: skip
    """Send one control request on EP0: REQUEST_TYPE bit 7 set reads --length bytes and prints
    them in hex; clear, it sends --data. E.g. ``wdfusb control virtual 0xC0 0x5c --length 8``."""
    reading = bool(request_type & 0x80)
    if reading and data:
        raise click.BadParameter("a device-to-host request (bit 7 set) takes --length, not --data", param_hint="--data")
    if not reading and length:
        raise click.BadParameter(
            "a host-to-device request (bit 7 clear) takes --data, not --length", param_hint="--length"
        )
    with open_device(resolve(ctx, device)) as dev:
        if reading:
            click.echo(dev.control_read(request_type, request, value, index, length, timeout).hex(" "))
        else:
            sent = dev.control_write(request_type, request, value, index, data, timeout)
            click.echo(f"sent {sent} bytes")


# ---- bench ---------------------------------------------------------------------------------------


@cli.command("bench", epilog=EXIT_CODES_HELP)
@click.argument("device")
@click.argument("endpoint", required=False, callback=_parsed(parse_endpoint))
@click.option("--sizes", callback=_parsed(bench.parse_sizes, bench.DEFAULT_SIZES),
              help="transfer sizes, e.g. 512,8K,1M  [default: 512,2K,8K,32K,128K,512K,2M,4M]")  # fmt: skip
@click.option("--methods", callback=_parsed(bench.parse_methods, bench.DEFAULT_METHODS),
              help=f"comma-separated, from {','.join(METHODS)}  [default: all]")  # fmt: skip
@click.option("--depths", default="1,8", callback=_parsed(bench.parse_depths), show_default=True,
              help="queue depths of the streaming method (the synchronous ones run at depth 1)")  # fmt: skip
@click.option("--duration", type=click.FloatRange(0.01, 10.0), default=bench.DEFAULT_DURATION, show_default=True,
              help="seconds per cell after calibration, in 3 timed rounds (the fastest is reported)")  # fmt: skip
@click.option("--pattern", type=click.Choice(bench.PATTERNS), default="zeros", show_default=True,
              help="data: zeros, or mod63 (Gadget Zero pattern=1: byte j of each packet = j % 63)")  # fmt: skip
@click.option("--timeout", default="10", callback=_parsed(parse_timeout), show_default=True,
              help="seconds per transfer")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the results as JSON")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="write the results as CSV")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="plot MB/s and µs/transfer (PNG, SVG ...)")
@click.option("-q", "--quiet", is_flag=True, help="no live progress")
@click.option("--control", is_flag=True,
              help="time control round trips on EP0 instead (a 1-byte vendor IN + a 64-byte vendor OUT)")  # fmt: skip
@click.pass_context
@guarded
def bench_cmd(ctx: click.Context, device: str, endpoint: int | None, sizes: tuple[int, ...],
              methods: tuple[str, ...], depths: tuple[int, ...], duration: float, pattern: str,
              timeout: float | None, json_path: str | None, csv_path: str | None, plot_path: str | None,
              quiet: bool, control: bool) -> None:  # fmt: skip
    """Benchmark writes to an OUT pipe, or reads from an IN pipe (ENDPOINT default: the first bulk
    OUT pipe; a virtual device's IN pipe becomes a source): transfer sizes x methods x queue
    depths, a table, and how close each method came to the bus limit. With --control: control
    round trips per method instead (Gadget Zero's 0x5c/0x5b requests)."""
    from ._bench_report import LiveProgress, results_table, summary_lines

    if control:
        _bench_control(ctx, device, duration, timeout, json_path)
        return
    if plot_path and bench.plot_unavailable():
        raise click.UsageError(str(bench.plot_unavailable()))
    for path in (json_path, csv_path, plot_path):
        _check_writable(path)  # before the benchmark runs, not after
    source = resolve(ctx, device)
    with LiveProgress(Console(stderr=True, highlight=False, markup=False), quiet) as live:
        result = bench.run(source, endpoint, sizes=sizes, methods=methods, depths=depths, duration=duration,
                           pattern=pattern, timeout=timeout, on_progress=live, label=device)  # fmt: skip
    out = _stdout()
    out.print(results_table(result))
    for line in summary_lines(result):
        out.print(line)
    for path, writer in ((json_path, bench.write_json), (csv_path, bench.write_csv), (plot_path, bench.plot)):
        if path:
            writer(result, path)
            out.print(f"wrote {path}")


def _bench_control(
    ctx: click.Context, device: str, duration: float, timeout: float | None, json_path: str | None
) -> None:
    from dataclasses import asdict

    from ._bench_control import run_control

    rows = run_control(resolve(ctx, device), duration=duration, timeout=timeout)
    table = Table(title=f"wdfusb bench {device} --control: 1-byte vendor IN + 64-byte vendor OUT", box=box.SIMPLE)
    for col in ("method", "round trips", "µs/round trip", "x c-loop"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        if r.skipped:
            table.add_row(r.method, "-", "-", f"skipped: {r.skipped}")
        else:
            ratio = f"{r.ratio:.3f}" if r.ratio is not None else "-"
            table.add_row(r.method, str(r.round_trips), f"{r.us_per_round_trip:.2f}", ratio)
    out = _stdout()
    out.print(table)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": device, "rows": [asdict(r) for r in rows]}, f, indent=2)
        out.print(f"wrote {json_path}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("devices", metavar="[DEVICE]...", nargs=-1)
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="default", show_default=True,
              help="what the virtual devices are (osrfx2: the OSR USB-FX2 board)")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; USB/IP has no authentication: keep it on a private network")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_USBIP_PORT, show_default=True,
              help="TCP port (0: any free one, printed)")  # fmt: skip
@click.pass_context
@guarded
def serve(ctx: click.Context, devices: tuple[str, ...], profile: str, host: str, port: int) -> None:
    """Export virtual devices over USB/IP until Ctrl-C (DEVICE: virtual[:full|high|super|none], default
    virtual:high), so any USB stack can use them: on Linux, `usbip attach -r HOST -b BUSID`."""
    from .usbip import Server

    exported = []
    for text in devices or ("virtual:high",):
        vdev = parse_virtual(text, profile)
        if vdev is None:
            what = f"{text!r}: only virtual devices are served (virtual[:speed])"
            raise click.BadParameter(what, param_hint="DEVICE")
        ctx.call_on_close(vdev.close)
        _apply_faults(ctx, vdev, ctx.obj.get("faults", ()))
        exported.append(vdev)
    server = Server(exported, host, port)

    def listening(server: Server) -> None:
        for export in server.exports:
            d = export.device
            click.echo(f"serving {export.busid} ({d.vid:04x}:{d.pid:04x} {d.product}, {d.speed_name} speed) "
                       f"on {host}:{server.port}; attach: usbip --tcp-port {server.port} attach -r {host} "
                       f"-b {export.busid}")  # fmt: skip

    try:
        asyncio.run(server.serve_forever(listening))
    except KeyboardInterrupt:
        click.echo("stopped; every session's transfers were cancelled and drained", err=True)
    except OSError as exc:  # the port is taken, the address is not ours ...
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None, *, targets: Mapping[str, Any] | None = None) -> Any:
    """The ``wdfusb`` entry point. ``targets`` maps extra DEVICE names to sources (a test hook)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    return cli.main(args=args, prog_name="wdfusb", obj={"targets": dict(targets or {})})


__all__ = ["EXIT_CODES_HELP", "ExitCode", "cli", "describe", "device_rows", "exit_code_for", "main"]
