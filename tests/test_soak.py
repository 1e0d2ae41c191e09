"""The soak benchmark's short form (benchmarks/soak.py --short): memory and native objects stay flat."""

from __future__ import annotations

import gc
import importlib.util
import sys
from pathlib import Path

from wdfusb import _engine

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
RSS_GROWTH_LIMIT = 20 << 20  # generous: the short run's own working set is ~10 MiB


def load_soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("wdfusb_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_short_soak_keeps_rss_and_live_objects_flat() -> None:
    soak = load_soak()
    gc.collect()
    start = (_engine.Transfer.live, _engine.live_objects())
    # one warm-up round: caches, the completion thread, numpy's first allocations
    soak.run(16 << 20, 1_000, every=3600, rounds=1, quiet=True)
    gc.collect()
    rss_before = soak.rss_bytes()
    s = soak.run(256 << 20, 100_000, every=3600, rounds=8, quiet=True)
    gc.collect()
    rss_after = soak.rss_bytes()
    assert s.bytes >= 256 << 20 and s.small >= 100_000  # every round checked count and CRC-32
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, (rss_before, rss_after)
    assert (_engine.Transfer.live, _engine.live_objects()) == start
    assert all((x.transfers, x.native) == start for x in s.samples)
