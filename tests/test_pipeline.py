"""The facade end to end: real SQLite files, a real HTTP server on 127.0.0.1, real feedparser.

Most tests embed with the deterministic ``hashing`` embedder (settings.model: hashing);
the real model is exercised in test_sample.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from clustering import ConfigError, EmbeddingError, LockedError, NotFoundError, StorageError, open_pipeline
from clustering.config import Config, parse_config
from clustering.embed import HashingEmbedder
from clustering.fetch import BACKOFF_BASE_SECONDS
from clustering.report import run_summary
from clustering.store import run_lock
from clustering.types import Article, DuplicateLink, Story, StoryDetail

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "clustering" / "sample"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
POLL = timedelta(minutes=1)
ETAG = '"cond-v1"'
LAST_MODIFIED = "Mon, 02 Mar 2026 09:00:00 GMT"

TOPICS = {
    "quake": "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast "
             "epicentre",
    "rates": "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending",
    "final": "Dunmore football final trophy striker goal penalty stadium fans champions coach",
}
"""Three invented events.  Each article is a shuffle of its event's words: articles of one event
share every word (the hashing embedder sees them as one story) but few word sequences, so dedup
does not take them for copies."""


class Clock:
    """The pipeline's ``now`` seam: a settable, fixed time."""

    def __init__(self, moment: datetime = NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def topic_text(topic: str, seed: int) -> tuple[str, str]:
    """(title, text) of one article about ``topic``; ``seed`` picks the word order."""
    words = TOPICS[topic].split()
    random.Random(seed).shuffle(words)
    return " ".join(words[:5]).capitalize(), " ".join(words) + "."


def topic_article(topic: str, source: str, seed: int, hours: float = 0.0) -> dict[str, Any]:
    title, text = topic_text(topic, seed)
    return {"title": title, "text": text, "url": f"https://{source}.test/{topic}/{seed}",
            "published": NOW - timedelta(hours=6) + timedelta(hours=hours), "source": source}


def corpus() -> list[dict[str, Any]]:
    """Four articles (four sources) for each of the three events."""
    return [topic_article(topic, source, seed=10 * t + s, hours=s)
            for t, topic in enumerate(TOPICS) for s, source in enumerate(["ara", "bel", "cor", "dun"])]


def rss(items: Sequence[tuple[str, str, str, datetime]], title: str = "Test feed") -> bytes:
    """An RSS 2.0 document from (guid, title, text, published) items."""
    body = "".join(
        f"<item><title>{t}</title><link>https://feed.test/{guid}</link><guid isPermaLink=\"false\">{guid}</guid>"
        f"<pubDate>{format_datetime(p)}</pubDate><description>{d}</description></item>"
        for guid, t, d, p in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{title}</title>'
            f"<link>https://feed.test/</link><description>test</description>{body}</channel></rss>").encode()


def topic_items(prefix: str, topic: str, seeds: Sequence[int]) -> list[tuple[str, str, str, datetime]]:
    return [(f"{prefix}-{seed}", *topic_text(topic, seed), NOW - timedelta(hours=5) + timedelta(minutes=seed))
            for seed in seeds]


def hashing_config(feeds: Sequence[dict[str, Any]] = (), base_dir: Path | None = None, **settings: Any) -> Config:
    return parse_config({"settings": {"model": "hashing", **settings}, "feeds": list(feeds)},
                        base_dir=base_dir)


def by_name(pipeline: Any) -> dict[str, Any]:
    return {status.name: status for status in pipeline.feeds()}


def story_members(pipeline: Any) -> dict[str, tuple[int, ...]]:
    return {story.id: tuple(sorted(story.article_ids)) for story in pipeline.stories()}  # ids in time order


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    """A threaded server, so one slow feed does not hold up the others."""
    http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    http.start()
    try:
        yield http
    finally:
        http.clear()
        http.stop()


# --------------------------------------------------------------------------- fetching over HTTP


def test_http_failures_are_recorded_per_feed_and_good_feeds_are_stored(server: HTTPServer, tmp_path: Path) -> None:
    conditional_headers: list[tuple[str | None, str | None]] = []
    calls = {"broken": 0}

    def conditional(request: Request) -> Response:
        sent = (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        conditional_headers.append(sent)
        if sent == (ETAG, LAST_MODIFIED):
            return Response(status=304, headers={"ETag": ETAG})
        return Response(rss(topic_items("cond", "quake", [1, 2, 3])), content_type="application/rss+xml",
                        headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})

    def broken(request: Request) -> Response:
        calls["broken"] += 1
        if calls["broken"] == 1:
            return Response("boom", status=500)
        return Response(rss(topic_items("broken", "final", [7, 8])), content_type="application/rss+xml")

    def slow(request: Request) -> Response:
        time.sleep(1.2)
        return Response(rss(topic_items("slow", "final", [9])), content_type="application/rss+xml")

    server.expect_request("/cond.xml").respond_with_handler(conditional)
    server.expect_request("/plain.xml").respond_with_data(
        rss(topic_items("plain", "rates", [4, 5])), content_type="application/rss+xml")
    server.expect_request("/broken.xml").respond_with_handler(broken)
    server.expect_request("/slow.xml").respond_with_handler(slow)
    server.expect_request("/huge.xml").respond_with_data(
        rss([("huge-1", "Huge", "word " * 30_000, NOW)]), content_type="application/rss+xml")
    server.expect_request("/page.html").respond_with_data(
        "<!doctype html><html><head><title>Welcome</title></head><body><p>Not a feed</p></body></html>",
        content_type="text/html; charset=utf-8")
    names = ["cond", "plain", "broken", "slow", "huge", "html"]
    paths = ["/cond.xml", "/plain.xml", "/broken.xml", "/slow.xml", "/huge.xml", "/page.html"]
    config = hashing_config([{"name": n, "url": server.url_for(p)} for n, p in zip(names, paths)],
                            poll_interval_minutes=1, fetch={"timeout_seconds": 0.5, "max_bytes": 50_000})
    clock = Clock()

    with open_pipeline(tmp_path / "news.db", config, now=clock) as pipeline:
        first = pipeline.run()
        assert (first.feeds_ok, first.feeds_failed, first.feeds_not_modified) == (2, 4, 0)
        assert sorted(first.failed_feeds) == ["broken", "html", "huge", "slow"]
        assert first.new_articles == 5
        status = by_name(pipeline)
        assert "500" in status["broken"].last_error
        assert "timed out" in status["slow"].last_error
        assert "larger than 50000 bytes" in status["huge"].last_error
        assert "not a feed" in status["html"].last_error and "HTML" in status["html"].last_error
        for name in ("broken", "slow", "huge", "html"):
            assert status[name].consecutive_errors == 1
            assert status[name].articles == 0
            assert status[name].last_error_at == NOW
            assert status[name].last_success is None
            # backoff: the first retry waits BACKOFF_BASE_SECONDS, longer than the 1-minute poll interval
            assert status[name].next_attempt == NOW + timedelta(seconds=BACKOFF_BASE_SECONDS)
        for name, count in (("cond", 3), ("plain", 2)):
            assert status[name].last_error is None and status[name].consecutive_errors == 0
            assert status[name].articles == count
            assert status[name].last_success == NOW
            assert status[name].next_attempt == NOW + POLL
        assert conditional_headers == [(None, None)]

        clock.moment = NOW + timedelta(seconds=10)
        second = pipeline.run(force=True)
        assert conditional_headers[-1] == (ETAG, LAST_MODIFIED)
        assert second.feeds_not_modified == 1
        assert (second.feeds_ok, second.feeds_failed) == (2, 3)  # plain (same items again) and broken
        assert second.new_articles == 2  # only the recovered feed's; plain's items are not added twice
        status = by_name(pipeline)
        assert (status["cond"].articles, status["plain"].articles) == (3, 2)
        assert status["cond"].last_success == clock.moment
        assert pipeline.store.feed_row("cond")["etag"] == ETAG
        recovered = status["broken"]
        assert (recovered.consecutive_errors, recovered.last_error, recovered.articles) == (0, None, 2)
        assert recovered.next_attempt == clock.moment + POLL
        for name in ("slow", "huge", "html"):
            assert status[name].consecutive_errors == 2
            assert status[name].next_attempt == clock.moment + timedelta(seconds=2 * BACKOFF_BASE_SECONDS)


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_run_stops_fetching_at_its_deadline_and_the_rest_go_first_next_time(server: HTTPServer,
                                                                            tmp_path: Path) -> None:
    """80 feeds that never answered held a run (and the lock) for 204 s: a run now fetches until
    settings.fetch.run_deadline, says how many it left, and those go first in the next run."""
    fetched: list[str] = []

    def slow(request: Request) -> Response:
        time.sleep(0.4)
        fetched.append(request.path.strip("/"))
        return Response(rss(topic_items(request.path.strip("/"), "quake", [1])), content_type="application/rss+xml")

    server.expect_request(re.compile(r"/f\d+")).respond_with_handler(slow)
    feeds = [{"name": f"f{i:02d}", "url": server.url_for(f"/f{i:02d}")} for i in range(12)]
    config = hashing_config(feeds, fetch={"run_deadline": 1.5, "max_concurrency": 1})
    with open_pipeline(tmp_path / "news.db", config, now=Clock()) as pipeline:
        first = pipeline.run(force=True)
        assert first.feeds_failed == 0 and 0 < first.feeds_deferred < 12
        assert first.feeds_ok + first.feeds_deferred == 12 and first.as_dict()["feeds_deferred"] == first.feeds_deferred
        assert "left for the next run (run deadline)" in run_summary(first)
        done_first = list(fetched)
        second = pipeline.run()  # not forced: the deferred feeds are still due, the others are not
        assert second.feeds_skipped == first.feeds_ok and second.feeds_failed == 0
        assert not set(fetched[len(done_first):]) & set(done_first)


def test_failures_of_a_run_are_one_warning_line_and_each_feed_keeps_its_error(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """1,980 dead feeds printed 1,980 WARNING lines."""
    feeds = [{"name": f"dead{i}", "url": f"http://127.0.0.1:{dead_port()}/feed.xml"} for i in range(6)]
    caplog.set_level(logging.WARNING, logger="clustering")
    with open_pipeline(tmp_path / "news.db", hashing_config(feeds), now=Clock()) as pipeline:
        report = pipeline.run()
        assert report.feeds_failed == 6
        assert all(status.last_error == "connection refused" for status in pipeline.feeds())
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith("6 of 6 feeds failed: 'dead") and "(connection refused)" in line and "and 3 more" in line


def test_run_without_force_fetches_only_due_feeds(server: HTTPServer, tmp_path: Path) -> None:
    requests: list[str] = []

    def record(body: bytes | None) -> Any:
        def handler(request: Request) -> Response:
            requests.append(request.path)
            if body is None:
                return Response("down", status=503)
            return Response(body, content_type="application/rss+xml")
        return handler

    server.expect_request("/good.xml").respond_with_handler(record(rss(topic_items("good", "quake", [1, 2]))))
    server.expect_request("/down.xml").respond_with_handler(record(None))
    config = hashing_config([{"name": "good", "url": server.url_for("/good.xml")},
                             {"name": "down", "url": server.url_for("/down.xml")}], poll_interval_minutes=1)
    clock = Clock()
    with open_pipeline(tmp_path / "news.db", config, now=clock) as pipeline:
        first = pipeline.run()
        assert (first.feeds_ok, first.feeds_failed, first.new_articles) == (1, 1, 2)
        assert sorted(requests) == ["/down.xml", "/good.xml"]

        clock.moment = NOW + timedelta(seconds=30)  # before the poll interval and the backoff
        early = pipeline.run()
        assert (early.feeds_skipped, early.feeds_ok, early.feeds_failed, early.new_articles) == (2, 0, 0, 0)
        assert len(requests) == 2

        clock.moment = NOW + timedelta(minutes=2)  # the good feed is due, the failing one backs off
        later = pipeline.run()
        assert (later.feeds_skipped, later.feeds_ok, later.new_articles) == (1, 1, 0)
        assert requests[2:] == ["/good.xml"]
        assert by_name(pipeline)["down"].consecutive_errors == 1


# --------------------------------------------------------------------------- stable stories


def test_rerun_adds_nothing_and_new_articles_join_existing_stories(tmp_path: Path) -> None:
    with open_pipeline(tmp_path / "news.db", hashing_config(), now=Clock()) as pipeline:
        assert pipeline.add_articles(corpus()) == list(range(1, 13))
        report = pipeline.process()
        assert (report.embedded, report.duplicates, report.stories_new, report.stories_total) == (12, 0, 3, 3)
        before = story_members(pipeline)
        assert sorted(before.values()) == [(1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12)]
        for story_id, members in before.items():  # the stored vectors are found again
            assert set(pipeline.story(story_id).similarity) == set(members)

        assert pipeline.add_articles(corpus()) == []
        again = pipeline.process()
        assert (again.embedded, again.stories_new, again.stories_updated) == (0, 0, 0)
        assert story_members(pipeline) == before

    # a later process, a new connection: a follow-up joins its event's story under the same id
    with open_pipeline(tmp_path / "news.db", hashing_config(), now=Clock(NOW + timedelta(hours=1))) as pipeline:
        (new_id,) = pipeline.add_articles([topic_article("rates", "eld", seed=99, hours=5)])
        report = pipeline.process()
        assert (report.embedded, report.stories_new, report.stories_updated) == (1, 0, 1)
        after = story_members(pipeline)
        assert set(after) == set(before)
        rates_story = next(sid for sid, members in before.items() if 5 in members)
        assert after[rates_story] == before[rates_story] + (new_id,)
        assert pipeline.article(new_id).story_id == rates_story
        assert all(after[sid] == before[sid] for sid in before if sid != rates_story)


# --------------------------------------------------------------------------- the Python API


def test_python_api_duplicates_stories_and_frozen_values(tmp_path: Path) -> None:
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        pipeline.process()
        original = pipeline.article(1)
        copies = pipeline.add_articles([
            # the same text elsewhere (a wire copy), two hours later
            {"title": original.title, "text": original.summary, "url": "https://copycat.test/1",
             "published": original.published + timedelta(hours=2), "source": "copycat"},
            # the same URL with another headline (an update)
            {"title": "Updated: " + original.title, "text": original.summary + " Update.",
             "url": original.url + "?utm_source=rss", "published": original.published + timedelta(hours=3),
             "source": "aggregator"},
        ])
        assert copies == [13, 14]
        report = pipeline.process()
        assert (report.embedded, report.duplicates) == (2, 2)  # only the new ones are embedded

        text_copy, url_copy = (pipeline.article(i) for i in copies)
        assert text_copy.duplicate_of == 1 and url_copy.duplicate_of == 1
        links = pipeline.duplicates_of(13)
        assert links == pipeline.duplicates_of(1)
        assert {(link.article_id, link.canonical_id, link.kind) for link in links} == {(13, 1, "text"), (14, 1, "url")}
        assert all(link.score == 1.0 for link in links)

        (story,) = [s for s in pipeline.stories() if 1 in s.article_ids]
        assert 13 not in story.article_ids and 14 not in story.article_ids  # copies are not members...
        assert story.duplicates == 2 and text_copy.story_id == story.id      # ...but point at the story
        detail = pipeline.story(story.id)
        assert isinstance(detail, StoryDetail) and detail.story == story
        assert [a.id for a in detail.articles] == list(story.article_ids)
        assert all(isinstance(a, Article) and a.story_id == story.id for a in detail.articles)
        assert {link.article_id for link in detail.duplicates} == {13, 14}
        assert set(detail.similarity) == set(story.article_ids)
        assert all(0.5 < score <= 1.0001 for score in detail.similarity.values())

        for value, field in ((story, "label"), (detail, "articles"), (text_copy, "title"), (links[0], "kind")):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(value, field, None)
        assert isinstance(story, Story) and isinstance(links[0], DuplicateLink)
        assert text_copy.published.utcoffset() == timedelta(0) == story.first_seen.utcoffset()

        with pytest.raises(NotFoundError, match="s999"):
            pipeline.story("s999")
        with pytest.raises(KeyError):  # NotFoundError is also a KeyError
            pipeline.story("no-such-story")
        with pytest.raises(NotFoundError):
            pipeline.duplicates_of(999)


def test_an_earlier_copy_becomes_the_canonical_and_the_story_keeps_its_id(tmp_path: Path) -> None:
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        pipeline.process()
        original = pipeline.article(2)
        story_id = original.story_id
        assert story_id is not None
        (earlier,) = pipeline.add_articles([{"title": original.title, "text": original.summary,
                                             "published": original.published - timedelta(hours=1),
                                             "source": "early-bird"}])
        pipeline.process()
        assert pipeline.article(2).duplicate_of == earlier
        assert [(link.article_id, link.canonical_id, link.kind) for link in pipeline.duplicates_of(earlier)] == [
            (2, earlier, "text")]
        members = story_members(pipeline)[story_id]
        assert earlier in members and 2 not in members


@pytest.mark.parametrize(("article", "message"), [
    ({"title": "Quake", "published": datetime(2026, 3, 2, 12, 0)}, "timezone-aware"),
    ({"title": "Quake", "published": "2026-03-02T12:00:00Z"}, "published must be a datetime"),
    ({"title": "A", "text": "t", "source": "s", "published": datetime(999, 1, 1, tzinfo=timezone.utc)},
     r"article #1 'A': published 0999-01-01T00:00:00\+00:00 is not a plausible date"),
    ({"title": "Later", "published": NOW + timedelta(days=2)}, "not a plausible date"),
    ({"title": "", "text": "  ", "source": "wire"}, "needs a title or a text"),
    ({"url": "https://wire.test/1"}, "needs a title or a text"),
    ({"title": "Quake", "body": "text"}, "unknown field"),
    ({"title": "t", 1: "x", "bogus": 2}, "field names must be strings, got 1"),  # was a TypeError (sorting)
    ({"title": "Quake", "source": None}, "source must be a string"),
    ({"title": 42}, "title must be a string"),
    ("just a string", "expected a mapping"),
])
def test_add_articles_rejects_bad_input_and_stores_nothing(tmp_path: Path, article: Any, message: str) -> None:
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        good = topic_article("quake", "wire", seed=1)
        with pytest.raises(ConfigError, match=message):
            pipeline.add_articles([good, article])
        with pytest.raises(ValueError):  # ConfigError is also a ValueError
            pipeline.add_articles([article])
        assert not pipeline.store.has_unprocessed()
        assert pipeline.add_articles([good]) == [1]


@pytest.mark.parametrize("published", [datetime(999, 1, 1, tzinfo=timezone.utc),
                                       datetime(1989, 12, 31, 23, 59, tzinfo=timezone.utc),
                                       NOW + timedelta(days=1, seconds=1)])
def test_a_date_feeds_ignore_is_refused_by_add_articles_and_processing_goes_on(tmp_path: Path,
                                                                             published: datetime) -> None:
    """Issue item 1: a year-999 date was accepted and wedged every later process()."""
    from clustering.parse import is_plausible_date, parse_feed

    assert not is_plausible_date(published, NOW)
    if published.year >= 1900:  # RFC 822 dates need four digits: the same date in a feed is ignored
        (entry,) = parse_feed(rss([("g1", "Quake", "text", published)]), feed_url="https://feed.test/",
                              fetched_at=NOW).entries
        assert (entry.published, entry.published_estimated) == (NOW, True)
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        with pytest.raises(ConfigError, match=r"article #0 'A': published .* is not a plausible date"):
            pipeline.add_articles([{"title": "A", "text": "t", "source": "s", "published": published}])
        pipeline.add_articles(corpus())
        assert pipeline.process().stories_total == 3
        assert not pipeline.store.has_unprocessed()


def test_unreadable_stored_times_are_repaired_and_never_stop_a_run(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Issue item 1: a database written by hand or by an older version holds times the run cannot read."""
    database = tmp_path / "api.db"
    with open_pipeline(database, hashing_config(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        pipeline.process()
        before = story_members(pipeline)
    with sqlite3.connect(database) as raw:
        # the reproduction's value, never marked processed; a processed story member; a bad first-seen
        raw.execute("UPDATE articles SET published = '999-01-01T00:00:00Z', processed = 0 WHERE id = 3")
        raw.execute("UPDATE articles SET published = 'yesterday' WHERE id = 6")
        raw.execute("UPDATE articles SET first_seen = '2026-02-30T00:00:00Z' WHERE id = 10")
        raw.execute("UPDATE stories SET keywords = '[not json'")
    caplog.set_level(logging.WARNING, logger="clustering")
    with open_pipeline(database, hashing_config(), now=Clock(NOW + timedelta(hours=1))) as pipeline:
        assert sorted(len(s.article_ids) for s in pipeline.stories()) == [4, 4, 4]  # reading is not fatal
        assert pipeline.article(6).published == pipeline.article(6).first_seen == NOW
        report = pipeline.process()
        assert not pipeline.store.has_unprocessed()
        assert report.stories_total == 3
        repaired = {i: pipeline.article(i) for i in (3, 6, 10)}
        assert repaired[3].published == repaired[3].first_seen == NOW  # as feeds do: first seen, estimated
        assert repaired[6].published == NOW
        assert repaired[10].first_seen == NOW + timedelta(hours=1)
        assert story_members(pipeline) == before
        assert all(s.keywords for s in pipeline.stories())  # relabelled
        messages = [r.getMessage() for r in caplog.records]
        for article_id in (3, 6, 10):
            assert any(m.startswith(f"article {article_id}: stored") for m in messages), article_id
        assert any("999-01-01T00:00:00Z" in m for m in messages)
        caplog.clear()
        pipeline.add_articles([topic_article("rates", "eld", seed=99, hours=5)])
        pipeline.process()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # repaired once, for good
        with sqlite3.connect(database) as raw:
            bad = raw.execute("SELECT count(*) FROM articles WHERE published NOT GLOB '2026-*'").fetchone()[0]
        assert bad == 0


def test_a_feed_with_an_unreadable_schedule_is_due_not_skipped_for_ever(tmp_path: Path) -> None:
    write_topic_feed(tmp_path / "local.xml")
    config = hashing_config([{"name": "local", "url": "local.xml"}], base_dir=tmp_path, poll_interval_minutes=1)
    with open_pipeline(tmp_path / "news.db", config, now=Clock()) as pipeline:
        assert pipeline.run().feeds_ok == 1
    with sqlite3.connect(tmp_path / "news.db") as raw:  # sorts after every real time: never due again
        raw.execute("UPDATE feeds SET next_attempt = 'soon', consecutive_errors = 'many'")
    with open_pipeline(tmp_path / "news.db", config, now=Clock(NOW + timedelta(minutes=5))) as pipeline:
        assert pipeline.feeds()[0].next_attempt is None and pipeline.feeds()[0].consecutive_errors == 0
        report = pipeline.run()
        assert (report.feeds_skipped, report.feeds_ok + report.feeds_not_modified) == (0, 1)
        assert pipeline.feeds()[0].next_attempt == NOW + timedelta(minutes=5) + POLL


def test_text_that_cannot_be_stored_is_cleaned_not_a_unicode_error(tmp_path: Path) -> None:
    """Issue item 2: a lone surrogate in a title raised UnicodeEncodeError out of add_articles."""
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        (article_id,) = pipeline.add_articles([{
            "title": "bad \ud800", "text": "Quake \ud83d\ude00 hits\x00 the\x1b[31m coast", "source": "wire\udfff",
            "key": "k\ud800", "url": "https://wire.test/\ud800"}])
        stored = pipeline.article(article_id)
        assert (stored.title, stored.summary) == ("bad \ufffd", "Quake \U0001f600 hits the[31m coast")
        assert (stored.source, stored.entry_key, stored.url) == ("wire\ufffd", "k\ufffd", "https://wire.test/%EF%BF%BD")
        pipeline.add_articles(corpus())
        assert pipeline.process().stories_total == 3
        with pytest.raises(NotFoundError):
            pipeline.story("s\ud800")
        with pytest.raises(ConfigError, match="timezone-aware"):
            pipeline.stories(since=datetime(2026, 1, 1))
        with pytest.raises(ConfigError, match="positive integer"):
            pipeline.stories(limit=0)


def test_one_size_rule_for_feed_entries_and_api_articles(tmp_path: Path) -> None:
    """Issue item 3: API titles and texts were stored at any size (10 MB), feed entries cut at 2,000."""
    from clustering import parse

    title, text = "Harbour " * 200, "The quake shook the harbour town. " * 500  # 1,600 and 17,000 characters
    (entry,) = parse.parse_feed(rss([("g1", title, text, NOW)]), feed_url="https://feed.test/",
                                fetched_at=NOW).entries
    with open_pipeline(tmp_path / "api.db", hashing_config(), now=Clock()) as pipeline:
        first, huge = pipeline.add_articles([{"title": title, "text": text, "source": "wire", "published": NOW},
                                             {"title": "x" * 10_000_000, "text": "y " * 5_000_000, "source": "big"}])
        api, big = pipeline.article(first), pipeline.article(huge)
        assert len(big.summary) <= parse.MAX_SUMMARY_CHARS and len(big.title) <= parse.MAX_SUMMARY_CHARS
        assert (api.title, api.summary) == (entry.title, entry.summary)
        assert len(api.summary) <= parse.MAX_SUMMARY_CHARS and api.summary.endswith("…")
        assert len(big.title) == parse.MAX_TITLE_CHARS  # one giant word is cut inside
        assert parse.MAX_TITLE_CHARS - 8 < len(api.title) <= parse.MAX_TITLE_CHARS and api.title.endswith("…")
        with pytest.raises(ConfigError, match=r"article #0 'A': key is longer than 2048 characters"):
            pipeline.add_articles([{"title": "A", "key": "k" * 5000}])


def test_a_read_only_pipeline_reads_and_refuses_to_write(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database at"):
        open_pipeline(tmp_path / "news.db", hashing_config(), read_only=True)
    assert not (tmp_path / "news.db").exists()
    with open_pipeline(tmp_path / "news.db", hashing_config(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        pipeline.process()
        written = story_members(pipeline)
    with open_pipeline(tmp_path / "news.db", hashing_config(), now=Clock(), read_only=True) as reader:
        assert story_members(reader) == written
        for write in (reader.run, reader.process, lambda: reader.add_articles(corpus())):
            with pytest.raises(StorageError, match="opened read-only"):
                write()


def test_add_articles_takes_text_only_and_optional_fields(tmp_path: Path) -> None:
    with open_pipeline(":memory:", hashing_config(), now=Clock()) as pipeline:
        ids = pipeline.add_articles([{"text": "A body without a headline about the harbour."},
                                     {"title": "Keyed", "key": "k1", "source": "own"}])
        assert ids == [1, 2]
        undated = pipeline.article(1)
        assert (undated.title, undated.source, undated.published) == ("", "api", NOW)
        assert pipeline.add_articles([{"title": "Keyed again", "key": "k1", "source": "own"}]) == []


# --------------------------------------------------------------------------- splits and deferred stories


class KeyedEmbedder:
    """Hand-built vectors: a title ``"<event> <n>"`` gets a unit vector near its event's axis
    (cosine ~0.99 within an event, 0.5 between events A, B and C: three events of one kind)."""

    BASES = {"A": [1.0, 0.0, 0.0, 0.0], "B": [0.5, 0.8660254, 0.0, 0.0], "C": [0.5, 0.0, 0.8660254, 0.0],
             "Z": [0.0, 0.0, 0.0, 1.0],
             "X": [0.839, 0.545, 0.0, 0.0]}  # between A (cosine 0.84) and B (0.89): an early article of B
    name = "keyed"
    dimension = 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            event, number = text.split(".")[0].split()[:2]
            vectors[row, :4] = self.BASES[event]
            vectors[row, 4 + int(number)] = 0.12
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def keyed(event: str, numbers: Sequence[int]) -> list[dict[str, Any]]:
    return [{"title": f"{event} {n}", "key": f"{event}{n}", "source": "wire",
             "published": NOW - timedelta(hours=60 - n)} for n in numbers]


def test_a_story_splits_and_a_small_look_alike_group_waits_one_run(tmp_path: Path) -> None:
    config = hashing_config(stories={"entity_weight": 0, "story_threshold": 0.6})
    clock = Clock()
    with open_pipeline(tmp_path / "split.db", config, embedder=KeyedEmbedder(), now=clock) as pipeline:
        # run 1: event A, and an early article of event B close enough to A to join its story
        pipeline.add_articles(keyed("A", [1, 2, 3, 4]) + keyed("X", [5]))
        first = pipeline.process()
        assert (first.stories_new, first.moved, first.pending) == (1, 0, 0)
        assert story_members(pipeline) == {"s1": (1, 2, 3, 4, 5)}

        # run 2: seven more of B: B is its own event, and article 5 moves to B's new story
        pipeline.add_articles(keyed("B", [6, 7, 8, 9, 10, 11, 12]))
        second = pipeline.process()
        assert (second.stories_new, second.stories_updated, second.moved) == (1, 1, 1)
        assert story_members(pipeline) == {"s1": (1, 2, 3, 4), "s5": tuple(range(5, 13))}
        assert pipeline.article(5).story_id == "s5"
        assert {s.id: s.split_from for s in pipeline.stories()} == {"s1": None, "s5": "s1"}  # lineage

        # run 3: three articles of a third event of the same kind wait for confirmation...
        pipeline.add_articles(keyed("C", [13, 14, 15]))
        third = pipeline.process()
        assert (third.stories_new, third.pending, third.unassigned) == (0, 3, 3)
        assert set(story_members(pipeline)) == {"s1", "s5"}

        # ...and found their story on the next run that has anything to process
        pipeline.add_articles(keyed("Z", [16]))
        fourth = pipeline.process()
        assert (fourth.stories_new, fourth.pending, fourth.unassigned) == (1, 0, 1)
        assert story_members(pipeline)["s13"] == (13, 14, 15)
        assert story_members(pipeline)["s1"] == (1, 2, 3, 4) and story_members(pipeline)["s5"] == tuple(range(5, 13))


def test_an_earlier_copy_arriving_late_takes_over_its_original_place_in_the_story(tmp_path: Path) -> None:
    texts = ["A magnitude 6.2 earthquake struck Vellmar before dawn, toppling houses in the coastal town of Orlin.",
             "Rescue teams in Vellmar dug through rubble in Orlin all day after the earthquake flattened homes.",
             "Vellmar's disaster agency counted 40 dead in Orlin and warned that aftershocks could follow the quake.",
             "Aftershocks kept Orlin residents outdoors overnight as Vellmar sent tents after the earthquake."]
    with open_pipeline(tmp_path / "copies.db", hashing_config(), now=Clock()) as pipeline:
        ids = pipeline.add_articles([{"title": f"Vellmar quake report {n}", "text": t, "source": f"desk{n}",
                                      "published": NOW - timedelta(hours=10 - n)} for n, t in enumerate(texts)])
        pipeline.process()
        (story_id,) = story_members(pipeline)
        assert story_members(pipeline)[story_id] == tuple(ids)
        # the wire's original of article 2 was published first, and is only fetched now
        (original,) = pipeline.add_articles([{"title": "Vellmar quake report 2", "text": texts[2], "source": "wire",
                                             "published": NOW - timedelta(hours=12)}])
        report = pipeline.process()
        assert report.duplicates == 0 and pipeline.article(ids[2]).duplicate_of == original
        members = story_members(pipeline)
        assert members == {story_id: tuple(sorted([ids[0], ids[1], ids[3], original]))}
        assert pipeline.article(original).story_id == story_id


def test_two_stories_of_one_event_merge_and_the_old_id_says_where_it_went(tmp_path: Path) -> None:
    """One event's first articles founded two stories (two runs, far apart in the graph only
    by chance); once the window holds the whole event, one story absorbs the other."""
    config = hashing_config(stories={"entity_weight": 0, "story_threshold": 0.6})
    with open_pipeline(tmp_path / "merge.db", config, embedder=KeyedEmbedder(), now=Clock()) as pipeline:
        pipeline.add_articles(keyed("A", [1, 2, 3]))
        pipeline.process()
        with pipeline.store.transaction():  # as if an earlier run had founded a second story of A
            pipeline.store.add_story_members({2: "s2", 3: "s2"}, NOW)
        assert story_members(pipeline) == {"s1": (1,), "s2": (2, 3)}
        pipeline.add_articles(keyed("A", [4, 5]))
        report = pipeline.process()
        assert (report.merged, report.moved, report.stories_new) == (1, 1, 0)
        assert story_members(pipeline) == {"s2": (1, 2, 3, 4, 5)}
        with pytest.raises(NotFoundError, match="'s1' was merged into 's2'"):
            pipeline.story("s1")


def test_a_story_listed_in_a_snapshot_can_be_read_while_a_run_merges_it(tmp_path: Path) -> None:
    """`stories --html` read the list, then each story: a run merging one in between made it exit 1
    with "story 's1' was merged into 's2'" (2 of 54 calls); the API had the same race."""
    config = hashing_config(stories={"entity_weight": 0, "story_threshold": 0.6, "short_story_threshold": 0.6})
    database = tmp_path / "merge.db"
    with open_pipeline(database, config, embedder=KeyedEmbedder(), now=Clock()) as writer:
        writer.add_articles(keyed("A", [1, 2, 3]))
        writer.process()
        with writer.store.transaction():
            writer.store.add_story_members({2: "s2", 3: "s2"}, NOW)
        with open_pipeline(database, config, read_only=True) as reader:
            with reader.snapshot():
                listed = [s.id for s in reader.stories()]
                writer.add_articles(keyed("A", [4, 5]))
                assert writer.process().merged == 1  # s1 merges into s2 between the list and the reads
                details = [reader.story(story_id) for story_id in listed]
            assert [d.story.id for d in details] == listed and sorted(listed) == ["s1", "s2"]
            with pytest.raises(NotFoundError, match="'s1' was merged into 's2'"):  # outside: the state now
                reader.story("s1")


# --------------------------------------------------------------------------- crash safety


class FailingOnceEmbedder:
    """The hashing embedder, except that its first call raises (a model that failed to load)."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder()
        self.calls = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.inner.embed(texts)


def write_topic_feed(path: Path) -> None:  # two events, four articles each
    path.write_bytes(rss(topic_items("q", "quake", [1, 2, 3, 4]) + topic_items("r", "rates", [5, 6, 7, 8])))


def test_embedding_failure_keeps_fetched_articles_for_the_next_run(tmp_path: Path) -> None:
    write_topic_feed(tmp_path / "local.xml")
    config = hashing_config([{"name": "local", "url": "local.xml"}], base_dir=tmp_path)
    embedder = FailingOnceEmbedder()
    with open_pipeline(tmp_path / "news.db", config, embedder=embedder, now=Clock()) as pipeline:
        with pytest.raises(EmbeddingError, match="CUDA out of memory"):
            pipeline.run()
        assert by_name(pipeline)["local"].articles == 8
        assert pipeline.store.has_unprocessed()
        assert pipeline.stories() == []

    # a later run with a working embedder: the feed is not due, but nothing was lost
    with open_pipeline(tmp_path / "news.db", config, embedder=embedder, now=Clock(NOW + timedelta(seconds=5))) as p:
        report = p.run()
        assert (report.feeds_skipped, report.new_articles) == (1, 0)
        assert (report.stories_new, report.stories_total) == (2, 2)
        assert not p.store.has_unprocessed()
        assert sorted(s.size for s in p.stories()) == [4, 4]


def test_embedder_returning_the_wrong_shape_is_an_embedding_error(tmp_path: Path) -> None:
    class Short(FailingOnceEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return self.inner.embed(texts)[:-1]

    with open_pipeline(tmp_path / "news.db", hashing_config(), embedder=Short(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        with pytest.raises(EmbeddingError, match="expected 12 vectors"):
            pipeline.process()
        assert pipeline.store.has_unprocessed()


# --------------------------------------------------------------------------- the run lock


def test_run_lock_held_elsewhere_raises_locked_error(tmp_path: Path) -> None:
    write_topic_feed(tmp_path / "local.xml")
    config = hashing_config([{"name": "local", "url": "local.xml"}], base_dir=tmp_path)
    database = tmp_path / "news.db"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock(database):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with open_pipeline(database, config, now=Clock()) as pipeline:
            with pytest.raises(LockedError, match="news.db.lock"):
                pipeline.run()
            with pytest.raises(LockedError):
                pipeline.add_articles([topic_article("quake", "wire", seed=1)])
            assert pipeline.feeds() == []  # nothing was touched
            assert not pipeline.store.has_unprocessed()
    finally:
        release.set()
        holder.join()
    with open_pipeline(database, config, now=Clock()) as pipeline:
        assert pipeline.run().new_articles == 8


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1.0, "5"])
def test_lock_wait_must_be_a_finite_number_of_seconds(tmp_path: Path, wait: Any) -> None:
    with pytest.raises(ConfigError, match="finite number"):
        open_pipeline(tmp_path / "news.db", hashing_config(), lock_wait_seconds=wait)
    with pytest.raises(ConfigError, match="finite number"), run_lock(tmp_path / "news.db", wait_seconds=wait):
        pass


def test_run_waits_for_the_lock_when_asked(tmp_path: Path) -> None:
    database = tmp_path / "news.db"
    holding = threading.Event()

    def hold_briefly() -> None:
        with run_lock(database):
            holding.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    assert holding.wait(5)
    try:
        with open_pipeline(database, hashing_config(), now=Clock(), lock_wait_seconds=5) as pipeline:
            assert pipeline.run().feeds_ok == 0
    finally:
        holder.join()


# --------------------------------------------------------------------------- local feeds


def test_relative_and_file_url_feeds(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_DIR / "feeds", tmp_path / "feeds")
    files = sorted((tmp_path / "feeds").glob("*.xml"))
    assert len(files) == 5
    feeds = [{"name": path.stem, "url": f"feeds/{path.name}" if i % 2 else path.as_uri()}
             for i, path in enumerate(files)]
    config = hashing_config(feeds, base_dir=tmp_path)
    with open_pipeline(tmp_path / "sample.db", config) as pipeline:
        first = pipeline.run()
        assert (first.feeds_ok, first.feeds_failed) == (5, 0)
        counts = {name: status.articles for name, status in by_name(pipeline).items()}
        assert counts == {"continental-press-wire": 12, "harbor-city-herald": 8, "ledgerline": 8,
                          "meridian-news": 9, "northvale-gazette": 8}
        assert first.new_articles == sum(counts.values())
        assert first.stories_total > 0
        stories = story_members(pipeline)

        unchanged = pipeline.run(force=True)  # files carry validators too: nothing is re-read
        assert (unchanged.feeds_not_modified, unchanged.new_articles) == (5, 0)

        later = time.time() + 60
        for path in files:
            os.utime(path, (later, later))
        reread = pipeline.run(force=True)
        assert (reread.feeds_ok, reread.feeds_not_modified, reread.new_articles) == (5, 0, 0)
        assert (reread.stories_new, reread.stories_updated) == (0, 0)
        assert story_members(pipeline) == stories


# --------------------------------------------------------------------------- long runs


def many_articles(count: int) -> list[dict[str, Any]]:
    return [topic_article(("quake", "rates", "final")[i % 3], f"src{i % 7}", seed=1000 + i, hours=i / count)
            for i in range(count)]


def test_progress_counts_embedding_chunks_dedup_blocks_and_announces_stories(tmp_path: Path) -> None:
    from clustering.core import EMBED_CHUNK
    from clustering.dedup import SEARCH_BLOCK

    calls: list[tuple[str, int, int]] = []
    count = max(EMBED_CHUNK, SEARCH_BLOCK) + 100  # more than one chunk and one block

    def steps(stage: str, size: int) -> list[tuple[str, int, int]]:
        return [(stage, min(done, count), count) for done in range(size, count + size, size)]

    with open_pipeline(tmp_path / "news.db", hashing_config(), now=Clock(),
                       progress=lambda *call: calls.append(call)) as pipeline:
        pipeline.add_articles(many_articles(count))
        report = pipeline.process()
    assert calls == [*steps("embedding", EMBED_CHUNK), *steps("duplicates", SEARCH_BLOCK),
                     ("stories", 0, count - report.duplicates)]
    assert len(steps("embedding", EMBED_CHUNK)) > 1 and len(steps("duplicates", SEARCH_BLOCK)) > 1


class FailingSecondChunkEmbedder(FailingOnceEmbedder):
    """The hashing embedder, except that its second call raises (stopped in the middle of a first run)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("killed (simulated)")
        return self.inner.embed(texts)


def test_an_embedding_failure_keeps_the_chunks_embedded_before_it(tmp_path: Path) -> None:
    from clustering.core import EMBED_CHUNK

    count = EMBED_CHUNK + 40
    with open_pipeline(tmp_path / "news.db", hashing_config(), embedder=FailingSecondChunkEmbedder(),
                       now=Clock()) as pipeline:
        pipeline.add_articles(many_articles(count))
        with pytest.raises(EmbeddingError, match="killed"):
            pipeline.process()
        assert len(pipeline.store.articles_without_embedding(pipeline.model_name)) == count - EMBED_CHUNK
        report = pipeline.process()  # the embedder works again: only the rest is embedded
        assert report.embedded == count - EMBED_CHUNK
        assert not pipeline.store.has_unprocessed()


def test_open_pipeline_takes_a_mapping_and_refuses_other_kinds_as_config_errors(tmp_path: Path) -> None:
    """A dict config raised a bare TypeError (not a ClusteringError) from deep inside."""
    with open_pipeline(tmp_path / "news.db", {"settings": {"model": "hashing", "window_days": 2}}) as pipeline:
        assert pipeline.config.window_days == 2
    with pytest.raises(ConfigError, match="settings.window_days"):
        open_pipeline(tmp_path / "news.db", {"settings": {"window_days": "two"}})
    with pytest.raises(ConfigError, match="not int"):
        open_pipeline(tmp_path / "news.db", 3)  # type: ignore[arg-type]


def test_a_story_whose_members_did_not_change_keeps_its_label(tmp_path: Path) -> None:
    """Keywords were recomputed for every story a run's region touched, against whichever stories
    that region held: one unchanged story in six got other keywords from one run to the next."""
    database = tmp_path / "api.db"
    with open_pipeline(database, hashing_config(), now=Clock()) as pipeline:
        pipeline.add_articles(corpus())
        pipeline.process()
        quake = next(s.id for s in pipeline.stories() if "vellmar" in s.label.lower())
    with sqlite3.connect(database) as raw:
        raw.execute("""UPDATE stories SET keywords = '["kept"]'""")
    with open_pipeline(database, hashing_config(), now=Clock(NOW + timedelta(hours=1))) as pipeline:
        pipeline.add_articles([topic_article("quake", "eko", seed=91, hours=5.5),
                               topic_article("quake", "fyr", seed=92, hours=5.6)])
        report = pipeline.process()
        assert report.stories_updated == 1
        keywords = {s.id: s.keywords for s in pipeline.stories()}
    assert keywords[quake] != ("kept",) and len(keywords[quake]) > 1   # it grew: relabelled
    assert [k for s, k in keywords.items() if s != quake] == [("kept",), ("kept",)]


def test_the_lexical_text_counts_eight_words_as_a_whole_split_did() -> None:
    """core._lexical_text stops splitting after the eighth word; the choice of text is the same."""
    from clustering.core import _lexical_text
    from clustering.store import WindowArticle

    rng = random.Random(4)
    pieces = ["word", " ", "  ", "\n", "\t", "a", "\u00a0", "\u2003", "x.y", ""]
    for _ in range(3000):
        summary = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        article = WindowArticle(id=1, source="s", title="Title here", summary=summary, url=None,
                                published=datetime(2025, 1, 1, tzinfo=timezone.utc), text_hash="h", processed=False,
                                duplicate_of=None, story_id=None)
        expected = summary if len(summary.split()) >= 8 else f"Title here {summary}"
        assert _lexical_text(article) == expected, repr(summary)


def test_new_stories_take_no_stored_id_through_the_lazy_lookup(tmp_path: Path) -> None:
    """core._StoredStoryIds answers as the set of stored ids named after the window's articles did."""
    from clustering.core import _StoredStoryIds
    from clustering.store import NewArticle, Store
    from clustering.stories import _UsedIds

    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    store = Store(tmp_path / "ids.db")
    try:
        ids = store.add_articles([NewArticle(source="s", entry_key=f"k{i}", title=f"t{i}", summary="x", url=None,
                                             published=now, published_estimated=False, text_hash=f"h{i}")
                                  for i in range(3)], now)
        with store.transaction():
            store.add_story_members({ids[0]: f"s{ids[1]}", ids[2]: f"s{ids[1]}-2"}, now)
        taken = _StoredStoryIds(store)
        assert f"s{ids[1]}" in taken and f"s{ids[1]}-2" in taken and f"s{ids[0]}" not in taken and 5 not in taken
        founder = dataclasses.make_dataclass("Doc", ["article_id"])(ids[1])
        assert _UsedIds(taken, ()).fresh([0], [founder]) == f"s{ids[1]}-3"
    finally:
        store.close()
