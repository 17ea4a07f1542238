"""Output: JSON-ready dicts, the run summary, the progress line, a run's stage lines in the log and
the text of one story (listings and their formats: listing.py; the HTML report: webpage.py).

The JSON shapes are a contract that scripts parse: keys are only ever added.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from .types import Article, DuplicateLink, RunReport, Story, StoryDetail

log = logging.getLogger("clustering")
"""The pipeline's logger, which ``_StageTimer`` writes to (as it did from core.py)."""


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def story_dict(story: Story) -> dict[str, object]:
    """A story's JSON; the counts are explained on :class:`~clustering.types.Story`."""
    return {"id": story.id, "label": story.label, "keywords": list(story.keywords), "size": story.size,
            "sources": story.sources, "duplicates": story.duplicates, "first_seen": iso(story.first_seen),
            "last_seen": iso(story.last_seen), "topic_id": story.topic_id, "article_ids": list(story.article_ids),
            "canonical_sources": story.canonical_sources, "sources_with_duplicates": story.sources_with_duplicates,
            "duplicate_count": story.duplicates, "split_from": story.split_from, "topic_name": story.topic_name}


def article_dict(article: Article, similarity: float | None = None) -> dict[str, object]:
    result: dict[str, object] = {"id": article.id, "source": article.source, "title": article.title,
                                 "url": article.url, "published": iso(article.published),
                                 "first_seen": iso(article.first_seen), "duplicate_of": article.duplicate_of,
                                 "story_id": article.story_id, "summary": article.summary}
    if similarity is not None:
        result["similarity"] = similarity
    return result


def link_dict(link: DuplicateLink) -> dict[str, object]:
    return {"article_id": link.article_id, "canonical_id": link.canonical_id, "kind": link.kind,
            "score": round(link.score, 4)}


def story_detail_dict(detail: StoryDetail, duplicate_articles: Sequence[Article] = ()) -> dict[str, object]:
    result = story_dict(detail.story)
    result["articles"] = [article_dict(a, detail.similarity.get(a.id)) for a in detail.articles]
    result["duplicates"] = [link_dict(link) for link in detail.duplicates]  # the number: duplicate_count
    result["duplicate_articles"] = [article_dict(a) for a in duplicate_articles]
    return result


FAILED_FEEDS_SHOWN = 3
"""Failed feeds the run summary names; the rest are counted (2,000 dead feeds made a line of 2,000 names)."""


def run_summary(report: RunReport) -> str:
    shown = FAILED_FEEDS_SHOWN
    named = ", ".join(report.failed_feeds[:shown]) + (f" and {len(report.failed_feeds) - shown} more"
                                                      if len(report.failed_feeds) > shown else "")
    failed = f" ({named})" if report.failed_feeds else ""
    deferred = (f", {report.feeds_deferred} left for the next run (run deadline)" if report.feeds_deferred else "")
    return (f"feeds: {report.feeds_ok} ok, {report.feeds_not_modified} not modified, "
            f"{report.feeds_failed} failed{failed}, {report.feeds_skipped} not due{deferred}; "
            f"{report.new_articles} new articles, {report.duplicates} duplicates; "
            f"stories: {report.stories_new} new, {report.stories_updated} updated, {report.stories_total} total; "
            f"{report.unassigned} unassigned in the window"
            + (f" ({report.pending} waiting for a second run)" if report.pending else "")
            + (f"; {report.moved} articles moved (stories split or merged)" if report.moved else "")
            + (f"; {report.merged} stories merged into others" if report.merged else "")
            + f"; {report.seconds:.1f} s")


def story_counts(story: Story) -> str:
    """The counts of a story in words, the same in the story text and the HTML page (the
    duplicates only when it has some)."""
    counts = f"{_count(story.size, 'article')} from {_count(story.canonical_sources, 'source')}"
    if not story.duplicates:
        return counts
    return (f"{counts}, plus {_count(story.duplicates, 'duplicate')} "
            f"({_count(story.sources_with_duplicates, 'source')} with duplicates)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


PROGRESS_INTERVAL_SECONDS = 0.2
"""Least time between two redraws of the progress line (the last count is always drawn)."""


class ProgressLine:
    """Long work as one line on a terminal, redrawn in place with ``\\r``: the CLI passes it to
    the pipeline as ``progress`` only when stderr is a terminal (never under cron, never with
    ``--json``), and clears it before printing the summary."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._shown = 0
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_INTERVAL_SECONDS:
            return
        self._last = now
        if stage == "embedding":
            text = f"embedding {done:,}/{total:,} articles"
        elif stage == "duplicates":
            text = f"looking for duplicates: {done:,}/{total:,} new articles"
        elif stage == "stories":
            text = f"grouping {total:,} articles into stories"
        else:
            text = f"{stage} {done:,}/{total:,}"
        self.stream.write("\r" + text.ljust(self._shown))
        self.stream.flush()
        self._shown = max(self._shown, len(text))

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.clear()


class _StageTimer:
    """Times one stage of a run and logs at INFO what it did: ``stage = _StageTimer("embed")``,
    then ``stage.done("%d articles", n)`` logs ``embed: 45 articles in 3.2 s`` (``clustering -v``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()

    def done(self, summary: str, *args: object) -> None:
        log.info("%s: " + summary + " in %.1f s", self.name, *args, time.monotonic() - self.started)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def story_text(detail: StoryDetail, duplicate_articles: Sequence[Article] = ()) -> str:
    story = detail.story
    lines = [f"story {story.id}: {story.label}",
             f"  keywords: {', '.join(story.keywords) or '-'}",
             f"  {story_counts(story)}; topic {story.topic_id or '-'}"
             + (f" ({story.topic_name})" if story.topic_name else "") + "; "
             f"{story.first_seen:%Y-%m-%d %H:%M} → {story.last_seen:%Y-%m-%d %H:%M} UTC",
             "", "  articles, oldest first (similarity to the story centroid):"]
    for article in detail.articles:
        score = detail.similarity.get(article.id)
        lines.append(f"  #{article.id:<6} {score if score is not None else '':>6} {article.published:%Y-%m-%d %H:%M} "
                     f"{_cut(article.source, 22):<22} {_cut(article.title, 70)}")
        if article.url:
            lines.append(f"{'':>9}{article.url}")
    if detail.duplicates:
        by_id = {a.id: a for a in duplicate_articles}
        lines += ["", "  duplicates (copy -> canonical, kind, score):"]
        for link in detail.duplicates:
            copy = by_id.get(link.article_id)
            title = f"  {_cut(copy.source, 22)}: {_cut(copy.title, 60)}" if copy else ""
            lines.append(f"  #{link.article_id} -> #{link.canonical_id} {link.kind} {link.score:.3f}{title}")
    return "\n".join(lines)
