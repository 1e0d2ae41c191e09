# Sourced by tests/asan/run.sh and tests/tsan/run.sh: builds the shim with a sanitizer into
# build/$1 (a copy of the package with its own _native module) in the sanitizer virtual
# environment, and leaves the shell in build/$1 with tests/ linked there.
#   sanitized_build NAME CFLAGS LDFLAGS
sanitized_build() {
    local name=$1 cflags=$2 ldflags=$3
    VENV=${VENV_SAN:-.venv-asan}
    test -x "$VENV/bin/python" || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet cffi numpy libusb-package pytest hypothesis click rich matplotlib pyusb
    rm -rf "build/$name" && mkdir -p "build/$name"
    cp -r wdfusb "build/$name/" && rm -f "build/$name"/wdfusb/_native*.so
    WDFUSB_CFLAGS="$cflags" WDFUSB_LDFLAGS="$ldflags" "$VENV/bin/python" -c "
import build_ffi
build_ffi.make_ffi(absolute=True).compile(tmpdir='build/$name', verbose=False)
"
    cd "build/$name"
    ln -sfn ../../tests tests
}
