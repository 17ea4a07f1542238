"""The SQL of the listings and of topic names (schema 6): topics with their names, articles by
story, feed, words and time, and the rows of the ``duplicate_list`` view.  Reading only, but for
``save_topics``, which core.py calls in the story stage's transaction.

Apart from store.py to keep that module to the run's own storage; the SQL is plain, through the
Store's error boundary (every ``sqlite3.Error`` still becomes a StorageError there).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .history import story_order
from .read_queries import SQLITE_MAX_INTEGER, _active_since, _stored_keywords
from .schema import UNREADABLE_TIME, read_time, to_text
from .types import Article, Topic

if TYPE_CHECKING:
    from .store import Store


def topic_names(store: Store, topic_ids: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for start in range(0, len(topic_ids), 500):
        chunk = list(topic_ids[start:start + 500])
        rows = store._query(f"SELECT id, name FROM topics WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        names.update({r["id"]: r["name"] for r in rows})
    return names


def save_topics(store: Store, names: Mapping[str, tuple[str, Sequence[str]]], now: datetime) -> None:
    store._write_many("INSERT INTO topics (id, name, keywords, updated) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO"
                      " UPDATE SET name = excluded.name, keywords = excluded.keywords, updated = excluded.updated",
                      ((t, name, json.dumps(list(keywords), ensure_ascii=False), to_text(now))
                       for t, (name, keywords) in names.items()))


def topics(store: Store, *, since: datetime | None = None, limit: int | None = None) -> list[Topic]:
    """Topics with stories that have members, most recently active first."""
    # max(t.name): one topic row per group, aggregated so PostgreSQL accepts it outside GROUP BY
    sql = ("SELECT s.topic_id, max(t.name) AS name, max(t.keywords) AS keywords, count(DISTINCT s.id) AS stories,"
           " count(m.article_id) AS size, min(a.published) AS first, max(a.published) AS last,"
           f" {store._concat_distinct.format(column='s.id')} AS story_ids FROM stories s"
           " JOIN story_members m ON m.story_id = s.id JOIN articles a ON a.id = m.article_id"
           " LEFT JOIN topics t ON t.id = s.topic_id WHERE s.topic_id IS NOT NULL GROUP BY s.topic_id")
    params: list[Any] = []
    sql += _active_since(since, "stories DESC, s.topic_id", limit, params)
    result = []
    for r in store._query(sql, params):
        first, last = read_time(r["first"]), read_time(r["last"])
        result.append(Topic(id=r["topic_id"], name=r["name"] or "",
                            keywords=_stored_keywords(r["keywords"] or "[]", r["topic_id"]),
                            stories=r["stories"], articles=r["size"],
                            first_seen=first or last or UNREADABLE_TIME, last_seen=last or first or UNREADABLE_TIME,
                            story_ids=tuple(sorted(r["story_ids"].split(","), key=story_order))))
    return result


def list_articles(store: Store, *, story_id: str | None = None, unassigned: bool = False,
                  sources: Sequence[str] | None = None, words: Sequence[str] = (),
                  since: datetime | None = None, until: datetime | None = None,
                  limit: int | None = None) -> list[Article]:
    """Articles in time order (oldest first), filtered: of one story (its members and their
    copies), in no story and no copy (``unassigned``), from these sources, whose title or
    text holds every one of ``words`` (case-insensitive), published in [since, until)."""
    sql = store._ARTICLE_SELECT
    where: list[str] = []
    params: list[Any] = []
    if story_id is not None:
        where.append("COALESCE(m.story_id, mc.story_id) = ?")
        params.append(story_id)
    if unassigned:
        where.append("m.story_id IS NULL AND d.canonical_id IS NULL")
    if sources is not None:
        where.append(f"a.source IN ({','.join('?' * len(sources))})" if sources else "1 = 0")
        params.extend(sources)
    for word in words:
        where.append(f"({store._contains.format(column='lower(a.title)')}"
                     f" OR {store._contains.format(column='lower(a.summary)')})")
        params += [word.lower(), word.lower()]
    if since is not None:
        where.append("a.published >= ?")
        params.append(to_text(since))
    if until is not None:
        where.append("a.published < ?")
        params.append(to_text(until))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY a.published, a.id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(min(int(limit), SQLITE_MAX_INTEGER))
    return [store._row_to_article(r) for r in store._query(sql, params)]


def duplicate_rows(store: Store, *, story_id: str | None = None, since: datetime | None = None,
                   sources: Sequence[str] | None = None) -> list[sqlite3.Row]:
    """Rows of the ``duplicate_list`` view (the shape of ``clustering duplicates``), copies in
    time order."""
    sql = "SELECT * FROM duplicate_list"
    where: list[str] = []
    params: list[Any] = []
    if story_id is not None:
        where.append("story_id = ?")
        params.append(story_id)
    if since is not None:
        where.append("published >= ?")
        params.append(to_text(since))
    if sources is not None:
        where.append(f"source IN ({','.join('?' * len(sources))})" if sources else "1 = 0")
        params.extend(sources)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return store._query(sql + " ORDER BY published, article_id", params)
