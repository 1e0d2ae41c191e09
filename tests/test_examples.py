"""The examples and the README's code run as shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_on_the_virtual_device(path: Path) -> None:
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CRC matches" in out.stdout or "bytes" in out.stdout


@pytest.mark.parametrize(
    "marker",
    [
        "from wdfusb.wdf import *",
        "dev.control_read(",
        ".reader(",
        "wdfusb.pyusb.get_backend(",
        "write_async(",
        "flush_async(",
        "reconnect(",
        "write_iso(",
    ],
    ids=["wdf", "control", "reader", "pyusb", "asyncio", "asyncio-stream", "reconnect", "iso"],
)
def test_readme_examples_run(marker: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    chosen = [b for b in blocks if marker in b]
    assert chosen, f"README lost its examples with {marker!r}"
    for block in chosen:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
