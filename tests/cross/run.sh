#!/usr/bin/env bash
# Builds the C shim for Windows (MinGW-w64, warnings as errors) together with
# tests/cross/engine_smoke.c and runs the result under Wine: the Windows side of
# csrc/platform.c (threads, condition variables, the clock, thread-local storage,
# loading a DLL) carries paced, asynchronous, timed-out, cancelled and streamed
# transfers on the virtual device. Installs its Debian packages when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CC=x86_64-w64-mingw32-gcc
if ! command -v "$CC" >/dev/null || ! command -v wine >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -q
    # Debian 12: the `wine` command comes from the `wine` package (/usr/bin/wine, an alternative
    # for wine-stable); wine64 holds only the loader (/usr/lib/wine/wine64) and just recommends
    # `wine`, which --no-install-recommends skips. So both are named.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        gcc-mingw-w64-x86-64-win32 wine wine64 >/dev/null
fi
for tool in "$CC" wine; do
    command -v "$tool" >/dev/null || { echo "cross: no $tool command after installing its package" >&2; exit 1; }
done
read -r version sources < <("$PY" -c '
import build_ffi
print(build_ffi.package_version(), " ".join("csrc/" + s for s in build_ffi.SOURCES))')
out=build/cross
mkdir -p "$out"
# shellcheck disable=SC2086  # the source list is meant to split
"$CC" -std=c99 -O2 -Wall -Wextra -Wno-unused-parameter -Werror -DWU_VERSION="\"$version\"" -Icsrc \
    -o "$out/engine_smoke.exe" tests/cross/engine_smoke.c $sources
# the Wine prefix lives outside the project: its z: drive links to /, and a tool that walks the
# project's files (setuptools building the package) would follow it for good
export WINEPREFIX="${WDFUSB_WINEPREFIX:-$HOME/.cache/wdfusb-cross/wineprefix}" WINEDEBUG=-all
mkdir -p "$(dirname "$WINEPREFIX")"
[ -d "$WINEPREFIX" ] || wine wineboot --init >/dev/null 2>&1 || true  # first use: quietly make the prefix
wine "$out/engine_smoke.exe"
