"""Robustness of parse_feed over feedparser's own test feeds (../shared, never copied here).

Every file must either parse or raise FeedError; whatever parses must satisfy
the ParsedEntry contract.  Run with ``-m shared``; fails when ../shared is missing.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clustering.errors import FeedError
from clustering.parse import MAX_SUMMARY_CHARS, parse_feed

# Same place as the shared_dir fixture (tests/conftest.py); needed at collection time.
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "feeds-corpus" / "feedparser-tests"
FETCHED_AT = datetime(2024, 6, 5, 12, 0, tzinfo=timezone.utc)
MIN_CORPUS_FILES = 700
"""The corpus holds 767 feeds; fewer means a broken checkout, not a pass."""

_CONTENT_TYPE_HEADER = re.compile(
    rb"^Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
"""feedparser's http tests give the response headers in the leading comment."""


def _corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return ["<corpus missing>"]  # one test that fails, rather than an empty, skipped set
    return sorted(
        path.relative_to(CORPUS).as_posix()
        for folder in ("illformed", "wellformed")
        for path in (CORPUS / folder).rglob("*")
        if path.is_file()
    )


@pytest.fixture(scope="module")
def corpus(shared_dir: Path) -> Path:
    path = shared_dir / "feeds-corpus" / "feedparser-tests"
    if not path.is_dir():
        pytest.fail(f"{path} is missing from ../shared", pytrace=False)
    return path


@pytest.mark.shared
def test_corpus_is_complete(corpus: Path) -> None:
    assert len(_corpus_files()) >= MIN_CORPUS_FILES


@pytest.mark.shared
@pytest.mark.parametrize("relative_path", _corpus_files())
def test_corpus_feed(corpus: Path, relative_path: str) -> None:
    body = (corpus / relative_path).read_bytes()
    header = _CONTENT_TYPE_HEADER.search(body[:2000])
    try:
        feed = parse_feed(
            body,
            feed_url=f"https://corpus.example/{relative_path}",
            fetched_at=FETCHED_AT,
            content_type=header.group(1).decode("ascii") if header else None,
            feed_name=relative_path,
        )
    except FeedError as error:
        assert error.feed == relative_path
        assert error.reason
        # illformed/ may be rejected; every wellformed/ document is a feed
        assert relative_path.startswith("illformed/"), f"rejected a well-formed feed: {error}"
        return
    assert feed.title is None or (isinstance(feed.title, str) and feed.title)
    assert feed.warning is None or (isinstance(feed.warning, str) and feed.warning)
    assert len({entry.entry_key for entry in feed.entries}) == len(feed.entries)
    for entry in feed.entries:
        assert isinstance(entry.published, datetime)
        assert entry.published.tzinfo is not None
        assert entry.published.utcoffset() == timedelta(0)
        assert entry.published <= FETCHED_AT + timedelta(days=1)
        assert isinstance(entry.title, str)
        assert isinstance(entry.summary, str)
        assert len(entry.summary) <= MAX_SUMMARY_CHARS
        assert entry.title or entry.summary or entry.url
        assert entry.url is None or entry.url.startswith(("http://", "https://"))
        assert entry.author is None or (isinstance(entry.author, str) and entry.author)
        assert entry.entry_key.startswith(("id:", "url:", "hash:"))
