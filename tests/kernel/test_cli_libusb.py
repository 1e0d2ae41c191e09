"""The wdfusb command line against a real device: list, info, write, read and bench in the kernel rig."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gadget


def wdfusb_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wdfusb", *args], input=stdin, capture_output=True, timeout=300)


def test_list_shows_the_gadget_and_the_virtual_device(sourcesink: gadget.SourceSink, rig_speed: str) -> None:
    out = wdfusb_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    ss = [r for r in rows if (r["vid"], r["pid"]) == ("0525", "a4a0")]
    assert len(ss) == 1 and ss[0]["serial"] == gadget.SERIAL and ss[0]["speed"] == rig_speed
    assert (ss[0]["bus"], ss[0]["address"]) == (sourcesink.busnum, sourcesink.devnum)
    assert any(r["virtual"] for r in rows)


def test_info_shows_the_wdf_pipe_information(sourcesink: gadget.SourceSink, bulk_maxp: int) -> None:
    out = wdfusb_cli("info", "0525:a4a0", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    pipes = info["configuration"]["interfaces"][0]["settings"][0]["pipes"]
    by_addr = {p["EndpointAddress"]: p for p in pipes}
    assert set(by_addr) == {0x02, 0x81}
    assert by_addr[0x02]["PipeType"] == "WdfUsbPipeTypeBulk" and by_addr[0x02]["MaximumPacketSize"] == bulk_maxp


def test_write_a_file_the_gadget_verifies(sourcesink: gadget.SourceSink, bulk_maxp: int, tmp_path: Path) -> None:
    data = gadget.mod63(3 << 20, bulk_maxp)
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    out = wdfusb_cli("write", f"0525:a4a0:{gadget.SERIAL}", "0x02", str(f), "--chunk", "64K", "-q")
    assert out.returncode == 0, out.stderr
    assert str(len(data)) in (out.stdout + out.stderr).decode()
    # a wrong byte: the gadget halts the endpoint; the CLI maps the stall to exit code 6
    bad = bytearray(gadget.mod63(256 << 10, bulk_maxp))
    bad[100] ^= 0xFF
    out = wdfusb_cli("write", "0525:a4a0", "0x02", "-", "--chunk", "4K", "-q", stdin=bytes(bad))
    assert out.returncode == 6, (out.returncode, out.stderr)


def test_bench_compares_with_pyusb_and_libusb1_on_a_real_device(sourcesink: gadget.SourceSink, tmp_path: Path) -> None:
    result = tmp_path / "bench.json"
    out = wdfusb_cli(
        "bench", "0525:a4a0", "0x02", "--pattern", "mod63", "--sizes", "512,64K", "--duration", "0.2",
        "--methods", "c-loop,pythonic,pyusb,libusb1", "--json", str(result), "-q",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    cells = json.loads(result.read_text())
    text = json.dumps(cells)
    for method in ("c-loop", "pythonic", "pyusb", "libusb1"):
        assert f'"{method}"' in text, method


def test_read_captures_the_source_checked_byte_for_byte(
    sourcesink: gadget.SourceSink, bulk_maxp: int, tmp_path: Path
) -> None:
    out_file = tmp_path / "capture.bin"
    out = wdfusb_cli("read", f"0525:a4a0:{gadget.SERIAL}", "0x81", str(out_file), "--bytes", "8M", "--check", "mod63",
                     "--depth", "4", "--chunk", "32K", "-q")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out_file.read_bytes() == gadget.mod63(8 << 20, bulk_maxp)
    assert "read 8388608 bytes from pipe 0x81" in out.stderr.decode()
    # to standard output; a chunk that is not a packet multiple is a usage error, before any I/O
    out = wdfusb_cli("read", "0525:a4a0", "0x81", "-", "--bytes", "64K", "-q")
    assert out.returncode == 0 and out.stdout == gadget.mod63(64 << 10, bulk_maxp), out.stderr
    out = wdfusb_cli("read", "0525:a4a0", "0x81", "-", "--chunk", "1000", "-q")
    assert out.returncode == 2 and b"--chunk" in out.stderr
