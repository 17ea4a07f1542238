"""Story history (history.py): events from memberships and headlines, and what runs record
through the pipeline (real SQLite file, hashing embedder)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from clustering import ConfigError, NotFoundError, open_pipeline
from clustering.history import EventRow, compact, grown, run_events
from clustering.types import StoryEvent

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
TOPICS = {
    "quake": "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast "
             "epicentre",
    "rates": "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending",
}


def article(topic: str, source: str, seed: int, hours: float) -> dict[str, Any]:
    words = TOPICS[topic].split() if topic in TOPICS else [f"w{random.Random(seed).randrange(10**6)}{i}"
                                                           for i in range(12)]
    random.Random(seed).shuffle(words)
    return {"title": " ".join(words[:5]).capitalize(), "text": " ".join(words) + ".", "source": source,
            "url": f"https://{source}.test/{topic}/{seed}", "published": NOW - timedelta(hours=24 - hours)}


# --- pure ----------------------------------------------------------------------------------------
def test_run_events_names_each_kind_of_change() -> None:
    before = {1: "s1", 2: "s1", 3: "s1", 4: None, 5: "s9"}
    after = {1: "s1", 2: "s7", 3: None, 4: "s1", 5: "s1", 6: "s7"}
    rows = run_events(before, after, labels_before={"s1": "Old headline", "s9": "Nine"},
                      labels_after={"s1": "New headline", "s7": "Seven"}, created=["s7"],
                      split_from={"s7": "s1"}, merged_into={"s9": "s1"})
    assert rows == [
        EventRow("s7", "created", label_after="Seven"),
        EventRow("s7", "split", other_story_id="s1"),
        EventRow("s9", "merged", other_story_id="s1"),
        EventRow("s1", "left", article_id=2, other_story_id="s7"),
        EventRow("s7", "joined", article_id=2, other_story_id="s1"),
        EventRow("s1", "left", article_id=3),                          # now a copy, or in no story
        EventRow("s1", "joined", article_id=4),
        EventRow("s9", "left", article_id=5, other_story_id="s1"),
        EventRow("s1", "joined", article_id=5, other_story_id="s9"),
        EventRow("s7", "joined", article_id=6),
        EventRow("s1", "relabelled", label_before="Old headline", label_after="New headline"),
    ]


def test_an_unchanged_run_has_no_events() -> None:
    assert run_events({1: "s1"}, {1: "s1"}, labels_before={"s1": "A"}, labels_after={"s1": "A"}, created=[],
                      split_from={}, merged_into={}) == []


def test_grown_counts_net_articles() -> None:
    events = [StoryEvent(1, NOW, "s1", "joined", 1), StoryEvent(1, NOW, "s1", "joined", 2),
              StoryEvent(1, NOW, "s1", "left", 3, "s2"), StoryEvent(1, NOW, "s2", "joined", 3, "s1")]
    assert grown(events) == {"s1": 1, "s2": 1}


# --- through the pipeline ------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.moment = NOW

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def followed(tmp_path: Path) -> Any:
    clock = Clock()
    pipeline = open_pipeline(tmp_path / "news.db", {"settings": {"model": "hashing", "window_days": 2}}, now=clock)
    pipeline.add_articles([article(topic, source, 10 * t + s, hours=s)
                           for t, topic in enumerate(TOPICS) for s, source in enumerate(["ara", "bel", "cor", "dun"])])
    first = pipeline.process()
    clock.moment += timedelta(hours=1)
    pipeline.add_articles([article("quake", source, 50 + s, hours=6 + s)
                           for s, source in enumerate(["eka", "fin", "gal"])] + [article("noise", "ara", 99, hours=8)])
    second = pipeline.process()
    with pipeline:
        yield pipeline, clock, first, second


def test_each_run_records_what_it_changed(followed: Any) -> None:
    pipeline, _, first, second = followed
    runs = pipeline.runs(last=5)
    assert [(r.id, r.processed, r.unassigned) for r in runs] == [(1, 8, 0), (2, 4, 1)]
    assert (first.stories_new, second.stories_new, second.stories_updated) == (2, 0, 1)
    quake = next(s for s in pipeline.stories() if s.size == 7)
    first_run = pipeline.changes(since=0)
    assert {e.kind for e in first_run if e.run_id == 1} == {"created", "joined"}
    last = pipeline.changes()  # the last run only
    assert {e.run_id for e in last} == {2}
    assert [(e.story_id, e.kind) for e in last if e.kind != "relabelled"] == [(quake.id, "joined")] * 3
    assert all(e.title for e in last if e.kind == "joined")
    history = pipeline.story_history(quake.id)
    assert [(e.run_id, e.kind) for e in history][:1] == [(1, "created")]
    joined = [e.article_id for e in history if e.kind == "joined"]
    assert sorted(joined) == sorted(quake.article_ids)  # every member, once, in the run it joined
    assert [e.run_id for e in history if e.kind == "joined"].count(2) == 3


def test_a_run_with_nothing_new_reports_the_windows_unassigned_articles(followed: Any) -> None:
    pipeline, _, _, second = followed
    assert second.unassigned == 1
    quiet = pipeline.process()
    assert (quiet.embedded, quiet.unassigned) == (0, 1)  # not "0 unassigned" right after a run with one
    assert len(pipeline.runs(last=10)) == 2               # a run that processed nothing records no run
    [noise] = pipeline.articles(unassigned=True)
    assert noise.source == "ara" and noise.story_id is None


def test_history_of_unknown_story_and_bad_since(followed: Any) -> None:
    pipeline, *_ = followed
    with pytest.raises(NotFoundError):
        pipeline.story_history("s404")
    with pytest.raises(ConfigError):
        pipeline.changes(since="yesterday")


def test_compaction_keeps_story_events_and_drops_old_article_events(followed: Any) -> None:
    pipeline, *_ = followed
    store = pipeline.store
    with store.transaction():
        deleted = compact(store, NOW + timedelta(days=30))
    assert deleted == 11  # 8 + 3 joined events
    kinds = {e.kind for e in pipeline.changes(since=0)}
    assert "joined" not in kinds and "created" in kinds
    assert [r.id for r in pipeline.runs(last=5)] == [1, 2]  # runs with story events, and the last, stay
