"""The ``wdfusb`` command line on the virtual device: every command, every error path, exit codes.

Most tests run in-process through click's CliRunner, handing a VirtualDevice in through the
``targets`` registry so what reached the device (bytes, CRC-32, transfers) can be checked.
A few run ``python -m wdfusb`` in a real subprocess, with faults injected by the hidden
``--virtual-fault`` option.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from typing import Any

import pytest
from click.testing import CliRunner, Result

from wdfusb import VirtualDevice
from wdfusb.cli import ExitCode, cli, exit_code_for
from wdfusb.errors import DeviceNotFoundError, LibusbNotFoundError, UsbError, error_for


@pytest.fixture
def vdev() -> Any:
    v = VirtualDevice(speed=None)
    yield v
    v.close()


def invoke(args: list[str], targets: dict[str, Any] | None = None, input: Any = None) -> Result:
    return CliRunner().invoke(cli, args, obj={"targets": targets or {}}, input=input)


def run_module(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wdfusb", *args],
        input=input,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


class FakeSource:
    """A device whose open fails with an engine code (e.g. -3 access denied, -6 busy)."""

    def __init__(self, code: int, vid: int = 0x0525, pid: int = 0xA4A0) -> None:
        self.code, self.vid, self.pid = code, vid, pid

    def _open_native(self) -> tuple[int, None, bool]:
        return self.code, None, False


class ActAt(io.RawIOBase):
    """Standard input that runs ``action`` (unplug, Ctrl-C) when a read starts at byte ``offset`` or later."""

    def __init__(self, data: bytes, action: Any, offset: int) -> None:
        self._f, self._action, self._offset = io.BytesIO(data), action, offset

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._action is not None and self._f.tell() >= self._offset:
            action, self._action = self._action, None
            action()
        return self._f.readinto(b)


# ---- help, list, info ---------------------------------------------------------------------------


def test_help_documents_commands_and_exit_codes() -> None:
    r = invoke(["--help"])
    assert r.exit_code == 0
    for word in ("list", "info", "write", "bench", "130 Ctrl-C", "7 device gone", "virtual[:full|high|super|none]"):
        assert word in r.output


def test_version() -> None:
    r = invoke(["--version"])
    assert r.exit_code == 0 and "0.1.0" in r.output


def test_list_json_includes_the_virtual_device() -> None:
    r = invoke(["list", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    virtual = [row for row in rows if row["virtual"]]
    assert len(virtual) == 1
    assert (virtual[0]["vid"], virtual[0]["pid"], virtual[0]["serial"]) == ("1209", "0001", "wdfusb-virtual")
    for row in rows:
        assert set(row) >= {"target", "vid", "pid", "bus", "address", "speed", "manufacturer", "product", "serial"}


def test_list_table() -> None:
    r = invoke(["list"])
    assert r.exit_code == 0
    assert "1209:0001" in r.stdout and "wdfusb virtual device" in r.stdout and "virtual:none" in r.stdout


def test_list_without_libusb_still_lists_the_virtual_device(tmp_path: Any) -> None:
    p = run_module("list", "--json", env={"WDFUSB_LIBUSB": str(tmp_path / "no-libusb.so")})
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "warning: libusb could not be loaded" in err and "no-libusb.so" in err
    assert len(err.strip().splitlines()) == 1  # one line
    assert [row["target"] for row in json.loads(p.stdout)] == ["virtual"]


@pytest.mark.parametrize(("target", "maxp"), [("virtual:full", 64), ("virtual:high", 512), ("virtual:super", 1024)])
def test_info_json_has_the_wdf_pipe_information(target: str, maxp: int) -> None:
    r = invoke(["info", target, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert (info["vid"], info["product"], info["speed"]) == ("1209", "wdfusb virtual device", target.split(":")[1])
    [iface] = info["configuration"]["interfaces"]
    [setting] = iface["settings"]
    pipes = {p["EndpointAddress"]: p for p in setting["pipes"]}
    assert sorted(pipes) == [0x02, 0x03, 0x06, 0x81, 0x88]
    bulk_out = pipes[0x06]
    assert bulk_out["PipeType"] == "WdfUsbPipeTypeBulk" and bulk_out["Direction"] == "OUT"
    assert bulk_out["MaximumPacketSize"] == maxp and bulk_out["SettingIndex"] == 0
    assert bulk_out["MaximumTransferSize"] == 0xFFFFFFFF
    assert pipes[0x81]["PipeType"] == "WdfUsbPipeTypeInterrupt" and pipes[0x81]["Interval"] == 1
    assert pipes[0x03]["PipeType"] == "WdfUsbPipeTypeIsochronous"


def test_info_table() -> None:
    r = invoke(["info", "virtual"])
    assert r.exit_code == 0
    for word in ("Configuration 1", "Interface 0, SettingIndex 0", "MaximumPacketSize", "WdfUsbPipeTypeIsochronous"):
        assert word in r.stdout
    assert "0x88 IN" in r.stdout


# ---- write ----------------------------------------------------------------------------------------


def test_write_stdin_arrives_intact(vdev: VirtualDevice) -> None:
    data = os.urandom(300_001)
    r = invoke(["write", "v", "0x06", "--chunk", "64K"], {"v": vdev}, input=data)
    assert r.exit_code == 0, r.output
    ep = vdev.endpoint(0x06)
    assert ep.received_bytes == len(data) and ep.crc32 == zlib.crc32(data)
    assert ep.transfers == 5  # 4 x 64 KiB + the rest
    assert f"wrote {len(data)} bytes to pipe 0x06" in r.stdout


def test_write_file_argument(vdev: VirtualDevice, tmp_path: Any) -> None:
    data = os.urandom(70_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    r = invoke(["write", "v", "6", str(path), "-q"], {"v": vdev})
    assert r.exit_code == 0, r.output
    assert vdev.endpoint(0x06).crc32 == zlib.crc32(data) and vdev.endpoint(0x06).transfers == 1


@pytest.mark.parametrize(("flags", "transfers"), [([], 0), (["--zlp"], 1)])
def test_write_empty_input_sends_a_zlp_only_when_asked(vdev: VirtualDevice, flags: list[str], transfers: int) -> None:
    r = invoke(["write", "v", "0x06", *flags], {"v": vdev}, input=b"")
    assert r.exit_code == 0 and "wrote 0 bytes" in r.stdout
    assert vdev.endpoint(0x06).transfers == transfers


def test_write_with_depth_uses_the_streaming_writer_or_says_why(vdev: VirtualDevice) -> None:
    from wdfusb._bench_methods import streaming_unavailable

    data = os.urandom(1 << 20)
    r = invoke(["write", "v", "0x06", "--depth", "4", "--chunk", "64K"], {"v": vdev}, input=data)
    if streaming_unavailable():
        assert r.exit_code == ExitCode.USAGE and "only --depth 1" in r.output
    else:
        assert r.exit_code == 0, r.output
        assert vdev.endpoint(0x06).crc32 == zlib.crc32(data) and f"wrote {len(data)} bytes" in r.stdout


@pytest.mark.parametrize("depth", ["0", "-3"])
def test_write_bad_depth(vdev: VirtualDevice, depth: str) -> None:
    r = invoke(["write", "v", "0x06", "--depth", depth], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.USAGE and "--depth" in r.output and "must be >= 1" in r.output
    assert vdev.endpoint(0x06).received_bytes == 0


def test_write_chunk_must_be_whole_packets(vdev: VirtualDevice) -> None:
    r = invoke(["write", "v", "0x06", "--chunk", "1000"], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.USAGE and "max packet size (512)" in r.output


def test_write_unknown_endpoint(vdev: VirtualDevice) -> None:
    r = invoke(["write", "v", "0x05"], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.NOT_FOUND
    assert "no pipe 0x05" in r.output and "0x06" in r.output  # lists the configured pipes


@pytest.mark.parametrize(("ep", "what"), [("0x88", "bulk IN pipe"), ("0x03", "isochronous OUT pipe")])
def test_write_to_a_pipe_that_cannot_be_written(vdev: VirtualDevice, ep: str, what: str) -> None:
    r = invoke(["write", "v", ep], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.USAGE and what in r.output and "0x06, 0x02" in r.output


@pytest.mark.parametrize("ep", ["zz", "0x100"])
def test_write_bad_endpoint_text(vdev: VirtualDevice, ep: str) -> None:
    r = invoke(["write", "v", ep], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.USAGE and "endpoint" in r.output


def test_write_timeout_on_a_naking_endpoint(vdev: VirtualDevice) -> None:
    vdev.endpoint(0x06).nak(float("inf"))
    r = invoke(["write", "v", "0x06", "--timeout", "0.2"], {"v": vdev}, input=b"x" * 4096)
    assert r.exit_code == ExitCode.TIMEOUT
    assert "STATUS_IO_TIMEOUT" in r.output and "wrote 0 bytes to pipe 0x06 before the failure" in r.output


@pytest.mark.parametrize("text", ["inf", "Infinity", "1e999", "none", "forever"])
def test_write_timeout_inf_waits_for_ever(vdev: VirtualDevice, text: str) -> None:
    vdev.endpoint(0x06).nak(0.05)
    for depth in ("1", "2"):
        args = ["write", "v", "0x06", "--timeout", text, "--depth", depth, "--chunk", "512"]
        r = invoke(args, {"v": vdev}, input=b"x" * 4096)
        assert r.exit_code == 0, r.output
    assert vdev.endpoint(0x06).received_bytes == 2 * 4096


@pytest.mark.parametrize("text", ["nan", "-1", "-inf", "0", "soon"])
def test_write_bad_timeout_is_a_usage_error(vdev: VirtualDevice, text: str) -> None:
    r = invoke(["write", "v", "0x06", "--timeout", text], {"v": vdev}, input=b"x")
    assert r.exit_code == ExitCode.USAGE and "--timeout" in r.output
    assert vdev.endpoint(0x06).received_bytes == 0


def test_write_stall(vdev: VirtualDevice) -> None:
    vdev.endpoint(0x06).stall()
    r = invoke(["write", "v", "0x06"], {"v": vdev}, input=b"x" * 100)
    assert r.exit_code == ExitCode.STALL and "stalled" in r.output and "wrote 0 bytes" in r.output


def test_write_unplugged_mid_run_reports_the_bytes_written(vdev: VirtualDevice) -> None:
    # write reads one chunk ahead: reading the third chunk happens after the first one went out
    stdin = ActAt(os.urandom(5 * 65536), vdev.unplug, offset=2 * 65536)
    r = invoke(["write", "v", "0x06", "--chunk", "64K"], {"v": vdev}, input=stdin)
    assert r.exit_code == ExitCode.DEVICE_GONE, r.output
    assert "device gone" in r.output and "wrote 65536 bytes to pipe 0x06 before the failure" in r.output


def test_write_ctrl_c_exits_130_with_nothing_in_flight(vdev: VirtualDevice) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    stdin = ActAt(os.urandom(4 * 65536), interrupt, offset=2 * 65536)
    r = invoke(["write", "v", "0x06", "--chunk", "64K"], {"v": vdev}, input=stdin)
    assert r.exit_code == ExitCode.INTERRUPTED and "interrupted" in r.output
    assert vdev.endpoint(0x06).received_bytes == 65536


def test_control_reads_and_writes_ep0(vdev: VirtualDevice) -> None:
    t = {"dev": vdev}
    r = invoke(["control", "dev", "0x40", "0x5b", "--data", "de ad be ef"], t)
    assert r.exit_code == 0 and r.output.strip() == "sent 4 bytes"
    r = invoke(["control", "dev", "0xC0", "0x5c", "--length", "4"], t)
    assert r.exit_code == 0 and r.output.strip() == "de ad be ef"
    r = invoke(["control", "dev", "0x80", "6", "--value", "0x0100", "--length", "18"], t)
    assert bytes.fromhex(r.output)[8:12] == bytes([0x09, 0x12, 0x01, 0x00])  # VID 1209, PID 0001
    assert vdev.endpoint(0).transfers == 3


def test_bench_control_table_and_json(vdev: VirtualDevice, tmp_path: Any) -> None:
    path = tmp_path / "control.json"
    r = invoke(["bench", "dev", "--control", "--duration", "0.03", "--json", str(path)], {"dev": vdev})
    assert r.exit_code == 0, r.output
    assert "µs/round trip" in r.output and "pythonic" in r.output
    rows = {row["method"]: row for row in json.loads(path.read_text())["rows"]}
    assert rows["c-loop"]["round_trips"] > 0 and rows["wdf"]["round_trips"] > 0 and rows["pyusb"]["skipped"]


@pytest.mark.parametrize(
    "args,code,text",
    [
        (["0xC0", "0x77", "--length", "2"], ExitCode.STALL, "stalled"),
        (["0xC0", "0x5c", "--data", "01"], ExitCode.USAGE, "--length, not --data"),
        (["0x40", "0x5b", "--length", "2"], ExitCode.USAGE, "--data, not --length"),
        (["0x40", "0x5b", "--data", "zz"], ExitCode.USAGE, "not hex"),
        (["0xC0", "0x5c", "--length", "4097"], ExitCode.USAGE, "length"),
        (["0x1C0", "0x5c"], ExitCode.USAGE, "request_type"),
    ],
)
def test_control_errors(vdev: VirtualDevice, args: list[str], code: int, text: str) -> None:
    r = invoke(["control", "dev", *args], {"dev": vdev})
    assert r.exit_code == code and text in r.output


@pytest.mark.parametrize(("code", "exit_code"), [(-3, ExitCode.ACCESS_DENIED), (-6, ExitCode.BUSY)])
def test_open_failures(code: int, exit_code: int) -> None:
    r = invoke(["write", "dev", "0x01"], {"dev": FakeSource(code, 0x0525, 0xA4A0)}, input=b"x")
    assert r.exit_code == exit_code
    if code == -3:
        assert "no permission" in r.output
        assert 'SUBSYSTEM=="usb", ATTR{idVendor}=="0525", ATTR{idProduct}=="a4a0", MODE="0666"' in r.output
    else:
        assert "claimed the interface" in r.output


@pytest.mark.parametrize("target", ["bogus", "virtual:warp", "12:zz", "1/x"])
def test_bad_device_text(target: str) -> None:
    r = invoke(["info", target])
    assert r.exit_code == ExitCode.USAGE and "VID:PID[:SERIAL]" in r.output


def test_device_not_attached_lists_what_is() -> None:
    r = invoke(["info", "dead:beef"])
    assert r.exit_code == ExitCode.NOT_FOUND
    assert "no USB device matches" in r.output or "libusb could not be loaded" in r.output


# ---- read -----------------------------------------------------------------------------------------


def test_read_a_source_checked_byte_for_byte(vdev: VirtualDevice, tmp_path: Any) -> None:
    out = tmp_path / "capture.bin"
    r = invoke(["read", "v", "0x88", str(out), "--bytes", "1M", "--check", "mod63", "-q"], {"v": vdev})
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == (bytes(j % 63 for j in range(512)) * 2048)
    assert "read 1048576 bytes from pipe 0x88" in r.output


def test_read_until_a_time_out_gets_what_the_device_had(vdev: VirtualDevice, tmp_path: Any) -> None:
    data = os.urandom(300_001)
    assert invoke(["write", "v", "0x06", "-q"], {"v": vdev}, input=data).exit_code == 0
    out = tmp_path / "loop.bin"
    r = invoke(["read", "v", "0x88", str(out), "--timeout", "0.1", "--chunk", "8K", "--depth", "3", "-q"], {"v": vdev})
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == data and "read 300001 bytes" in r.output


def test_read_fewer_bytes_than_asked_is_a_time_out(vdev: VirtualDevice, tmp_path: Any) -> None:
    assert invoke(["write", "v", "0x06", "-q"], {"v": vdev}, input=b"z" * 5000).exit_code == 0
    out = tmp_path / "short.bin"
    r = invoke(["read", "v", "0x88", str(out), "--bytes", "8K", "--timeout", "0.1", "-q"], {"v": vdev})
    assert r.exit_code == ExitCode.TIMEOUT
    assert "read 5000 bytes from pipe 0x88 before the failure" in r.output and out.read_bytes() == b"z" * 5000


def test_read_reports_the_first_byte_off_the_pattern(vdev: VirtualDevice, tmp_path: Any) -> None:
    vdev.endpoint(0x88).source("counter")  # a source already: --check does not replace it
    r = invoke(["read", "v", "0x88", str(tmp_path / "c.bin"), "--bytes", "4K", "--check", "mod63", "-q"], {"v": vdev})
    assert r.exit_code == ExitCode.IO_ERROR and "byte 1 of the stream is not the mod63 pattern's" in r.output


@pytest.mark.parametrize(("args", "text"), [(["0x06"], "bulk OUT pipe"), (["0x88", "--chunk", "1000"], "--chunk"),
                                            (["0x88", "--depth", "0"], "--depth")])  # fmt: skip
def test_read_usage_errors(vdev: VirtualDevice, args: list[str], text: str) -> None:
    r = invoke(["read", "v", *args, "-q"], {"v": vdev})
    assert r.exit_code == ExitCode.USAGE and text in r.output


# ---- exit codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (error_for(-7), ExitCode.TIMEOUT),
        (error_for(-9), ExitCode.STALL),
        (error_for(-4), ExitCode.DEVICE_GONE),
        (error_for(-3), ExitCode.ACCESS_DENIED),
        (error_for(-6), ExitCode.BUSY),
        (error_for(-1), ExitCode.IO_ERROR),
        (error_for(-8), ExitCode.IO_ERROR),
        (error_for(-100), ExitCode.IO_ERROR),
        (UsbError("x", 0xC00002B6), ExitCode.DEVICE_GONE),  # STATUS_DEVICE_REMOVED
        (DeviceNotFoundError("x", 0xC000000E), ExitCode.NOT_FOUND),
        (LibusbNotFoundError("x", 0xC0000135), ExitCode.NOT_FOUND),
        (KeyError("no pipe"), ExitCode.NOT_FOUND),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (ValueError("bad"), ExitCode.USAGE),
        (RuntimeError("bug"), ExitCode.ERROR),
    ],
)
def test_exit_code_for(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


# ---- through a real subprocess --------------------------------------------------------------------


def test_subprocess_info_and_write() -> None:
    p = run_module("info", "virtual:high", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["speed"] == "high"
    p = run_module("write", "virtual:none", "0x06", "-", "--chunk", "4K", input=os.urandom(10_000))
    assert p.returncode == 0, p.stderr
    assert b"wrote 10000 bytes to pipe 0x06" in p.stdout


@pytest.mark.parametrize(
    ("fault", "args", "code", "text"),
    [
        ("nak:0x06", ["--timeout", "0.2"], ExitCode.TIMEOUT, b"STATUS_IO_TIMEOUT"),
        ("stall:0x06", [], ExitCode.STALL, b"stalled"),
        ("unplug", [], ExitCode.DEVICE_GONE, b"device gone"),
    ],
)
def test_subprocess_faults(fault: str, args: list[str], code: int, text: bytes) -> None:
    p = run_module("--virtual-fault", fault, "write", "virtual:none", "0x06", *args, input=b"y" * 2048)
    assert p.returncode == code, p.stderr
    assert text in p.stderr


def test_subprocess_unplug_mid_run() -> None:
    # 2 MB at full speed (1.216 MB/s) takes ~1.7 s; the device goes after 0.3 s
    p = run_module(
        "--virtual-fault", "unplug-after:0.3", "write", "virtual:full", "0x06", "--chunk", "4K", input=bytes(2_000_000)
    )
    assert p.returncode == ExitCode.DEVICE_GONE, p.stderr
    assert b"bytes to pipe 0x06 before the failure" in p.stderr


WRITE_REPORTING = [sys.executable, "-m", "wdfusb", "--virtual-fault", "report", "write", "virtual:full", "0x06"]


@pytest.mark.parametrize("depth", ["1", "4"])
def test_subprocess_sigint_exits_130_and_reports_the_bytes(depth: str) -> None:
    with open("/dev/zero", "rb") as zero:
        p = subprocess.Popen(
            [*WRITE_REPORTING, "--chunk", "64K", "--depth", depth],
            stdin=zero,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(1.5)  # let it start writing (full speed: ~1.2 MB/s, for ever from /dev/zero)
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
        finally:
            p.kill()
            p.wait()
    assert p.returncode == ExitCode.INTERRUPTED, err
    assert b"interrupted; nothing is left in flight" in err and b"before the interrupt" in err
    reported = re.search(rb"wrote (\d+) bytes to pipe 0x06 before the interrupt", err)
    received = re.search(rb"virtual: 0x06 received (\d+) bytes", err)
    assert reported and received, err
    assert int(reported[1]) == int(received[1]) > 0  # every byte that moved is reported, and only those


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["write", "virtual", "0x88"], ExitCode.USAGE),
        (["write", "virtual", "0x05"], ExitCode.NOT_FOUND),
        (["write", "nonsense", "0x06"], ExitCode.USAGE),
        (["write", "virtual", "0x06", "--depth", "0"], ExitCode.USAGE),
    ],
)
def test_subprocess_usage_errors(args: list[str], code: int) -> None:
    p = run_module(*args, input=b"z")
    assert p.returncode == code, p.stderr
    assert p.stderr.strip()


def test_a_source_tree_without_its_shim_says_it_shadows_the_package(tmp_path: Any) -> None:
    """``python -m wdfusb`` inside a checkout that was never built imports the checkout: the
    error says so, and what to do."""
    import shutil
    from pathlib import Path

    import wdfusb

    shutil.copytree(Path(wdfusb.__file__).parent, tmp_path / "wdfusb", ignore=shutil.ignore_patterns("_native*"))
    # as `python -m wdfusb list` there with wdfusb installed from a wheel: an editable install's
    # finder would otherwise find the built package first
    code = (
        "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in f.__module__]; "
        "sys.argv = ['wdfusb', 'list']; runpy.run_module('wdfusb', run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "shadows the installed wdfusb" in out.stderr and "pip install -e ." in out.stderr


def test_outputs_that_cannot_be_written_fail_before_the_benchmark(tmp_path: Any) -> None:
    r = invoke(["bench", "virtual:high", "--plot", str(tmp_path / "no" / "such" / "dir.png")])
    assert r.exit_code == ExitCode.USAGE and "cannot write" in r.output
    r = invoke(["bench", "virtual:high", "--json", str(tmp_path)])  # a directory (click says so)
    assert r.exit_code == ExitCode.USAGE and "is a directory" in r.output
    assert list(tmp_path.iterdir()) == []


def test_a_skipped_methods_install_hint_keeps_its_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "usb1" else real(name, *a))
    r = invoke(["bench", "virtual:high", "--sizes", "512", "--duration", "0.02", "--methods", "pythonic,libusb1"])
    assert r.exit_code == 0, r.output
    assert "pip install 'wdfusb[compare]'" in r.output


def test_an_interrupt_pipe_is_measured_against_the_interrupt_limit() -> None:
    r = invoke(["bench", "virtual:high", "0x02", "--sizes", "64", "--duration", "0.02", "--methods", "pythonic"])
    assert r.exit_code == 0, r.output
    assert "bus limit at high speed: 0.512 MB/s (one 64 B interrupt packet per 125 µs)" in r.output
