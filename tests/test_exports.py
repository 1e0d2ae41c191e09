"""``__all__`` of every wdfusb module names only what the module has, so ``import *`` works."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import wdfusb


def modules_with_all() -> list[str]:
    names = ["wdfusb"] + [m.name for m in pkgutil.walk_packages(wdfusb.__path__, "wdfusb.")]
    return [n for n in names if hasattr(importlib.import_module(n), "__all__")]


@pytest.mark.parametrize("name", ["wdfusb", "wdfusb.wdf"])
def test_star_import(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # noqa: S102 - the statement under test
    module = importlib.import_module(name)
    assert set(module.__all__) <= set(namespace)


@pytest.mark.parametrize("name", modules_with_all())
def test_every_name_in_all_exists(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    names = list(module.__all__)
    assert [n for n in names if not hasattr(module, n)] == []
    assert len(names) == len(set(names)), "a name is listed twice"


def test_the_public_classes_are_exported() -> None:
    assert {"StreamWriter", "Device", "Pipe", "VirtualDevice"} <= set(wdfusb.__all__)
    assert wdfusb.StreamWriter is importlib.import_module("wdfusb.stream").StreamWriter
    assert {"WdfBugCheck", "WdfUsbTargetPipeWriteSynchronously", "WDFMEMORY_OFFSET"} <= set(
        importlib.import_module("wdfusb.wdf").__all__
    )
