"""Property-based tests (hypothesis): what holds for any input, not for the inputs we thought of.

Each property runs twice: with a few examples in the default test run, and with many under the
``properties`` marker, which `.ci/run` runs as its own step (``python -m pytest -m properties``).
Examples are drawn afresh each time (no example database is written).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clustering import ConfigError, FeedError, open_pipeline
from clustering.config import parse_config
from clustering.parse import (
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    _TextExtractor,
    clean_article_text,
    is_plausible_date,
    parse_feed,
    plain_text,
)
from clustering.window import cache_path

RUNS = [pytest.param(12, id="few"), pytest.param(300, id="many", marks=pytest.mark.properties)]
"""(max_examples) of each property: the default run's and the ``properties`` step's."""

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def check(examples: int, *strategies: Any) -> Callable[[Callable[..., None]], None]:
    """Run the decorated function as a hypothesis property with ``examples`` examples, now."""
    def run(function: Callable[..., None]) -> None:
        settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(
            given(*strategies)(function))()
    return run


# --- text and HTML ------------------------------------------------------------------------------------
MARKUP = st.text(alphabet=st.sampled_from(list("<>/!-[]?&;#=\"' \nabxyp0")) | st.characters(), max_size=300)
TAGGED = st.lists(st.sampled_from(["<p>", "</p>", "<b>", "</b>", "<br/>", "<!--", "-->", "<![CDATA[", "]]>", "<a",
                                   " href='x'", ">", "<script>", "</script>", "&amp;", "&lt;", "&#169;", "&",
                                   "<", "x<y ", "word", " ", "Ünïcødé", "\ud800", "\x00"]),
                  max_size=60).map("".join)


def reference_text(html: str) -> str:
    """plain_text as html.parser reads the whole input (quadratic on unclosed constructs), NUL deleted
    first as plain_text deletes it."""
    extractor = _TextExtractor()
    extractor.feed(html.replace("\x00", ""))
    extractor.close()
    from clustering.parse import _INVISIBLE_CHARS

    return " ".join("".join(extractor.parts).translate(_INVISIBLE_CHARS).split())


@pytest.mark.parametrize("examples", RUNS)
def test_plain_text_reads_what_html_parser_reads(examples: int) -> None:
    """The linear pre-pass (parse._escape_unclosed) changes no output."""
    @check(examples, MARKUP | TAGGED)
    def _(html: str) -> None:
        assert plain_text(html) == reference_text(html)


@pytest.mark.parametrize("examples", RUNS)
def test_stored_text_is_bounded_valid_unicode(examples: int) -> None:
    @check(examples, MARKUP | TAGGED, st.lists(MARKUP | TAGGED | TAGGED.map(lambda t: (t + " ") * 400),
                                                max_size=3))
    def _(title: str, texts: list[str]) -> None:
        stored_title, stored_text = clean_article_text(title, texts)
        assert len(stored_title) <= MAX_TITLE_CHARS and len(stored_text) <= MAX_SUMMARY_CHARS
        for value in (stored_title, stored_text):
            value.encode("utf-8")  # no lone surrogate survives
            assert value == value.strip() and "  " not in value


# --- feed bytes ---------------------------------------------------------------------------------------
def feed_document(items: list[tuple[str, str, str]]) -> str:
    entries = "".join(f"<item><guid>{guid}</guid><title>{title}</title><description>{text}</description>"
                      f"<pubDate>Mon, 02 Mar 2026 10:00:00 GMT</pubDate></item>" for guid, title, text in items)
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'


FEED_BYTES = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.tuples(st.text(max_size=20), MARKUP | TAGGED, MARKUP | TAGGED), max_size=6)
    .map(lambda items: feed_document(items).encode("utf-8", "surrogatepass")),
    st.tuples(st.lists(st.tuples(st.text("abc123", max_size=8), TAGGED, TAGGED), min_size=1, max_size=4)
              .map(lambda items: feed_document(items).encode("utf-8", "surrogatepass")),
              st.integers(0, 10_000), st.binary(max_size=20))
    .map(lambda mutation: mutation[0][:mutation[1] % (len(mutation[0]) + 1)] + mutation[2]
         + mutation[0][mutation[1] % (len(mutation[0]) + 1):]),
)
"""Random bytes, well-formed feeds of random text and markup, and such feeds with bytes spliced in."""


@pytest.mark.parametrize("examples", RUNS)
def test_any_feed_bytes_give_entries_or_a_feed_error(examples: int) -> None:
    @check(examples, FEED_BYTES, st.sampled_from([None, "application/rss+xml", "text/html",
                                                  "text/xml; charset=latin-1", "application/json"]))
    def _(body: bytes, content_type: str | None) -> None:
        try:
            parsed = parse_feed(body, feed_url="https://feed.test/rss", fetched_at=NOW, content_type=content_type)
        except FeedError:
            return
        keys = [entry.entry_key for entry in parsed.entries]
        assert len(keys) == len(set(keys))
        for entry in parsed.entries:
            assert entry.title or entry.summary or entry.url
            assert len(entry.title) <= MAX_TITLE_CHARS and len(entry.summary) <= MAX_SUMMARY_CHARS
            (entry.title + entry.summary + entry.entry_key).encode("utf-8")
            assert is_plausible_date(entry.published, NOW) and entry.published.tzinfo is not None


# --- add_articles + process ---------------------------------------------------------------------------
WORDS = ["quake", "rescue", "Northvale", "strike", "rail", "Southport", "vote", "flood", "river", "minister",
         "said", "on", "the", "a", "of", "teams", "search", "buildings", "<b>", "&amp;", "Ünïcødé"]
ARTICLE = st.fixed_dictionaries(
    {"title": st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
     "text": st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join),
     "source": st.sampled_from(["wire", "desk", "blog"]),
     "key": st.text("abcdef", min_size=1, max_size=3)},
    optional={"published": st.integers(0, 96).map(lambda hours: NOW - timedelta(hours=hours)),
              "url": st.sampled_from(["https://a.test/1", "https://a.test/1?utm_source=x", "https://b.test/2"])})
BATCHES = st.lists(st.lists(ARTICLE | st.just({"title": 3}) | st.just({"title": "t", 1: "x"}), max_size=12),
                   min_size=1, max_size=3)
"""Up to three runs of up to a dozen articles from a small vocabulary (so that copies, near copies
and stories happen), now and then one that add_articles must refuse."""


def consistent(pipeline: Any) -> tuple[Any, ...]:
    """Check what must hold after any process(), and return what a run decided."""
    window = pipeline.store.window(NOW - timedelta(days=30))
    assert not pipeline.store.has_unprocessed()
    by_id = {a.id: a for a in window}
    for article in window:
        if article.duplicate_of is not None:
            canonical = by_id[article.duplicate_of]
            assert canonical.duplicate_of is None and article.story_id is None
    stories = pipeline.stories()
    members = [i for s in stories for i in s.article_ids]
    assert len(members) == len(set(members)) and pipeline.store.story_count() == len(stories)
    assert all(by_id[i].duplicate_of is None for i in members)
    return ([(s.id, s.article_ids, s.label) for s in stories],
            [(a.id, a.story_id, a.duplicate_of, a.pending_group) for a in window])


def store_each_valid(pipeline: Any, batch: list[dict[str, Any]]) -> list[int]:
    """add_articles(batch); when it refuses one article (a ConfigError, nothing stored), each
    article on its own."""
    stored = len(pipeline.store.article_assignments())
    try:
        return list(pipeline.add_articles(batch))
    except ConfigError:
        assert len(pipeline.store.article_assignments()) == stored  # the refused call stored nothing
    added: list[int] = []
    for article in batch:
        with contextlib.suppress(ConfigError):
            added.extend(pipeline.add_articles([article]))
    return added


@pytest.mark.parametrize("examples", RUNS)
def test_add_articles_and_process_keep_the_store_consistent_and_the_cache_changes_nothing(examples: int) -> None:
    @check(examples, BATCHES)
    def _(batches: list[list[dict[str, Any]]]) -> None:
        folder = Path(tempfile.mkdtemp(prefix="clustering-properties-"))
        try:
            databases = (folder / "cached.db", folder / "uncached.db")
            outcomes: dict[Path, list[Any]] = {database: [] for database in databases}
            for batch in batches:
                for database in databases:
                    cache = cache_path(database)
                    if database.name == "uncached.db" and cache is not None and cache.exists():
                        cache.unlink()
                    config = parse_config({"settings": {"model": "hashing", "database": str(database)}})
                    with open_pipeline(database, config, now=lambda: NOW) as pipeline:
                        added = store_each_valid(pipeline, batch)
                        assert len(added) == len(set(added))
                        assert store_each_valid(pipeline, batch) == []  # stored once only
                        pipeline.process()
                        outcomes[database].append(consistent(pipeline))
            assert outcomes[databases[0]] == outcomes[databases[1]]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
