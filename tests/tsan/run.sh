#!/usr/bin/env bash
# Runs the engine's concurrency tests against a build of the C shim with ThreadSanitizer:
# every data race in csrc/ (threads racing close, cancel, abort, the ring, the completion
# queue, the virtual device's event thread) is a failure. The instrumented module is built
# into build/tsan and run from the sanitizer virtual environment (shared with tests/asan).
# Suppressions: tests/tsan/suppressions.txt (each one documented there; none is for wdfusb).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV_SAN:-.venv-asan}
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet cffi numpy libusb-package pytest hypothesis click rich matplotlib
rm -rf build/tsan && mkdir -p build/tsan
cp -r wdfusb build/tsan/ && rm -f build/tsan/wdfusb/_native*.so
WDFUSB_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread" WDFUSB_LDFLAGS="-fsanitize=thread" \
    "$VENV/bin/python" -c "
import build_ffi
build_ffi.make_ffi(absolute=True).compile(tmpdir='build/tsan', verbose=False)
"
tsan=$(gcc -print-file-name=libtsan.so)
cd build/tsan
ln -sfn ../../tests tests
# halt_on_error: the first report fails the run (exit 66), with both stacks printed.
LD_PRELOAD="$tsan" \
TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$PWD/tests/tsan/suppressions.txt" \
    PYTHONPATH=. "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not kernel" \
    tests/test_stream.py tests/test_dispatch.py \
    tests/test_wdf_async.py tests/test_races.py tests/test_lifecycle_stateful.py "$@"
