"""Ctrl-C tests: run a child that blocks in a transfer, interrupt it, read what it reports.

The child prints ``blocked`` just before it blocks, and on ``KeyboardInterrupt`` prints
``interrupted <time.monotonic()> <fields...>`` (its own facts: transfers in flight, bytes ...).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def interrupt_child(code: str, *args: str, settle: float = 0.3) -> tuple[float, list[str]]:
    """Returns (seconds from SIGINT to the child's KeyboardInterrupt handler, its fields)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "blocked"
        time.sleep(settle)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)  # bounded: a child that ignored it fails the test
    except subprocess.TimeoutExpired:
        out = "(no answer to SIGINT within 10 s)"
    finally:
        proc.kill()
        proc.wait()
    fields = out.split("\n")[0].split()
    assert fields and fields[0] == "interrupted", fields
    return float(fields[1]) - sent, fields[2:]
