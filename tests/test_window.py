"""window.py: the window's graph and terms, cached beside the database between runs.

The cache must cost time, never a result: a run with it, a run after deleting it and a run
with a damaged or foreign one give the same stories."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
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
from clustering.store import content_hash
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
    assert "not used (File is not a zip file)" in warnings and "its seal does not match" in warnings


# --- the state itself ---------------------------------------------------------------------------------
def vectors_for(ids: list[int]) -> np.ndarray:
    return HashingEmbedder(64).embed([f"article {i} about topic {i % 7} and {i % 5}" for i in ids])


def texts(article_id: int) -> tuple[str, str]:
    return f"Headline {article_id}", f"Officials in Northvale said story {article_id % 7} goes on."


def hashes(ids: list[int]) -> list[int]:
    return [content_hash(*texts(i)) for i in ids]


KEY = bytes(range(32))


def state_of(ids: list[int], **options: Any) -> Any:
    """refresh() of a window with no earlier state, model "m", 5 neighbours unless told."""
    return refresh(options.pop("state", None), ids, vectors_for(ids), texts, hashes(ids),
                   **{"model": "m", "neighbours": 5, **options})


def test_refresh_reads_only_new_articles_and_survives_a_round_trip(tmp_path: Path) -> None:
    first_ids = list(range(10, 70))
    state, report = state_of(first_ids)
    assert report.rebuilt and report.new_terms == 60 and report.searched == 60
    path = tmp_path / "news.db.window"
    save(path, state, KEY)
    loaded = load(path, KEY, window_rows=60)
    assert loaded is not None and loaded.model == "m" and loaded.neighbours == 5
    assert np.array_equal(loaded.ids, state.ids) and loaded.terms == state.terms
    assert np.array_equal(loaded.graph.neighbours, state.graph.neighbours)
    later_ids = list(range(20, 80))  # ten left, ten arrived
    updated, report = state_of(later_ids, state=loaded)
    assert not report.rebuilt and report.new_terms == 10 and 10 <= report.searched < 60
    rebuilt, _ = state_of(later_ids)
    assert np.array_equal(updated.graph.neighbours, rebuilt.graph.neighbours)
    assert updated.terms == rebuilt.terms


def test_another_model_or_neighbour_count_rebuilds(tmp_path: Path) -> None:
    ids = list(range(30))
    state, _ = state_of(ids)
    assert state_of(ids, state=state, model="other")[1].rebuilt
    assert state_of(ids, state=state, neighbours=6)[1].rebuilt
    assert not state_of(ids, state=state)[1].rebuilt


def test_files_of_another_format_or_none_at_all_are_not_loaded(tmp_path: Path) -> None:
    ids = list(range(30))
    state, _ = state_of(ids)
    path = tmp_path / "x.window"
    save(path, state, KEY)
    with np.load(path) as stored:
        parts = dict(stored)
    parts["header"] = np.frombuffer(f'{{"format": {CACHE_FORMAT + 1}}}'.encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **parts)
    assert load(path, KEY, window_rows=30) is None
    assert load(tmp_path / "missing.window", KEY, window_rows=30) is None and load(None, KEY, window_rows=30) is None
    assert cache_path(":memory:") is None
    assert cache_path(tmp_path / "a.db") == (tmp_path / "a.db.window").resolve()


# --- the cache is untrusted input (issue 16) ----------------------------------------------------------
def resealed(path: Path, key: bytes, change: Any) -> None:
    """Rewrite the cache at ``path`` with ``change(parts)`` applied and a valid seal: a file whose
    checksum holds but whose contents are inconsistent."""
    from clustering import window

    with np.load(path) as stored:
        parts = dict(stored)
    change(parts)
    parts["seal"] = np.frombuffer(window._seal(key, parts), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **parts)


INCONSISTENT = {
    "a neighbour row out of range": lambda p: p["neighbour_rows"].__setitem__((1, 0), 10**6),
    "a neighbour row below -1": lambda p: p["neighbour_rows"].__setitem__((1, 0), -7),
    "an article its own neighbour": lambda p: p["neighbour_rows"].__setitem__((3, 0), 3),
    "a repeated neighbour": lambda p: p["neighbour_rows"].__setitem__((3, 1), p["neighbour_rows"][3, 0]),
    "1-D neighbour rows": lambda p: p.__setitem__("neighbour_rows", p["neighbour_rows"][:, 0].copy()),
    "a narrower similarity": lambda p: p.__setitem__("similarity", p["similarity"][:, :2].copy()),
    "float64 similarity": lambda p: p.__setitem__("similarity", p["similarity"].astype(np.float64)),
    "int32 ids": lambda p: p.__setitem__("ids", p["ids"].astype(np.int32)),
    "a NaN similarity": lambda p: p["similarity"].__setitem__((2, 0), np.nan),
    "similarities out of order": lambda p: p["similarity"].__setitem__((2, 0), -0.5),
    "an id twice": lambda p: p["ids"].__setitem__(1, p["ids"][0]),
    "fewer hashes than ids": lambda p: p.__setitem__("text_hashes", p["text_hashes"][:-1].copy()),
    "terms of another length": lambda p: p.__setitem__("word_counts", p["word_counts"][:-1].copy()),
    "name offsets of another length": lambda p: p.__setitem__("name_offsets", p["name_offsets"][:-1].copy()),
    "offsets that go back": lambda p: p["title_offsets"].__setitem__(3, p["title_offsets"][2] - 1),
    "offsets short of the tokens": lambda p: p["name_offsets"].__setitem__(-1, p["name_offsets"][-1] - 1),
    "a token outside the vocabulary": lambda p: p["name_tokens"].__setitem__(0, 10**6),
    "a negative token": lambda p: p["name_tokens"].__setitem__(1, -1),
    "int32 tokens": lambda p: p.__setitem__("name_tokens", p["name_tokens"].astype(np.int32)),
    "a negative word count": lambda p: p["word_counts"].__setitem__(0, -4),
    "a vocabulary that is not words": lambda p: p.__setitem__("vocabulary", np.frombuffer(
        json.dumps([1] * 10**4).encode(), dtype=np.uint8)),
    "a word twice in the vocabulary": lambda p: p.__setitem__("vocabulary", np.frombuffer(
        json.dumps(["same"] * 10**4).encode(), dtype=np.uint8)),
    "a header that is not JSON": lambda p: p.__setitem__("header", np.frombuffer(b"{", dtype=np.uint8)),
    "a missing part": lambda p: p.pop("vocabulary"),
}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A cache of a window of 40 articles, saved with KEY."""
    path = tmp_path / "news.db.window"
    save(path, state_of(list(range(10, 50)))[0], KEY)
    return path


@pytest.mark.parametrize("damage", sorted(INCONSISTENT))
def test_a_sealed_but_inconsistent_cache_is_refused_with_a_warning(saved: Path, damage: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = saved
    resealed(path, KEY, INCONSISTENT[damage])
    caplog.set_level(logging.WARNING, logger="clustering")
    assert load(path, KEY, window_rows=40) is None
    assert [r.getMessage() for r in caplog.records if "is not used" in r.getMessage()], damage


def test_an_edited_cache_fails_its_seal_and_a_large_one_is_not_read(saved: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = saved
    caplog.set_level(logging.WARNING, logger="clustering")
    assert load(path, KEY, window_rows=40) is not None
    assert load(path, bytes(32), window_rows=40) is None  # another database's key
    assert load(path, KEY, window_rows=0) is not None  # a window that shrank keeps its slack
    with np.load(path) as stored:
        parts = dict(stored)
    parts["ids"][[0, 1]] = parts["ids"][[1, 0]]  # two ids swapped, saved back as a person would
    with open(path, "wb") as handle:
        np.savez(handle, **parts)
    assert load(path, KEY, window_rows=40) is None
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024 * 1024 + 16_384 * 40)  # sparse: larger than any cache of 40 rows
    assert load(path, KEY, window_rows=40) is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert messages.count("its seal does not match") == 2 and "more than a cache of this window can take" in messages


def test_swapped_ids_or_edited_texts_and_vectors_are_caught_by_the_hashes(caplog: pytest.LogCaptureFixture) -> None:
    """Even a state whose seal is right (this process's own, or a file sealed with the key) is
    checked against what each article holds now."""
    ids = list(range(10, 50))
    state, _ = state_of(ids)
    caplog.set_level(logging.WARNING, logger="clustering")
    swapped = dataclasses.replace(state, ids=state.ids[[1, 0, *range(2, len(ids))]])
    assert state_of(ids, state=swapped)[1].rebuilt
    vectors = vectors_for(ids)
    vectors[7, 3] = np.nextafter(vectors[7, 3], 2)  # one number of one vector, one step
    assert refresh(state, ids, vectors, texts, hashes(ids), model="m", neighbours=5)[1].rebuilt
    edited = hashes(ids)
    edited[30] = content_hash("Headline edited", "by hand")
    assert refresh(state, ids, vectors_for(ids), texts, edited, model="m", neighbours=5)[1].rebuilt
    assert not state_of(ids, state=state)[1].rebuilt
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and "text of 2 article(s), e.g. article 11" in messages[0] and "stored embedding" in messages[1]
    assert "stored text of 1 article(s), e.g. article 40" in messages[2]


def test_a_fifo_a_link_or_a_folder_at_the_cache_path_is_never_opened(tmp_path: Path, saved: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """np.load on a FIFO waited for a writer for ever, holding the run lock; a link's target was read."""
    good = saved
    caplog.set_level(logging.WARNING, logger="clustering")
    fifo = tmp_path / "fifo.window"
    os.mkfifo(fifo)
    assert load(fifo, KEY, window_rows=40) is None
    link = tmp_path / "link.window"
    link.symlink_to(good)
    assert load(link, KEY, window_rows=40) is None  # even to a good cache: a link is never followed
    folder = tmp_path / "folder.window"
    folder.mkdir()
    assert load(folder, KEY, window_rows=40) is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert messages.count("not a regular file") == 2 and "symbolic link" in messages


def test_saving_never_writes_through_a_planted_link_and_sweeps_stale_temporary_files(tmp_path: Path) -> None:
    ids = list(range(10, 50))
    state, _ = state_of(ids)
    path = tmp_path / "news.db.window"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / f"news.db.window.{os.getpid()}.tmp").symlink_to(victim)  # where this process writes
    (tmp_path / "news.db.window.99999999.tmp").write_bytes(b"half a cache")  # a killed run's
    (tmp_path / "news.db.window.tmp.keep").write_bytes(b"not ours")
    path.symlink_to(victim)  # the cache itself: replaced, never written through
    save(path, state, KEY)
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and load(path, KEY, window_rows=40) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["news.db.window", "news.db.window.tmp.keep", "victim.txt"]


def damaged_runs(tmp_path: Path, damage: Any) -> tuple[Any, Any]:
    """Two databases fed the same batches: ``damage(database, cache)`` after each run on one, the
    cache deleted after each run on the other; the outcomes of both."""
    with_cache, without = tmp_path / "with.db", tmp_path / "without.db"
    for run in range(3):
        for database in (with_cache, without):
            cache = cache_path(database)
            assert cache is not None
            if run:
                if database == with_cache:
                    damage(database, cache)
                else:
                    cache.unlink()
            with open_pipeline(database, config(database)) as pipeline:
                pipeline.add_articles(batch(run, 60 if run == 0 else 8, seed=11))
                pipeline.process()
    return outcome(with_cache), outcome(without)


def test_a_cache_with_an_out_of_range_row_saved_back_by_numpy_costs_a_rebuild_not_a_crash(tmp_path: Path) -> None:
    def damage(database: Path, cache: Path) -> None:
        with np.load(cache) as stored:
            parts = dict(stored)
        parts["neighbour_rows"][1, 0] = 10**6
        with open(cache, "wb") as handle:
            np.savez(handle, **parts)

    cached, rebuilt = damaged_runs(tmp_path, damage)
    assert cached == rebuilt and cached[0]


@pytest.mark.parametrize("kind", ["a FIFO", "a link to a file", "a folder", "another format"])
def test_whatever_sits_at_the_cache_path_a_run_goes_on_with_the_same_results(tmp_path: Path, kind: str) -> None:
    """A FIFO at <db>.window hung every run for ever (np.load waited for a writer, the run held the lock)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")

    def damage(database: Path, cache: Path) -> None:
        if cache.is_dir() and not cache.is_symlink():
            cache.rmdir()  # the folder of the run before: a run never removes one (it warns, and rebuilds)
        else:
            cache.unlink()
        if kind == "a FIFO":
            os.mkfifo(cache)
        elif kind == "a link to a file":
            cache.symlink_to(victim)
        elif kind == "a folder":
            cache.mkdir()
        else:
            np.savez(cache, header=np.frombuffer(b'{"format": 1}', dtype=np.uint8))

    cached, rebuilt = damaged_runs(tmp_path, damage)
    assert cached == rebuilt and cached[0] and victim.read_text() == "precious"


def test_edits_in_the_database_are_seen_by_the_cache(tmp_path: Path) -> None:
    """One embedding and one title edited by hand, the same edits on a database without cache: the
    same graph, terms and stories (the old cache checked 32 sampled rows and never re-read a text)."""
    import sqlite3

    def edit(database: Path) -> None:
        with sqlite3.connect(database) as raw:
            vector = raw.execute("SELECT vector FROM embeddings WHERE article_id = 50").fetchone()[0]
            raw.execute("UPDATE embeddings SET vector = ? WHERE article_id = 2", (vector,))  # off the old sample
            raw.execute("UPDATE articles SET title = 'Aldoria Earthquake Rescue Teams Search Kestrel' WHERE id = 3")

    with_cache, without = tmp_path / "with.db", tmp_path / "without.db"
    for run in range(3):
        states = []
        for database in (with_cache, without):
            if run == 1:
                edit(database)
            if database == without and cache_path(database).exists():  # type: ignore[union-attr]
                cache_path(database).unlink()  # type: ignore[union-attr]
            with open_pipeline(database, config(database)) as pipeline:
                pipeline.add_articles(batch(run, 100 if run == 0 else 8, seed=12))
                pipeline.process()
                states.append(pipeline._window)
        cached, rebuilt = states
        assert np.array_equal(cached.ids, rebuilt.ids) and cached.terms == rebuilt.terms, f"run {run}"
        assert np.array_equal(cached.graph.neighbours, rebuilt.graph.neighbours), f"run {run}"
        assert outcome(with_cache) == outcome(without), f"run {run}"


KILLED_RUN = """
import os, signal, sys
import datetime  # the articles' repr names datetime.datetime and datetime.timezone
from pathlib import Path
from clustering import open_pipeline, stories, window
from clustering.config import parse_config

database, point = Path(sys.argv[1]), sys.argv[2]
articles = {articles}

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "cache save":  # the temporary file is written, the rename never happens
    window.os.replace = die
elif point == "stories":
    stories.assign_stories = die
config = parse_config({{"settings": {{"model": "hashing", "database": str(database)}}}})
with open_pipeline(database, config) as pipeline:
    pipeline.add_articles(articles)
    pipeline.process()
"""


@pytest.mark.parametrize("point", ["cache save", "stories"])
def test_a_run_killed_while_saving_the_cache_or_clustering_changes_no_result(tmp_path: Path, point: str) -> None:
    """kill -9 in the middle of a run: the next run finishes it, sweeps the killed run's temporary
    file, and every result equals that of a database that never had a cache."""
    import subprocess
    import sys

    killed, reference = tmp_path / "killed.db", tmp_path / "reference.db"
    for run in range(3):
        articles = batch(run, 60 if run == 0 else 8, seed=21)
        if run == 1:
            code = KILLED_RUN.format(articles=repr(articles))
            result = subprocess.run([sys.executable, "-c", code, str(killed), point], capture_output=True,
                                    text=True, timeout=300)
            assert result.returncode == -9, result.stderr
            if point == "cache save":
                assert list(tmp_path.glob("killed.db.window.*.tmp"))
        for database in (killed, reference):
            cache = cache_path(database)
            if database == reference and cache is not None and cache.exists():
                cache.unlink()
            with open_pipeline(database, config(database)) as pipeline:
                pipeline.add_articles(articles)
                pipeline.process()
        assert outcome(killed) == outcome(reference), f"run {run}"
        assert not list(tmp_path.glob("*.tmp"))


def test_a_large_first_run_searched_as_window_pairs_decides_as_the_exact_searches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run over dedup.APPROXIMATE_PAIRS searches the window once (graph.window_pairs) for dedup
    and the neighbour graph: the same copies, stories and labels as the exact searches, and a later
    run (not a first run: searched as before) goes on alike."""
    from clustering import dedup, graph

    calls: list[int] = []
    original = graph.window_pairs

    def counted(vectors: np.ndarray, count: int, floor: float, rows: Any = None) -> Any:
        calls.append(len(vectors))
        return original(vectors, count, floor, rows)

    monkeypatch.setattr(graph, "window_pairs", counted)
    first = batch(0, 400, seed=11)
    first += [dict(a, key=a["key"] + "-copy", source="wire", text=a["text"] + " More follows.",
                   published=a["published"] + timedelta(minutes=3)) for a in first[::9]]  # edited copies
    later = batch(1, 30, seed=11)
    results = []
    for limit, name in ((0, "paired.db"), (10 ** 18, "exact.db")):
        monkeypatch.setattr(dedup, "APPROXIMATE_PAIRS", limit)
        database = tmp_path / name
        for articles in (first, later):
            with open_pipeline(database, config(database)) as pipeline:
                pipeline.add_articles(articles)
                pipeline.process()
        results.append(outcome(database))
    assert calls == [len(first)]                            # the first run only, of the paired database
    assert results[0] == results[1]
    assert sum(a[2] is not None for a in results[0][1]) >= 40 and len(results[0][0]) >= 4
