"""store.py against real SQLite files in tmp_path (and ':memory:')."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from clustering.dedup import text_hash
from clustering.errors import LockedError, NotFoundError, StorageError
from clustering.store import SCHEMA, SCHEMA_VERSION, NewArticle, Store, open_store, run_lock

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
MODEL = "hashing-8"


def article(key: str, *, source: str = "wire", title: str | None = None, summary: str = "",
            url: str | None = None, published: datetime = T0) -> NewArticle:
    title = title if title is not None else f"Title {key}"
    return NewArticle(source=source, entry_key=key, title=title, summary=summary, url=url, published=published,
                      published_estimated=False, text_hash=text_hash(title, summary))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "clustering.db"


@pytest.fixture
def store(database: str | Path):
    """A store of each backend (conftest ``database``: SQLite, and PostgreSQL where there is one)."""
    opened = open_store(database)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(db_path: Path):
    opened = Store(db_path)
    yield opened
    opened.close()


def add(store: Store, *articles: NewArticle, now: datetime = T0) -> list[int]:
    with store.transaction():
        return store.add_articles(list(articles), now)


# --- opening, schema, migrations -----------------------------------------------------------------
def test_new_database_gets_schema_and_user_version(sqlite_store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"feeds", "articles", "embeddings", "duplicates", "stories", "story_members"} <= tables


def test_file_database_uses_wal(sqlite_store: Store, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.db"
    Store(path).close()
    assert path.is_file()


def test_reopening_keeps_data(database: str | Path) -> None:
    first = open_store(database)
    [article_id] = add(first, article("k1", title="Kept across restarts"))
    first.close()
    second = open_store(database)
    try:
        assert second.article(article_id).title == "Kept across restarts"
        assert add(second, article("k1")) == []
    finally:
        second.close()


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer"):
        Store(db_path)


def test_foreign_sqlite_database_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(StorageError, match="not a clustering database"):
        Store(db_path)
    with sqlite3.connect(db_path) as raw:  # and left untouched
        assert raw.execute("SELECT count(*) FROM notes").fetchone()[0] == 0


def test_file_that_is_not_sqlite_is_a_storage_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database at all, just text\n" * 100)
    with pytest.raises(StorageError, match=str(db_path.name)):
        Store(db_path)


def test_directory_as_database_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Store(tmp_path)


def test_migration_tolerates_another_process_migrating_first(db_path: Path) -> None:
    """Two first runs at once: the loser of the race finds the schema made, not an error."""

    class LateStore(Store):
        raced = False

        def transaction(self):  # type: ignore[override]
            if not LateStore.raced:
                LateStore.raced = True
                Store(db_path).close()  # the other process creates the schema in between
            return super().transaction()

    late = LateStore(db_path)
    try:
        assert LateStore.raced
        assert add(late, article("k")) != []
    finally:
        late.close()


VERSION_2 = SCHEMA[:SCHEMA.index("-- schema version 3")]
"""The schema as clustering made it before version 3 (no pending index, no tallies)."""


def test_version_1_database_is_migrated_keeping_its_data(db_path: Path) -> None:
    """A database made by clustering 0.1.0 (schema 1: no pending_group) opens and keeps its rows."""
    version_1 = VERSION_2.replace("    pending_group TEXT,\n", "")
    assert version_1 != VERSION_2
    with sqlite3.connect(db_path) as raw:
        raw.executescript(version_1)
        raw.execute("INSERT INTO articles (source, entry_key, title, summary, published, first_seen, text_hash)"
                    " VALUES ('wire', 'k1', 'Old article', '', '2024-05-01T12:00:00Z', '2024-05-01T12:00:00Z', 'h')")
        raw.execute("INSERT INTO stories (id, created, updated) VALUES ('s1', 'x', 'x')")
        raw.execute("INSERT INTO story_members (article_id, story_id, added) VALUES (1, 's1', 'x')")
        raw.execute("PRAGMA user_version = 1")
    migrated = Store(db_path)
    try:
        [row] = migrated.window(T0 - timedelta(days=1))
        assert (row.title, row.story_id, row.pending_group) == ("Old article", "s1", None)
        with migrated.transaction():
            migrated.set_pending({row.id: "p1"})
        assert migrated.window(T0 - timedelta(days=1))[0].pending_group == "p1"
    finally:
        migrated.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_version_2_database_is_migrated_keeping_its_data(db_path: Path) -> None:
    """A database of schema 2 gains the pending index and the story tally, counted from its rows."""
    with sqlite3.connect(db_path) as raw:
        raw.executescript(VERSION_2)
        for key in ("k1", "k2", "k3"):
            raw.execute("INSERT INTO articles (source, entry_key, title, summary, published, first_seen, text_hash,"
                        " pending_group) VALUES ('wire', ?, 'Old article', '', '2024-05-01T12:00:00Z',"
                        " '2024-05-01T12:00:00Z', 'h', ?)", (key, "p3" if key == "k3" else None))
        raw.executemany("INSERT INTO stories (id, created, updated) VALUES (?, 'x', 'x')", [("s1",), ("s2",), ("s9",)])
        raw.executemany("INSERT INTO story_members (article_id, story_id, added) VALUES (?, ?, 'x')",
                        [(1, "s1"), (2, "s2")])  # s9 has no members left
        raw.execute("PRAGMA user_version = 2")
    migrated = Store(db_path)
    try:
        assert migrated.story_count() == 2
        window = migrated.window(T0 - timedelta(days=1))
        assert [(a.id, a.story_id, a.pending_group) for a in window] == [(1, "s1", None), (2, "s2", None),
                                                                         (3, None, "p3")]
        with migrated.transaction():
            migrated.add_story_members({2: "s1", 3: "s9"}, T0)  # s2 empties, s9 fills again
            migrated.set_pending({})
        assert migrated.story_count() == 2
        assert [a.pending_group for a in migrated.window(T0 - timedelta(days=1))] == [None, None, None]
    finally:
        migrated.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "articles_pending" in indexes
        columns = {r[1] for r in raw.execute("PRAGMA table_info(stories)")}
        assert {"merged_into", "split_from"} <= columns  # version 4: story lineage


def test_lineage_names_where_a_merged_story_went_and_where_a_split_came_from(store: Store) -> None:
    a, b, c = add(store, article("a"), article("b"), article("c"))
    with store.transaction():
        store.add_story_members({a: "s1", b: "s2", c: "s3"}, T0)
        store.add_story_members({b: "s1", c: "s1"}, T0)  # s3 merged into s2, then s2 into s1
        store.record_lineage({"s2": "s1", "s3": "s2"}, {"s4": "s1"})
    assert store.story_successor("s3") == "s1"  # followed through the later merge
    assert store.story_successor("s2") == "s1"
    assert store.story_successor("s1") is None and store.story_successor("s404") is None
    with store.transaction():
        store.add_story_members({a: "s4"}, T0)
        store.record_lineage({}, {"s4": "s1"})
    assert {s.id: s.split_from for s in store.stories()} == {"s1": None, "s4": "s1"}


def test_set_pending_replaces_the_previous_runs_groups(store: Store) -> None:
    a, b, c = add(store, article("a"), article("b"), article("c"))
    with store.transaction():
        store.set_pending({a: "p1", b: "p1"})
    with store.transaction():
        store.set_pending({c: "p3"})
    assert {r.id: r.pending_group for r in store.window(T0 - timedelta(days=1))} == {a: None, b: None, c: "p3"}


def test_memory_database_works() -> None:
    store = Store(":memory:")
    try:
        [article_id] = add(store, article("k"))
        assert store.article(article_id).entry_key == "k"
    finally:
        store.close()


# --- articles -------------------------------------------------------------------------------------
def test_add_articles_ignores_same_source_and_entry_key(store: Store) -> None:
    first = add(store, article("k1"), article("k2"))
    assert len(first) == 2
    assert add(store, article("k1", title="changed title"), article("k2")) == []
    [other_source] = add(store, article("k1", source="other"))
    assert other_source not in first
    assert store.article(first[0]).title == "Title k1"  # the first version stays


def test_article_fields_round_trip(store: Store) -> None:
    published = datetime(2024, 5, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    [article_id] = add(store, article("k", source="bbc", title="Héllo “world”", summary="Body text.",
                                      url="https://example.com/a", published=published),
                       now=T0 + timedelta(hours=1))
    stored = store.article(article_id)
    assert (stored.source, stored.entry_key, stored.title, stored.summary, stored.url) == (
        "bbc", "k", "Héllo “world”", "Body text.", "https://example.com/a")
    assert stored.published == published and stored.published.tzinfo == timezone.utc
    assert stored.first_seen == T0 + timedelta(hours=1)
    assert stored.duplicate_of is None and stored.story_id is None


def test_unknown_article_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.article(12345)
    with pytest.raises(KeyError):
        store.duplicates_of(12345)


def test_embeddings_round_trip_exactly(store: Store) -> None:
    ids = add(store, article("a"), article("b"), article("c"))
    vectors = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    with store.transaction():
        store.save_embeddings(MODEL, ids, vectors)
    loaded = store.vectors([ids[2], ids[0]], MODEL)
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded, vectors[[2, 0]])
    assert store.articles_without_embedding(MODEL) == []
    assert [r["id"] for r in store.articles_without_embedding("other-model")] == ids
    with pytest.raises(StorageError, match="other-model"):
        store.vectors(ids, "other-model")


def test_vectors_are_read_by_ranges_of_ids_in_the_order_asked(store: Store) -> None:
    """Store.vectors reads id ranges: rows inside a range that were not asked for (or belong to
    another model) are passed over, ids far apart make ranges of their own."""
    from clustering.store import VECTOR_RANGE_GAP, vector_ranges

    assert vector_ranges([9, 1, 2, 3, 3 + VECTOR_RANGE_GAP, 4 + 2 * VECTOR_RANGE_GAP]) == [
        (1, 3 + VECTOR_RANGE_GAP), (4 + 2 * VECTOR_RANGE_GAP, 4 + 2 * VECTOR_RANGE_GAP)]
    assert vector_ranges([]) == []
    ids = add(store, *(article(f"a{i}") for i in range(2 * VECTOR_RANGE_GAP + 10)))
    vectors = np.random.default_rng(3).standard_normal((len(ids), 4)).astype(np.float32)
    with store.transaction():
        store.save_embeddings(MODEL, ids[:-5], vectors[:-5])
        store.save_embeddings("other-model", ids[-5:], vectors[-5:])
    asked = [ids[-6], ids[0], ids[3], ids[2 * VECTOR_RANGE_GAP]]
    assert np.array_equal(store.vectors(asked, MODEL), vectors[[len(ids) - 6, 0, 3, 2 * VECTOR_RANGE_GAP]])
    in_order = store.vectors(ids[:-5], MODEL)   # every row read, in the order stored: no reordering
    assert np.array_equal(in_order, vectors[:-5]) and in_order.flags.writeable
    assert np.array_equal(store.vectors(ids[:3] * 2, MODEL), vectors[[0, 1, 2, 0, 1, 2]])  # asked twice
    with pytest.raises(StorageError, match=f"articles \\[{ids[-5]}"):
        store.vectors([ids[0], ids[-5]], MODEL)


def test_window_includes_recent_and_old_unprocessed(store: Store) -> None:
    old, recent = add(store, article("old", published=T0 - timedelta(days=30)), article("recent"))
    since = T0 - timedelta(days=3)
    assert [a.id for a in store.window(since)] == [old, recent]  # oldest first
    assert store.has_unprocessed()
    with store.transaction():
        store.mark_processed([old, recent])
    window = store.window(since)
    assert [a.id for a in window] == [recent]
    assert window[0].processed and not store.has_unprocessed()
    assert store.latest_published() == T0


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_articles([article("a"), article("b")], T0)
        store.sync_feeds([("wire", "https://example.com/feed")])
        raise RuntimeError("crash between writes")
    assert store.window(T0 - timedelta(days=365)) == []
    assert store.feed_statuses() == []
    assert add(store, article("a")) != []  # the store still works


def test_transaction_does_not_mask_an_error_that_ended_it(store: Store) -> None:
    with pytest.raises(ValueError, match="original"), store.transaction() as db:
        db.execute("ROLLBACK")  # what SQLite does by itself on some errors (disk full, I/O)
        raise ValueError("original")
    assert add(store, article("a")) != []


def test_sqlite_errors_inside_writes_become_storage_errors(store: Store) -> None:
    [article_id] = add(store, article("a"))
    with pytest.raises(StorageError), store.transaction():  # foreign key: no article 999
        store.save_duplicates([(999, article_id, "url", 1.0)], T0)
    assert store.duplicate_count() == 0


# --- duplicates and stories -----------------------------------------------------------------------
def test_save_duplicates_moves_story_membership_to_canonical(store: Store) -> None:
    canonical, copy = add(store, article("c", published=T0), article("d", published=T0 + timedelta(hours=1)))
    with store.transaction():
        store.add_story_members({copy: "s2"}, T0)
        store.save_duplicates([(copy, canonical, "url", 1.0)], T0)
    assert store.story_member_ids() == {"s2": [canonical]}
    assert store.article(copy).duplicate_of == canonical
    assert store.article(copy).story_id == "s2"  # a copy shows its canonical's story
    assert store.article(canonical).story_id == "s2"
    assert [(link.article_id, link.canonical_id, link.kind) for link in store.duplicates_of(copy)] == [
        (copy, canonical, "url")]
    assert store.duplicates_of(canonical) == store.duplicates_of(copy)
    assert store.duplicate_count() == 1


def test_save_duplicates_keeps_the_canonicals_own_story(store: Store) -> None:
    canonical, copy = add(store, article("c"), article("d"))
    with store.transaction():
        store.add_story_members({canonical: "s1", copy: "s2"}, T0)
        store.save_duplicates([(copy, canonical, "near", 0.95)], T0)
    assert store.story_member_ids() == {"s1": [canonical]}


def test_save_duplicates_re_points_a_link(store: Store) -> None:
    a, b, c = add(store, article("a"), article("b"), article("c"))
    with store.transaction():
        store.save_duplicates([(c, b, "text", 1.0)], T0)
        store.save_duplicates([(b, a, "near", 0.93), (c, a, "near", 0.91)], T0)
    assert sorted((link.article_id, link.canonical_id) for link in store.duplicates_of(a)) == [(b, a), (c, a)]


def test_stories_aggregate_members(store: Store) -> None:
    day = timedelta(days=1)
    a1, a2, a3 = add(store, article("a1", source="bbc", published=T0 - 2 * day),
                     article("a2", source="npr", published=T0 - day),
                     article("a3", source="npr", published=T0))
    b1, b2 = add(store, article("b1", source="dw", published=T0 - 5 * day),
                 article("b2", source="dw", published=T0 - 4 * day))
    copy = add(store, article("copy-of-a1", source="guardian", published=T0 - day))[0]
    with store.transaction():
        store.add_story_members({a1: "s10", a2: "s10", a3: "s10", b1: "s20", b2: "s20"}, T0)
        store.save_duplicates([(copy, a1, "url", 1.0)], T0)
        store.update_story_labels({"s10": ("Story A", ["alpha", "beta"]), "s20": ("Story B", [])},
                                  {"s10": "t10", "s20": "t10"})

    newest, oldest = store.stories()
    assert newest.id == "s10" and oldest.id == "s20"  # most recent activity first
    assert newest.label == "Story A" and newest.keywords == ("alpha", "beta") and newest.topic_id == "t10"
    assert newest.size == 3 and newest.article_ids == (a1, a2, a3)
    assert newest.sources == newest.sources_with_duplicates == 3  # bbc, npr and the guardian copy
    assert newest.canonical_sources == 2  # bbc and npr: the outlets of the story's own articles
    assert newest.duplicates == 1
    assert (newest.first_seen, newest.last_seen) == (T0 - 2 * day, T0)
    assert (oldest.size, oldest.sources, oldest.duplicates) == (2, 1, 0)
    assert (oldest.first_seen, oldest.last_seen) == (T0 - 5 * day, T0 - 4 * day)

    assert [s.id for s in store.stories(since=T0 - 3 * day)] == ["s10"]
    assert [s.id for s in store.stories(limit=1)] == ["s10"]
    assert [s.id for s in store.stories(story_ids=["s20"])] == ["s20"]
    assert store.stories(story_ids=["s99"]) == []
    assert store.story_count() == 2
    assert store.story_member_ids(["s20"]) == {"s20": [b1, b2]}


def test_add_story_members_is_idempotent(store: Store) -> None:
    a, b = add(store, article("a"), article("b"))
    with store.transaction():
        store.add_story_members({a: "s1", b: "s1"}, T0)
    with store.transaction():
        store.add_story_members({a: "s1"}, T0 + timedelta(hours=1))
    assert store.story_member_ids() == {"s1": [a, b]}
    assert store.story_count() == 1


def test_add_story_members_moves_an_article_and_story_ids_remember_every_story(store: Store) -> None:
    a, b = add(store, article("a"), article("b"))
    with store.transaction():
        store.add_story_members({a: "s1", b: "s1"}, T0)
    with store.transaction():
        store.add_story_members({b: "s2"}, T0 + timedelta(hours=1))  # a split
    assert store.story_member_ids() == {"s1": [a], "s2": [b]}
    with store.transaction():
        store.add_story_members({a: "s2"}, T0 + timedelta(hours=2))
    assert store.story_count() == 1  # s1 has no members left
    assert store.story_ids() == {"s1", "s2"}  # but its id is never given again


def test_existing_story_ids_finds_the_ids_named_after_the_articles(store: Store) -> None:
    ids = add(store, *(article(f"k{i}") for i in range(130)))
    with store.transaction():
        store.add_story_members({ids[11]: "s12", ids[12]: "s12-2", ids[13]: "s120", ids[14]: "s7", ids[15]: "s12-3"},
                                T0)
    assert store.existing_story_ids([12, 5]) == {"s12", "s12-2", "s12-3"}  # not s120: a different article
    assert store.existing_story_ids([120, 7, 8]) == {"s120", "s7"}
    assert store.existing_story_ids([]) == set()
    assert store.existing_story_ids(range(200)) == store.story_ids()
    # what a run asks instead, one id at a time (core._StoredStoryIds): the same answers
    asked = ["s12", "s12-2", "s12-4", "s120", "s7", "s8", "s1", "s12.", ""]
    assert {story_id for story_id in asked if store.story_exists(story_id)} == \
        store.existing_story_ids(range(200)) & set(asked)


def test_story_count_is_kept_by_triggers_through_every_kind_of_change(database: str | Path) -> None:
    """Random memberships, moves, duplicate links and deletions (cascades included): the
    running count always equals counting the memberships."""
    rng = np.random.default_rng(5)
    store = open_store(database)
    try:
        ids = add(store, *(article(f"k{i}", published=T0 + timedelta(minutes=i)) for i in range(60)))
        for step in range(40):
            with store.transaction():
                chosen = rng.choice(ids, size=int(rng.integers(1, 8)), replace=False)
                store.add_story_members({int(a): f"s{int(rng.integers(1, 12))}" for a in chosen}, T0)
                if step % 3 == 0:
                    copy, canonical = (int(x) for x in rng.choice(ids, size=2, replace=False))
                    store.save_duplicates([(copy, canonical, "near", 0.9)], T0)
                if step % 7 == 6:
                    gone = ids.pop(int(rng.integers(len(ids))))
                    store._write("DELETE FROM articles WHERE id = ?", (gone,))
                if step % 11 == 10:
                    store._write("DELETE FROM stories WHERE id = ?", (f"s{int(rng.integers(1, 12))}",))
            counted = store._query("SELECT count(DISTINCT story_id) FROM story_members")[0][0]
            assert store.story_count() == counted, step
        assert 0 < store.story_count() < 12
    finally:
        store.close()


def test_articles_without_embedding_reads_the_window_and_the_unprocessed_only(store: Store) -> None:
    since = T0 - timedelta(days=3)
    old_done, old_new, recent_done, recent_new = add(
        store, article("old-done", published=T0 - timedelta(days=30)),
        article("old-new", published=T0 - timedelta(days=30)), article("recent-done"), article("recent-new"))
    with store.transaction():
        store.mark_processed([old_done, recent_done])
    everything = [old_done, old_new, recent_done, recent_new]
    assert [r["id"] for r in store.articles_without_embedding(MODEL, since)] == [old_new, recent_done, recent_new]
    assert [r["id"] for r in store.articles_without_embedding(MODEL)] == [old_new, recent_new]  # unprocessed only
    with store.transaction():
        store.save_embeddings(MODEL, everything, np.eye(4, 8, dtype=np.float32))
    assert store.articles_without_embedding(MODEL, since) == []
    # another model: the window and the unprocessed are embedded again, the old processed one is not
    assert [r["id"] for r in store.articles_without_embedding("other", since)] == [old_new, recent_done, recent_new]


# --- feeds ------------------------------------------------------------------------------------------
def test_feed_fetch_state(store: Store) -> None:
    with store.transaction():
        store.sync_feeds([("wire", "https://example.com/wire.xml"), ("bbc", "https://example.com/bbc.xml")])
    later = T0 + timedelta(minutes=15)
    for attempt in range(2):
        store.record_fetch("wire", now=T0 + timedelta(minutes=attempt), ok=False, error="HTTP 503",
                           warning=None, etag=None, last_modified=None, next_attempt=later)
    status = {s.name: s for s in store.feed_statuses()}["wire"]
    assert status.consecutive_errors == 2 and status.last_error == "HTTP 503"
    assert status.last_error_at == T0 + timedelta(minutes=1) and status.last_success is None
    assert status.next_attempt == later

    store.record_fetch("wire", now=later, ok=True, error=None, warning=None, etag='"v1"',
                       last_modified="Wed, 01 May 2024 12:00:00 GMT", next_attempt=later + timedelta(minutes=15))
    add(store, article("x", source="wire"), article("y", source="wire"))
    status = store.feed_statuses(["wire"])[0]
    assert status.consecutive_errors == 0 and status.last_error is None
    assert status.last_success == later and status.last_attempt == later
    assert status.articles == 2
    row = store.feed_row("wire")
    assert row is not None and (row["etag"], row["last_modified"]) == ('"v1"', "Wed, 01 May 2024 12:00:00 GMT")
    assert store.feed_row("missing") is None
    assert [s.name for s in store.feed_statuses()] == ["bbc", "wire"]


def test_changed_feed_url_resets_validators(store: Store) -> None:
    store.sync_feeds([("wire", "https://example.com/old.xml")])
    store.record_fetch("wire", now=T0, ok=True, error=None, warning=None, etag="e", last_modified="m",
                       next_attempt=T0 + timedelta(hours=1))
    store.sync_feeds([("wire", "https://example.com/old.xml")])
    assert store.feed_row("wire")["etag"] == "e"  # type: ignore[index]
    store.sync_feeds([("wire", "https://example.com/new.xml")])
    row = store.feed_row("wire")
    assert row is not None
    assert (row["url"], row["etag"], row["last_modified"], row["next_attempt"]) == (
        "https://example.com/new.xml", None, None, None)


# --- the run lock -----------------------------------------------------------------------------------
def test_run_lock_second_acquisition_fails(db_path: Path) -> None:
    with run_lock(db_path):
        with pytest.raises(LockedError), run_lock(db_path):
            pass
    with run_lock(db_path):  # released
        pass


def test_run_lock_waits_for_release(db_path: Path) -> None:
    acquired = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with run_lock(db_path):
            acquired.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert acquired.wait(10)
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        with run_lock(db_path, wait_seconds=10):
            waited = time.monotonic() - started
        assert 0.3 < waited < 9
    finally:
        release.set()
        thread.join(10)


def test_run_lock_gives_up_after_wait_seconds(db_path: Path) -> None:
    with run_lock(db_path):
        started = time.monotonic()
        with pytest.raises(LockedError, match="lock"), run_lock(db_path, wait_seconds=0.5):
            pass
        assert time.monotonic() - started >= 0.5


def test_run_lock_is_released_when_holder_dies(db_path: Path) -> None:
    script = ("import sys, time\n"
              "from clustering.store import run_lock\n"
              "with run_lock(sys.argv[1]):\n"
              "    print('locked', flush=True)\n"
              "    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(db_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError), run_lock(db_path):
            pass
        holder.kill()
        holder.wait(10)
        with run_lock(db_path, wait_seconds=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_run_lock_on_memory_database_is_a_no_op() -> None:
    with run_lock(":memory:"), run_lock(":memory:"):
        pass


def test_run_lock_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(StorageError, match="lock"), run_lock(not_a_folder / "clustering.db"):
        pass


def test_times_are_stored_with_four_digit_years_and_unreadable_ones_read_as_none() -> None:
    from clustering.store import from_text, read_time, to_text

    assert to_text(datetime(999, 1, 1, tzinfo=timezone.utc)) == "0999-01-01T00:00:00Z"  # sorts before 1990
    assert from_text("0999-01-01T00:00:00Z") == datetime(999, 1, 1, tzinfo=timezone.utc)
    for unreadable in ("999-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "yesterday", "", 1700000000, None):
        assert read_time(unreadable) is None


def test_run_lock_follows_symbolic_links_to_the_database(tmp_path: Path) -> None:
    """Issue item 5: `ln -s a.db b.db`, then runs on a.db and b.db both ran."""
    (tmp_path / "real").mkdir()
    Store(tmp_path / "real" / "a.db").close()
    (tmp_path / "b.db").symlink_to(tmp_path / "real" / "a.db")
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    with run_lock(tmp_path / "real" / "a.db"):
        for other_name in (tmp_path / "b.db", tmp_path / "linked" / "a.db", tmp_path / "real" / ".." / "real" / "a.db"):
            with pytest.raises(LockedError, match=r"real/a\.db\.lock"), run_lock(other_name):
                pass
    with run_lock(tmp_path / "b.db"), pytest.raises(LockedError), run_lock(tmp_path / "real" / "a.db"):
        pass  # and the other way round


def test_read_only_store_reads_and_never_writes(db_path: Path) -> None:
    writer = Store(db_path)
    add(writer, article("a"))
    writer.close()
    before = db_path.read_bytes()
    reader = Store(db_path, read_only=True)
    try:
        assert reader.article(1).entry_key == "a" and reader.read_only
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("CREATE TABLE probe (x INTEGER)")
        with pytest.raises(StorageError):
            add(reader, article("b"))
    finally:
        reader.close()
    assert db_path.read_bytes() == before


def test_read_only_store_never_creates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such.db"
    with pytest.raises(StorageError, match="no database at .*such.db: a `clustering run` creates it"):
        Store(missing, read_only=True)
    assert not (tmp_path / "no").exists()
    (tmp_path / "empty.db").touch()
    with pytest.raises(StorageError, match="not a clustering database"):
        Store(tmp_path / "empty.db", read_only=True)
    assert (tmp_path / "empty.db").read_bytes() == b""


def test_unreadable_and_implausible_times_are_repaired_on_both_backends(store: Store) -> None:
    """repair_times and repair_feed_state: SQLite's strftime checks, PostgreSQL's two PL/pgSQL functions."""
    ids = add(store, article("ok"), article("bad"), article("feb31"), article("future"), article("ancient"))
    with store.transaction():
        store._write("UPDATE articles SET published = 'yesterday' WHERE id = ?", (ids[1],))
        store._write("UPDATE articles SET published = '2024-02-31T10:00:00Z' WHERE id = ?", (ids[2],))
        store._write("UPDATE articles SET published = ? WHERE id = ?", ("2030-01-01T00:00:00Z", ids[3]))
        store._write("UPDATE articles SET published = ? WHERE id = ?", ("1970-01-02T00:00:00Z", ids[4]))
        store.sync_feeds([("wire", "https://example.com/feed"), ("desk", "https://example.com/desk")])
        store._write("UPDATE feeds SET next_attempt = 'soon' WHERE name = 'wire'")
    with store.transaction():
        repaired = store.repair_times(since=T0 - timedelta(days=3), now=T0)
        assert store.repair_feed_state() == ["wire"]
    assert sorted(repaired) == sorted(ids[1:])
    for article_id in ids[1:]:
        assert store.article(article_id).published == T0  # the first-seen time
    assert store.article(ids[0]).published == T0
    assert store.feed_row("wire")["next_attempt"] is None


def _version_4_database(path: Path) -> None:
    """A database as schema 4 left it, holding one article ('Old article', id 1)."""
    from clustering.store import MIGRATIONS

    with sqlite3.connect(path) as raw:
        raw.executescript(VERSION_2)
        for version in (3, 4):
            for statement in MIGRATIONS[version]:
                raw.execute(statement)
        raw.execute("INSERT INTO articles (source, entry_key, title, summary, published, first_seen, text_hash)"
                    " VALUES ('wire', 'k1', 'Old article', '', '2024-05-01T12:00:00Z', '2024-05-01T12:00:00Z', 'h')")
        raw.execute("PRAGMA user_version = 4")


def test_a_version_4_database_is_read_before_a_run_migrates_it(db_path: Path) -> None:
    """Schema 6 (issue 17) added runs, story events, topics and views: a reading command opens an
    older database read-only, finds them empty, and leaves the file as it was."""
    from clustering import listing_queries

    _version_4_database(db_path)
    with sqlite3.connect(db_path) as raw:
        raw.execute("INSERT INTO stories (id, label, topic_id, created, updated) VALUES ('s1', 'Old', 't1', 'x', 'x')")
        raw.execute("INSERT INTO story_members (article_id, story_id, added) VALUES (1, 's1', 'x')")
    reader = Store(db_path, read_only=True)
    try:
        [story] = reader.stories()
        assert (story.id, story.topic_id, story.topic_name) == ("s1", "t1", None)
        assert [t.id for t in listing_queries.topics(reader)] == ["t1"]
        assert [a.story_id for a in listing_queries.list_articles(reader)] == ["s1"]
    finally:
        reader.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 4
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone()[0] == 0
    Store(db_path).close()  # a writer migrates it
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("SELECT id, topic_id, size FROM story_list").fetchall() == [("s1", "t1", 1)]


# --- issue 16: the lock and read-only opening under attack and on a full disk ---------------------------
FULL_DISK = ("import resource, signal, sys\n"
             "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow: a full disk\n")


def on_a_full_disk(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child in which no file may grow (writes fail as on a 100 % full disk)."""
    return subprocess.run([sys.executable, "-c", FULL_DISK + code, *args], capture_output=True, text=True,
                          timeout=120)


def test_content_hashes_are_stored_and_an_edit_clears_them(db_path: Path) -> None:
    store = Store(db_path)
    try:
        [a] = add(store, article("a", summary="first text"))
        assert store.window(T0)[0].content_hash is not None
        key = store.cache_key("window")
        assert len(key) == 32 and store.cache_key("window") == key
    finally:
        store.close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE articles SET summary = 'edited by hand' WHERE id = ?", (a,))
        raw.execute("DELETE FROM cache_keys")
    store = Store(db_path)
    try:
        assert store.window(T0)[0].content_hash is None  # the trigger cleared it: the next run rehashes
        assert store.cache_key("window") != key  # a lost key is made anew (the cache goes stale)
    finally:
        store.close()


def test_a_version_4_database_and_one_made_at_6_without_them_gain_content_hashes_and_the_key(tmp_path: Path) -> None:
    """Schema 6 (issue 17) was merged while schema 5 was an empty placeholder: a database made at 6
    meanwhile gets schema 5's column, trigger and key when it is next opened for writing."""

    old, early = tmp_path / "old.db", tmp_path / "early.db"
    _version_4_database(old)
    Store(early).close()
    with sqlite3.connect(early) as raw:  # as made by schema 6 with an empty schema 5
        for statement in ("DROP TRIGGER article_text_edited", "DROP TABLE cache_keys",
                          "ALTER TABLE articles DROP COLUMN content_hash"):
            raw.execute(statement)
    for database in (old, early):
        store = Store(database)
        try:
            assert [a.content_hash for a in store.window(T0 - timedelta(days=3650))] == ([None] if database == old
                                                                                        else [])
            assert len(store.cache_key("window")) == 32
            add(store, article("new"))
            assert store.window(T0)[-1].content_hash is not None
        finally:
            store.close()
        with sqlite3.connect(database) as raw:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_run_lock_never_follows_a_planted_link_nor_waits_on_a_fifo(db_path: Path) -> None:
    victim = db_path.parent / "victim.txt"
    victim.write_text("precious")
    lock = Path(f"{db_path}.lock")
    lock.symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"), run_lock(db_path):
        pass
    assert victim.read_text() == "precious"
    lock.unlink()
    os.mkfifo(lock)
    with pytest.raises(StorageError, match="not a plain file"), run_lock(db_path):
        pass
    lock.unlink()
    os.link(victim, lock)
    with pytest.raises(StorageError, match="hard link"), run_lock(db_path):
        pass
    assert victim.read_text() == "precious"


def test_run_lock_names_its_holder_and_since_when(db_path: Path) -> None:
    with run_lock(db_path):
        pid, since = Path(f"{db_path}.lock").read_text().split()
        assert int(pid) == os.getpid()
        with pytest.raises(LockedError, match=rf"pid {pid}, since {since}") as caught, run_lock(db_path):
            pass
    assert caught.value.holder_pid == os.getpid() and caught.value.held_since is not None
    assert abs((caught.value.held_since - datetime.now(timezone.utc)).total_seconds()) < 60


def test_run_lock_on_a_full_disk_is_a_storage_error(db_path: Path) -> None:
    """Writing the holder's pid into the lock on a full disk raised a bare OSError (a traceback)."""
    result = on_a_full_disk("from clustering.errors import StorageError\n"
                            "from clustering.store import run_lock\n"
                            "try:\n"
                            "    with run_lock(sys.argv[1]):\n"
                            "        print('locked')\n"
                            "except StorageError as exc:\n"
                            "    print('StorageError:', exc)\n", str(db_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("StorageError: cannot write the run lock") and "Traceback" not in result.stderr


def test_read_only_store_reads_a_cleanly_closed_database_on_a_full_disk(db_path: Path) -> None:
    """No -shm file (the last writer closed) and a disk too full to make one: 'disk I/O error' before."""
    store = Store(db_path)
    add(store, article("a"), article("b"))
    store.close()
    assert not Path(f"{db_path}-shm").exists()
    code = ("from clustering.store import Store\n"
            "reader = Store(sys.argv[1], read_only=True)\n"
            "print(sorted(s.title for s in reader.window(reader.latest_published())))\n")
    for attempt in range(2):  # the first attempt may leave an empty -shm behind: the second reads too
        result = on_a_full_disk(code, str(db_path))
        assert result.returncode == 0 and result.stdout.strip() == "['Title a', 'Title b']", (attempt, result.stderr)


def test_read_only_store_on_a_full_disk_still_refuses_while_a_writer_has_the_database_open(db_path: Path) -> None:
    """With a live -shm (a connection has the database open) the immutable fallback would be unsafe."""
    store = Store(db_path)
    add(store, article("a"))
    try:
        Path(f"{db_path}-shm").unlink()  # a writer whose index is gone: the -wal has content
        add(store, article("b"))
        assert Path(f"{db_path}-wal").stat().st_size
        result = on_a_full_disk("from clustering.store import Store\nStore(sys.argv[1], read_only=True)\n",
                                str(db_path))
        assert result.returncode == 1 and "StorageError" in result.stderr
    finally:
        store.close()


def test_snapshot_reads_one_state_while_a_writer_commits(db_path: Path) -> None:
    store = Store(db_path)
    reader = Store(db_path, read_only=True)
    try:
        a, b = add(store, article("a"), article("b"))
        with store.transaction():
            store.add_story_members({a: "s1", b: "s2"}, T0)
        with reader.snapshot():
            assert {s.id for s in reader.stories()} == {"s1", "s2"}
            with store.transaction():  # a run merges s2 into s1 meanwhile
                store.add_story_members({b: "s1"}, T0)
                store.record_lineage({"s2": "s1"}, {})
            with reader.snapshot():  # nested: the same snapshot
                assert [s.article_ids for s in reader.stories(story_ids=["s2"])] == [(b,)]
        assert reader.stories(story_ids=["s2"]) == [] and reader.story_successor("s2") == "s1"
    finally:
        reader.close()
        store.close()
