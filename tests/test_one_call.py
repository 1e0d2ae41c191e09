"""The one-call benchmark's short form (benchmarks/one_call.py): a single write and read of many
pieces against 4 MiB transfers, every byte checked by the benchmark itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ONE_CALL = Path(__file__).resolve().parent.parent / "benchmarks" / "one_call.py"


def test_one_call_of_many_pieces_each_way(capsys) -> None:  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("wdfusb_one_call", ONE_CALL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    rows = module.main(["--mib", "24", "--speed", "super"])  # 6 pieces in one call, each way
    assert [(r.speed, r.direction) for r in rows] == [("super", "write"), ("super", "read")]
    assert all(r.one_call > 0 and r.reference > 0 for r in rows)
    assert "24 MiB in one call" in capsys.readouterr().out
