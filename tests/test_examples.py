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


def test_readme_wdf_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    wdf_blocks = [b for b in blocks if "from wdfusb.wdf import *" in b]
    assert wdf_blocks, "README lost its WDF example"
    for block in wdf_blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
