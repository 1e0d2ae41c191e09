"""The OSR USB-FX2 profile (CONTRACT §6) and the kmdf_fx2 sample's ioctl.c, ported, against it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import wdfusb
from wdfusb.wdf import *


def sample() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "examples" / "osrfx2_ioctl.py"
    spec = importlib.util.spec_from_file_location("osrfx2_ioctl", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["osrfx2_ioctl"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("speed,high", [("high", 1), ("full", 0)])
def test_the_board_as_the_host_sees_it(counts: None, speed: str, high: int) -> None:
    with wdfusb.VirtualDevice(profile="osrfx2", speed=speed) as board, wdfusb.open(board) as dev:
        assert (dev.vid, dev.pid) == (0x0547, 0x1002)
        assert [(p.address, p.type) for p in dev.pipes] == [(0x81, "interrupt"), (0x06, "bulk"), (0x88, "bulk")]
        assert dev.control_read(0xC0, 0xD9, 0, 0, 1) == bytes([high])  # IS_HIGH_SPEED
        dev.control_write(0x40, 0xD8, 0, 0, b"\x0f")  # SET_BARGRAPH_DISPLAY
        dev.control_write(0x40, 0xDB, 0, 0, b"\x66")  # SET_7SEGMENT_DISPLAY
        assert dev.control_read(0xC0, 0xD7, 0, 0, 1) == b"\x0f" and dev.control_read(0xC0, 0xD4, 0, 0, 1) == b"\x66"
        assert dev.pipe(0x81).read(1, timeout=1) == b"\x00"  # the switch pack, sent at start-up
        board.set_switch(0x42)
        assert dev.pipe(0x81).read(1, timeout=1) == b"\x42"  # ... and on every change
        assert dev.control_read(0xC0, 0xD6, 0, 0, 1) == b"\x42"  # READ_SWITCHES
        pipes, address = list(dev.pipes), board.address
        dev.control_write(0x40, 0xDA)  # REENUMERATE: answered, then the board leaves and comes back
        dev.reconnect(timeout=5)
        assert board.function.reenumerations == 1 and board.address != address and dev.pipes == pipes
        assert dev.control_read(0xC0, 0xD7, 0, 0, 1) == b"\x0f"  # the firmware kept its state
        for bad in [(0xC0, 0xD8, 0, 0, 1), (0xC1, 0xD7, 0, 0, 1), (0xC0, 0xD0, 0, 0, 1)]:
            with pytest.raises(wdfusb.UsbStallError):
                dev.control_read(*bad)
        with pytest.raises(wdfusb.UsbStallError):
            dev.control_write(0x40, 0xD8, 0, 0, b"\x01\x02")  # one byte, not two
        assert dev.pipe(0x06).write(b"loop", timeout=1) == 4 and dev.pipe(0x88).read(4, timeout=1) == b"loop"
    assert board.function_errors == []


def test_the_sample_ioctl_functions(counts: None) -> None:
    fx2 = sample()
    with wdfusb.VirtualDevice(profile="osrfx2", speed="high") as board:
        ctx = fx2.open_board(board)
        bars = bytearray([0x81])
        assert fx2.SetBarGraphState(ctx, bars) == STATUS_SUCCESS
        got = bytearray([0xFF])
        assert fx2.GetBarGraphState(ctx, got) == STATUS_SUCCESS and got == bars
        seg = bytearray([0x06])
        assert fx2.SetSevenSegmentState(ctx, seg) == STATUS_SUCCESS
        assert fx2.GetSevenSegmentState(ctx, got) == STATUS_SUCCESS and got == seg
        board.set_switch(0x5A)
        assert fx2.GetSwitchState(ctx, got) == STATUS_SUCCESS and got[0] == 0x5A
        board.endpoint(0x06).stall()
        assert fx2.ResetPipe(ctx.BulkWritePipe) == STATUS_SUCCESS and not board.endpoint(0x06).halted
        assert WdfUsbTargetPipeIsInEndpoint(ctx.BulkReadPipe) and WdfUsbTargetPipeIsOutEndpoint(ctx.BulkWritePipe)
        with wdfusb.watch(port=f"0-{board.port}") as events:
            assert fx2.ReenumerateDevice(ctx) == STATUS_SUCCESS and board.function.reenumerations == 1
            assert [events.get(5).kind, events.get(5).kind] == ["left", "arrived"]  # type: ignore[union-attr]
        assert WdfUsbTargetDeviceIsConnectedSynchronous(ctx.UsbDevice) == STATUS_DEVICE_DOES_NOT_EXIST
        WdfObjectDelete(ctx.UsbDevice)


def test_the_profile_refuses_what_the_board_cannot_be() -> None:
    with pytest.raises(ValueError, match="osrfx2"):
        wdfusb.VirtualDevice(profile="osrfx2", speed="super")
    with pytest.raises(ValueError, match="profile"):
        wdfusb.VirtualDevice(profile="fx3")
