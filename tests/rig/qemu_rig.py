#!/usr/bin/env python3
"""Kernel rig for wdfusb: run a command inside a QEMU guest with a real USB stack.

The guest boots the host's Debian kernel (uncompressed vmlinux via PVH + qboot),
loads usbcore + dummy_hcd + the gadget function modules, mounts the host root
read-only over virtio-9p, mounts the project directory writable at the same
absolute path, chroots and runs the command. Its exit status comes back through
a writable 9p "results" share; its output is streamed over the serial console.

    python tests/rig/qemu_rig.py check
    python tests/rig/qemu_rig.py run [--speed high|super] [--timeout S] [--mem MiB] -- CMD ...

Stdlib only. Gadgets are created by the tests (tests/kernel/gadget.py).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import lzma
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
RAW_BENCH_SRC = PROJECT_DIR / "tests" / "kernel" / "raw_libusb_bench.c"
QBOOT = Path("/usr/share/qemu/qboot.rom")
QEMU = "qemu-system-x86_64"
APT_PACKAGES = {
    # package: a path that proves it is installed
    "qemu-system-x86": f"/usr/bin/{QEMU}",
    "linux-image-amd64": "/boot",  # checked separately (needs a vmlinuz)
    "busybox-static": "/bin/busybox",
    "cpio": "/usr/bin/cpio",
    "libusb-1.0-0-dev": "/usr/include/libusb-1.0/libusb.h",
    "gcc": "/usr/bin/gcc",
    "usbip": "/usr/sbin/usbipd",  # usbip + usbipd: the USB/IP tests export a gadget over loopback
}
# Modules in load order wanted in the guest; dependencies are resolved via modules.dep.
GUEST_MODULES = [
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "configfs",
    "usbcore",
    "udc-core",
    "libcomposite",
    "usb_f_ss_lb",
    "usb_f_fs",
    "usb_f_hid",
    "usb_f_ncm",
    "dummy_hcd",
    "usbip-core",
    "usbip-host",  # exports a local device (usbip bind)
    "vhci-hcd",  # attaches a remote one (usbip attach): a high-speed and a SuperSpeed root hub per controller
]
# Modules load as the stock kernel has them (usbfs caps URBs at 16 MiB). vhci-hcd too: Debian's 6.1
# builds it with 8 controllers (16 root hubs, buses 3-18 after dummy_hcd's two) and no parameter for it.
MODULE_PARAMS: dict[str, str] = {}
BEGIN_MARK = "@@WDFUSB-RIG-BEGIN@@"
END_MARK = "@@WDFUSB-RIG-END@@"
GUEST_RESULTS = "/run/wdfusb-rig"

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot /results /project
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "rig-init: $*" > /dev/console; }
die() { say "FATAL: $*"; echo "$*" > /results/fatal 2>/dev/null; reboot -f; sleep 5; }
SPEED=high
for arg in $(cat /proc/cmdline); do
  case "$arg" in wdfusb.speed=*) SPEED="${arg#wdfusb.speed=}";; esac
done
while read -r mod params; do
  [ -n "$mod" ] || continue
  case "$mod" in
    */dummy_hcd.ko)
      if [ "$SPEED" = super ]; then params="num=2 is_high_speed=1 is_super_speed=1";
      else params="num=2 is_high_speed=1"; fi;;
  esac
  insmod "/$mod" $params || say "insmod $mod failed"
done < /modules.load
O9P="trans=virtio,version=9p2000.L,msize=262144"
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || say "no loopback"
mount -t 9p -o "$O9P,ro,cache=loose" hostroot /newroot || die "mount hostroot"
mount -t 9p -o "$O9P,cache=none" results /results || die "mount results"
. /results/rig.env
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t configfs none $R/sys/kernel/config || die "configfs"
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=755 tmpfs $R/run
mkdir -p "$R$RIG_PROJECT" "$R$RIG_RESULTS"
mount -t 9p -o "$O9P,cache=none" project "$R$RIG_PROJECT" || die "mount project"
mount --bind /results "$R$RIG_RESULTS"
mkdir -p $R/tmp/rig-home
udc=$(ls /sys/class/udc 2>/dev/null)
say "speed=$SPEED udc=$udc"
[ -n "$udc" ] || die "no UDC (dummy_hcd failed to load)"
echo "@@WDFUSB-RIG-BEGIN@@" > /dev/console
chroot $R /bin/sh "$RIG_RESULTS/cmd.sh" < /dev/null > /dev/console 2>&1
rc=$?
echo "$rc" > /results/rc
dmesg > /results/dmesg.txt
echo "@@WDFUSB-RIG-END@@ rc=$rc" > /dev/console
sync
umount "$R$RIG_PROJECT" 2>/dev/null
reboot -f
sleep 10
"""


def cache_dir() -> Path:
    env = os.environ.get("WDFUSB_RIG_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "wdfusb-rig"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(msg: str) -> None:
    print(f"[rig] {msg}", file=sys.stderr, flush=True)


def kernel_version() -> str | None:
    """Newest kernel with both /boot/vmlinuz-V and /lib/modules/V."""
    found = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        ver = vmlinuz.name[len("vmlinuz-") :]
        if (Path("/lib/modules") / ver / "modules.dep").exists():
            found.append(ver)
    return sorted(found)[-1] if found else None


def ensure_prereqs() -> None:
    """apt-get install whatever the rig needs and is missing (CI starts clean)."""
    missing = {pkg for pkg, path in APT_PACKAGES.items() if not Path(path).exists()}
    missing.discard("linux-image-amd64")
    if kernel_version() is None:
        missing.add("linux-image-amd64")
    if not QBOOT.exists():
        missing.add("qemu-system-data")
    if shutil.which("gcc"):
        missing.discard("gcc")
    if not missing:
        return
    log(f"installing {' '.join(sorted(missing))}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *sorted(missing)]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


# ---------------------------------------------------------------- vmlinux
def extract_vmlinux(vmlinuz: Path) -> bytes:
    """Like scripts/extract-vmlinux: find a compressed payload that decompresses to ELF."""
    data = vmlinuz.read_bytes()
    magics: list[tuple[bytes, str]] = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x5d\x00\x00\x00", "lzma"),
    ]
    for magic, kind in magics:
        pos = data.find(magic)
        while pos != -1:
            out = _decompress(data[pos:], kind)
            if out is not None and out[:4] == b"\x7fELF":
                return out
            pos = data.find(magic, pos + 1)
    raise RuntimeError(f"no known compressed ELF payload in {vmlinuz}")


def _decompress(blob: bytes, kind: str) -> bytes | None:
    try:
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
        if kind == "lzma":
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob)
        if kind == "gzip":
            return gzip.GzipFile(fileobj=io.BytesIO(blob)).read()
        if kind == "zstd" and shutil.which("zstd"):
            res = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True)
            return res.stdout or None
    except (lzma.LZMAError, OSError, EOFError):
        return None
    return None


# ---------------------------------------------------------------- initramfs
def resolve_modules(kver: str) -> list[tuple[str, str]]:
    """(relative .ko path, params) in a valid load order."""
    root = Path("/lib/modules") / kver
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (root / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        name = Path(mod).name.split(".ko")[0].replace("-", "_")
        by_name[name] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in reversed(deps[mod]):
            visit(dep)
        order.append(mod)

    for want in GUEST_MODULES:
        found = by_name.get(want.replace("-", "_"))
        if found is None:
            raise RuntimeError(f"module {want} not found for kernel {kver}")
        visit(found)
    result = []
    for mod in order:
        name = Path(mod).name.split(".ko")[0].replace("-", "_")
        result.append((mod, MODULE_PARAMS.get(name, "")))
    return result


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    out = io.BytesIO()
    for ino, (name, mode, body) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        namez = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(namez), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + namez)
        out.write(b"\0" * (-(110 + len(namez)) % 4) + body + b"\0" * (-len(body) % 4))
    return out.getvalue()


def build_initramfs(kver: str, dest: Path) -> None:
    mods = resolve_modules(kver)
    root = Path("/lib/modules") / kver
    entries: list[tuple[str, int, bytes]] = []
    dirs: set[str] = set()
    for path in ["bin", *(f"lib/modules/{Path(m).parent}" for m, _ in mods)]:
        parts = Path(path).parts
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        entries.append((d, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, Path("/bin/busybox").read_bytes()))
    entries.append(("init", 0o100755, INIT_SCRIPT.encode()))
    load = "".join(f"lib/modules/{m} {p}\n" for m, p in mods)
    entries.append(("modules.load", 0o100644, load.encode()))
    for m, _ in mods:
        entries.append((f"lib/modules/{m}", 0o100644, (root / m).read_bytes()))
    dest.write_bytes(_cpio_newc(entries))


def build_image() -> tuple[Path, Path]:
    """Return (vmlinux, initramfs), building them into the cache when needed."""
    kver = kernel_version()
    if kver is None:
        raise RuntimeError("no kernel in /boot with matching /lib/modules")
    cdir = cache_dir()
    vmlinux = cdir / f"vmlinux-{kver}"
    if not vmlinux.exists():
        log(f"extracting vmlinux from /boot/vmlinuz-{kver}")
        tmp = vmlinux.with_suffix(".tmp")
        tmp.write_bytes(extract_vmlinux(Path(f"/boot/vmlinuz-{kver}")))
        tmp.rename(vmlinux)
    bb = Path("/bin/busybox").stat()
    key = hashlib.sha256(Path(__file__).read_bytes() + f"{bb.st_size}{bb.st_mtime}".encode()).hexdigest()[:12]
    initrd = cdir / f"initramfs-{kver}-{key}.cpio"
    if not initrd.exists():
        log(f"building {initrd.name}")
        tmp = initrd.with_suffix(".tmp")
        build_initramfs(kver, tmp)
        tmp.rename(initrd)
        for stale in cdir.glob("initramfs-*.cpio"):
            if stale != initrd:
                stale.unlink()
    return vmlinux, initrd


def build_raw_bench() -> Path:
    """Path of the compiled raw C libusb benchmark (built into the cache on demand).

    Inside the rig guest the host-built copy is handed over via WDFUSB_RAW_BENCH."""
    env = os.environ.get("WDFUSB_RAW_BENCH")
    if env and Path(env).exists():
        return Path(env)
    digest = hashlib.sha256(RAW_BENCH_SRC.read_bytes()).hexdigest()[:12]
    binary = cache_dir() / f"raw_libusb_bench-{digest}"
    if not binary.exists():
        tmp = binary.with_suffix(".tmp")
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(tmp), str(RAW_BENCH_SRC), "-I/usr/include/libusb-1.0", "-lusb-1.0"],
            check=True,
        )
        tmp.rename(binary)
        for stale in binary.parent.glob("raw_libusb_bench-*"):
            if stale != binary:
                stale.unlink()
    return binary


# ---------------------------------------------------------------- run
def qemu_problem() -> str | None:
    """None if QEMU can run the rig here, else why not."""
    if sys.platform != "linux":
        return "the rig needs Linux"
    if os.uname().machine != "x86_64":
        return "the rig needs an x86_64 host"
    if not shutil.which(QEMU):
        return f"{QEMU} not installed (run: qemu_rig.py run, or apt-get install qemu-system-x86)"
    if not QBOOT.exists():
        return f"{QBOOT} missing"
    if kernel_version() is None:
        return "no /boot/vmlinuz-* with modules (apt-get install linux-image-amd64)"
    res = subprocess.run([QEMU, "-accel", "help"], capture_output=True, text=True)
    if "tcg" not in res.stdout:
        return "qemu has no TCG accelerator"
    return None


def guest_path() -> str:
    host = [p for p in os.environ.get("PATH", "").split(":") if p.startswith("/")]
    std = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".split(":")
    venv = [str(PROJECT_DIR / ".venv" / "bin")] if (PROJECT_DIR / ".venv").is_dir() else []
    return ":".join(dict.fromkeys([*venv, *host, *std]))


def run(command: list[str], speed: str = "high", timeout: float = 900.0, mem: int = 1536, verbose: bool = False) -> int:
    ensure_prereqs()
    problem = qemu_problem()
    if problem:
        log(f"cannot run: {problem}")
        return 2
    t0 = time.monotonic()
    vmlinux, initrd = build_image()
    bench = build_raw_bench() if RAW_BENCH_SRC.exists() else None
    with tempfile.TemporaryDirectory(prefix="wdfusb-rig-") as tmp:
        results = Path(tmp)
        env = {
            "WDFUSB_IN_RIG": "1",
            "WDFUSB_RIG_SPEED": speed,
            "HOME": "/tmp/rig-home",
            "PATH": guest_path(),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
            "WDFUSB_RIG_RESULTS": GUEST_RESULTS,
        }
        if bench:
            shutil.copy2(bench, results / "raw_libusb_bench")
            env["WDFUSB_RAW_BENCH"] = f"{GUEST_RESULTS}/raw_libusb_bench"
        for key in ("PYTEST_ADDOPTS", "WDFUSB_BENCH", "CI"):
            if key in os.environ:
                env[key] = os.environ[key]
        (results / "rig.env").write_text(f"RIG_PROJECT={shlex.quote(str(PROJECT_DIR))}\nRIG_RESULTS={GUEST_RESULTS}\n")
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        (results / "cmd.sh").write_text(
            f"{exports}cd {shlex.quote(str(PROJECT_DIR))} || exit 125\nexec {shlex.join(command)}\n"
        )
        cmdline = f"console=ttyS0 panic=-1 quiet loglevel=1 rdinit=/init wdfusb.speed={speed}"
        qemu = [
            QEMU,
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            str(mem),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-bios",
            str(QBOOT),
            "-kernel",
            str(vmlinux),
            "-initrd",
            str(initrd),
            "-append",
            cmdline,
            "-chardev",
            "stdio,id=con,signal=off",
            "-serial",
            "chardev:con",
        ]
        shares = [("hostroot", "/", True), ("results", str(results), False), ("project", str(PROJECT_DIR), False)]
        for i, (tag, path, ro) in enumerate(shares):
            # multidevs=remap: / spans devices; without it /proc and /sys collide
            qemu += [
                "-fsdev",
                f"local,id=fs{i},path={path},security_model=none,multidevs=remap" + (",readonly=on" if ro else ""),
                "-device",
                f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}",
            ]
        rc = _drive(qemu, results, timeout, verbose, t0)
    return rc


def _drive(qemu: list[str], results: Path, timeout: float, verbose: bool, t0: float) -> int:
    log(f"booting guest ({' '.join(qemu[:2])} ...), timeout {timeout:.0f}s")
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    boot_log: list[str] = []
    state = {"in_cmd": False, "t_begin": 0.0, "t_end": 0.0}

    def handle_line(line: str) -> None:
        if BEGIN_MARK in line:
            state["in_cmd"] = True
            state["t_begin"] = time.monotonic()
            log(f"guest ready after {state['t_begin'] - t0:.1f}s; running command")
        elif END_MARK in line:
            sys.stdout.write(line.split(END_MARK)[0].rstrip("\n"))
            state["in_cmd"] = False
            state["t_end"] = time.monotonic()
        elif state["in_cmd"]:
            sys.stdout.write(line)
        else:
            boot_log.append(line)
            if verbose:
                sys.stderr.write(line)

    def pump() -> None:
        """Stream the console; partial lines of the command are written at once."""
        assert proc.stdout is not None
        pending = ""
        while chunk := os.read(proc.stdout.fileno(), 65536):
            pending += chunk.decode(errors="replace").replace("\r", "")
            *lines, pending = pending.split("\n")
            for line in lines:
                handle_line(line + "\n")
            if state["in_cmd"] and pending and "@" not in pending:
                sys.stdout.write(pending)
                pending = ""
            sys.stdout.flush()
        if pending:
            handle_line(pending)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    reader.join(timeout=5)
    rc_file = results / "rc"
    if timed_out or not rc_file.exists():
        why = f"timed out after {timeout:.0f}s" if timed_out else f"qemu exited {proc.returncode}"
        fatal = results / "fatal"
        if fatal.exists():
            why += f"; guest init: {fatal.read_text().strip()}"
        log(f"FAILED: guest did not report a result ({why})")
        if not verbose:
            sys.stderr.write("".join(boot_log[-60:]))
        dmesg = results / "dmesg.txt"
        if dmesg.exists():
            sys.stderr.write(dmesg.read_text()[-4000:])
        return 124 if timed_out else 125
    rc = int(rc_file.read_text().strip() or 1)
    t_run = (state["t_end"] or time.monotonic()) - (state["t_begin"] or t0)
    log(
        f"command exit status {rc}; boot {state['t_begin'] - t0:.1f}s, command {t_run:.1f}s, "
        f"total {time.monotonic() - t0:.1f}s"
    )
    if rc != 0 and (results / "dmesg.txt").exists():
        tail = (results / "dmesg.txt").read_text().splitlines()[-25:]
        log("guest dmesg tail:\n" + "\n".join(tail))
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check", help="say whether the rig can run here")
    sub.add_parser("build", help="install prerequisites and build/cache the image")
    prun = sub.add_parser("run", help="boot the guest and run COMMAND inside")
    prun.add_argument("--speed", choices=["high", "super"], default="high")
    prun.add_argument("--timeout", type=float, default=900.0, help="seconds (whole run)")
    prun.add_argument("--mem", type=int, default=1536, help="guest RAM in MiB")
    prun.add_argument("-v", "--verbose", action="store_true", help="show the boot log")
    prun.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action == "check":
        problem = qemu_problem()
        print(f"rig unavailable: {problem}" if problem else "rig ok: qemu/TCG can run here")
        return 1 if problem else 0
    if args.action == "build":
        ensure_prereqs()
        print(*build_image(), build_raw_bench(), sep="\n")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    return run(command, args.speed, args.timeout, args.mem, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
