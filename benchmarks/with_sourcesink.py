"""Inside the kernel rig: bind Gadget Zero's SourceSink (pattern=1), run a command, remove it.

    python tests/rig/qemu_rig.py run --speed super -- .venv/bin/python benchmarks/with_sourcesink.py -- \\
        .venv/bin/python -m wdfusb bench 0525:a4a0 0x02 --pattern mod63 --json bench-rig.json --plot bench-rig.png
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "kernel")]

import gadget  # noqa: E402


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    g = gadget.SourceSink(pattern=1)
    try:
        g.bind(wait=30)
        return subprocess.call(command)
    finally:
        g.remove()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
