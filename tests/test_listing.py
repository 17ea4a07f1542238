"""Listings (listing.py): formats, fitted tables, and the SQL views that mirror the CSV shapes."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from clustering import open_pipeline
from clustering.cli import ARTICLE_COLUMNS, DUPLICATE_COLUMNS, STORY_COLUMNS
from clustering.listing import (
    Column,
    article_row,
    csv_text,
    fitted_table,
    render,
    stories_table,
    story_row,
    terminal_width,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
WORDS = {"quake": "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast",
         "rates": "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending"}


def article(topic: str, source: str, seed: int, hours: float) -> dict[str, Any]:
    words = WORDS[topic].split()
    random.Random(seed).shuffle(words)
    return {"title": " ".join(words[:5]).capitalize(), "text": " ".join(words) + ".", "source": source,
            "url": f"https://{source}.test/{topic}/{seed}", "published": NOW - timedelta(hours=24 - hours)}


@pytest.fixture
def pipeline(tmp_path: Path) -> Any:
    with open_pipeline(tmp_path / "news.db", {"settings": {"model": "hashing"}}, now=lambda: NOW) as opened:
        items = [article(topic, source, 10 * t + s, hours=s)
                 for t, topic in enumerate(WORDS) for s, source in enumerate(["ara", "bel", "cor", "dun"])]
        copy = {**items[0], "source": "metro", "url": "https://metro.test/copy",
                "published": items[0]["published"] + timedelta(minutes=30)}  # a reprint: a duplicate
        opened.add_articles([*items, copy])
        opened.process()
        yield opened


def view_rows(path: Path, view: str) -> list[dict[str, str]]:
    """The view's rows as a CSV reader gives them (every value text, None empty)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as raw:
        cursor = raw.execute(f"SELECT * FROM {view}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, ("" if v is None else str(v) for v in row))) for row in cursor]
    return rows


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_views_have_the_csv_shapes(pipeline: Any) -> None:
    path = Path(pipeline.config.database)
    stories = csv_rows(csv_text([story_row(s) for s in pipeline.stories()], STORY_COLUMNS))
    assert list(stories[0]) == list(STORY_COLUMNS)
    by_id = {r["id"]: r for r in view_rows(path, "story_list")}
    for row in stories:
        assert by_id[row["id"]] == row
    articles = csv_rows(csv_text([article_row(a) for a in pipeline.articles()], ARTICLE_COLUMNS))
    assert sorted(articles, key=lambda r: int(r["id"])) == sorted(view_rows(path, "article_list"),
                                                                  key=lambda r: int(r["id"]))
    duplicates = csv_rows(csv_text(pipeline.duplicates(), DUPLICATE_COLUMNS))
    assert len(duplicates) == 1 and duplicates == view_rows(path, "duplicate_list")
    assert duplicates[0]["source"] == "metro" and duplicates[0]["canonical_source"] == "ara"


def test_articles_filters(pipeline: Any) -> None:
    everything = pipeline.articles()
    assert [a.published for a in everything] == sorted(a.published for a in everything)  # oldest first
    story = pipeline.stories()[0]
    members = pipeline.articles(story=story.id)
    assert {a.id for a in members if a.duplicate_of is None} == set(story.article_ids)
    assert all(a.source in ("ara", "metro") for a in pipeline.articles(sources=["ara", "metro"]))
    assert pipeline.articles(sources=[]) == []
    quake = pipeline.articles(search="VELLMAR rubble")
    assert quake and all("vellmar" in (a.title + a.summary).lower() for a in quake)
    assert pipeline.articles(unassigned=True) == []
    assert len(pipeline.articles(limit=2)) == 2


def test_pandas_takes_the_frozen_types_and_the_csv(pipeline: Any) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(pipeline.articles())
    assert len(frame) == 9 and {"id", "source", "story_id"} <= set(frame.columns)
    assert len(pandas.DataFrame(pipeline.stories())) == 2 and len(pandas.DataFrame(pipeline.topics())) >= 1
    text = csv_text([article_row(a) for a in pipeline.articles()], ARTICLE_COLUMNS)
    assert pandas.read_csv(io.StringIO(text))["id"].tolist() == [a.id for a in pipeline.articles()]


def test_formats_round_trip() -> None:
    rows = [{"id": "s1", "keywords": ["a", "b"], "size": 3, "topic_id": None},
            {"id": "s2", "keywords": [], "size": 1, "topic_id": "t1"}]
    assert json.loads(render(rows, "json", lambda: "")) == rows
    assert [json.loads(line) for line in render(rows, "jsonl", lambda: "").splitlines()] == rows
    assert csv_rows(render(rows, "csv", lambda: "")) == [
        {"id": "s1", "keywords": "a;b", "size": "3", "topic_id": ""},
        {"id": "s2", "keywords": "", "size": "1", "topic_id": "t1"}]
    assert render([], "csv", lambda: "", columns=["id", "size"]) == "id,size"
    assert render(rows, "table", lambda: "TABLE") == "TABLE"


def test_tables_fit_the_width() -> None:
    columns = [Column("ID"), Column("N", ">"), Column("LABEL", flexible=True)]
    rows = [["s1", "3", "A long headline " * 10], ["s22", "12", "short"]]
    for width in (40, 80, 200):
        lines = fitted_table(columns, rows, width).splitlines()
        assert max(len(line) for line in lines) <= max(width, 3 + 1 + 2 + 1 + 20)
    assert fitted_table(columns, rows, 40).splitlines()[1].endswith("…")
    assert "…" not in fitted_table(columns, rows, 100_000)


def test_stories_table_uses_the_topic_name(pipeline: Any) -> None:
    table = stories_table(pipeline.stories(), width=150)
    assert table.splitlines()[0].split()[:2] == ["ID", "ARTICLES"]
    assert any(s.topic_name and s.topic_name[:10] in table for s in pipeline.stories())


def test_terminal_width_outside_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert terminal_width(io.StringIO()) == 77
    monkeypatch.delenv("COLUMNS")
    assert terminal_width(io.StringIO()) >= 10_000  # cron, a pipe: nothing cut
