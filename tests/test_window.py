"""window.py: the window's graph and terms, cached beside the database between runs.

The cache must cost time, never a result: a run with it, a run after deleting it and a run
with a damaged or foreign one give the same stories."""

from __future__ import annotations

import logging
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clustering import open_pipeline
from clustering import stories as story_stage
from clustering.config import parse_config
from clustering.embed import HashingEmbedder
from clustering.window import CACHE_FORMAT, cache_path, load, refresh, save

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
PLACES = ["Northvale", "Southport", "Eastmarch", "Westfold", "Kestrel", "Aldoria", "Norvania", "Halvard"]
KINDS = [("earthquake", "rescue teams search collapsed buildings"), ("strike", "rail workers halt trains"),
         ("election", "voters queue at polling stations"), ("flood", "rivers burst their banks")]


FILLER = ["officials", "residents", "reported", "early", "morning", "later", "statement", "local", "national",
          "government", "people", "city", "area", "region", "hours", "week", "police", "services", "roads",
          "schools", "hospitals", "power", "water", "support"]


def batch(run: int, size: int, seed: int) -> list[dict[str, Any]]:
    """Articles of a few events (a place, a kind and words of their own each) plus loners, over
    a few hours; every text different (no two are copies)."""
    rng = random.Random(seed * 100 + run)
    events = [(place, kind, words.split() + [f"{place.lower()}{kind}{k}" for k in range(4)])
              for place in PLACES for kind, words in KINDS]
    articles = []
    for n in range(size):
        if rng.random() < 0.15:
            text = " ".join(rng.choice(FILLER) for _ in range(12)).capitalize() + f" bakery {run}-{n} wins a prize."
        else:
            place, kind, own = rng.choice(events)
            middle = " ".join(rng.choice(own if rng.random() < 0.8 else FILLER) for _ in range(14))
            text = f"{place} {kind}: {middle} in {place}, {rng.choice(FILLER)} {rng.choice(FILLER)} said."
        articles.append({"title": text.split(":")[0] + f" ({n})", "text": text, "source": f"feed{n % 4}",
                         "key": f"r{run}-{n}", "published": T0 + timedelta(hours=6 * run, minutes=n)})
    return articles


def config(database: Path) -> Any:
    return parse_config({"settings": {"model": "hashing", "database": str(database)}})


def outcome(database: Path) -> tuple[Any, ...]:
    """Everything a run decides: stories with members, labels, topics; each article's story;
    the waiting groups."""
    with open_pipeline(database, config(database)) as pipeline:
        stories = [(s.id, s.article_ids, s.label, s.keywords, s.topic_id, s.split_from) for s in pipeline.stories()]
        window = pipeline.store.window(T0 - timedelta(days=30))
        return (stories, [(a.id, a.story_id, a.duplicate_of, a.pending_group) for a in window])


def test_a_deleted_cache_is_rebuilt_with_identical_results(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    kept, deleted = tmp_path / "kept.db", tmp_path / "deleted.db"
    monkeypatch.setattr(story_stage, "REGION_ALL_SHARE", 1.01)  # small windows: make later runs cluster regions
    caplog.set_level(logging.DEBUG, logger="clustering")
    for run in range(5):
        articles = batch(run, 240 if run == 0 else 6, seed=3)  # then small runs: regions, not the window
        with open_pipeline(kept, config(kept)) as pipeline:
            pipeline.add_articles(articles)
            pipeline.process()
        cache = cache_path(deleted)
        assert cache is not None
        if cache.exists():
            cache.unlink()
        with open_pipeline(deleted, config(deleted)) as pipeline:
            pipeline.add_articles(articles)
            pipeline.process()
        assert outcome(kept) == outcome(deleted), f"run {run}"
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("window graph")]
    assert sum("updated" in m for m in messages) == 4 and sum("rebuilt" in m for m in messages) == 6
    regions = [r.getMessage() for r in caplog.records if "clustered afresh" in r.getMessage()]
    clustered = [int(m.split(" of ")[0].split()[-1]) for m in regions]
    window = [int(m.split(" of ")[1].split()[0]) for m in regions]
    assert clustered[0] == window[0] and any(0 < c < w for c, w in zip(clustered, window, strict=True))
    stories = outcome(kept)[0]
    assert len(stories) >= 4  # the runs formed stories: the comparison is not of empty results


def test_a_damaged_or_foreign_cache_is_rebuilt_with_a_warning(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    reference, damaged, foreign = tmp_path / "reference.db", tmp_path / "damaged.db", tmp_path / "foreign.db"
    for database in (reference, damaged, foreign):
        with open_pipeline(database, config(database)) as pipeline:
            pipeline.add_articles(batch(0, 40, seed=5))
            pipeline.process()
    with open_pipeline(tmp_path / "other.db", config(tmp_path / "other.db")) as other:  # same ids, other texts
        other.add_articles(batch(0, 40, seed=6))
        other.process()
    damaged_cache, foreign_cache = cache_path(damaged), cache_path(foreign)
    assert damaged_cache is not None and foreign_cache is not None
    damaged_cache.write_bytes(b"not a cache at all")
    shutil.copyfile(cache_path(tmp_path / "other.db"), foreign_cache)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger="clustering")
    for database in (reference, damaged, foreign):
        with open_pipeline(database, config(database)) as pipeline:
            pipeline.add_articles(batch(1, 40, seed=5))
            pipeline.process()
    assert outcome(damaged) == outcome(reference) == outcome(foreign)
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "unreadable" in warnings and "does not match the stored embeddings" in warnings


# --- the state itself ---------------------------------------------------------------------------------
def vectors_for(ids: list[int]) -> np.ndarray:
    return HashingEmbedder(64).embed([f"article {i} about topic {i % 7} and {i % 5}" for i in ids])


def texts(article_id: int) -> tuple[str, str]:
    return f"Headline {article_id}", f"Officials in Northvale said story {article_id % 7} goes on."


def test_refresh_reads_only_new_articles_and_survives_a_round_trip(tmp_path: Path) -> None:
    first_ids = list(range(10, 70))
    state, report = refresh(None, first_ids, vectors_for(first_ids), texts, model="m", neighbours=5)
    assert report.rebuilt and report.new_terms == 60 and report.searched == 60
    path = tmp_path / "news.db.window"
    save(path, state)
    loaded = load(path)
    assert loaded is not None and loaded.model == "m" and loaded.neighbours == 5
    assert np.array_equal(loaded.ids, state.ids) and loaded.terms == state.terms
    assert np.array_equal(loaded.graph.neighbours, state.graph.neighbours)
    later_ids = list(range(20, 80))  # ten left, ten arrived
    updated, report = refresh(loaded, later_ids, vectors_for(later_ids), texts, model="m", neighbours=5)
    assert not report.rebuilt and report.new_terms == 10 and 10 <= report.searched < 60
    rebuilt, _ = refresh(None, later_ids, vectors_for(later_ids), texts, model="m", neighbours=5)
    assert np.array_equal(updated.graph.neighbours, rebuilt.graph.neighbours)
    assert updated.terms == rebuilt.terms


def test_another_model_or_neighbour_count_rebuilds(tmp_path: Path) -> None:
    ids = list(range(30))
    state, _ = refresh(None, ids, vectors_for(ids), texts, model="m", neighbours=5)
    assert refresh(state, ids, vectors_for(ids), texts, model="other", neighbours=5)[1].rebuilt
    assert refresh(state, ids, vectors_for(ids), texts, model="m", neighbours=6)[1].rebuilt
    assert not refresh(state, ids, vectors_for(ids), texts, model="m", neighbours=5)[1].rebuilt


def test_files_of_another_format_or_none_at_all_are_not_loaded(tmp_path: Path) -> None:
    ids = list(range(30))
    state, _ = refresh(None, ids, vectors_for(ids), texts, model="m", neighbours=5)
    path = tmp_path / "x.window"
    save(path, state)
    with np.load(path) as stored:
        parts = dict(stored)
    parts["header"] = np.frombuffer(f'{{"format": {CACHE_FORMAT + 1}}}'.encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **parts)
    assert load(path) is None
    assert load(tmp_path / "missing.window") is None and load(None) is None
    assert cache_path(":memory:") is None
    assert cache_path(tmp_path / "a.db") == (tmp_path / "a.db.window").resolve()
