#!/usr/bin/env bash
# Runs the unit suite against a build of the C shim with AddressSanitizer and
# UndefinedBehaviorSanitizer. The instrumented module is built into a separate
# virtual environment (.venv-asan) so the normal build stays untouched.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV_ASAN:-.venv-asan}
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet cffi numpy libusb-package pytest hypothesis click rich matplotlib
rm -rf build/asan && mkdir -p build/asan
cp -r wdfusb build/asan/ && rm -f build/asan/wdfusb/_native*.so
WDFUSB_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
WDFUSB_LDFLAGS="-fsanitize=address,undefined" \
    "$VENV/bin/python" -c "
import build_ffi, os
build_ffi.make_ffi(absolute=True).compile(tmpdir='build/asan', verbose=False)
"
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
cd build/asan
ln -sfn ../../tests tests
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    PYTHONPATH=. "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not kernel" \
    --ignore=tests/kernel --ignore=tests/rig "$@" tests
