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


# --- PostgreSQL: a throwaway server for the tests that run on both backends ------------------------
POSTGRES_HOWTO = ("install PostgreSQL (initdb, pg_ctl on PATH) and `pip install -e '.[postgres]'`, or set "
                  "CLUSTERING_TEST_POSTGRES=postgresql://USER@HOST/DB to a server the tests may create databases in")


class PostgresServer:
    """A PostgreSQL server the tests may create databases in: ``database()`` gives a fresh one's URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.count = 0

    def url(self, name: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.base_url)._replace(path=f"/{name}"))

    def database(self) -> str:
        import os

        import psycopg

        self.count += 1
        name = f"clustering_test_{os.getpid()}_{self.count}"
        with psycopg.connect(self.base_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():  # noqa: ANN201 - a generator fixture
    """A PostgreSQL server for this test session (skips, saying how to get one, where there is none)."""
    import os
    import shutil

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip(f"PostgreSQL tests need psycopg: {POSTGRES_HOWTO}")
    given = os.environ.get("CLUSTERING_TEST_POSTGRES")
    if given:
        yield PostgresServer(given)
        return
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip(f"PostgreSQL tests need initdb and pg_ctl: {POSTGRES_HOWTO}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip(f"PostgreSQL tests run as root need runuser (PostgreSQL runs as user postgres): {POSTGRES_HOWTO}")
    from clustering.store_pg import throwaway_server

    with throwaway_server() as url:
        yield PostgresServer(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh database of each backend: an SQLite file path, or a new PostgreSQL database's URL."""
    if request.param == "sqlite":
        return tmp_path / "clustering.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.database()
