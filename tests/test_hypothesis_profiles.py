"""The hypothesis profiles of ``tests/conftest.py``: "ci" (the default) draws the same examples on
every run and machine; "explore" (``HYPOTHESIS_PROFILE=explore``, ``make explore``) draws many
more, at random."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st


def test_the_profile_in_use_is_the_one_asked_for() -> None:
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    wanted = settings.get_profile(name)
    for field in ("derandomize", "max_examples", "deadline", "database", "print_blob"):
        assert getattr(settings.default, field) == getattr(wanted, field), field


def test_ci_is_reproducible_and_explore_searches_more() -> None:
    ci, explore = settings.get_profile("ci"), settings.get_profile("explore")
    assert ci.derandomize and ci.database is None and ci.print_blob and ci.deadline is None
    assert not explore.derandomize and explore.max_examples >= 10 * ci.max_examples


def draws(profile: str) -> list[tuple[int, float, bytes]]:
    """The examples one run of a small property test draws under ``profile``."""
    seen: list[tuple[int, float, bytes]] = []

    @settings(settings.get_profile(profile), max_examples=30)
    @given(st.integers(), st.floats(allow_nan=False), st.binary(max_size=8))
    def probe(i: int, f: float, b: bytes) -> None:
        seen.append((i, f, b))

    probe()
    return seen


def test_ci_draws_the_same_examples_every_run() -> None:
    first = draws("ci")
    assert len(first) >= 10 and draws("ci") == first
