"""The reading methods of ``Pipeline``: stories, articles, duplicates, topics, runs and feeds.

``PipelineReads`` is a mixin of ``core.Pipeline``: what the listing commands, the HTML report and API
users read, each method checking its arguments (inputs.py) and asking the store or the listing and
history queries.  They only read, so they work on a pipeline opened with ``read_only=True``.  It uses
the pipeline's ``store``, ``config``, clock, model name and window start, which core.py supplies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import history, listing_queries
from .errors import ConfigError, NotFoundError
from .inputs import _check_limit, _check_since
from .types import Article, DuplicateLink, FeedStatus, RunRecord, Story, StoryDetail, StoryEvent, Topic

if TYPE_CHECKING:
    from .config import Config
    from .store import Store


class PipelineReads:
    """The reading methods of a ``Pipeline`` (a mixin: ``Pipeline`` supplies the store and the clock)."""

    if TYPE_CHECKING:
        config: Config
        store: Store
        _now: Callable[[], datetime]

        @property
        def model_name(self) -> str: ...

        def _window_start(self, now: datetime, until: datetime | None = None) -> datetime: ...

    # --- reading ------------------------------------------------------------------------
    def stories(self, *, since: datetime | None = None, limit: int | None = None) -> list[Story]:
        _check_since(since)
        _check_limit(limit)
        return self.store.stories(since=since, limit=limit)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """``with pipeline.snapshot():`` every read inside sees the database as one state, whatever
        a run commits meanwhile: a story listed by ``stories()`` is still there for ``story(id)``
        (read apart, a run could merge it in between: "story 's77' was merged into 's80'")."""
        return self.store.snapshot()

    def story(self, story_id: str) -> StoryDetail:
        with self.store.snapshot():
            return self._story(story_id)

    def _story(self, story_id: str) -> StoryDetail:
        from .parse import valid_unicode

        if not isinstance(story_id, str):
            raise NotFoundError(f"no story with id {story_id!r} (story ids are strings)")
        found = self.store.stories(story_ids=[valid_unicode(story_id)])
        if not found:
            successor = self.store.story_successor(valid_unicode(story_id))
            if successor is not None:
                raise NotFoundError(f"story {story_id!r} was merged into {successor!r}: its articles are there now")
            raise NotFoundError(f"no story with id {story_id!r}")
        story = found[0]
        articles = tuple(self.store.articles(story.article_ids))
        links: list[DuplicateLink] = []
        for article_id in story.article_ids:
            links.extend(link for link in self.store.duplicates_of(article_id) if link.canonical_id == article_id)
        similarity: dict[int, float] = {}
        try:
            vectors = self.store.vectors(list(story.article_ids), self.model_name)
            centroid = vectors.mean(axis=0)
            centroid = centroid / (float((centroid ** 2).sum()) ** 0.5 or 1.0)
            similarity = {a: round(float(v @ centroid), 4) for a, v in zip(story.article_ids, vectors, strict=True)}
        except Exception:  # noqa: BLE001 - scores are optional decoration
            similarity = {}
        return StoryDetail(story=story, articles=articles, duplicates=tuple(links), similarity=similarity)

    def article(self, article_id: int) -> Article:
        return self.store.article(article_id)

    def articles(self, *, story: str | None = None, unassigned: bool = False, sources: Sequence[str] | None = None,
                 search: str | Sequence[str] = (), since: datetime | None = None,
                 limit: int | None = None) -> list[Article]:
        """Stored articles, oldest first: of one ``story`` (its members and their copies), or
        ``unassigned`` (in no story and copying none: in the window, what the run summary counts),
        from these ``sources`` (feed names), whose title or text holds every word of ``search``,
        published since ``since``."""
        _check_since(since)
        _check_limit(limit)
        if unassigned and story is not None:
            raise ConfigError("articles: story and unassigned exclude each other")
        words = search.split() if isinstance(search, str) else list(search)
        if unassigned and since is None:
            since = self._window_start(self._now())
        return listing_queries.list_articles(self.store, story_id=story, unassigned=unassigned, sources=sources,
                                             words=words, since=since, limit=limit)

    def duplicates(self, *, story: str | None = None, since: datetime | None = None,
                   sources: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every duplicate link with its copy's and original's outlets (the ``duplicate_list``
        view's rows as dicts), copies oldest first."""
        _check_since(since)
        rows = listing_queries.duplicate_rows(self.store, story_id=story, since=since, sources=sources)
        return [dict(row) for row in rows]

    def topics(self, *, since: datetime | None = None, limit: int | None = None) -> list[Topic]:
        """Topics (named groups of stories), most recently active first."""
        _check_since(since)
        _check_limit(limit)
        return listing_queries.topics(self.store, since=since, limit=limit)

    def runs(self, *, after: int | None = None, since: datetime | None = None, last: int | None = None
             ) -> list[RunRecord]:
        """Processing runs, oldest first: after run ``after``, finished since ``since``, or the ``last`` N."""
        _check_since(since)
        return history.runs(self.store, after_id=after, since=since, limit_last=last)

    def changes(self, *, since: int | datetime | None = None) -> list[StoryEvent]:
        """What runs changed in stories: the runs after run ``since`` (an int), or finished since
        ``since`` (a datetime), or (None) the last run; events in run order."""
        if isinstance(since, bool) or not (since is None or isinstance(since, (int, datetime))):
            raise ConfigError(f"since must be a run id, a timezone-aware datetime or None, got {since!r}")
        if isinstance(since, int):
            found = self.runs(after=since)
        elif isinstance(since, datetime):
            found = self.runs(since=since)
        else:
            found = self.runs(last=1)
        return history.events(self.store, run_ids=[r.id for r in found])

    def story_history(self, story_id: str) -> list[StoryEvent]:
        """Every recorded change to one story (article events only for runs in the window; see
        history.py), oldest first; a merged story's history is its own, up to its merge."""
        from .parse import valid_unicode

        if not isinstance(story_id, str):
            raise NotFoundError(f"no story with id {story_id!r} (story ids are strings)")
        if not self.store.stories(story_ids=[valid_unicode(story_id)]) and \
                self.store.story_successor(valid_unicode(story_id)) is None:
            raise NotFoundError(f"no story with id {story_id!r}")
        return history.events(self.store, story_id=valid_unicode(story_id))

    def duplicates_of(self, article_id: int) -> list[DuplicateLink]:
        return self.store.duplicates_of(article_id)

    def feeds(self) -> list[FeedStatus]:
        configured = [f.name for f in self.config.feeds]
        statuses = self.store.feed_statuses()
        if configured:
            statuses = [s for s in statuses if s.name in set(configured)]
        return statuses
