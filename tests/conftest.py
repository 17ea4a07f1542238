"""Shared pytest fixtures and markers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
"""The developers' and CI's data folder, ``../shared`` from the project root (never in the repo)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared: needs ../shared datasets")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared``; fails (does not skip) the tests that need it when it is missing."""
    if not SHARED_DIR.is_dir():
        pytest.fail(
            f"{SHARED_DIR} is missing: tests marked 'shared' need the ../shared data sets "
            "next to the project root (deselect them with -m 'not shared')",
            pytrace=False,
        )
    return SHARED_DIR


def _alias_bomb(levels: int) -> str:
    """A feeds.yaml whose feeds[0].language nests ``levels`` aliases of nine items each
    (9**levels values in a few hundred bytes: "billion laughs")."""
    anchors = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels)]
    return f"feeds:\n  - name: x\n    url: https://a.example/\n    language: [{', '.join(anchors)}]\n"


@pytest.fixture
def alias_bomb() -> Callable[[int], str]:
    return _alias_bomb
