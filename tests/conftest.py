"""Shared pytest fixtures and markers."""

from __future__ import annotations

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
