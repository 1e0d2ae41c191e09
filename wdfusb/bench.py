"""The benchmark: transfer sizes x methods x queue depths, writing to an OUT pipe or reading an IN pipe.

From Python::

    from wdfusb import bench
    result = bench.run("virtual:high")          # or a VirtualDevice / UsbDeviceInfo, endpoint=0x06
    bench.write_json(result, "bench.json"); bench.write_csv(result, "bench.csv")
    bench.plot(result, "bench.png")              # needs matplotlib (pip install 'wdfusb[plot]')

From the shell: ``wdfusb bench virtual:high 0x06 --json bench.json --plot bench.png``.

Each cell (method, depth, size) first calibrates how many transfers fill about
``duration / ROUNDS`` seconds, then times that many ``ROUNDS`` times and reports the
fastest round (a busy machine only ever slows a round down, so the fastest is the least
disturbed, as ``timeit`` reports); ``count``, ``bytes`` and ``seconds`` are the totals of
every round, all counted by the device. MB/s are 10^6 bytes per second, as bus
speeds are quoted. Every cell is compared with the ``c-loop`` reference of the same
size measured in the same run (``ratio``) and with the bus limit of the device's
speed (``bus_pct``). On the virtual device the bytes the endpoint received (or sent, for
a read) are read back and must equal the bytes moved (``device_bytes``); a virtual IN
endpoint is made a source of the pattern for the run (``VirtualEndpoint.source``).
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._bench_methods import METHODS, RUNNERS, Runner, is_virtual
from ._timeout import seconds
from .device import Device, parse_target
from .device import open as open_device

KIB, MIB = 1 << 10, 1 << 20
DEFAULT_SIZES: tuple[int, ...] = (512, 2 * KIB, 8 * KIB, 32 * KIB, 128 * KIB, 512 * KIB, 2 * MIB, 4 * MIB)
DEFAULT_METHODS: tuple[str, ...] = METHODS
DEFAULT_DEPTHS: tuple[int, ...] = (1, 8)
DEFAULT_DURATION = 0.3  # seconds per cell (after calibration)
MAX_COUNT = 5_000_000  # transfers per round, whatever the calibration says
ROUNDS = 3  # timed rounds per cell; the fastest is reported
PATTERNS = ("zeros", "mod63")
REFERENCE = "c-loop"

# Bulk payload the bus can carry per second (MB/s, 10^6 bytes), as the virtual device paces it.
BUS_LIMITS: dict[str, tuple[float, str]] = {
    "full": (1.216, "19 x 64 B per 1 ms frame"),
    "high": (53.248, "13 x 512 B per 125 µs micro-frame"),
    "super": (491.52, "60 x 1024 B per 125 µs"),
}


def bus_limit(speed: str) -> float | None:
    """The bulk bus limit in MB/s for a device speed ("full", "high", "super"); None if unpaced/unknown."""
    entry = BUS_LIMITS.get(speed)
    return entry[0] if entry else None


def pipe_limit(speed: str, pipe_type: str, max_packet: int, interval: int) -> tuple[float | None, str]:
    """The payload a pipe can carry per second (MB/s) and how: a bulk pipe the bus's limit, an
    interrupt pipe one packet per service interval (bInterval frames at full speed, 2^(bInterval-1)
    micro-frames above), as the virtual device paces them; None if unpaced or unknown."""
    if pipe_type != "interrupt":
        entry = BUS_LIMITS.get(speed)
        return (entry[0], entry[1]) if entry else (None, "")
    if speed not in BUS_LIMITS:
        return None, ""
    iv = max(1, interval)
    if speed == "full":
        period_us, text = 1000 * iv, f"{iv} ms"
    else:
        period_us = 125 << min(iv - 1, 15)
        text = f"{period_us} µs"
    return max_packet / period_us, f"one {max_packet} B interrupt packet per {text}"


def make_pattern(size: int, pattern: str = "zeros", max_packet: int = 512) -> np.ndarray:
    """``size`` bytes of test data. ``zeros``; or ``mod63``: Gadget Zero's ``pattern=1``, byte ``j``
    of every packet is ``j % 63`` (``buf[i] = (i % max_packet) % 63``), which f_sourcesink checks."""
    if pattern == "zeros":
        return np.zeros(size, dtype=np.uint8)
    if pattern == "mod63":
        return ((np.arange(size, dtype=np.int64) % max_packet) % 63).astype(np.uint8)
    raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")


@dataclass
class Cell:
    """One measurement: ``count`` transfers of ``size`` bytes by ``method`` with ``depth`` in flight."""

    method: str
    depth: int
    size: int
    count: int = 0
    seconds: float = 0.0
    bytes: int = 0
    mb_s: float = 0.0
    us_per_transfer: float = 0.0
    ratio: float | None = None  # mb_s / c-loop's mb_s at the same size, same run
    bus_pct: float | None = None  # mb_s as a percentage of the bus limit
    device_bytes: int | None = None  # what the virtual endpoint counted (None on real devices)
    skipped: str | None = None  # why the cell did not run

    @property
    def ok(self) -> bool:
        return self.skipped is None


@dataclass
class BenchResult:
    """A whole sweep, with where and how it was measured."""

    device: str
    speed: str
    endpoint: int
    max_packet: int
    bus_limit_mb_s: float | None
    pattern: str
    duration: float
    sizes: list[int]
    methods: list[str]
    depths: list[int]
    direction: str = "write"  # "read" on an IN pipe
    bus_limit_text: str = ""  # how the limit comes about ("13 x 512 B per 125 µs micro-frame" ...)
    cells: list[Cell] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it did not run
    measured_on: dict[str, str] = field(default_factory=dict)
    started: str = ""
    seconds: float = 0.0

    def cell(self, method: str, size: int, depth: int = 1) -> Cell | None:
        return next((c for c in self.cells if (c.method, c.size, c.depth) == (method, size, depth)), None)

    def lines(self) -> list[tuple[str, int]]:
        """The (method, depth) pairs that have at least one measured cell, in run order."""
        return list(dict.fromkeys((c.method, c.depth) for c in self.cells if c.ok))

    def best(self, method: str, depth: int) -> Cell | None:
        cells = [c for c in self.cells if c.ok and (c.method, c.depth) == (method, depth)]
        return max(cells, key=lambda c: c.mb_s) if cells else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    """What the progress callback gets: before each cell (``cell`` None) and after it."""

    index: int
    total: int
    method: str
    depth: int
    size: int
    cell: Cell | None = None


def line_label(method: str, depth: int) -> str:
    return f"{method} (depth {depth})" if method == "streaming" else method


def measured_on() -> dict[str, str]:
    """Where the run happened (stored with the results and shown on the plot)."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "wdfusb": __version__,
    }


def first_bulk_out(device: Device) -> int:
    """The address of the device's first bulk OUT pipe (the default benchmark endpoint)."""
    for p in device.pipes:
        if p.type == "bulk" and p.is_out:
            return p.address
    raise KeyError("the device has no bulk OUT pipe; name an ENDPOINT")


def _calibrate(runner: Runner, duration: float) -> int:
    """Transfers that take about ``duration`` seconds (runs growing probes first, also a warm-up)."""
    n, t = 1, 0.0
    while n < MAX_COUNT:
        t = runner.run(n)
        if t >= duration / 8:
            break
        n = min(MAX_COUNT, n * (16 if t < duration / 128 else 4))
    per = max(t / n, 1e-9)
    return max(1, min(MAX_COUNT, round(duration / per)))


def _received(source: Any, endpoint: int) -> int | None:
    """The bytes a virtual endpoint took (OUT) or gave (IN); None on real devices."""
    if not is_virtual(source):
        return None
    ep = source.endpoint(endpoint)
    return ep.sent_bytes if endpoint & 0x80 else ep.received_bytes


def run(
    target: Any,
    endpoint: int | None = None,
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    methods: Sequence[str] = DEFAULT_METHODS,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    duration: float = DEFAULT_DURATION,
    pattern: str = "zeros",
    timeout: float | None = 10.0,
    on_progress: Callable[[Progress], None] | None = None,
    label: str | None = None,
) -> BenchResult:
    """Run the sweep on a pipe of ``target`` (a string as ``wdfusb.open`` takes, a
    :class:`VirtualDevice` or a :class:`UsbDeviceInfo`): writes to an OUT pipe, reads from an
    IN pipe; ``endpoint`` None = first bulk OUT.

    ``depths`` are the queue depths of the methods that keep several transfers in flight
    (streaming); the synchronous methods always run at depth 1. ``timeout`` is per transfer
    (seconds; ``None`` or ``math.inf``: none).
    Methods that cannot run (not installed, cannot reach the device) land in
    ``result.skipped`` with the reason. A transfer error stops the run and propagates
    (a :class:`UsbError` with its byte count); the device is closed either way.
    """
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError("sizes must be positive byte counts")
    if not depths or any(d < 1 for d in depths):
        raise ValueError("depths must be >= 1")
    if not duration > 0:
        raise ValueError("duration must be > 0 seconds")
    timeout = seconds(timeout)  # math.inf: no time-out, as None
    source = parse_target(target) if isinstance(target, str) else target
    owned = isinstance(target, str) and is_virtual(source)
    sourced = False
    try:
        with open_device(source) as dev:
            ep = first_bulk_out(dev) if endpoint is None else endpoint
            pipe = dev.pipe(ep)
            if pipe.type not in ("bulk", "interrupt"):
                raise ValueError(f"pipe 0x{ep:02X} is a {pipe.type} pipe; the benchmark needs a bulk or interrupt pipe")
            speed, max_packet = dev.speed, pipe.max_packet
            limit, limit_text = pipe_limit(speed, pipe.type, pipe.max_packet, pipe.interval)
        sourced = pipe.is_in and is_virtual(source) and source.endpoint(ep).source_pattern is None
        if sourced:
            source.endpoint(ep).source(pattern)  # for the run (undone below)
        result = BenchResult(
            device=label or (target if isinstance(target, str) else str(source)),
            speed=speed,
            endpoint=ep,
            max_packet=max_packet,
            bus_limit_mb_s=limit,
            bus_limit_text=limit_text,
            pattern=pattern,
            duration=duration,
            sizes=sorted(set(sizes)),
            methods=[m for m in METHODS if m in methods],
            depths=sorted(set(depths)),
            direction="read" if pipe.is_in else "write",
            measured_on=measured_on(),
            started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        )
        _sweep(result, source, timeout, on_progress)
        return result
    finally:
        if owned:
            source.close()
        elif sourced:
            source.endpoint(ep).source(None)


def _sweep(result: BenchResult, source: Any, timeout: float | None, on_progress: Any) -> None:
    plan: list[tuple[type[Runner], int]] = []
    for name in result.methods:
        cls = RUNNERS[name]
        why = cls.unavailable(source)
        if why:
            result.skipped[name] = why
            continue
        plan += [(cls, d) for d in result.depths if d <= cls.max_depth] if cls.max_depth > 1 else [(cls, 1)]
    data = make_pattern(max(result.sizes), result.pattern, result.max_packet).tobytes()
    total = len(plan) * len(result.sizes)
    index = 0
    t_start = time.perf_counter()
    reference: dict[int, float] = {}
    for cls, depth in plan:
        runner = cls(source, result.endpoint, timeout)
        runner.open()
        try:
            for size in result.sizes:
                if on_progress:
                    on_progress(Progress(index, total, cls.name, depth, size))
                cell = _measure(runner, data[:size], depth, result, source)
                if cell.ok and cls.name == "c-loop" and depth == 1:
                    reference[size] = cell.mb_s
                if cell.ok and size in reference:
                    cell.ratio = cell.mb_s / reference[size] if reference[size] else None
                result.cells.append(cell)
                index += 1
                if on_progress:
                    on_progress(Progress(index, total, cls.name, depth, size, cell))
        finally:
            runner.close()
    result.seconds = time.perf_counter() - t_start


def _measure(runner: Runner, data: bytes, depth: int, result: BenchResult, source: Any) -> Cell:
    cell = Cell(runner.name, depth, len(data))
    why = runner.prepare(data, depth)
    try:
        if why:
            cell.skipped = why
            return cell
        count = _calibrate(runner, result.duration / ROUNDS)
        before = _received(source, result.endpoint)
        rounds = [runner.run(count) for _ in range(ROUNDS)]
        after = _received(source, result.endpoint)
    finally:
        runner.finish()
    best = min(rounds)
    cell.count, cell.seconds, cell.bytes = count * ROUNDS, sum(rounds), count * ROUNDS * len(data)
    if before is not None and after is not None:
        cell.device_bytes = after - before
    cell.mb_s = count * len(data) / best / 1e6 if best > 0 else float("inf")
    cell.us_per_transfer = best / count * 1e6
    if result.bus_limit_mb_s:
        cell.bus_pct = 100.0 * cell.mb_s / result.bus_limit_mb_s
    return cell


# ---- parsing (the CLI's --sizes/--methods/--depths) ----------------------------------------


def parse_size(text: str) -> int:
    """``512``, ``2K``/``2KiB``, ``1M``/``1MiB`` -> bytes (binary units); ValueError otherwise."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": KIB, "m": MIB, "g": 1 << 30}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 512, 64K, 4M)") from None
    if value <= 0:
        raise ValueError(f"sizes must be > 0, not {text!r}")
    return value


def parse_sizes(text: str) -> tuple[int, ...]:
    """``512,8K,1M`` -> sizes in bytes."""
    sizes = tuple(parse_size(v) for v in text.split(",") if v.strip())
    if not sizes:
        raise ValueError("no size given")
    return sizes


def parse_methods(text: str) -> tuple[str, ...]:
    """``c-loop,pythonic`` -> method names (checked)."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in RUNNERS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    return names


def parse_depths(text: str) -> tuple[int, ...]:
    """``1,8`` -> queue depths (each >= 1)."""
    try:
        depths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r}: depths are integers, e.g. 1,8") from None
    if not depths or min(depths) < 1:
        raise ValueError("depths must be >= 1")
    return depths


# ---- writers -----------------------------------------------------------------------------

CSV_FIELDS = [
    "device",
    "speed",
    "endpoint",
    "method",
    "depth",
    "size",
    "count",
    "seconds",
    "bytes",
    "mb_s",
    "us_per_transfer",
    "ratio",
    "bus_limit_mb_s",
    "bus_pct",
    "device_bytes",
    "skipped",
]


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> None:
    """The whole result (settings, where it ran, every cell, skipped methods) as JSON."""
    Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def read_json(path: str | os.PathLike[str]) -> BenchResult:
    """A result written by :func:`write_json`."""
    raw = json.loads(Path(path).read_text())
    raw["cells"] = [Cell(**c) for c in raw["cells"]]
    return BenchResult(**raw)


def write_csv(result: BenchResult, path: str | os.PathLike[str]) -> None:
    """One row per cell, with the device, speed and bus limit on every row."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for c in result.cells:
            row = asdict(c)
            row.update(
                device=result.device,
                speed=result.speed,
                endpoint=f"0x{result.endpoint:02X}",
                bus_limit_mb_s=result.bus_limit_mb_s,
            )
            w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})


def plot(result: BenchResult, path: str | os.PathLike[str]) -> None:
    """MB/s and µs/transfer vs transfer size (log x), one line per method, with the bus limit.

    Raises :class:`ImportError` with the install hint when matplotlib is missing."""
    from ._bench_plot import plot as _plot

    _plot(result, path)


def plot_unavailable() -> str | None:
    """Why :func:`plot` cannot work here (None when matplotlib imports)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "plotting needs matplotlib: pip install 'wdfusb[plot]'"
    return None


__all__ = [
    "BUS_LIMITS",
    "DEFAULT_DEPTHS",
    "DEFAULT_METHODS",
    "DEFAULT_SIZES",
    "PATTERNS",
    "BenchResult",
    "Cell",
    "Progress",
    "bus_limit",
    "first_bulk_out",
    "make_pattern",
    "parse_depths",
    "parse_methods",
    "parse_size",
    "parse_sizes",
    "plot",
    "plot_unavailable",
    "read_json",
    "run",
    "write_csv",
    "write_json",
]
