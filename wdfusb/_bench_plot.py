"""The benchmark plot (matplotlib, the ``plot`` extra): MB/s and µs/transfer vs transfer size."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bench import BenchResult

INSTALL_HINT = "plotting needs matplotlib: pip install 'wdfusb[plot]'"


def _size_label(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def plot(result: BenchResult, path: str | os.PathLike[str]) -> None:
    """Two panels side by side, log-x: MB/s (with the bus limit line) and µs per transfer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    from .bench import line_label

    fig, (ax_rate, ax_lat) = plt.subplots(1, 2, figsize=(13, 5.2))
    for method, depth in result.lines():
        cells = sorted(
            (c for c in result.cells if c.ok and (c.method, c.depth) == (method, depth)), key=lambda c: c.size
        )
        xs = [c.size for c in cells]
        style = "--" if method == "c-loop" else "-"
        label = line_label(method, depth)
        ax_rate.plot(xs, [c.mb_s for c in cells], style, marker="o", markersize=4, label=label)
        ax_lat.plot(xs, [c.us_per_transfer for c in cells], style, marker="o", markersize=4, label=label)
    if result.bus_limit_mb_s:
        ax_rate.axhline(result.bus_limit_mb_s, color="black", linestyle=":", linewidth=1.2)
        ax_rate.annotate(
            f"{result.speed}-speed bus limit {result.bus_limit_mb_s:g} MB/s",
            (result.sizes[0], result.bus_limit_mb_s),
            textcoords="offset points",
            xytext=(2, 4),
            fontsize=8,
        )
    ticks = result.sizes
    for ax in (ax_rate, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([_size_label(t) for t in ticks], rotation=45, fontsize=8)
        ax.set_xlabel("transfer size")
        ax.grid(True, which="both", alpha=0.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax_rate.set_ylabel("MB/s (10^6 bytes/s)")
    ax_rate.set_title("throughput")
    ax_lat.set_ylabel("µs per transfer")
    ax_lat.set_title("time per transfer")
    ax_rate.legend(fontsize=8, loc="lower right")
    where = result.measured_on
    fig.suptitle(
        f"wdfusb bench: {result.device} ({result.speed} speed), {result.direction} pipe 0x{result.endpoint:02X}, "
        f"pattern {result.pattern}\nmeasured on {where.get('host', '?')} ({where.get('platform', '?')}, "
        f"{where.get('cpus', '?')} CPUs), {result.started}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
