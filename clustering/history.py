"""Story history: what each run changed, recorded by comparing memberships and headlines
before and after the story stage, and read back per story or per run.

core.py gives :func:`run_events` the window's memberships before the run and after it, the
headlines before and after relabelling, the stories founded, split off and merged; it
returns the rows that ``store_run`` writes (tables ``runs`` and ``story_events``, schema 6).
The story algorithm itself (stories.py) knows nothing of this.

History stays bounded: the article events (``joined``, ``left``) of runs that finished
before the window are deleted (``compact``): the window is what a run can still change,
and an older article's story is in ``story_members``.  The story events (created,
relabelled, split, merged) are kept: a few rows per story.  Each run compacts what left
the window since the run before, so in steady state its cost follows the articles a run
processes, not the history (tests/test_store_plans.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .types import RunRecord, StoryEvent

if TYPE_CHECKING:
    from .store import Store

ARTICLE_EVENTS = ("joined", "left")
"""Event kinds about one article: the ones ``compact`` deletes once their run left the window."""


@dataclass(frozen=True)
class EventRow:
    """A story event before it is stored (no run yet)."""

    story_id: str
    kind: str
    article_id: int | None = None
    other_story_id: str | None = None
    label_before: str | None = None
    label_after: str | None = None


def run_events(before: Mapping[int, str | None], after: Mapping[int, str | None], *,
               labels_before: Mapping[str, str], labels_after: Mapping[str, str],
               created: Iterable[str], split_from: Mapping[str, str],
               merged_into: Mapping[str, str]) -> list[EventRow]:
    """The events of one run, in a stable order: stories created, split and merged, then each
    article that joined or left a story (by article id), then headlines that changed.

    ``before`` / ``after``: article id -> its story before / after the run (None: in none);
    ``labels_before``: the stored headlines before the run; ``labels_after``: the headlines
    the run wrote.  A story created this run has no ``relabelled`` event."""
    created = sorted(set(created), key=story_order)
    rows = [EventRow(story_id, "created", label_after=labels_after.get(story_id, "")) for story_id in created]
    rows += [EventRow(story, "split", other_story_id=source) for story, source in sorted(split_from.items())]
    rows += [EventRow(story, "merged", other_story_id=target) for story, target in sorted(merged_into.items())]
    for article_id in sorted(set(before) | set(after)):
        old, new = before.get(article_id), after.get(article_id)
        if old == new:
            continue
        if old is not None:
            rows.append(EventRow(old, "left", article_id=article_id, other_story_id=new))
        if new is not None:
            rows.append(EventRow(new, "joined", article_id=article_id, other_story_id=old))
    new_stories = set(created)
    for story_id, label in sorted(labels_after.items()):
        previous = labels_before.get(story_id)
        if story_id not in new_stories and previous and label and previous != label:
            rows.append(EventRow(story_id, "relabelled", label_before=previous, label_after=label))
    return rows


def story_order(story_id: str) -> tuple[int, str]:
    """Sort key of story ids: by the founding article's id (``s12`` before ``s100``)."""
    digits = story_id[1:].split("-")[0]
    return (int(digits) if digits.isdigit() else 0, story_id)


def grown(events: Sequence[StoryEvent]) -> Counter[str]:
    """Articles each story gained, net of those it lost, in these events."""
    counts: Counter[str] = Counter()
    for event in events:
        if event.kind == "joined":
            counts[event.story_id] += 1
        elif event.kind == "left":
            counts[event.story_id] -= 1
    return counts


# --- storage ---------------------------------------------------------------------------------
def store_run(store: Store, *, finished: datetime, processed: int, unassigned: int, pending: int,
              events: Sequence[EventRow]) -> int:
    """Write one run and its events (inside the caller's transaction); returns the run id."""
    from .schema import to_text

    # RETURNING, not lastrowid: a PostgreSQL cursor has none
    row = store._write("INSERT INTO runs (finished, processed, unassigned, pending) VALUES (?, ?, ?, ?) RETURNING id",
                       (to_text(finished), processed, unassigned, pending)).fetchone()
    run_id = int(row[0])
    store._write_many("INSERT INTO story_events (run_id, story_id, kind, article_id, other_story_id, label_before,"
                      " label_after) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      ((run_id, e.story_id, e.kind, e.article_id, e.other_story_id, e.label_before, e.label_after)
                       for e in events))
    return run_id


def compact(store: Store, before: datetime) -> int:
    """Delete the article events of runs finished before ``before`` (the window start) and mark
    those runs compacted; drop such runs left with no event (but the last).  Reads only the runs
    not compacted yet (index ``runs_to_compact``).  Returns the events deleted."""
    from .schema import to_text

    old = [r["id"] for r in store._query("SELECT id FROM runs WHERE compacted = 0 AND finished < ?",
                                         (to_text(before),))]
    deleted = 0
    for start in range(0, len(old), 500):
        chunk = old[start:start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = store._write(f"DELETE FROM story_events WHERE run_id IN ({marks})"
                              f" AND kind IN ({','.join('?' * len(ARTICLE_EVENTS))})", (*chunk, *ARTICLE_EVENTS))
        deleted += int(cursor.rowcount)
        store._write(f"UPDATE runs SET compacted = 1 WHERE id IN ({marks})", chunk)
        store._write(f"DELETE FROM runs WHERE id IN ({marks}) AND id < (SELECT max(id) FROM runs)"
                     " AND NOT EXISTS (SELECT 1 FROM story_events e WHERE e.run_id = runs.id)", chunk)
    return deleted


def last_run(store: Store) -> RunRecord | None:
    found = runs(store, limit_last=1)
    return found[0] if found else None


def runs(store: Store, *, after_id: int | None = None, since: datetime | None = None,
         limit_last: int | None = None) -> list[RunRecord]:
    """Runs, oldest first: those after run ``after_id``, or finished at or after ``since``, or
    the last ``limit_last``."""
    from .schema import to_text

    sql, params = "SELECT * FROM runs", []  # type: tuple[str, list[Any]]
    if after_id is not None:
        sql += " WHERE id > ?"
        params.append(int(after_id))
    elif since is not None:
        sql += " WHERE finished >= ?"
        params.append(to_text(since))
    elif limit_last is not None:  # through the key from the last id down: never a scan of the table
        sql += " WHERE id <= (SELECT max(id) FROM runs)"
    sql += " ORDER BY id DESC"
    if limit_last is not None:
        sql += " LIMIT ?"
        params.append(int(limit_last))
    return [_run(r) for r in reversed(store._query(sql, params))]


def events(store: Store, *, run_ids: Sequence[int] | None = None, story_id: str | None = None) -> list[StoryEvent]:
    """Events of these runs, or of one story (those naming it as the other story too: the
    articles that came from it, the stories that split off it or merged into it); run order."""
    sql = ("SELECT e.*, r.finished, a.title FROM story_events e JOIN runs r ON r.id = e.run_id"
           " LEFT JOIN articles a ON a.id = e.article_id")
    params: list[Any] = []
    if story_id is not None:
        sql += " WHERE (e.story_id = ? OR (e.other_story_id = ? AND e.kind NOT IN ('left', 'joined')))"
        params += [story_id, story_id]
    elif run_ids is not None:
        if not run_ids:
            return []
        sql += f" WHERE e.run_id IN ({','.join('?' * len(run_ids))})"
        params += [int(i) for i in run_ids]
    sql += " ORDER BY e.run_id, e.id"
    return [_event(r) for r in store._query(sql, params)]


def _run(row: Any) -> RunRecord:
    from .schema import UNREADABLE_TIME, read_time

    return RunRecord(id=row["id"], finished=read_time(row["finished"]) or UNREADABLE_TIME,
                     processed=row["processed"], unassigned=row["unassigned"], pending=row["pending"])


def _event(row: Any) -> StoryEvent:
    from .schema import UNREADABLE_TIME, read_time

    return StoryEvent(run_id=row["run_id"], run_finished=read_time(row["finished"]) or UNREADABLE_TIME,
                      story_id=row["story_id"], kind=row["kind"], article_id=row["article_id"],
                      other_story_id=row["other_story_id"], label_before=row["label_before"],
                      label_after=row["label_after"], title=row["title"])
