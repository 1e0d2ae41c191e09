"""How ``wdfusb bench`` shows a :class:`~wdfusb.bench.BenchResult`: a rich table and summary lines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import bench
from .bench import BUS_LIMITS, BenchResult, line_label


def size_text(n: int) -> str:
    """512 B, 2 KiB, 4 MiB ..."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def results_table(result: BenchResult) -> Table:
    """One row per cell: method, depth, size, transfers, MB/s, µs/transfer, x c-loop, % of the bus."""
    bus = f"% of {result.bus_limit_mb_s:g}" if result.bus_limit_mb_s else "% of bus"
    table = Table(
        title=f"wdfusb bench {result.device}: {result.direction} pipe 0x{result.endpoint:02X}, "
        f"{result.speed} speed, pattern {result.pattern}",
        title_justify="left",
    )
    for name, justify in (
        ("method", "left"),
        ("depth", "right"),
        ("size", "right"),
        ("transfers", "right"),
        ("MB/s", "right"),
        ("µs/transfer", "right"),
        ("x c-loop", "right"),
        (bus, "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    for c in result.cells:
        line = (c.method, c.depth)
        if previous is not None and line != previous:
            table.add_section()
        previous = line
        if not c.ok:
            table.add_row(c.method, str(c.depth), size_text(c.size), "-", "-", "-", "-", f"skipped: {c.skipped}")
            continue
        table.add_row(
            c.method,
            str(c.depth),
            size_text(c.size),
            str(c.count),
            f"{c.mb_s:.3f}",
            f"{c.us_per_transfer:.1f}",
            "-" if c.ratio is None else f"{c.ratio:.3f}",
            "-" if c.bus_pct is None else f"{c.bus_pct:.1f}",
        )
    return table


def summary_lines(result: BenchResult) -> list[str]:
    """The bus limit of the device's speed and how close each method came; skipped methods."""
    lines = []
    if result.bus_limit_mb_s:
        how = result.bus_limit_text or BUS_LIMITS[result.speed][1]
        lines.append(f"bus limit at {result.speed} speed: {result.bus_limit_mb_s:g} MB/s ({how})")
    else:
        lines.append(f"bus limit: none ({result.speed}: the device is not paced like a bus)")
    for method, depth in result.lines():
        best = result.best(method, depth)
        if best is None:
            continue
        pct = f" = {best.bus_pct:.1f} % of the bus limit" if best.bus_pct is not None else ""
        lines.append(f"  {line_label(method, depth):<22} best {best.mb_s:9.3f} MB/s at {size_text(best.size):>7}{pct}")
    for method, why in result.skipped.items():
        lines.append(f"  {method:<22} skipped: {why}")
    bad = [c for c in result.cells if c.ok and c.device_bytes is not None and c.device_bytes != c.bytes]
    if result.cells and any(c.device_bytes is not None for c in result.cells):
        if bad:
            lines.append(f"MISMATCH: the device counted other byte totals in {len(bad)} cell(s)")
        else:
            lines.append("every byte sent was counted by the virtual endpoint")
    lines.append(
        f"measured on {result.measured_on.get('host', '?')} ({result.measured_on.get('platform', '?')}), "
        f"{result.seconds:.1f} s"
    )
    return lines


class LiveProgress:
    """The live display of ``wdfusb bench``: a progress bar over the cells and one line per cell.

    Use as a context manager; pass the instance as ``on_progress`` to :func:`wdfusb.bench.run`."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.quiet = quiet
        columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, disable=quiet)
        self.task = self.progress.add_task("bench", total=None)

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, ev: bench.Progress) -> None:
        label = f"{line_label(ev.method, ev.depth)} {size_text(ev.size)}"
        self.progress.update(self.task, total=ev.total, completed=ev.index, description=label)
        c = ev.cell
        if c is not None and not self.quiet:
            what = f"skipped: {c.skipped}" if c.skipped else f"{c.mb_s:10.3f} MB/s {c.us_per_transfer:12.1f} µs"
            self.progress.console.print(f"  {label:<34} {what}")
