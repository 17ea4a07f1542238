"""The bundled offline sample with the real model, checked against tests/data/sample_gold.json.

Two days of five invented outlets: day 1 (sample/feeds) and day 2 (sample/update, supersets
of day 1).  The gold file names each entry's event and, for wire copies, the original.
Only robust properties are asserted; the B-cubed agreement with gold is printed (-s).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clustering import open_pipeline
from clustering.config import load_config
from clustering.embed import DEFAULT_MODEL
from clustering.metrics import bcubed
from clustering.types import Article, RunReport

pytestmark = pytest.mark.slow

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "clustering" / "sample"
GOLD_PATH = Path(__file__).resolve().parent / "data" / "sample_gold.json"
FOLLOW_UP_EVENTS = ("quake-aldoria", "rates-norvania", "strike-eastmarch")
NEW_EVENT = "ferry-fire"

GoldKey = tuple[str, str]  # (feed, guid)


@dataclass(frozen=True)
class Snapshot:
    stories: dict[str, tuple[int, ...]]
    articles: dict[GoldKey, Article]

    def story_of(self, key: GoldKey) -> str | None:
        return self.articles[key].story_id

    def root(self, key: GoldKey) -> int:
        article = self.articles[key]
        return article.duplicate_of if article.duplicate_of is not None else article.id


@dataclass(frozen=True)
class SampleRuns:
    gold: list[dict[str, Any]]
    day1: RunReport
    not_due: RunReport
    reread: RunReport
    day2: RunReport
    day3: Any
    after_day1: Snapshot
    after_reread: Snapshot
    after_day2: Snapshot
    after_day3: Snapshot

    def entries(self, day: int | None = None, event: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.gold if (day is None or e["day"] == day) and (event is None or e["event"] == event)]


def key(entry: dict[str, Any]) -> GoldKey:
    return (entry["feed"], entry["guid"])


def snapshot(pipeline: Any, count: int) -> Snapshot:
    """Every stored article (ids run from 1) by (feed, guid), and the stories' members."""
    articles = {}
    for article_id in range(1, count + 1):
        article = pipeline.article(article_id)
        assert article.entry_key.startswith("id:"), article  # every sample entry has a guid
        articles[(article.source, article.entry_key[3:])] = article
    return Snapshot({s.id: s.article_ids for s in pipeline.stories()}, articles)


def touch(folder: Path) -> None:
    later = time.time() + 60
    for path in folder.glob("*.xml"):
        os.utime(path, (later, later))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleRuns]:
    gold = json.loads(GOLD_PATH.read_text(encoding="utf-8"))["entries"]
    folder = tmp_path_factory.mktemp("sample") / "sample"
    shutil.copytree(SAMPLE_DIR, folder)
    config = load_config(folder / "sample-feeds.yaml")
    assert config.model == DEFAULT_MODEL
    assert config.database.parent == folder  # relative to the config file, never the sample package
    with open_pipeline(None, config) as pipeline:
        day1 = pipeline.run()
        after_day1 = snapshot(pipeline, day1.new_articles)
        not_due = pipeline.run()
        touch(folder / "feeds")  # the same entries, re-read and re-parsed
        reread = pipeline.run(force=True)
        after_reread = snapshot(pipeline, day1.new_articles)
        for path in (folder / "update").glob("*.xml"):
            shutil.copyfile(path, folder / "feeds" / path.name)
        touch(folder / "feeds")
        day2 = pipeline.run(force=True)
        after_day2 = snapshot(pipeline, day1.new_articles + day2.new_articles)
        # the next run with anything new decides the groups that waited (one unrelated article)
        pipeline.add_articles([{"title": "Harbor City marathon route announced", "source": "api",
                                "text": "The marathon will start at the port and finish in the old town.",
                                "published": max(a.published for a in after_day2.articles.values())}])
        day3 = pipeline.process()
        after_day3 = snapshot(pipeline, day1.new_articles + day2.new_articles)
    yield SampleRuns(gold, day1, not_due, reread, day2, day3, after_day1, after_reread, after_day2, after_day3)


def print_agreement(label: str, gold: list[dict[str, Any]], snap: Snapshot) -> None:
    events = [e["event"] for e in gold]
    stories = [snap.story_of(key(e)) for e in gold]
    precision, recall, f1 = bcubed(events, stories)
    print(f"\n{label}: B-cubed P={precision:.3f} R={recall:.3f} F1={f1:.3f} over {len(gold)} entries")


def test_day_one_forms_stories_from_every_entry(runs: SampleRuns) -> None:
    day1 = runs.entries(day=1)
    assert (runs.day1.feeds_ok, runs.day1.feeds_failed) == (5, 0)
    assert runs.day1.new_articles == len(day1)
    assert set(runs.after_day1.articles) == {key(e) for e in day1}
    assert runs.day1.stories_new == runs.day1.stories_total >= 5
    members = [i for ids in runs.after_day1.stories.values() for i in ids]
    assert len(members) == len(set(members))  # an article is in one story at most
    print_agreement("day 1", day1, runs.after_day1)


def test_wire_copies_are_linked_to_their_original(runs: SampleRuns) -> None:
    for snap, day in ((runs.after_day1, 1), (runs.after_day2, 2)):
        copies = [e for e in runs.gold if e["day"] <= day and e["wire_copy_of"]]
        assert copies
        for entry in copies:
            copy, original = snap.articles[key(entry)], key(entry["wire_copy_of"])
            assert copy.duplicate_of == snap.root(original), entry
            members = [i for ids in snap.stories.values() for i in ids]
            assert copy.id not in members  # a copy is kept, but as a link, not as a member


def test_no_link_joins_two_events(runs: SampleRuns) -> None:
    event = {key(e): e["event"] for e in runs.gold}
    for snap in (runs.after_day1, runs.after_day2):
        by_id = {article.id: k for k, article in snap.articles.items()}
        for copy_key, article in snap.articles.items():
            if article.duplicate_of is not None:
                canonical_key = by_id[article.duplicate_of]
                assert event[copy_key] is not None and event[copy_key] == event[canonical_key], (
                    copy_key, canonical_key)


def test_two_earthquakes_are_two_stories(runs: SampleRuns) -> None:
    snap = runs.after_day1
    kestrel = {snap.story_of(key(e)) for e in runs.entries(day=1, event="quake-kestrel")} - {None}
    aldoria = {snap.story_of(key(e)) for e in runs.entries(day=1, event="quake-aldoria")} - {None}
    assert kestrel and aldoria
    assert not kestrel & aldoria


def test_second_run_adds_nothing_and_keeps_every_story_id(runs: SampleRuns) -> None:
    assert (runs.not_due.feeds_skipped, runs.not_due.new_articles) == (5, 0)
    assert (runs.reread.feeds_ok, runs.reread.new_articles) == (5, 0)
    assert (runs.reread.stories_new, runs.reread.stories_updated, runs.reread.duplicates) == (0, 0, 0)
    assert runs.after_reread.stories == runs.after_day1.stories
    assert runs.after_reread.articles == runs.after_day1.articles


def day_one_story(runs: SampleRuns, event: str) -> str | None:
    """The story holding most of the event's day-1 entries (None: the event formed no story)."""
    counts = Counter(runs.after_day1.story_of(key(e)) for e in runs.entries(day=1, event=event))
    counts.pop(None, None)
    return counts.most_common(1)[0][0] if counts else None


def test_follow_ups_join_their_existing_story(runs: SampleRuns) -> None:
    """A follow-up joins its day-1 story at once, or waits one run (a small group that resembles
    a story: docs/design.md) and then joins it; it never goes to another story."""
    home = {event: day_one_story(runs, event) for event in FOLLOW_UP_EVENTS}
    print(f"\nday-1 stories of the follow-up events: {home}")
    home = {event: story_id for event, story_id in home.items() if story_id is not None}
    assert home, "no follow-up event formed a story on day 1"
    assert len(set(home.values())) == len(home)
    joined = total = waiting = 0
    for event, story_id in home.items():
        follow_ups = runs.entries(day=2, event=event)
        day2 = [runs.after_day2.story_of(key(e)) for e in follow_ups]
        day3 = [runs.after_day3.story_of(key(e)) for e in follow_ups]
        print(f"{event}: day-1 story {story_id}, day-2 articles in {day2}, after the next run in {day3}")
        assert set(day2) <= {story_id, None} and set(day3) <= {story_id, None}, (event, story_id, day2, day3)
        assert day3.count(story_id) * 2 >= len(follow_ups), (event, story_id, day3)
        joined, total, waiting = joined + day2.count(story_id), total + len(follow_ups), waiting + day2.count(None)
    assert waiting <= runs.day2.pending  # an unassigned follow-up is one that waits
    assert joined * 3 >= total * 2
    print(f"follow-ups that joined their day-1 story on day 2: {joined} of {total} ({waiting} waited a run)")


def test_a_new_event_founds_a_new_story(runs: SampleRuns) -> None:
    new_ids = set(runs.after_day2.stories) - set(runs.after_day1.stories)
    assert runs.day2.stories_new == len(new_ids) >= 1
    event = {article.id: e for e in runs.gold for k, article in runs.after_day2.articles.items() if k == key(e)}
    ferry = [runs.after_day2.articles[key(e)] for e in runs.entries(day=2, event=NEW_EVENT)]
    ferry_stories = Counter(a.story_id for a in ferry)
    story_id, size = ferry_stories.most_common(1)[0]
    assert story_id in new_ids and size * 2 > len(ferry)
    assert all(event[i]["day"] == 2 for i in runs.after_day2.stories[story_id])
    for new_id in new_ids:  # every new story is about one event (day-1 leftovers may join it)
        member_events = {event[i]["event"] for i in runs.after_day2.stories[new_id]}
        assert len(member_events) == 1 and None not in member_events, (new_id, member_events)
