"""SQLite storage: the one place that talks SQL.

Creates and migrates the schema of schema.py on ``PRAGMA user_version``; WAL journal so readers
(``clustering stories``) never block a run; one transaction per stage of a run; every
``sqlite3.Error`` becomes a StorageError here and nowhere else.  Everything derived
(FAISS index, similarity matrices) is rebuilt from these tables, so losing it loses
nothing.  ``":memory:"`` works for tests and API users who want no file.  ``Store`` holds the
connection and a run's writes and reads; the reading side's queries are its mixin
``read_queries.ReadQueries``, and the run lock is locking.py's; ``run_lock``, ``SQLITE_MAX_INTEGER``
and schema.py's names are re-exported here for code that imports them from this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import ConfigError, StorageError, quote_value
from .locking import run_lock as run_lock
from .read_queries import SQLITE_MAX_INTEGER as SQLITE_MAX_INTEGER
from .read_queries import ReadQueries
from .schema import _VERSION_5, _VERSION_6
from .schema import MIGRATIONS as MIGRATIONS
from .schema import SCHEMA as SCHEMA
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .schema import TIME_FORMAT as TIME_FORMAT
from .schema import UNREADABLE_TIME as UNREADABLE_TIME
from .schema import content_hash as content_hash
from .schema import from_text as from_text
from .schema import newer_schema_error as newer_schema_error
from .schema import read_time as read_time
from .schema import schema_statements as schema_statements
from .schema import to_text as to_text

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
"""How long a statement waits for another connection's write lock before failing."""

_UNREADABLE_TIME_SQL = "strftime('%Y-%m-%dT%H:%M:%SZ', {column}, '+0 seconds') IS NOT {column}"
"""True for a value that is not a valid time in TIME_FORMAT (SQLite normalizes 02-31 to 03-02)."""

_AFTER_EVERY_DATE = "9999-12-31T23:59:59Z"
"""A ``published`` text later than any stored one (``to_text`` sorts as time)."""


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


class Store(ReadQueries):
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
                         ((int(i), model, np.asarray(v, dtype=np.float32).tobytes())
                          for i, v in zip(ids, vectors, strict=True)))

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
        self._write("INSERT INTO cache_keys (name, key) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET key = excluded.key",
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

    def update_story_labels(self, labels: Mapping[str, tuple[str, Sequence[str]]], topics: dict[str, str]) -> None:
        for story_id, (label, keywords) in labels.items():
            self._write("UPDATE stories SET label = ?, keywords = ?, topic_id = ? WHERE id = ?",
                        (label, json.dumps(list(keywords), ensure_ascii=False), topics.get(story_id), story_id))

    def record_lineage(self, merged_into: dict[str, str], split_from: dict[str, str]) -> None:
        """Remember which story each merged one went into and which one a split came from."""
        self._write_many("UPDATE stories SET merged_into = ? WHERE id = ?", ((t, s) for s, t in merged_into.items()))
        self._write_many("UPDATE stories SET split_from = ? WHERE id = ?", ((f, s) for s, f in split_from.items()))

    def set_topics(self, topics: dict[str, str]) -> None:
        self._write_many("UPDATE stories SET topic_id = ? WHERE id = ?", ((t, s) for s, t in topics.items()))
