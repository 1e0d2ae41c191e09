"""Every code block of the documentation (docs/*.md, and what they include from README.md) runs.

A block's language says how:

* ``python`` — executed (each block in a fresh namespace); it asserts what it shows.
* ``pycon`` — a doctest: each ``>>>`` line runs and its output must match (``...`` elides); the
  pycon blocks of a page share one namespace, in order, as a reader follows them.
* ``console`` — each ``$ command`` runs in bash from the project root (``wdfusb`` and ``python``
  are this interpreter's), stdout and stderr together; it must exit 0 and print what follows it
  (``...`` elides, whitespace is normalized).
* ``sh`` — a lane's command (it boots QEMU): ``make TARGET`` must name a Makefile target, and
  ``python tests/rig/qemu_rig.py ...`` goes through the rig's own command line with the boot
  replaced by a recorder, so the options are the rig's and the test files exist.
* ``text`` — diagrams, layouts and usage synopses, not code; ``c`` — the WDF C that the python
  block after it ports (it needs a Windows driver build).

Any other language, or none, fails (so does an ``{eval-rst}`` block holding more than autodoc
directives): a new block cannot go unrun unnoticed.
"""

from __future__ import annotations

import doctest
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^(`{3,}|~{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.S | re.M)
INCLUDE = re.compile(r"^```\{include\}\s+(\S+)\n((?::[\w-]+:.*\n)*)```", re.M)
LANGUAGES = {"python", "pycon", "console", "sh", "text", "c"}
DIRECTIVES = {"{toctree}", "{include}", "{eval-rst}"}  # blocks that hold no code of their own
RST_LINE = re.compile(r"\.\. (auto\w+|module|click|wdf-constants):: |   :[\w-]+:")  # what eval-rst may hold
CHECK = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _included(page: Path, target: str, options: str) -> str:
    """The text an ``{include}`` directive brings in (its start-after / end-before options)."""
    text = (page.parent / target).read_text()
    opts = {k: v.strip().strip("'\"") for k, v in re.findall(r"^:([\w-]+):(.*)$", options, re.M)}
    if "start-after" in opts:
        _, found, text = text.partition(opts["start-after"])
        assert found, f"{page.name}: include {target}: start-after {opts['start-after']!r} not found"
    if "end-before" in opts:
        text, found, _ = text.partition(opts["end-before"])
        assert found, f"{page.name}: include {target}: end-before {opts['end-before']!r} not found"
    return text


def _blocks() -> list[tuple[str, str, str]]:
    """(where, language, code) of every fenced block of the pages, included text included."""
    found = []
    for page in PAGES:
        source = page.read_text()
        texts = [(page.name, source)]
        texts += [(f"{page.name} <- {t}", _included(page, t, o)) for t, o in INCLUDE.findall(source)]
        for where, text in texts:
            for m in FENCE.finditer(text):
                lang = m.group(2).strip()
                directive, _, argument = lang.partition(" ")
                if directive in ("{code-block}", "{code}", "{sourcecode}"):
                    lang = argument.strip()
                elif directive == "{eval-rst}" and any(
                    x.strip() and not RST_LINE.match(x) for x in m.group(3).splitlines()
                ):
                    lang = "eval-rst holding more than autodoc"
                elif directive in DIRECTIVES:
                    continue
                line = text.count("\n", 0, m.start()) + 1
                found.append((f"{where}:{line}", lang, m.group(3)))
    return found


BLOCKS = _blocks()


def _of(*langs: str) -> list[Any]:
    return [pytest.param(code, where, id=where) for where, lang, code in BLOCKS if lang in langs]


def test_every_block_is_run() -> None:
    assert PAGES and len(BLOCKS) >= 10, "the docs lost their examples"
    strays = [f"{where} ({lang or 'no language'})" for where, lang, _ in BLOCKS if lang not in LANGUAGES]
    assert not strays, f"blocks no test runs: {strays}"


@pytest.mark.parametrize(("code", "where"), _of("python"))
def test_python_block(code: str, where: str) -> None:
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})  # noqa: S102 - the docs' own example


PYCON_PAGES = sorted({where.split(":")[0] for where, lang, _ in BLOCKS if lang == "pycon"})


@pytest.mark.parametrize("page", PYCON_PAGES)
def test_pycon_blocks(page: str) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    runner = doctest.DocTestRunner(optionflags=CHECK)
    report: list[str] = []
    for where, lang, code in BLOCKS:
        if lang == "pycon" and where.split(":")[0] == page:
            test = doctest.DocTestParser().get_doctest(code, namespace, where, where, 0)
            result = runner.run(test, out=report.append, clear_globs=False)
            assert result.attempted and not result.failed, "".join(report)
            namespace = test.globs  # the next block goes on where this one left off


def _commands(code: str) -> list[tuple[str, str]]:
    """(command, expected output) for each ``$ `` line of a console block."""
    out: list[tuple[str, str]] = []
    for line in code.splitlines(keepends=True):
        if line.startswith("$ "):
            out.append((line[2:].strip(), ""))
        else:
            assert out, f"output before any command: {line!r}"
            out[-1] = (out[-1][0], out[-1][1] + line)
    return out


@pytest.mark.parametrize(("code", "where"), _of("console"))
def test_console_block(code: str, where: str) -> None:
    prelude = 'wdfusb() { "$PY" -m wdfusb "$@"; }; python() { "$PY" "$@"; }\n'
    env = {"PATH": "/usr/bin:/bin", "PY": sys.executable, "COLUMNS": "120", "LANG": "C.UTF-8"}
    for command, expected in _commands(code):
        run = subprocess.run(
            ["bash", "-c", prelude + command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        got = run.stdout
        assert run.returncode == 0, f"{where}: `{command}` exited {run.returncode}:\n{got}"
        ok = doctest.OutputChecker().check_output(expected, got, CHECK)
        assert ok, f"{where}: `{command}` printed:\n{got}\nthe docs show:\n{expected}"


def _rig_command(argv: list[str]) -> list[str]:
    """The command ``qemu_rig.py ARGV`` would run in the guest: its own ``main`` parses ARGV, with
    the boot replaced by a recorder."""
    spec = importlib.util.spec_from_file_location("qemu_rig", ROOT / "tests" / "rig" / "qemu_rig.py")
    assert spec and spec.loader
    rig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rig)
    booted: list[list[str]] = []

    def run(command: list[str], *options: Any) -> int:
        booted.append(command)
        return 0

    rig.run = run
    assert rig.main(argv) == 0
    assert len(booted) == 1, f"qemu_rig.py {shlex.join(argv)} boots nothing"
    return booted[0]


@pytest.mark.parametrize(("code", "where"), _of("sh"))
def test_lane_command(code: str, where: str) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for line in filter(None, (x.split("#")[0].strip() for x in code.splitlines())):
        argv = shlex.split(line)
        if argv[0] == "make":
            assert set(argv[1:]) <= targets, f"{where}: {line}: no such Makefile target"
            continue
        assert argv[:2] == ["python", "tests/rig/qemu_rig.py"], f"{where}: not a lane command: {line}"
        command = _rig_command(argv[2:])
        assert command[:3] == [".venv/bin/python", "-m", "pytest"], f"{where}: {line}: not the lane's pytest"
        for arg in command[3:]:
            if arg.startswith("tests/"):
                path, _, test = arg.partition("::")
                assert (ROOT / path).exists(), f"{where}: {line}: no {path}"
                assert not test or f"def {test}(" in (ROOT / path).read_text(), f"{where}: {line}: no test {test}"
