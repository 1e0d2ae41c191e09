#!/usr/bin/env bash
# Runs the unit suite against a build of the C shim with AddressSanitizer and
# UndefinedBehaviorSanitizer (tests/sanitized_build.sh; the normal build stays untouched).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/sanitized_build.sh
sanitized_build asan "-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
    "-fsanitize=address,undefined"
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
LD_PRELOAD="$asan:$ubsan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    PYTHONPATH=. "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not kernel" \
    --ignore=tests/kernel --ignore=tests/rig "$@" tests
