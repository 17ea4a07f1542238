"""The layout of a clustering database and the form of its values.

The whole schema in one SQL string (``SCHEMA``), versioned with ``PRAGMA user_version``
(``SCHEMA_VERSION``); ``MIGRATIONS`` bring an older database up, statement lists per version, and
the story tally's triggers keep a running count instead of counting history.  Times are stored as
UTC ISO-8601 text (``to_text``/``from_text``), so text order is time order; ``read_time`` reads a
stored time without ever failing; ``content_hash`` is the value of ``articles.content_hash``.
store.py runs these statements on SQLite and store_pg.py translates them for PostgreSQL;
docs/schema.md describes the result for people who query it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from .errors import StorageError

SCHEMA_VERSION = 6

_VERSION_3 = [
    # set_pending clears the last run's pending groups: a handful of rows among all articles
    "CREATE INDEX articles_pending ON articles (pending_group) WHERE pending_group IS NOT NULL",
    # running counts kept by triggers, read instead of counting history
    "CREATE TABLE tallies (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
]
_STORIES_WITH_MEMBERS = "UPDATE tallies SET value = value {sign} 1 WHERE name = 'stories_with_members'"
_TALLY_TRIGGERS = [
    "CREATE TRIGGER story_member_added AFTER INSERT ON story_members"
    " WHEN NOT EXISTS (SELECT 1 FROM story_members WHERE story_id = NEW.story_id AND article_id <> NEW.article_id)"
    f" BEGIN {_STORIES_WITH_MEMBERS.format(sign='+')}; END",
    "CREATE TRIGGER story_member_removed AFTER DELETE ON story_members"
    " WHEN NOT EXISTS (SELECT 1 FROM story_members WHERE story_id = OLD.story_id)"
    f" BEGIN {_STORIES_WITH_MEMBERS.format(sign='-')}; END",
    "CREATE TRIGGER story_member_moved AFTER UPDATE OF story_id ON story_members"
    " WHEN OLD.story_id IS NOT NEW.story_id BEGIN"
    f" {_STORIES_WITH_MEMBERS.format(sign='+')} AND NOT EXISTS (SELECT 1 FROM story_members"
    "   WHERE story_id = NEW.story_id AND article_id <> NEW.article_id);"
    f" {_STORIES_WITH_MEMBERS.format(sign='-')} AND NOT EXISTS (SELECT 1 FROM story_members"
    "   WHERE story_id = OLD.story_id); END",
]
"""Keep ``tallies.stories_with_members`` equal to ``count(DISTINCT story_id) FROM story_members``,
so a run reads the number of stories instead of counting every membership ever stored.
A story gains its first member or loses its last one only through these three events;
``INSERT OR REPLACE`` into story_members would delete without firing the delete trigger
(SQLite fires it only with recursive_triggers), so the store writes memberships with UPSERT."""

_VERSION_4 = [
    # lineage: where a story's articles went when it merged into another, where a split came from
    "ALTER TABLE stories ADD COLUMN merged_into TEXT",
    "ALTER TABLE stories ADD COLUMN split_from TEXT",
]

_VERSION_5 = [
    # what the window cache says about an article's text is checked against this (window.py); the
    # store fills it on insert and after an edit, which the trigger marks by clearing it
    "ALTER TABLE articles ADD COLUMN content_hash INTEGER",
    "CREATE TRIGGER article_text_edited AFTER UPDATE OF title, summary ON articles"
    " BEGIN UPDATE articles SET content_hash = NULL WHERE id = NEW.id; END",
    # the key that seals the window cache: a cache made for another database, or edited, is refused
    "CREATE TABLE cache_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL)",
    "INSERT INTO cache_keys (name, key) VALUES ('window', randomblob(32))",
]
"""Schema 5: a per-article content hash and the window cache's key (see ``content_hash``)."""

_VERSION_6 = [
    # what each run changed, so a desk can follow stories (history.py)
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, finished TEXT NOT NULL, processed INTEGER NOT NULL,"
    " unassigned INTEGER NOT NULL, pending INTEGER NOT NULL DEFAULT 0, compacted INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX runs_finished ON runs (finished)",
    # the runs whose article events are still there: what history.compact looks at, never all runs
    "CREATE INDEX runs_to_compact ON runs (finished) WHERE compacted = 0",
    "CREATE TABLE story_events (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs (id)"
    " ON DELETE CASCADE, story_id TEXT NOT NULL, kind TEXT NOT NULL, article_id INTEGER, other_story_id TEXT,"
    " label_before TEXT, label_after TEXT)",
    "CREATE INDEX story_events_story ON story_events (story_id, run_id)",
    "CREATE INDEX story_events_run ON story_events (run_id, kind)",
    "CREATE INDEX story_events_other ON story_events (other_story_id)",
    # topic names (topics.py)
    "CREATE TABLE topics (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', keywords TEXT NOT NULL DEFAULT '[]',"
    " updated TEXT NOT NULL)",
    "CREATE INDEX stories_topic ON stories (topic_id)",
    # read-only views with the shapes of `--format csv` (docs/schema.md)
    "CREATE VIEW story_list AS SELECT s.id, s.label,"
    " (SELECT group_concat(k.value, ';') FROM json_each(s.keywords) k) AS keywords,"
    " count(m.article_id) AS size, count(DISTINCT a.source) AS canonical_sources,"
    " count(DISTINCT a.source) + (SELECT count(DISTINCT da.source) FROM duplicates d JOIN story_members dm"
    "  ON dm.article_id = d.canonical_id JOIN articles da ON da.id = d.article_id WHERE dm.story_id = s.id"
    "  AND da.source NOT IN (SELECT a2.source FROM story_members m2 JOIN articles a2 ON a2.id = m2.article_id"
    "  WHERE m2.story_id = s.id)) AS sources,"
    " (SELECT count(*) FROM duplicates d JOIN story_members dm ON dm.article_id = d.canonical_id"
    "  WHERE dm.story_id = s.id) AS duplicates,"
    " min(a.published) AS first_seen, max(a.published) AS last_seen, s.topic_id, t.name AS topic_name,"
    " s.split_from FROM stories s JOIN story_members m ON m.story_id = s.id JOIN articles a ON a.id = m.article_id"
    " LEFT JOIN topics t ON t.id = s.topic_id GROUP BY s.id",
    "CREATE VIEW article_list AS SELECT a.id, a.source, a.title, a.url, a.published, a.first_seen,"
    " d.canonical_id AS duplicate_of, COALESCE(m.story_id, mc.story_id) AS story_id FROM articles a"
    " LEFT JOIN duplicates d ON d.article_id = a.id LEFT JOIN story_members m ON m.article_id = a.id"
    " LEFT JOIN story_members mc ON mc.article_id = d.canonical_id",
    "CREATE VIEW duplicate_list AS SELECT d.article_id, d.canonical_id, d.kind, round(d.score, 4) AS score,"
    " a.source, c.source AS canonical_source, a.title, a.published, mc.story_id FROM duplicates d"
    " JOIN articles a ON a.id = d.article_id JOIN articles c ON c.id = d.canonical_id"
    " LEFT JOIN story_members mc ON mc.article_id = d.canonical_id",
]
"""Schema version 6 (issue 17): runs and story events, topic names, views for users' own queries.
The views mirror the columns of ``clustering stories|articles|duplicates --format csv``."""

SCHEMA = """
CREATE TABLE feeds (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_attempt TEXT,
    last_success TEXT,
    last_error TEXT,
    last_error_at TEXT,
    last_warning TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT
);
CREATE TABLE articles (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    entry_key TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    url TEXT,
    published TEXT NOT NULL,
    published_estimated INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    author TEXT,
    processed INTEGER NOT NULL DEFAULT 0,
    pending_group TEXT,
    UNIQUE (source, entry_key)
);
CREATE INDEX articles_published ON articles (published);
CREATE INDEX articles_url ON articles (url);
CREATE INDEX articles_unprocessed ON articles (processed) WHERE processed = 0;
CREATE TABLE embeddings (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE duplicates (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    canonical_id INTEGER NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    score REAL NOT NULL,
    linked TEXT NOT NULL
);
CREATE INDEX duplicates_canonical ON duplicates (canonical_id);
CREATE TABLE stories (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '[]',
    topic_id TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE story_members (
    article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE,
    story_id TEXT NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    added TEXT NOT NULL
);
CREATE INDEX story_members_story ON story_members (story_id);
-- schema version 3: what a run reads is found through an index, never by reading history
""" + ";\n".join([*_VERSION_3, "INSERT INTO tallies (name, value) VALUES ('stories_with_members', 0)",
                  *_TALLY_TRIGGERS, *_VERSION_4, *_VERSION_5, *_VERSION_6]) + ";\n"

MIGRATIONS = {
    2: ["ALTER TABLE articles ADD COLUMN pending_group TEXT"],
    3: [*_VERSION_3, "INSERT INTO tallies (name, value) SELECT 'stories_with_members', count(DISTINCT story_id)"
        " FROM story_members", *_TALLY_TRIGGERS],
    4: _VERSION_4,
    5: _VERSION_5,
    6: _VERSION_6,
}
"""Statements that bring a database from the version before the key to the key's version."""


def newer_schema_error(database: str, version: int) -> StorageError:
    """A database written by a newer clustering: refused, never downgraded."""
    return StorageError(f"database {database} has schema version {version}, newer than this clustering "
                        f"({SCHEMA_VERSION}); upgrade clustering")


def schema_statements(script: str) -> list[str]:
    """The statements of an SQL script (a trigger body's own semicolons do not end it)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


# --- the form of stored values: times as text, the hash of an article's text -------------------
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""How times are stored: UTC ISO-8601 with seconds, four-digit years, so text order is time order."""

UNREADABLE_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""Shown for a required stored time that cannot be read at all (a database edited by hand or
written by another program) when no other time of the row can stand in; the next run repairs it."""


def to_text(moment: datetime) -> str:
    """UTC ISO-8601 with seconds: sorts as text in time order."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: clustering stores UTC-aware datetimes only")
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}Z"  # %Y does not pad years before 1000


def from_text(value: str | None) -> datetime | None:
    """The UTC datetime of a ``to_text`` value (fromisoformat: 50× faster than strptime, which
    took half the time of reading a 100k-article window)."""
    if value is None:
        return None
    if len(value) != len("0000-00-00T00:00:00Z") or not value.endswith("Z"):
        raise ValueError(f"{value!r} is not a time in {TIME_FORMAT}")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)


def read_time(value: object) -> datetime | None:
    """A stored time, or None when there is none or it cannot be read: reading a stored value
    is never fatal (a database edited by hand, or written by an older or another program)."""
    if not isinstance(value, str):
        return None
    try:
        return from_text(value)
    except ValueError:
        return None


def content_hash(title: str, summary: str) -> int:
    """A 63-bit hash of an article's stored text (title and summary), kept in
    ``articles.content_hash``: the window cache records it per article, and a cached article whose
    hash is not the stored one is not trusted (window.py).  63 bits: SQLite integers are signed."""
    import hashlib

    digest = hashlib.blake2b(f"{title}\x00{summary}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)
