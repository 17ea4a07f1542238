"""Listings: the rows of every listing command and their four formats.

``--format table|json|jsonl|csv``: ``table`` for a person (fitted to the terminal's width, or
to ``COLUMNS``; under cron and in a pipe, where stdout is no terminal, nothing is cut), ``json`` one array,
``jsonl`` one object a line, ``csv`` a header and one row a line (lists joined with
``LIST_SEPARATOR``, None as an empty field).  The rows of ``stories``, ``articles`` and
``duplicates`` in CSV have the columns of the SQL views ``story_list``, ``article_list`` and
``duplicate_list`` (docs/schema.md), so a notebook reading the database sees the same shapes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from .report import iso
from .types import Article, FeedStatus, Story, StoryEvent, Topic

FORMATS = ("table", "json", "jsonl", "csv")

DEFAULT_WIDTH = 110
"""Width of a table made without a width (the API's default)."""

UNCUT_WIDTH = 100_000
"""Width of a table when stdout is not a terminal and ``COLUMNS`` is not set (cron, a pipe, a
log file): plain lines, nothing cut."""

MIN_FLEXIBLE_WIDTH = 20
"""Narrowest the table's wide column (headline, title) is cut to, however narrow the terminal."""

LIST_SEPARATOR = ";"
"""Joins a list in a CSV field (keywords, story ids): no keyword or id holds one."""


# --- rows ------------------------------------------------------------------------------------
def story_row(story: Story) -> dict[str, Any]:
    """A story as the ``story_list`` view has it (``--format csv``)."""
    return {"id": story.id, "label": story.label, "keywords": list(story.keywords), "size": story.size,
            "canonical_sources": story.canonical_sources, "sources": story.sources,
            "duplicates": story.duplicates, "first_seen": iso(story.first_seen), "last_seen": iso(story.last_seen),
            "topic_id": story.topic_id, "topic_name": story.topic_name, "split_from": story.split_from}


def article_row(article: Article) -> dict[str, Any]:
    """An article as the ``article_list`` view has it (every format of ``clustering articles``)."""
    return {"id": article.id, "source": article.source, "title": article.title, "url": article.url,
            "published": iso(article.published), "first_seen": iso(article.first_seen),
            "duplicate_of": article.duplicate_of, "story_id": article.story_id}


def topic_row(topic: Topic) -> dict[str, Any]:
    return {"id": topic.id, "name": topic.name, "keywords": list(topic.keywords), "stories": topic.stories,
            "articles": topic.articles, "first_seen": iso(topic.first_seen), "last_seen": iso(topic.last_seen),
            "story_ids": list(topic.story_ids)}


def event_row(event: StoryEvent) -> dict[str, Any]:
    return {"run_id": event.run_id, "run_finished": iso(event.run_finished), "story_id": event.story_id,
            "kind": event.kind, "article_id": event.article_id, "other_story_id": event.other_story_id,
            "label_before": event.label_before, "label_after": event.label_after, "title": event.title}


def feed_row(status: FeedStatus, tags: Sequence[str] = ()) -> dict[str, Any]:
    return {"name": status.name, "url": status.url, "last_attempt": iso(status.last_attempt),
            "last_success": iso(status.last_success), "last_error": status.last_error,
            "last_error_at": iso(status.last_error_at), "consecutive_errors": status.consecutive_errors,
            "next_attempt": iso(status.next_attempt), "articles": status.articles, "tags": list(tags)}


# --- formats ---------------------------------------------------------------------------------
def render(rows: Sequence[Mapping[str, Any]], fmt: str, table: Callable[[], str],
           columns: Sequence[str] | None = None) -> str:
    """``rows`` in ``fmt``; ``table`` makes the table (only called for ``table``); ``columns``
    names the CSV header when there may be no rows."""
    if fmt == "json":
        return json.dumps(list(rows), ensure_ascii=False, indent=2)
    if fmt == "jsonl":
        return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    if fmt == "csv":
        return csv_text(rows, columns)
    return table()


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    header = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_field(row.get(column)) for column in header])
    return buffer.getvalue().rstrip("\n")


def _csv_field(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(str(v) for v in value)
    return value


def terminal_width(stream: TextIO | None = None) -> int:
    """The terminal's columns when ``stream`` (stdout) is one; else ``COLUMNS``, else UNCUT_WIDTH."""
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    except (AttributeError, ValueError, OSError):
        pass
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else UNCUT_WIDTH


@dataclass(frozen=True)
class Column:
    header: str
    align: str = "<"        # "<" or ">"
    flexible: bool = False  # takes the width left (at least MIN_FLEXIBLE_WIDTH), cut with "…"


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def fitted_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> str:
    """A plain-text table at most ``width`` characters wide where it can be: every column as wide
    as its widest cell, the flexible one cut to what is left."""
    widths = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    fixed = sum(w for w, c in zip(widths, columns, strict=True) if not c.flexible) + len(columns) - 1
    for i, column in enumerate(columns):
        if column.flexible:
            widths[i] = min(widths[i], max(width - fixed, MIN_FLEXIBLE_WIDTH))
    lines = []
    for cells in [[c.header for c in columns], *rows]:
        parts = []
        for i, (column, cell) in enumerate(zip(columns, cells, strict=False)):
            text = cut(cell, widths[i])
            last = i == len(columns) - 1
            parts.append(text if last and column.align == "<" else f"{text:{column.align}{widths[i]}}")
        lines.append(" ".join(parts).rstrip())
    return "\n".join(lines)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


def stories_table(stories: Sequence[Story], width: int = DEFAULT_WIDTH) -> str:
    if not stories:
        return "no stories yet"
    columns = [Column("ID"), Column("ARTICLES", ">"), Column("SOURCES", ">"), Column("DUPLICATES", ">"),
               Column("LAST SEEN"), Column("TOPIC"), Column("LABEL", flexible=True)]
    rows = [[s.id, str(s.size), str(s.canonical_sources), str(s.duplicates), _when(s.last_seen),
             cut(s.topic_name or s.topic_id or "-", 30) if s.topic_name else (s.topic_id or "-"),
             s.label + (f"  [{', '.join(s.keywords)}]" if s.keywords else "")] for s in stories]
    return fitted_table(columns, rows, width)


def articles_table(articles: Sequence[Article], width: int = DEFAULT_WIDTH) -> str:
    if not articles:
        return "no articles"
    columns = [Column("ID", ">"), Column("PUBLISHED"), Column("SOURCE"), Column("STORY"), Column("COPY OF", ">"),
               Column("TITLE", flexible=True)]
    rows = [[str(a.id), _when(a.published), cut(a.source, 22), a.story_id or "-",
             str(a.duplicate_of) if a.duplicate_of else "", a.title] for a in articles]
    return fitted_table(columns, rows, width)


def duplicates_table(rows: Sequence[Mapping[str, Any]], width: int = DEFAULT_WIDTH) -> str:
    if not rows:
        return "no duplicates"
    columns = [Column("COPY", ">"), Column("OF", ">"), Column("KIND"), Column("SCORE", ">"), Column("SOURCE"),
               Column("ORIGINAL SOURCE"), Column("STORY"), Column("TITLE", flexible=True)]
    cells = [[str(r["article_id"]), str(r["canonical_id"]), r["kind"], f"{r['score']:.3f}", cut(r["source"], 22),
              cut(r["canonical_source"], 22), r["story_id"] or "-", r["title"]] for r in rows]
    return fitted_table(columns, cells, width)


def topics_table(topics: Sequence[Topic], width: int = DEFAULT_WIDTH) -> str:
    if not topics:
        return "no topics yet"
    columns = [Column("TOPIC"), Column("STORIES", ">"), Column("ARTICLES", ">"), Column("LAST SEEN"),
               Column("NAME", flexible=True)]
    rows = [[t.id, str(t.stories), str(t.articles), _when(t.last_seen),
             t.name + (f"  [{', '.join(t.keywords)}]" if t.keywords else "")] for t in topics]
    return fitted_table(columns, rows, width)


def feeds_table(statuses: Sequence[FeedStatus], tags: Mapping[str, Sequence[str]] | None = None,
                width: int = DEFAULT_WIDTH) -> str:
    if not statuses:
        return "no feeds recorded yet (run `clustering run` first)"
    columns = [Column("FEED"), Column("TAGS"), Column("ARTICLES", ">"), Column("ERRORS", ">"),
               Column("LAST SUCCESS"), Column("NEXT"), Column("LAST ERROR", flexible=True)]
    rows = []
    for s in statuses:
        error = ""
        if s.last_error and s.consecutive_errors:
            error = f"{s.last_error} (since {s.last_error_at:%Y-%m-%d %H:%M})" if s.last_error_at else s.last_error
        rows.append([cut(s.name, 28), cut(",".join((tags or {}).get(s.name, ())) or "-", 20), str(s.articles),
                     str(s.consecutive_errors), _when(s.last_success) if s.last_success else "never",
                     _when(s.next_attempt) if s.next_attempt else "now", error])
    return fitted_table(columns, rows, width)


# --- history ---------------------------------------------------------------------------------
def _event_line(event: StoryEvent, story_id: str, width: int) -> str:
    """One event in a story's history, told from ``story_id``'s side."""
    title = f"  {event.title}" if event.title else ""
    if event.kind == "created":
        text = f"created      {event.label_after or ''}"
    elif event.kind == "joined":
        text = f"joined       #{event.article_id}" + (f" (from {event.other_story_id})" if event.other_story_id
                                                       else "") + title
    elif event.kind == "left":
        where = f" -> {event.other_story_id}" if event.other_story_id else " (now a copy or in no story)"
        text = f"left         #{event.article_id}{where}{title}"
    elif event.kind == "relabelled":
        text = f"relabelled   {event.label_before!r} -> {event.label_after!r}"
    elif event.kind == "split":
        text = (f"split        off {event.other_story_id}" if event.story_id == story_id
                else f"split        {event.story_id} split off this story")
    elif event.kind == "merged":
        text = (f"merged       into {event.other_story_id}" if event.story_id == story_id
                else f"merged       {event.story_id} merged into this story")
    else:
        text = event.kind
    return cut("    " + text, width)


def history_text(story_id: str, events: Sequence[StoryEvent], width: int = DEFAULT_WIDTH) -> str:
    if not events:
        return (f"story {story_id}: no recorded history (it was last changed before history was kept, or its "
                "article events left the window)")
    lines = [f"story {story_id}: history of {len({e.run_id for e in events})} runs"]
    run_id = None
    for event in events:
        if event.run_id != run_id:
            run_id = event.run_id
            lines.append(f"  run {event.run_id} · {event.run_finished:%Y-%m-%d %H:%M} UTC")
        lines.append(_event_line(event, story_id, width))
    return "\n".join(lines)


def changes_text(runs: Sequence[Any], events: Sequence[StoryEvent], stories: Mapping[str, Story],
                 width: int = DEFAULT_WIDTH) -> str:
    """What each run changed: new stories, grown stories, moved articles, new headlines,
    splits and merges (``stories``: the stories now, for their sizes and headlines)."""
    from .history import grown

    if not runs:
        return "no runs recorded yet (a `clustering run` that processes articles records one)"
    lines: list[str] = []
    for run in runs:
        mine = [e for e in events if e.run_id == run.id]
        lines.append(f"run {run.id} · {run.finished:%Y-%m-%d %H:%M} UTC · {run.processed} articles processed · "
                     f"{run.unassigned} unassigned in the window")
        created = [e.story_id for e in mine if e.kind == "created"]
        growth = grown([e for e in mine if e.story_id not in set(created)])
        moved = [e for e in mine if e.kind == "left" and e.other_story_id is not None]
        relabelled = [e for e in mine if e.kind == "relabelled"]
        lineage = [e for e in mine if e.kind in ("split", "merged")]

        def headline(story_id: str) -> str:
            story = stories.get(story_id)
            return f"{story.size:>4} articles  {story.label}" if story else "   (no members now)"

        if created:
            lines.append(f"  new stories ({len(created)}):")
            lines += [cut(f"    {s:<12} {headline(s)}", width) for s in created]
        grew = [(s, n) for s, n in sorted(growth.items(), key=lambda item: (-item[1], item[0])) if n > 0]
        if grew:
            lines.append(f"  grown stories ({len(grew)}):")
            lines += [cut(f"    {s:<12} +{n:<3} {headline(s)}", width) for s, n in grew]
        if moved:
            lines.append(f"  moved articles ({len(moved)}):")
            lines += [cut(f"    #{e.article_id:<8} {e.story_id} -> {e.other_story_id}  {e.title or ''}", width)
                      for e in moved]
        if relabelled:
            lines.append(f"  new headlines ({len(relabelled)}):")
            lines += [cut(f"    {e.story_id:<12} {e.label_before!r} -> {e.label_after!r}", width) for e in relabelled]
        for event in lineage:
            verb = "split off" if event.kind == "split" else "merged into"
            lines.append(f"  {event.story_id} {verb} {event.other_story_id}")
        if not mine:
            lines.append("  no story changed")
    return "\n".join(lines)
