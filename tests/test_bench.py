"""The benchmark engine (``wdfusb.bench``) and ``wdfusb bench`` on the virtual device.

Nothing here asserts a speed: the checks are that every cell ran, that the bytes the
virtual endpoint counted equal the bytes sent, and that the outputs are well formed.
Durations are tiny so the sweep is quick.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

import wdfusb
from wdfusb import UsbStallError, VirtualDevice, bench
from wdfusb.cli import ExitCode, cli

QUICK = {"duration": 0.01, "sizes": (512, 8192)}


@pytest.fixture
def vdev() -> Any:
    v = VirtualDevice(speed=None)
    yield v
    v.close()


def invoke(args: list[str], targets: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(cli, args, obj={"targets": targets or {}})


# ---- the engine -------------------------------------------------------------------------------------


def test_sweep_measures_every_cell_and_the_device_counts_every_byte(vdev: VirtualDevice) -> None:
    seen: list[bench.Progress] = []
    r = bench.run(
        vdev, 0x06, methods=("c-loop", "wdf", "pythonic", "streaming"), depths=(1, 4), on_progress=seen.append, **QUICK
    )
    lines = r.lines()
    assert ("c-loop", 1) in lines and ("pythonic", 1) in lines and ("c-loop", 4) not in lines
    expected_cells = len(lines) * 2
    assert len(r.cells) == expected_cells and all(c.ok for c in r.cells)
    for c in r.cells:
        assert c.count >= 1 and c.bytes == c.count * c.size
        assert c.device_bytes == c.bytes  # what the virtual endpoint received in the timed run
        assert c.mb_s > 0 and c.us_per_transfer > 0
        assert c.count % bench.ROUNDS == 0  # equal rounds; the rate is the fastest round's
        assert c.mb_s >= c.bytes / c.seconds / 1e6 * 0.999  # the fastest round is at least the mean
        assert abs(c.mb_s - c.size / c.us_per_transfer) <= 1e-9 * c.mb_s  # both from that round
        assert c.ratio is not None
    assert all(c.ratio == 1.0 for c in r.cells if c.method == "c-loop")
    assert r.speed == "unpaced" and r.bus_limit_mb_s is None and all(c.bus_pct is None for c in r.cells)
    # progress: a "before" and an "after" event per cell, in order
    assert [e.index for e in seen if e.cell is not None] == list(range(1, expected_cells + 1))
    assert all(e.total == expected_cells for e in seen)


def test_wdf_and_streaming_lines_are_present_when_importable(vdev: VirtualDevice) -> None:
    from wdfusb._bench_methods import streaming_unavailable

    r = bench.run(vdev, methods=("wdf", "streaming"), depths=(2,), **QUICK)
    assert ("wdf", 1) in r.lines()  # wdfusb.wdf is part of this build
    if streaming_unavailable():
        assert "streaming" in r.skipped
    else:
        assert ("streaming", 2) in r.lines()


def test_default_endpoint_is_the_first_bulk_out(vdev: VirtualDevice) -> None:
    r = bench.run(vdev, methods=("c-loop",), **QUICK)
    assert r.endpoint == 0x06 and r.max_packet == 512


def test_paced_device_reports_the_bus_limit() -> None:
    r = bench.run("virtual:high", methods=("c-loop",), sizes=(65536,), duration=0.01)
    assert r.speed == "high" and r.bus_limit_mb_s == 53.248
    [c] = r.cells
    assert c.bus_pct == pytest.approx(100 * c.mb_s / 53.248)


def test_foreign_libraries_cannot_reach_the_virtual_device(vdev: VirtualDevice) -> None:
    r = bench.run(vdev, methods=("c-loop", "pyusb", "libusb1"), **QUICK)
    assert set(r.skipped) == {"pyusb", "libusb1"}
    for why in r.skipped.values():
        assert "virtual device" in why or "not installed" in why
    assert {c.method for c in r.cells} == {"c-loop"}


def test_streaming_skips_sizes_that_are_not_whole_packets() -> None:
    from wdfusb._bench_methods import streaming_unavailable

    if streaming_unavailable():
        pytest.skip(streaming_unavailable())
    with VirtualDevice("super") as v:  # 1024-byte packets
        r = bench.run(v, methods=("streaming",), depths=(1,), sizes=(512, 2048), duration=0.01)
    small, big = r.cells
    assert small.skipped and "not a multiple of the max packet size 1024" in small.skipped
    assert big.ok and big.device_bytes == big.bytes


def test_mod63_pattern_is_gadget_zero_pattern_1() -> None:
    a = bench.make_pattern(1200, "mod63", 512)
    assert list(a[:64]) == [*range(63), 0]
    assert a[512] == 0 and a[513] == 1 and a[512 + 63] == 0 and a[511] == 511 % 63
    assert not bench.make_pattern(100).any()
    with pytest.raises(ValueError, match="pattern"):
        bench.make_pattern(10, "ramp")


def test_mod63_data_reaches_the_device(vdev: VirtualDevice) -> None:
    bench.run(vdev, methods=("pythonic",), sizes=(1024,), duration=0.01, pattern="mod63")
    ep = vdev.endpoint(0x06)
    n = ep.received_bytes // 1024
    assert n * 1024 == ep.received_bytes
    packet = bench.make_pattern(1024, "mod63", 512).tobytes()
    assert ep.crc32 == zlib.crc32(packet * n)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ("warp",)}, "unknown method"),
        ({"sizes": (0,)}, "sizes"),
        ({"depths": (0,)}, "depths"),
        ({"duration": 0}, "duration"),
        ({"pattern": "ramp"}, "pattern"),
    ],
)
def test_bad_arguments(vdev: VirtualDevice, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bench.run(vdev, **kwargs)


def test_infinite_timeout_means_no_timeout(vdev: VirtualDevice) -> None:
    r = bench.run(vdev, methods=("c-loop", "wdf", "pythonic", "streaming"), depths=(2,), timeout=math.inf, **QUICK)
    assert r.cells and all(c.ok for c in r.cells)
    for bad in (math.nan, -1.0, -math.inf):
        with pytest.raises(ValueError, match="timeout"):
            bench.run(vdev, methods=("pythonic",), timeout=bad, **QUICK)


def test_an_in_pipe_is_read_from_a_source_and_every_byte_counted(vdev: VirtualDevice) -> None:
    r = bench.run(vdev, 0x88, methods=("c-loop", "wdf", "pythonic", "streaming"), depths=(1, 4), **QUICK)
    assert r.direction == "read" and len(r.cells) == 10 and all(c.ok for c in r.cells)
    for c in r.cells:
        assert c.device_bytes is not None
        if c.method == "streaming":  # the reader reads ahead: what it had, and has, in flight
            assert abs(c.device_bytes - c.bytes) <= 2 * (c.depth + 1) * c.size
        else:
            assert c.device_bytes == c.bytes
    assert vdev.endpoint(0x88).source_pattern is None  # the run's source is undone
    with pytest.raises(ValueError, match="isochronous pipe"):
        bench.run(vdev, 0x03, **QUICK)


def test_a_stall_stops_the_run_and_closes_the_device(vdev: VirtualDevice) -> None:
    vdev.endpoint(0x06).stall()
    with pytest.raises(UsbStallError):
        bench.run(vdev, methods=("pythonic",), **QUICK)
    import wdfusb

    vdev.endpoint(0x06).stall()  # still usable: nothing was left open or in flight
    with wdfusb.open(vdev) as dev:
        dev.pipe(0x06).reset()
        assert dev.pipe(0x06).write(b"ok") == 2


def test_parsers() -> None:
    assert bench.parse_sizes("512, 2K,1MiB,4m") == (512, 2048, 1 << 20, 4 << 20)
    assert bench.parse_methods("c-loop,pythonic") == ("c-loop", "pythonic")
    assert bench.parse_depths("1,8") == (1, 8)
    for bad, fn in (
        ("0", bench.parse_sizes),
        ("2Q", bench.parse_sizes),
        ("x", bench.parse_methods),
        ("0", bench.parse_depths),
        ("a", bench.parse_depths),
    ):
        with pytest.raises(ValueError):
            fn(bad)


def test_bus_limits() -> None:
    assert bench.bus_limit("full") == 1.216 and bench.bus_limit("high") == 53.248
    assert bench.bus_limit("super") == 491.52 and bench.bus_limit("unpaced") is None


# ---- outputs ------------------------------------------------------------------------------------------


def test_json_csv_and_plot(vdev: VirtualDevice, tmp_path: Path) -> None:
    r = bench.run(vdev, methods=("c-loop", "pythonic"), **QUICK)
    bench.write_json(r, tmp_path / "r.json")
    back = bench.read_json(tmp_path / "r.json")
    assert back.cells == r.cells and back.endpoint == 0x06 and back.measured_on["wdfusb"] == "0.1.0"
    bench.write_csv(r, tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == len(r.cells) and rows[0]["endpoint"] == "0x06" and rows[0]["method"] == "c-loop"
    assert int(rows[0]["bytes"]) == r.cells[0].bytes
    pytest.importorskip("matplotlib")
    bench.plot(r, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the command ---------------------------------------------------------------------------------------


def test_bench_command_writes_table_json_csv_and_plot(vdev: VirtualDevice, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "png")}
    r = invoke(
        [
            "bench",
            "v",
            "0x06",
            "--sizes",
            "512,8K",
            "--methods",
            "c-loop,pythonic,pyusb",
            "--depths",
            "1",
            "--duration",
            "0.01",
            "--json",
            str(out["json"]),
            "--csv",
            str(out["csv"]),
            "--plot",
            str(out["png"]),
        ],
        {"v": vdev},
    )
    assert r.exit_code == 0, r.output
    assert "c-loop" in r.stdout and "pythonic" in r.stdout and "8 KiB" in r.stdout
    assert "pyusb" in r.stdout and "skipped" in r.stdout
    assert "every byte sent was counted by the virtual endpoint" in r.stdout
    data = json.loads(out["json"].read_text())
    assert len(data["cells"]) == 4 and all(c["device_bytes"] == c["bytes"] for c in data["cells"])
    assert out["csv"].read_text().count("\n") == 5
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


def test_bench_command_defaults_to_the_first_bulk_out_and_states_the_bus_limit() -> None:
    r = invoke(["bench", "virtual:high", "--sizes", "64K", "--methods", "c-loop", "--duration", "0.01", "-q"])
    assert r.exit_code == 0, r.output
    assert "pipe 0x06" in r.stdout
    assert "bus limit at high speed: 53.248 MB/s" in r.stdout and "% of the bus limit" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--methods", "warp"], ExitCode.USAGE, "unknown method"),
        (["--sizes", "0"], ExitCode.USAGE, "sizes must be > 0"),
        (["--depths", "0"], ExitCode.USAGE, "depths must be >= 1"),
        (["--duration", "0"], ExitCode.USAGE, "duration"),
        (["0x03"], ExitCode.USAGE, "isochronous pipe"),
        (["0x05"], ExitCode.NOT_FOUND, "no pipe 0x05"),
    ],
)
def test_bench_command_errors(vdev: VirtualDevice, args: list[str], code: int, text: str) -> None:
    r = invoke(["bench", "v", *args], {"v": vdev})
    assert r.exit_code == code and text in r.output


def test_bench_command_stall(vdev: VirtualDevice) -> None:
    vdev.endpoint(0x06).stall()
    r = invoke(["bench", "v", "--methods", "c-loop", "--duration", "0.01"], {"v": vdev})
    assert r.exit_code == ExitCode.STALL and "stalled" in r.output


def test_bench_command_without_matplotlib(vdev: VirtualDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "plot_unavailable", lambda: "plotting needs matplotlib: pip install 'wdfusb[plot]'")
    r = invoke(["bench", "v", "--plot", "x.png"], {"v": vdev})
    assert r.exit_code == ExitCode.USAGE and "pip install 'wdfusb[plot]'" in r.output
    assert vdev.endpoint(0x06).received_bytes == 0  # refused before running


def test_bench_through_python_m(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "wdfusb",
            "bench",
            "virtual:none",
            "--sizes",
            "512,64K",
            "--methods",
            "c-loop,pythonic",
            "--duration",
            "0.01",
            "--json",
            str(path),
        ],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(path.read_text())
    assert data["device"] == "virtual:none" and data["endpoint"] == 6
    assert {(c["method"], c["size"]) for c in data["cells"]} == {
        (m, s) for m in ("c-loop", "pythonic") for s in (512, 65536)
    }
    assert all(c["device_bytes"] == c["bytes"] > 0 for c in data["cells"])
    assert np.isfinite([c["mb_s"] for c in data["cells"]]).all()


def test_control_round_trips_reach_ep0() -> None:
    from wdfusb._bench_control import OUT_DATA, run_control

    v = wdfusb.VirtualDevice(speed=None)
    try:
        rows = {r.method: r for r in run_control(v, duration=0.03)}
        for name in ("c-loop", "wdf", "pythonic"):
            assert rows[name].skipped is None and rows[name].round_trips > 0 and rows[name].us_per_round_trip > 0
        assert rows["c-loop"].ratio == 1.0 and 0 < (rows["pythonic"].ratio or 0)
        assert rows["pyusb"].skipped and rows["libusb1"].skipped  # they cannot reach the virtual device
        assert v.endpoint(0).transfers >= 2 * sum(r.round_trips for r in rows.values())
        with wdfusb.open(v) as dev:  # the last OUT of the last method left its data in the device
            assert dev.control_read(0xC0, 0x5C, 0, 0, 64) == OUT_DATA
    finally:
        v.close()
