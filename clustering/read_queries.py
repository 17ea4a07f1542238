"""The Store's reading queries: feed statuses, articles with their story and copies, and stories.

``ReadQueries`` is a mixin of ``store.Store`` (and so of ``store_pg.PostgresStore``): what the
reading commands, the report and the evaluation ask of a database, and what a run reads back about
stories (stored labels, lineage, the story count).  Every query goes through the Store's ``_query``,
so every driver error still becomes a StorageError at the store's one boundary; the one expression
the dialects spell differently here, ``_concat_members``, PostgresStore overrides.  The writes (and
the reads of a run's window) stay in store.py; the listings' own SQL is in listing_queries.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError, quote_value
from .schema import UNREADABLE_TIME, read_time, to_text
from .types import Article, DuplicateLink, FeedStatus, Story

SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest integer SQLite binds (a larger --limit means no limit)."""

log = logging.getLogger("clustering.store")
"""The store's logger, as before these queries left store.py: warnings read ``clustering.store: …``."""


class ReadQueries:
    """The reading queries of a Store (a mixin: ``Store`` supplies ``_query`` and its error boundary)."""

    _concat_members = "group_concat(m.article_id || ' ' || a.published)"
    """Story members as ``id published`` pairs, comma-separated (``_time_ordered`` reads them)."""

    if TYPE_CHECKING:
        def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]: ...

    # --- feeds ------------------------------------------------------------------------
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
    def story_member_ids(self, story_ids: Sequence[str] | None = None) -> dict[str, list[int]]:
        rows = self._query("SELECT m.story_id, m.article_id FROM story_members m JOIN articles a ON a.id ="
                           " m.article_id ORDER BY a.published, a.id")
        members: dict[str, list[int]] = {}
        wanted = set(story_ids) if story_ids is not None else None
        for r in rows:
            if wanted is None or r["story_id"] in wanted:
                members.setdefault(r["story_id"], []).append(r["article_id"])
        return members

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
        """Stories with at least one member (a running count kept by triggers: see ``schema._TALLY_TRIGGERS``)."""
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
