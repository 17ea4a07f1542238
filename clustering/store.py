"""SQLite storage: the one place that talks SQL.

Schema in one string, versioned with ``PRAGMA user_version``; WAL journal so readers
(``clustering stories``) never block a run; one transaction per stage of a run; every
``sqlite3.Error`` becomes a StorageError here and nowhere else.  Everything derived
(FAISS index, similarity matrices) is rebuilt from these tables, so losing it loses
nothing.  ``":memory:"`` works for tests and API users who want no file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import ConfigError, LockedError, NotFoundError, StorageError, quote_value
from .types import Article, DuplicateLink, FeedStatus, Story

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest integer SQLite binds (a larger --limit means no limit)."""
BUSY_TIMEOUT_MS = 30_000
"""How long a statement waits for another connection's write lock before failing."""

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


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""How times are stored: UTC ISO-8601 with seconds, four-digit years, so text order is time order."""

UNREADABLE_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
"""Shown for a required stored time that cannot be read at all (a database edited by hand or
written by another program) when no other time of the row can stand in; the next run repairs it."""

_UNREADABLE_TIME_SQL = "strftime('%Y-%m-%dT%H:%M:%SZ', {column}, '+0 seconds') IS NOT {column}"
"""True for a value that is not a valid time in TIME_FORMAT (SQLite normalizes 02-31 to 03-02)."""

_AFTER_EVERY_DATE = "9999-12-31T23:59:59Z"
"""A ``published`` text later than any stored one (``to_text`` sorts as time)."""


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


@dataclass(frozen=True)
class NewArticle:
    """A row to insert (parse output plus the derived dedup keys)."""

    source: str
    entry_key: str
    title: str
    summary: str
    url: str | None
    published: datetime
    published_estimated: bool
    text_hash: str
    author: str | None = None


@dataclass(frozen=True)
class WindowArticle:
    """An article of the processing window with what dedup and stories need."""

    id: int
    source: str
    title: str
    summary: str
    url: str | None
    published: datetime
    text_hash: str
    processed: bool
    duplicate_of: int | None
    story_id: str | None
    pending_group: str | None = None
    duplicate_kind: str | None = None
    duplicate_score: float | None = None
    content_hash: int | None = None    # None: edited since stored (or stored before schema 5)



VECTOR_RANGE_GAP = 64
"""Ids read past in one range scan of the embeddings table (``Store.vectors``): ids apart by more
start a new range.  A window's ids are nearly consecutive (articles are stored as they arrive), so a
100k-article window is a few ranges; at worst each id is a range of its own, a key lookup as before."""


def _unused_wal_files(database: Path) -> bool:
    """Whether no connection has this WAL database open and it has no committed pages outside the
    main file: no ``-shm`` (or an empty one, left by a reader that could not grow it) and no ``-wal``
    with content.  A live connection's ``-shm`` is at least 32 KiB."""
    for suffix in ("-shm", "-wal"):
        try:
            if os.stat(f"{database}{suffix}").st_size:
                return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def vector_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ``ids`` as (low, high) ranges whose gaps are at most ``VECTOR_RANGE_GAP``."""
    ranges: list[tuple[int, int]] = []
    for article_id in sorted(ids):
        if ranges and article_id - ranges[-1][1] <= VECTOR_RANGE_GAP:
            ranges[-1] = (ranges[-1][0], article_id)
        else:
            ranges.append((article_id, article_id))
    return ranges

DATABASE_URL_SCHEMES = ("postgresql", "postgres")
"""The URL schemes ``--db``/``settings.database`` accept (PostgreSQL, ``clustering[postgres]``);
any other ``scheme://`` is refused rather than taken for a file path."""


def database_url_scheme(database: str | Path) -> str | None:
    """The scheme of a database URL (``postgresql://…``), None for a file path or ``:memory:``."""
    text = str(database)
    head, separator, _ = text.partition("://")
    if not separator or not head or not all(c.isalnum() or c in "+-." for c in head) or not head[0].isalpha():
        return None
    return head.lower()


def check_database(database: str | Path) -> None:
    """Refuse a URL this version cannot open (ConfigError naming the scheme)."""
    scheme = database_url_scheme(database)
    if scheme is not None and scheme not in DATABASE_URL_SCHEMES:
        raise ConfigError(f"database {scheme}://…: unsupported URL scheme {scheme!r}; use a file path for SQLite "
                          "or postgresql://USER@HOST/NAME for PostgreSQL")


def open_store(database: str | Path, *, read_only: bool = False) -> Store:
    """The store ``database`` names: a ``postgresql://`` URL or an SQLite file (``:memory:`` too)."""
    check_database(database)
    if database_url_scheme(database) is not None:
        from .store_pg import PostgresStore

        return PostgresStore(str(database), read_only=read_only)
    return Store(database, read_only=read_only)


class Store:
    """A connection to one clustering database.

    ``read_only=True`` (the reading commands) never writes and never creates anything: a
    database that does not exist is a StorageError saying so, and one on read-only storage
    is still read (see :meth:`_connect_read_only`).
    """

    shared = False
    """Whether several processes may write at once (PostgreSQL workers); SQLite runs take the run lock."""
    _errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    """The database driver's errors: each becomes a StorageError where it arises, naming the database."""
    _begin = "BEGIN IMMEDIATE"
    _begin_snapshot = "BEGIN"
    """How ``snapshot`` starts its read transaction (a WAL reader keeps the state of its first read)."""
    _concat_members = "group_concat(m.article_id || ' ' || a.published)"
    """Story members as ``id published`` pairs, comma-separated (``_time_ordered`` reads them)."""
    _concat_distinct = "group_concat(DISTINCT {column})"
    """The distinct values of a text column, comma-separated (listing_queries.topics)."""
    _contains = "instr({column}, ?) > 0"
    """Whether a text column holds the parameter (listing_queries.list_articles --search)."""
    _not_integer = "typeof({column}) != 'integer'"
    _unreadable_time = _UNREADABLE_TIME_SQL
    _shifted_time = "strftime('%Y-%m-%dT%H:%M:%SZ', {column}, ?)"

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only and self.path != ":memory:"
        try:
            if self.read_only:
                self._db = self._connect_read_only()
            else:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                           check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.path != ":memory:" and not self.read_only:
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self.read_only:
                self._check_readable_version()
            else:
                self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"cannot open database {self.path}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise StorageError(f"cannot create database folder for {self.path}: {exc}") from exc
        except StorageError:
            self.close()
            raise

    # --- plumbing ---------------------------------------------------------------------
    def _connect_read_only(self) -> sqlite3.Connection:
        """Open with ``mode=ro``.  Reading a WAL database needs its ``-shm`` index; where it is
        missing (the last writer closed cleanly and removed it) and SQLite cannot create it, the
        file is opened ``immutable`` instead, in two cases: on read-only storage (no writer can be at
        work in a folder nobody may write to), and when the disk is full but no connection has the
        database open (no ``-shm`` of a live connection, no ``-wal`` with content): then the main file
        holds every committed transaction, and a writer could not start on that full disk either."""
        database = Path(self.path)
        if not database.exists():
            raise StorageError(f"no database at {self.path}: a `clustering run` creates it "
                               "(reading commands never do)")
        resolved = database.resolve()
        closed_cleanly = _unused_wal_files(resolved)
        uri = f"file:{quote(str(resolved))}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
            if os.access(resolved.parent, os.W_OK) and not closed_cleanly:
                raise
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read inside one transaction: every query sees the database as it was at the first one,
        whatever a run commits meanwhile (WAL readers keep their snapshot; on PostgreSQL one
        ``REPEATABLE READ READ ONLY`` transaction, ``_begin_snapshot``).  Nests: inside a
        transaction already, it adds nothing."""
        if self._in_transaction():
            yield
            return
        try:
            self._db.execute(self._begin_snapshot)
        except self._errors as exc:
            raise StorageError(f"cannot start reading {self.path}: {exc}") from exc
        try:
            yield
        finally:
            if self._in_transaction():
                with contextlib.suppress(*self._errors):
                    self._db.execute("COMMIT")

    def _in_transaction(self) -> bool:
        return self._db.in_transaction

    def _check_readable_version(self) -> None:
        """Read-only: nothing is migrated, so read what this version can read (every older
        schema holds the columns the reading queries use) and refuse the rest."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise newer_schema_error(self.path, version)
        if version == 0:
            raise StorageError(f"{self.path} is not a clustering database (a `clustering run` on an empty "
                               "file makes it one)")
        if version < 6:
            # schema 6's tables and views, empty, in this connection's TEMP schema (never in the
            # file): a reading command works before the next run migrates the database
            for statement in _VERSION_6:
                if statement.startswith(("CREATE TABLE", "CREATE VIEW")):
                    self._db.execute(statement.replace("CREATE ", "CREATE TEMP ", 1))

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            self._add_missing_version_5()
            return
        if version > SCHEMA_VERSION:
            raise newer_schema_error(self.path, version)
        if version == 0:
            tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if tables:
                raise StorageError(f"{self.path} is an SQLite database but not a clustering database")
            with self.transaction():
                # another process may have created the schema since we looked (two first runs)
                if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    return
                for statement in schema_statements(SCHEMA):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    def _add_missing_version_5(self) -> None:
        """Schema 6 was merged before schema 5's statements, which were an empty placeholder then: a
        database made at 6 meanwhile lacks them.  Add them once (one ``PRAGMA table_info`` a start)."""
        def present() -> bool:
            return any(r[1] == "content_hash" for r in self._db.execute("PRAGMA table_info(articles)"))

        if present():
            return
        with self.transaction():
            if not present():  # re-read under the lock: another process may have added them
                for statement in _VERSION_5:
                    self._db.execute(statement)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One atomic unit of work: all of it lands or none of it."""
        try:
            self._db.execute(self._begin)
        except self._errors as exc:
            raise StorageError(f"cannot start a transaction on {self.path}: {exc}") from exc
        try:
            yield self._db
        except BaseException:
            # SQLite may already have rolled back (disk full, I/O error): never mask the cause
            with contextlib.suppress(*self._errors):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except self._errors as exc:
            with contextlib.suppress(*self._errors):
                self._db.execute("ROLLBACK")
            raise StorageError(f"cannot commit to {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except self._errors as exc:
            raise StorageError(f"query on {self.path} failed: {exc}") from exc

    def _write(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        try:
            return self._db.execute(sql, params)
        except self._errors as exc:
            raise StorageError(f"write to {self.path} failed: {exc}") from exc

    def _write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except self._errors as exc:
            raise StorageError(f"write to {self.path} failed: {exc}") from exc

    def run_lock(self, *, wait_seconds: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """The lock a run holds from fetching to clustering: one run at a time on an SQLite file."""
        return run_lock(self.path, wait_seconds=wait_seconds)

    @contextlib.contextmanager
    def cluster_lock(self, *, wait_seconds: float = 0.0) -> Iterator[None]:
        """The lock the window stages (dedup, stories) hold; on SQLite the run lock covers them."""
        yield

    def articles_to_embed(self, ids: Sequence[int], model: str) -> list[Any]:
        """(id, title, summary) of those of ``ids`` with no ``model`` embedding, by id."""
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(chunk))
            rows.extend(self._query(f"SELECT a.id, a.title, a.summary FROM articles a WHERE a.id IN ({marks}) AND NOT"
                                    " EXISTS (SELECT 1 FROM embeddings e WHERE e.article_id = a.id AND e.model = ?)",
                                    [*chunk, model]))
        return sorted(rows, key=lambda r: r["id"])

    def embedded_ids(self, ids: Sequence[int], model: str) -> set[int]:
        """Those of ``ids`` that have a ``model`` embedding stored."""
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self._query(f"SELECT article_id FROM embeddings WHERE model = ?"
                                                   f" AND article_id IN ({marks})", [model, *chunk]))
        return found

    def close(self) -> None:
        if hasattr(self, "_db"):
            with contextlib.suppress(*self._errors):
                self._db.close()

    # --- feeds ------------------------------------------------------------------------
    def sync_feeds(self, feeds: Iterable[tuple[str, str]]) -> None:
        """Make sure every configured feed has a row; a changed URL resets its validators."""
        for name, url in feeds:
            row = self._query("SELECT url FROM feeds WHERE name = ?", (name,))
            if not row:
                self._write("INSERT INTO feeds (name, url) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, url))
            elif row[0]["url"] != url:
                self._write("UPDATE feeds SET url = ?, etag = NULL, last_modified = NULL, next_attempt = NULL,"
                            " consecutive_errors = 0 WHERE name = ?", (url, name))

    def feed_row(self, name: str) -> Any:
        rows = self._query("SELECT * FROM feeds WHERE name = ?", (name,))
        return rows[0] if rows else None

    def record_fetch(self, name: str, *, now: datetime, ok: bool, error: str | None, warning: str | None,
                     etag: str | None, last_modified: str | None, next_attempt: datetime) -> None:
        if ok:
            self._write("UPDATE feeds SET last_attempt = ?, last_success = ?, consecutive_errors = 0,"
                        " last_error = NULL, etag = ?, last_modified = ?, next_attempt = ?, last_warning = ?"
                        " WHERE name = ?",
                        (to_text(now), to_text(now), etag, last_modified, to_text(next_attempt), warning, name))
        else:
            self._write("UPDATE feeds SET last_attempt = ?, last_error = ?, last_error_at = ?,"
                        " consecutive_errors = consecutive_errors + 1, next_attempt = ? WHERE name = ?",
                        (to_text(now), error, to_text(now), to_text(next_attempt), name))

    def repair_feed_state(self) -> list[str]:
        """Make a feed whose stored schedule cannot be read due now (an unreadable
        ``next_attempt`` would sort after every real time and skip the feed for ever; an
        error count that is not a number is reset); return the feed names, each warned about."""
        not_integer = self._not_integer.format(column="consecutive_errors")
        rows = self._query("SELECT name, next_attempt, consecutive_errors FROM feeds WHERE"
                           f" (next_attempt IS NOT NULL AND {self._unreadable_time.format(column='next_attempt')})"
                           f" OR {not_integer}")
        for row in rows:
            log.warning("feed %r: stored schedule (next attempt %s, %s errors) is not readable; the feed is due now",
                        row["name"], quote_value(row["next_attempt"]), quote_value(row["consecutive_errors"]))
            self._write(f"UPDATE feeds SET next_attempt = NULL, consecutive_errors = CASE WHEN {not_integer}"
                        " THEN 0 ELSE consecutive_errors END WHERE name = ?",
                        (row["name"],))
        return [row["name"] for row in rows]

    def feed_statuses(self, names: Sequence[str] | None = None) -> list[FeedStatus]:
        rows = self._query("SELECT f.*, (SELECT count(*) FROM articles a WHERE a.source = f.name) AS n"
                           " FROM feeds f ORDER BY f.name")
        statuses = [FeedStatus(
            name=r["name"], url=r["url"], last_attempt=read_time(r["last_attempt"]),
            last_success=read_time(r["last_success"]), last_error=r["last_error"],
            last_error_at=read_time(r["last_error_at"]),
            consecutive_errors=r["consecutive_errors"] if isinstance(r["consecutive_errors"], int) else 0,
            next_attempt=read_time(r["next_attempt"]), articles=r["n"]) for r in rows]
        if names is not None:
            wanted = set(names)
            statuses = [s for s in statuses if s.name in wanted]
        return statuses

    # --- articles ---------------------------------------------------------------------
    def add_articles(self, articles: Sequence[NewArticle], now: datetime) -> list[int]:
        """Insert the articles not stored yet (same source + entry key); return new ids."""
        new_ids: list[int] = []
        for article in articles:
            # NOT EXISTS first: PostgreSQL spends an id on a row ON CONFLICT drops, and the ids (and the
            # story ids named after them) would then differ from SQLite's for the same articles
            row = self._write(
                "INSERT INTO articles (source, entry_key, title, summary, url, published,"
                " published_estimated, first_seen, text_hash, author, content_hash) SELECT ?,?,?,?,?,?,?,?,?,?,?"
                " WHERE NOT EXISTS (SELECT 1 FROM articles WHERE source = ? AND entry_key = ?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (article.source, article.entry_key, article.title, article.summary, article.url,
                 to_text(article.published), int(article.published_estimated), to_text(now),
                 article.text_hash, article.author, content_hash(article.title, article.summary),
                 article.source, article.entry_key)).fetchone()
            if row is not None:
                new_ids.append(int(row[0]))
        return new_ids

    def articles_without_embedding(self, model: str, since: datetime | None = None) -> list[Any]:
        """Articles a run needs embedded with ``model`` that have no such embedding: every
        unprocessed one, and those published since ``since`` (the window: a changed model
        re-embeds it); oldest id first.  Processed articles before ``since`` are not read."""
        missing = "NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.article_id = a.id AND e.model = ?)"
        start = to_text(since) if since is not None else _AFTER_EVERY_DATE
        rows = self._query(f"SELECT a.id, a.title, a.summary FROM articles a WHERE a.published >= ? AND {missing}"
                           f" UNION ALL SELECT a.id, a.title, a.summary FROM articles a"
                           f" WHERE a.processed = 0 AND a.published < ? AND {missing}",
                           (start, model, start, model))
        return sorted(rows, key=lambda r: r["id"])

    def save_embeddings(self, model: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        import numpy as np

        self._write_many("INSERT INTO embeddings (article_id, model, vector) VALUES (?, ?, ?) ON CONFLICT (article_id)"
                         " DO UPDATE SET model = excluded.model, vector = excluded.vector",
                         ((int(i), model, np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(ids, vectors)))

    def vectors(self, ids: Sequence[int], model: str) -> np.ndarray:
        """The stored ``model`` vectors of ``ids``, one row each in that order.  Read by id ranges
        (``vector_ranges``): a window's ids are nearly consecutive, and one range scan of the
        embeddings table costs less than as many key lookups, whatever the history around it.  The
        rows come in id order, so they are matched to ``ids`` by one sorted search, not per id."""
        import numpy as np

        if not len(ids):
            return np.zeros((0, 0), dtype=np.float32)
        rows: list[tuple[Any, ...]] = []
        for low, high in vector_ranges(ids):
            # ORDER BY: SQLite scans in id order anyway; PostgreSQL need not
            rows.extend(self._db_rows("SELECT article_id, vector FROM embeddings WHERE article_id BETWEEN ? AND ?"
                                      " AND model = ? ORDER BY article_id", (low, high, model)))
        # column by column at C speed (a Python loop over 100k rows took half of this method's 0.5 s)
        wanted = np.asarray(ids, dtype=np.int64)
        stored = np.fromiter(map(operator.itemgetter(0), rows), dtype=np.int64, count=len(rows))
        blobs = list(map(operator.itemgetter(1), rows))
        position = np.clip(np.searchsorted(stored, wanted), 0, max(len(stored) - 1, 0))
        present = stored[position] == wanted if len(stored) else np.zeros(len(wanted), dtype=bool)
        if not present.all():
            raise StorageError(f"no {model!r} embedding stored for articles {wanted[~present].tolist()[:10]}")
        in_order = len(position) == len(blobs) and bool((position == np.arange(len(blobs))).all())
        chosen = blobs if in_order else [blobs[i] for i in position.tolist()]
        if len(set(map(len, chosen))) != 1:
            raise StorageError(f"the stored {model!r} embeddings of these articles differ in length")
        return np.frombuffer(b"".join(chosen), dtype=np.float32).reshape(len(chosen), -1).copy()

    def _db_rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Plain tuples (no Row objects) for the bulk reads of a run."""
        try:
            cursor = self._db.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()
        except self._errors as exc:
            raise StorageError(f"query on {self.path} failed: {exc}") from exc

    def unprocessed_span(self) -> tuple[datetime, datetime] | None:
        """The first and last publication times of the unprocessed articles (None: there are none)."""
        first, last = self._query("SELECT min(published), max(published) FROM articles WHERE processed = 0")[0]
        start, end = read_time(first), read_time(last)
        return (start, end) if start is not None and end is not None else None

    def has_unprocessed(self, until: datetime | None = None) -> bool:
        """Whether an article waits to be processed (``until``: one published by then)."""
        if until is None:
            return bool(self._query("SELECT 1 FROM articles WHERE processed = 0 LIMIT 1"))
        return bool(self._query("SELECT 1 FROM articles WHERE processed = 0 AND published <= ? LIMIT 1",
                                (to_text(until),)))

    def window(self, since: datetime, until: datetime | None = None) -> list[WindowArticle]:
        """Articles published since ``since`` plus every unprocessed one, oldest first; ``until``
        (a backfill's pass): none published after it.

        Two queries, one per index (``published`` range, unprocessed partial index): with
        ``published >= ? OR processed = 0`` SQLite reads every article."""
        select = ("SELECT a.id, a.source, a.title, a.summary, a.url, a.published, a.text_hash, a.processed,"
                  " a.pending_group, d.canonical_id, d.kind, d.score, m.story_id, a.content_hash FROM articles a"
                  " LEFT JOIN duplicates d ON d.article_id = a.id LEFT JOIN story_members m ON m.article_id = a.id")
        end = to_text(until) if until is not None else _AFTER_EVERY_DATE
        # plain tuples: Row objects and lookups by name took 0.4 s of a 100k window's 1.3 s (issue 19)
        rows = self._db_rows(f"{select} WHERE a.published >= ? AND a.published <= ? UNION ALL {select}"
                             " WHERE a.processed = 0 AND a.published < ? ORDER BY published, id",
                             (to_text(since), end, to_text(since)))
        return [WindowArticle(id=id_, source=source, title=title, summary=summary, url=url,
                              published=from_text(published), text_hash=text_hash,  # type: ignore[arg-type]
                              processed=bool(processed), duplicate_of=canonical_id, story_id=story_id,
                              pending_group=pending_group, duplicate_kind=kind, duplicate_score=score,
                              content_hash=content if isinstance(content, int) else None)
                for (id_, source, title, summary, url, published, text_hash, processed, pending_group, canonical_id,
                     kind, score, story_id, content) in rows]

    def save_content_hashes(self, hashes: dict[int, int]) -> None:
        """Store the content hashes of articles that had none (edited, or stored before schema 5)."""
        self._write_many("UPDATE articles SET content_hash = ? WHERE id = ?", ((h, int(a)) for a, h in hashes.items()))

    def cache_key(self, name: str) -> bytes:
        """The key sealing one of this database's cache files (created with the schema; a key that
        was deleted or is not 32 bytes is made anew, which only makes the cache file stale)."""
        rows = self._query("SELECT key FROM cache_keys WHERE name = ?", (name,))
        if rows and isinstance(rows[0][0], bytes) and len(rows[0][0]) == 32:
            return bytes(rows[0][0])
        key = os.urandom(32)
        self._write("INSERT INTO cache_keys (name, key) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET key = excluded.key",
                    (name, key))
        return key

    def latest_published(self, until: datetime | None = None) -> datetime | None:
        """The newest readable publication time (``until``: not after it; unreadable values, which
        the next run repairs, are passed over; normally the first row read is the answer)."""
        newest = self._query("SELECT max(published) FROM articles WHERE published <= ?",
                             (to_text(until) if until is not None else _AFTER_EVERY_DATE,))[0][0]
        moment = read_time(newest)
        if moment is not None or newest is None:
            return moment
        try:  # the newest value cannot be read: walk down the index to the first that can
            for (value,) in self._db.execute("SELECT published FROM articles WHERE published < ?"
                                             " ORDER BY published DESC", (newest,)):
                moment = read_time(value)
                if moment is not None:
                    return moment
        except self._errors as exc:
            raise StorageError(f"query on {self.path} failed: {exc}") from exc
        return None

    def repair_times(self, *, since: datetime, now: datetime) -> list[int]:
        """Repair the stored times a run would read and could not use; return the article ids.

        Looks at the articles of the window (``published >= since``), the unprocessed ones and
        those dated before 1990: a time that is not readable, or a publication date that fails
        :func:`~clustering.parse.is_plausible_date` against the article's first-seen time, is
        replaced (publication by first-seen, marked estimated, as feeds do; first-seen by
        ``now``), with a warning naming the article.  Such rows come from databases edited by
        hand or written by older versions; without this one of them stops every later run.
        """
        from .parse import EARLIEST_PLAUSIBLE_DATE, MAX_FUTURE_SKEW, is_plausible_date

        earliest = to_text(EARLIEST_PLAUSIBLE_DATE)
        skew = f"+{int(MAX_FUTURE_SKEW.total_seconds())} seconds"
        rows = self._query(
            "SELECT id, published, first_seen FROM articles"
            " WHERE (published >= ? OR processed = 0 OR published < ?)"
            f" AND ({self._unreadable_time.format(column='published')}"
            f" OR {self._unreadable_time.format(column='first_seen')} OR published < ?"
            f" OR published > {self._shifted_time.format(column='first_seen')})",
            (to_text(since), earliest, earliest, skew))
        repaired: list[int] = []
        for row in rows:
            first_seen = read_time(row["first_seen"])
            published = read_time(row["published"])
            if first_seen is None:
                log.warning("article %d: stored first-seen time %s is not a readable time; using %s",
                            row["id"], quote_value(row["first_seen"]), to_text(now))
                first_seen = now
            if published is None or not is_plausible_date(published, first_seen):
                log.warning("article %d: stored publication time %s is not a plausible date; using its "
                            "first-seen time %s instead", row["id"], quote_value(row["published"]),
                            to_text(first_seen))
                published = first_seen
            self._write("UPDATE articles SET published = ?, first_seen = ?,"
                        " published_estimated = CASE WHEN ? = 1 THEN 1 ELSE published_estimated END WHERE id = ?",
                        (to_text(published), to_text(first_seen), int(to_text(published) != row["published"]),
                         row["id"]))
            repaired.append(int(row["id"]))
        return repaired

    def set_pending(self, pending: dict[int, str]) -> None:
        """Replace the deferred groups of the last run with these (article id -> group key).
        The reset finds the last run's rows through the partial index ``articles_pending``."""
        self._write("UPDATE articles SET pending_group = NULL WHERE pending_group IS NOT NULL")
        self._write_many("UPDATE articles SET pending_group = ? WHERE id = ?",
                         ((key, int(article_id)) for article_id, key in pending.items()))

    def story_ids(self) -> set[str]:
        """Every story id ever given (reads all stories: a run asks :meth:`story_exists` of the ids it could give)."""
        return {r["id"] for r in self._query("SELECT id FROM stories")}

    def existing_story_ids(self, article_ids: Iterable[int]) -> set[str]:
        """The stored story ids named after these articles (``s<id>`` and ``s<id>-<n>``):
        every id a new story founded by one of them could be given, that is taken already.
        One index range per article (``s<id>`` ≤ story id < ``s<id>.``), whatever the history."""
        rows = self._query(f"SELECT s.id FROM {self._id_list_table} JOIN stories s"
                           " ON s.id >= 's' || c.value AND s.id < 's' || c.value || '.'",
                           (self._id_list([int(i) for i in article_ids]),))
        return {r["id"] for r in rows}

    def story_exists(self, story_id: str) -> bool:
        """Whether a story of this id was ever given (one primary-key lookup)."""
        return bool(self._query("SELECT 1 FROM stories WHERE id = ?", (story_id,)))

    _id_list_table = "json_each(?) c"
    """A table ``c`` of one column ``value`` from one parameter holding a list of ids (``_id_list``)."""

    def _id_list(self, ids: list[int]) -> Any:
        return json.dumps(ids)

    def mark_processed(self, ids: Sequence[int]) -> None:
        self._write_many("UPDATE articles SET processed = 1 WHERE id = ?", ((int(i),) for i in ids))

    def save_duplicates(self, links: Sequence[tuple[int, int, str, float]], now: datetime) -> dict[int, str | None]:
        """(article, canonical, kind, score); a duplicate leaves any story it was in, and a
        canonical in no story takes it over.  Returns the memberships that changed (article id
        -> its story now, None when it left one)."""
        changed: dict[int, str | None] = {}
        for article_id, canonical_id, kind, score in links:
            self._write("INSERT INTO duplicates (article_id, canonical_id, kind, score, linked) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (article_id) DO UPDATE SET canonical_id = excluded.canonical_id,"
                        " kind = excluded.kind, score = excluded.score, linked = excluded.linked",
                        (article_id, canonical_id, kind, score, to_text(now)))
            moved = self._query("SELECT story_id FROM story_members WHERE article_id = ?", (article_id,))
            if moved:
                self._write("DELETE FROM story_members WHERE article_id = ?", (article_id,))
                changed[article_id] = None
                cursor = self._write("INSERT INTO story_members (article_id, story_id, added) VALUES (?, ?, ?)"
                                     " ON CONFLICT DO NOTHING", (canonical_id, moved[0]["story_id"], to_text(now)))
                if cursor.rowcount == 1:
                    changed[canonical_id] = moved[0]["story_id"]
        return changed

    def _row_to_article(self, r: Any) -> Article:
        first_seen = read_time(r["first_seen"])
        published = read_time(r["published"])
        if published is None or first_seen is None:
            log.warning("article %d: stored time %s is not readable (the next run repairs it)", r["id"],
                        quote_value(r["first_seen"] if first_seen is None else r["published"]))
        return Article(id=r["id"], source=r["source"], entry_key=r["entry_key"], title=r["title"],
                       summary=r["summary"], url=r["url"], published=published or first_seen or UNREADABLE_TIME,
                       first_seen=first_seen or published or UNREADABLE_TIME, duplicate_of=r["canonical_id"],
                       story_id=r["story_id"])

    _ARTICLE_SELECT = ("SELECT a.*, d.canonical_id, COALESCE(m.story_id, mc.story_id) AS story_id FROM articles a"
                       " LEFT JOIN duplicates d ON d.article_id = a.id"
                       " LEFT JOIN story_members m ON m.article_id = a.id"
                       " LEFT JOIN story_members mc ON mc.article_id = d.canonical_id")

    def article(self, article_id: int) -> Article:
        rows = self._query(self._ARTICLE_SELECT + " WHERE a.id = ?", (article_id,))
        if not rows:
            raise NotFoundError(f"no article with id {article_id}")
        return self._row_to_article(rows[0])

    def articles(self, ids: Sequence[int]) -> list[Article]:
        return [self.article(i) for i in ids]

    def duplicates_of(self, article_id: int) -> list[DuplicateLink]:
        """Links of every copy of the article's canonical, the canonical's own link excluded."""
        self.article(article_id)
        canonical = self._query("SELECT canonical_id FROM duplicates WHERE article_id = ?", (article_id,))
        root = canonical[0]["canonical_id"] if canonical else article_id
        rows = self._query("SELECT * FROM duplicates WHERE canonical_id = ? ORDER BY article_id", (root,))
        return [DuplicateLink(r["article_id"], r["canonical_id"], r["kind"], r["score"]) for r in rows]

    def duplicate_count(self) -> int:
        return int(self._query("SELECT count(*) FROM duplicates")[0][0])

    # --- stories ----------------------------------------------------------------------
    def add_story_members(self, story_of: dict[int, str], now: datetime) -> None:
        for story_id in set(story_of.values()):
            self._write("INSERT INTO stories (id, created, updated) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (story_id, to_text(now), to_text(now)))
            self._write("UPDATE stories SET updated = ? WHERE id = ?", (to_text(now), story_id))
        # an UPSERT, not INSERT OR REPLACE: a replace would not fire the tally's delete trigger
        self._write_many("INSERT INTO story_members (article_id, story_id, added) VALUES (?, ?, ?)"
                         " ON CONFLICT (article_id) DO UPDATE SET story_id = excluded.story_id, added = excluded.added",
                         ((int(a), s, to_text(now)) for a, s in story_of.items()))

    def story_member_ids(self, story_ids: Sequence[str] | None = None) -> dict[str, list[int]]:
        rows = self._query("SELECT m.story_id, m.article_id FROM story_members m JOIN articles a ON a.id ="
                           " m.article_id ORDER BY a.published, a.id")
        members: dict[str, list[int]] = {}
        wanted = set(story_ids) if story_ids is not None else None
        for r in rows:
            if wanted is None or r["story_id"] in wanted:
                members.setdefault(r["story_id"], []).append(r["article_id"])
        return members

    def update_story_labels(self, labels: dict[str, tuple[str, Sequence[str]]], topics: dict[str, str]) -> None:
        for story_id, (label, keywords) in labels.items():
            self._write("UPDATE stories SET label = ?, keywords = ?, topic_id = ? WHERE id = ?",
                        (label, json.dumps(list(keywords), ensure_ascii=False), topics.get(story_id), story_id))

    def stored_labels(self, story_ids: Sequence[str]) -> dict[str, tuple[str, bool]]:
        """Each of these stories' stored headline, and whether its label is whole (a headline and
        keywords that read as a JSON list): a run relabels a story whose label is not."""
        labels: dict[str, tuple[str, bool]] = {}
        for start in range(0, len(story_ids), 500):
            chunk = list(story_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._query(f"SELECT id, label, keywords FROM stories WHERE id IN ({marks})", chunk):
                labels[row["id"]] = (row["label"] or "", bool(row["label"]) and _keyword_list(row["keywords"]))
        return labels

    def record_lineage(self, merged_into: dict[str, str], split_from: dict[str, str]) -> None:
        """Remember which story each merged one went into and which one a split came from."""
        self._write_many("UPDATE stories SET merged_into = ? WHERE id = ?", ((t, s) for s, t in merged_into.items()))
        self._write_many("UPDATE stories SET split_from = ? WHERE id = ?", ((f, s) for s, f in split_from.items()))

    def story_successor(self, story_id: str) -> str | None:
        """The story a merged story's articles are in now (following later merges too)."""
        seen = {story_id}
        successor = None
        while True:
            rows = self._query("SELECT merged_into FROM stories WHERE id = ?", (story_id,))
            if not rows or rows[0][0] is None or rows[0][0] in seen:
                return successor
            story_id = successor = rows[0][0]
            seen.add(story_id)

    def set_topics(self, topics: dict[str, str]) -> None:
        self._write_many("UPDATE stories SET topic_id = ? WHERE id = ?", ((t, s) for s, t in topics.items()))

    def stories(self, *, since: datetime | None = None, limit: int | None = None,
                story_ids: Sequence[str] | None = None) -> list[Story]:
        sql = ("SELECT s.id, s.label, s.keywords, s.topic_id, s.split_from, count(m.article_id) AS size,"
               " (SELECT t.name FROM topics t WHERE t.id = s.topic_id) AS topic_name,"
               f" {self._concat_members} AS members,"
               " count(DISTINCT a.source) AS src, min(a.published) AS first, max(a.published) AS last,"
               " (SELECT count(*) FROM duplicates d JOIN story_members mm ON mm.article_id = d.canonical_id"
               "   WHERE mm.story_id = s.id) AS dups,"
               " (SELECT count(DISTINCT da.source) FROM duplicates d JOIN story_members mm ON"
               "   mm.article_id = d.canonical_id JOIN articles da ON da.id = d.article_id"
               "   WHERE mm.story_id = s.id AND da.source NOT IN (SELECT a2.source FROM story_members m2"
               "   JOIN articles a2 ON a2.id = m2.article_id WHERE m2.story_id = s.id)) AS dup_sources"
               " FROM stories s JOIN story_members m ON m.story_id = s.id JOIN articles a ON a.id = m.article_id")
        params: list[Any] = []
        if story_ids is not None:
            sql += f" WHERE s.id IN ({','.join('?' * len(story_ids))})"
            params.extend(story_ids)
        sql += " GROUP BY s.id" + _active_since(since, "size DESC, s.id", limit, params)
        result = []
        for r in self._query(sql, params):
            ids = _time_ordered(r["members"])
            first, last = read_time(r["first"]), read_time(r["last"])
            if first is None or last is None:
                log.warning("story %s: a member's stored publication time is not readable (the next run "
                            "repairs it)", r["id"])
            result.append(Story(id=r["id"], label=r["label"], keywords=_stored_keywords(r["keywords"], r["id"]),
                                size=r["size"], sources=r["src"] + (r["dup_sources"] or 0),
                                first_seen=first or last or UNREADABLE_TIME, last_seen=last or first or UNREADABLE_TIME,
                                topic_id=r["topic_id"], article_ids=ids, duplicates=r["dups"] or 0,
                                canonical_sources=r["src"], split_from=r["split_from"],
                                topic_name=r["topic_name"] or None))
        return result

    def article_assignments(self) -> dict[int, tuple[str | None, int | None, str | None]]:
        """article id -> (story id, canonical id, link kind): a duplicate reports its canonical's story."""
        rows = self._query("SELECT a.id, d.canonical_id, d.kind, COALESCE(m.story_id, mc.story_id) AS story_id"
                           " FROM articles a LEFT JOIN duplicates d ON d.article_id = a.id"
                           " LEFT JOIN story_members m ON m.article_id = a.id"
                           " LEFT JOIN story_members mc ON mc.article_id = d.canonical_id")
        return {r["id"]: (r["story_id"], r["canonical_id"], r["kind"]) for r in rows}

    def story_topics(self) -> dict[str, str | None]:
        return {r["id"]: r["topic_id"] for r in self._query("SELECT id, topic_id FROM stories")}

    def story_headlines(self) -> dict[str, str]:
        """Every story with members -> its headline (evaluation: how often headlines change)."""
        rows = self._query("SELECT s.id, s.label FROM stories s WHERE EXISTS"
                           " (SELECT 1 FROM story_members m WHERE m.story_id = s.id)")
        return {r["id"]: r["label"] or "" for r in rows}

    def story_count(self) -> int:
        """Stories with at least one member (a running count kept by triggers: see ``_TALLY_TRIGGERS``)."""
        return int(self._query("SELECT value FROM tallies WHERE name = 'stories_with_members'")[0][0])


def _active_since(since: datetime | None, order: str, limit: int | None, params: list[Any]) -> str:
    """The end of a grouped query over members ``a``: groups with an article published since
    ``since``, the most recently active (``last``) first, then ``order``; at most ``limit``."""
    sql = ""
    if since is not None:
        sql += " HAVING max(a.published) >= ?"
        params.append(to_text(since))
    sql += f" ORDER BY last DESC, {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(min(int(limit), SQLITE_MAX_INTEGER))
    return sql


def _time_ordered(members: str | None) -> tuple[int, ...]:
    """Article ids from ``group_concat(id || ' ' || published)``, oldest first (ties by id)."""
    if not members:
        return ()
    pairs = [item.split(" ", 1) for item in members.split(",")]
    return tuple(int(i) for i, _ in sorted(pairs, key=lambda p: (p[1] if len(p) > 1 else "", int(p[0]))))


def _keyword_list(value: object) -> bool:
    """Whether a stored keywords value reads as a JSON list."""
    try:
        return isinstance(json.loads(value), list) if isinstance(value, str) else False
    except ValueError:
        return False


def _stored_keywords(value: object, story_id: str) -> tuple[str, ...]:
    """A story's stored keyword list; unreadable JSON reads as none (the next run relabels)."""
    try:
        keywords = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        keywords = None
    if not isinstance(keywords, list):
        log.warning("story %s: stored keywords %s are not a JSON list", story_id, quote_value(value))
        return ()
    return tuple(str(k) for k in keywords)


# --- the run lock ---------------------------------------------------------------------------
_LOCK_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
"""The lock file is opened without following a symbolic link (one planted beside the database
would otherwise have its target truncated to our pid) and without blocking (a FIFO)."""


@contextlib.contextmanager
def run_lock(database: str | Path, *, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` for one run.

    Overlapping cron runs: the second waits up to ``wait_seconds`` and then raises
    LockedError (with the holder's pid and start time, which the holder writes into the
    file); the OS releases the lock if the holder dies, so a crash never leaves a stale
    lock behind.  The lock sits beside the database's resolved path, so two names of one
    file (a symbolic link, ``./`` or ``..`` in the path) share one lock.  The lock file
    itself must be a plain file: a symbolic link, a FIFO or a hard link there is refused
    (StorageError), and so is a disk too full to record the holder.
    """
    import fcntl
    import stat
    import time

    if not isinstance(wait_seconds, (int, float)) or not math.isfinite(wait_seconds) or wait_seconds < 0:
        raise ConfigError(f"lock wait must be a finite number of seconds, 0 or more, got {wait_seconds!r}")
    if str(database) == ":memory:":
        yield
        return
    lock_path = Path(f"{os.path.realpath(database)}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock_path, _LOCK_OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"the run lock {lock_path} is a symbolic link; a lock file never is one: "
                               "remove it") from exc
        raise StorageError(f"cannot open the run lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            raise StorageError(f"the run lock {lock_path} is not a plain file of its own (a FIFO, a device or "
                               "a hard link): remove it")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid, since = _lock_holder(descriptor)
                    holder = f" (pid {pid}, since {to_text(since)})" if pid is not None and since is not None else ""
                    raise LockedError(f"another clustering run holds {lock_path}{holder}",
                                      holder_pid=pid, held_since=since) from None
                time.sleep(0.2)
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()} {to_text(datetime.now(timezone.utc))}\n".encode(), 0)
        except OSError as exc:
            raise StorageError(f"cannot write the run lock {lock_path}: {exc.strerror or exc}") from exc
        yield
    finally:
        os.close(descriptor)


def _lock_holder(descriptor: int) -> tuple[int | None, datetime | None]:
    """The pid and start time the lock's holder wrote; the file's modification time (when it was
    written) stands in for a time that cannot be read."""
    try:
        words = os.pread(descriptor, 100, 0).decode("ascii", "replace").split()
        modified = datetime.fromtimestamp(os.fstat(descriptor).st_mtime, timezone.utc).replace(microsecond=0)
    except OSError:
        return None, None
    pid = int(words[0]) if words and words[0].isdigit() and len(words[0]) < 10 else None
    since = read_time(words[1]) if len(words) > 1 else None
    return pid, since or modified
