"""``tests/cross/run.sh``'s install step, run against stand-ins for apt-get, MinGW and Wine.

The stand-in apt-get puts on PATH what the Debian 12 (bookworm) packages put there — checked
with ``apt-get download`` + ``dpkg -c`` and the packages' maintainer scripts:
``gcc-mingw-w64-x86-64-win32`` gives ``x86_64-w64-mingw32-gcc``; ``wine64`` gives only
``/usr/lib/wine/wine64`` (no command on PATH; it merely *recommends* ``wine``); ``wine`` gives
``/usr/bin/wine-stable`` and makes ``/usr/bin/wine`` (an alternative). The script runs with
``--no-install-recommends``, so it must ask for ``wine`` itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "cross" / "run.sh"
PROVIDES = {"gcc-mingw-w64-x86-64-win32": "x86_64-w64-mingw32-gcc", "wine": "wine"}  # bookworm, on PATH
TOOLS = ("bash", "basename", "chmod", "dirname", "id", "mkdir")  # real tools the script and stand-ins use

APT_GET = """#!/bin/bash
echo "apt-get $*" >> "$LOG"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
  case "$pkg" in
{cases}
  esac
done
"""
STAND_IN = '#!/bin/bash\necho "$(basename "$0") $*" >> "$LOG"\n'


def sandbox(tmp_path: Path, installed: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    """A copy of the script in a tree of its own, and an environment whose PATH has only the
    stand-ins, the ``installed`` commands and the few real tools the script uses."""
    tree = tmp_path / "tree"
    (tree / "tests" / "cross").mkdir(parents=True)
    script = tree / "tests" / "cross" / "run.sh"
    shutil.copy(SCRIPT, script)
    (tree / "build_ffi.py").write_text('SOURCES = ["engine.c"]\n\ndef package_version():\n    return "0.0"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real is not None, tool
        (bin_dir / tool).symlink_to(real)
    cases = "\n".join(
        f'    {pkg}) printf %s "$STAND_IN" > "$BIN/{cmd}"; chmod +x "$BIN/{cmd}";;' for pkg, cmd in PROVIDES.items()
    )
    for name, text in (("apt-get", APT_GET.format(cases=cases)), ("sudo", '#!/bin/bash\nexec "$@"\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for cmd in installed:
        (bin_dir / cmd).write_text(STAND_IN)
        (bin_dir / cmd).chmod(0o755)
    env = {
        "PATH": str(bin_dir),
        "BIN": str(bin_dir),
        "LOG": str(tmp_path / "log"),
        "STAND_IN": STAND_IN,
        "PY": sys.executable,
        "HOME": str(tmp_path),
    }
    return script, env


def run(tmp_path: Path, installed: tuple[str, ...]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    script, env = sandbox(tmp_path, installed)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    log = Path(env["LOG"])
    return out, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    "installed",
    [(), ("x86_64-w64-mingw32-gcc",)],
    ids=["fresh machine", "MinGW but no wine command (wine64 only)"],
)
def test_a_machine_without_wine_gets_the_wine_command(tmp_path: Path, installed: tuple[str, ...]) -> None:
    out, log = run(tmp_path, installed)
    assert out.returncode == 0, out.stderr
    install = [line.split() for line in log if line.startswith("apt-get install")]
    assert len(install) == 1 and {"wine", "wine64", "gcc-mingw-w64-x86-64-win32"} <= set(install[0])
    assert log[0] == "apt-get update -q"
    assert log[-1].startswith("wine ") and log[-1].endswith("engine_smoke.exe")  # the smoke test ran under wine


def test_a_machine_that_has_everything_installs_nothing(tmp_path: Path) -> None:
    out, log = run(tmp_path, ("x86_64-w64-mingw32-gcc", "wine"))
    assert out.returncode == 0, out.stderr
    assert not [line for line in log if line.startswith("apt-get")]
    assert any(line.startswith("x86_64-w64-mingw32-gcc ") for line in log)
    assert log[-1].startswith("wine ") and log[-1].endswith("engine_smoke.exe")


def test_the_script_is_what_ci_runs() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert "tests/cross/run.sh" in (Path(__file__).resolve().parent.parent / "Makefile").read_text()
