#!/usr/bin/env bash
# Runs the engine's concurrency tests against a build of the C shim with ThreadSanitizer:
# every data race in csrc/ (threads racing close, cancel, abort, the ring, the completion
# queue, the virtual device's event thread) is a failure. The instrumented module is built
# into build/tsan (tests/sanitized_build.sh, shared with tests/asan).
# Suppressions: tests/tsan/suppressions.txt (each one documented there; none is for wdfusb).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/sanitized_build.sh
sanitized_build tsan "-O1 -g -fno-omit-frame-pointer -fsanitize=thread" "-fsanitize=thread"
tsan=$(gcc -print-file-name=libtsan.so)
# halt_on_error: the first report fails the run (exit 66); the report goes to a file (pytest
# captures the test's stderr, and the process ends before it could print it) and is shown here.
rm -f tsan-report.*
rc=0
LD_PRELOAD="$tsan" \
TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$PWD/tests/tsan/suppressions.txt log_path=$PWD/tsan-report" \
    PYTHONPATH=. "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not kernel" \
    tests/test_stream.py tests/test_dispatch.py \
    tests/test_wdf_async.py tests/test_races.py tests/test_lifecycle_stateful.py \
    tests/test_control.py tests/test_wdf_control.py tests/test_alt_settings.py tests/test_reader.py tests/test_virtual_sources.py tests/test_wdf_continuous_reader.py \
    tests/test_asyncio.py tests/test_asyncio_stream.py tests/test_hotplug_races.py tests/test_wdf_removal.py tests/test_usbip_server.py tests/test_wdf_target_state.py tests/test_iso.py "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    cat tsan-report.* 2>/dev/null || true
fi
exit "$rc"
