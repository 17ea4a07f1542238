"""What a run costs in SQLite does not grow with the stored history.

A database holds every article ever fetched; a run works on the window (the last
``window_days``) and on what is new.  These tests record every statement the store
executes during real runs (``sqlite3`` trace callback: exactly the SQL that ran, with its
values) and ask SQLite how it executes each one (``EXPLAIN QUERY PLAN``): a ``SCAN`` of a
table reads all of it, so a run may only ``SEARCH`` (find rows through an index).  A full
scan of an index (``SCAN x USING COVERING INDEX``) reads every entry too and fails as well.
The second test counts SQLite's virtual-machine steps of the same run with and without
a large history: the figure covers what a query plan does not show (trigger bodies).
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from clustering import open_pipeline
from clustering.config import parse_config
from clustering.core import Pipeline

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
WORDS = ("harbour", "council", "budget", "storm", "bridge", "vote", "strike", "court", "river", "school", "hospital",
         "election", "rail", "energy", "drought", "festival", "museum", "airport", "mine", "factory")
NAMES = ("Vellmar", "Ostreich", "Dunmore", "Karsk", "Pelladon", "Torvin", "Amberlee", "Quill", "Maradon", "Sefton",
         "Ulvik", "Brannock", "Corvale", "Ithren", "Lusk")
SQL_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE", "--")


def story_article(story: int, index: int, published: datetime, source: str = "wire") -> dict[str, Any]:
    """An article of invented story ``story``: its names and words, in a random order."""
    rng = random.Random(story * 1000 + index)
    own = [NAMES[story % len(NAMES)], NAMES[(story * 7 + 3) % len(NAMES)], str(1000 + story)]
    words = [*own, *rng.sample(WORDS, 8), *(w + str(story) for w in rng.sample(WORDS, 4))]
    rng.shuffle(words)
    return {"title": " ".join(words[:6]).capitalize(), "text": " ".join(words) + ".", "source": source,
            "url": f"https://{source}.test/{story}/{index}", "published": published}


def history_articles(stories: int, per_story: int, end: datetime) -> list[dict[str, Any]]:
    """Stories of the past, before the window: every run must leave them alone."""
    return [story_article(1000 + s, i, end - timedelta(hours=s % 500, minutes=i), source=f"src{i % 3}")
            for s in range(stories) for i in range(per_story)]


def rss_file(path: Path, items: list[dict[str, Any]]) -> Path:
    body = "".join(f"<item><title>{a['title']}</title><link>{a['url']}</link><guid>{a['url']}</guid>"
                   f"<pubDate>{format_datetime(a['published'])}</pubDate><description>{a['text']}</description>"
                   "</item>" for a in items)
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://t.test/</link>'
                    f"<description>t</description>{body}</channel></rss>", encoding="utf-8")
    return path


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def build_history(database: Path, feed: Path, stories: int, per_story: int) -> None:
    """A database with ``stories`` × ``per_story`` processed articles (stories, duplicates,
    pending groups and embeddings of their own) published 30+ days before NOW."""
    config = parse_config({"settings": {"model": "hashing", "window_days": 3},
                           "feeds": [{"name": "feed", "url": str(feed)}]})
    past = NOW - timedelta(days=30)
    articles = history_articles(stories, per_story, past)
    copies = [{**a, "source": "copier", "url": a["url"] + "?copy"} for a in articles[::7]]
    with open_pipeline(database, config, now=Clock(past)) as pipeline:
        pipeline.add_articles(articles + copies)
        pipeline.process()
        # a history built in one run: the runs after it would have compacted its article events as
        # the window left them behind (history.compact, one run's worth each), as a steady state has
        from clustering.history import compact

        with pipeline.store.transaction():
            compact(pipeline.store, NOW - timedelta(days=10))


def traced_runs(database: Path, feed: Path) -> Iterator[tuple[str, Pipeline]]:
    """The runs whose statements are checked: a feed run that brings a window's worth of
    new articles, an API batch of new articles, and a run with nothing new."""
    config = parse_config({"settings": {"model": "hashing", "window_days": 3},
                           "feeds": [{"name": "feed", "url": str(feed)}]})
    window = [story_article(s, i, NOW - timedelta(hours=30 - s, minutes=i)) for s in range(12) for i in range(5)]
    rss_file(feed, window)
    clock = Clock(NOW)
    with open_pipeline(database, config, now=clock) as pipeline:
        yield "feed run (first run of the window)", pipeline
        pipeline.run()
        clock.moment += timedelta(hours=1)
        pipeline.add_articles([story_article(s, 10 + i, NOW + timedelta(minutes=i)) for s in range(4, 9)
                               for i in range(3)] + [{**window[0], "source": "copier"}])
        yield "incremental run (new articles)", pipeline
        pipeline.process()
        yield "run with nothing new", pipeline
        pipeline.process()


SMALL_TABLES = ("feeds", "tallies")
"""Tables that hold configuration, not history: one row per configured feed, one tally."""


def full_scans(db: sqlite3.Connection, statement: str) -> list[str]:
    """The plan lines of ``statement`` that read a whole history table or index."""
    lines = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}")]
    return [line for line in lines if line.startswith("SCAN ") and not re.match(
        r"SCAN (CONSTANT ROW|\(subquery|\S+ VIRTUAL TABLE)", line)
        and line.split()[1] not in SMALL_TABLES]


def test_no_per_run_statement_scans_a_table(tmp_path: Path) -> None:
    database, feed = tmp_path / "news.db", tmp_path / "feed.xml"
    rss_file(feed, [])
    build_history(database, feed, stories=40, per_story=5)
    executed: dict[str, str] = {}
    for name, pipeline in traced_runs(database, feed):
        pipeline.store._db.set_trace_callback(lambda sql, name=name: executed.setdefault(sql, name))
    statements = {sql: run for sql, run in executed.items() if not sql.lstrip().upper().startswith(SQL_CONTROL)}
    assert any("story_members" in sql for sql in statements)  # the trace saw the story stage
    assert any(sql.lstrip().startswith("INSERT") and "articles" in sql for sql in statements)  # and the feed
    with sqlite3.connect(database) as db:
        failures = []
        for sql, run in statements.items():
            scans = full_scans(db, sql)
            if scans:
                shown = sql if len(sql) < 400 else sql[:400] + " …"
                failures.append(f"{run}: {'; '.join(scans)}\n    {shown}")
    assert not failures, f"{len(failures)} per-run statements read a whole table:\n" + "\n".join(failures)


def vm_steps(database: Path, feed: Path) -> dict[str, int]:
    """SQLite virtual-machine steps (in units of 100) per traced run."""
    steps: dict[str, int] = {}
    for name, pipeline in traced_runs(database, feed):
        steps[name] = 0

        def count(name: str = name) -> int:
            steps[name] += 1
            return 0

        pipeline.store._db.set_progress_handler(count, 100)
    return steps


@pytest.mark.parametrize("history_stories", [600])
def test_sqlite_work_of_a_run_does_not_grow_with_history(tmp_path: Path, history_stories: int) -> None:
    """The same runs over a small and a 20× larger history cost the same SQLite work (±10 %)."""
    figures = {}
    for stories in (history_stories // 20, history_stories):
        folder = tmp_path / f"h{stories}"
        folder.mkdir()
        database, feed = folder / "news.db", folder / "feed.xml"
        rss_file(feed, [])
        build_history(database, feed, stories=stories, per_story=5)
        figures[stories] = vm_steps(database, feed)
    small, large = figures[history_stories // 20], figures[history_stories]
    for run in small:
        assert large[run] <= 1.1 * small[run] + 5, (run, small, large)
