"""Frozen value objects that users of the library see.

All datetimes are timezone-aware UTC.  Objects are immutable snapshots of the
database at the time they were read; re-read to see later runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ParsedEntry:
    """One feed entry after parsing, before it is stored.

    ``entry_key`` is stable across fetches of the same feed: the entry's guid,
    else its link, else a hash of its content.  ``published_estimated`` is true
    when the feed gave no usable date and ``published`` is the first-seen time.
    """

    entry_key: str
    title: str
    summary: str
    url: str | None
    published: datetime
    published_estimated: bool = False
    author: str | None = None


@dataclass(frozen=True)
class ArticleInput:
    """An article brought by an API user (``Pipeline.add_articles``).

    ``source`` plays the role of the feed name.  ``key`` (optional) makes
    re-adding the same article a no-op; without it the URL, else a content
    hash, is the key.
    """

    title: str
    text: str = ""
    url: str | None = None
    published: datetime | None = None
    source: str = "api"
    key: str | None = None


@dataclass(frozen=True)
class Article:
    id: int
    source: str
    entry_key: str
    title: str
    summary: str
    url: str | None
    published: datetime
    first_seen: datetime
    duplicate_of: int | None = None
    story_id: str | None = None


@dataclass(frozen=True)
class DuplicateLink:
    """``article_id`` is a copy of ``canonical_id`` (the earliest article).

    ``kind`` is ``"url"``, ``"text"`` (same normalized text) or ``"near"``
    (embedding cosine ≥ threshold and lexical check passed); ``score`` is the
    cosine similarity (1.0 for exact kinds).
    """

    article_id: int
    canonical_id: int
    kind: str
    score: float


@dataclass(frozen=True)
class Story:
    """One event.  What each count counts:

    ``size`` the story's articles (``article_ids``; duplicates are not members);
    ``canonical_sources`` the outlets of those articles;
    ``duplicates`` the copies linked to them (wire copies, re-posts, updates);
    ``sources`` the outlets of the articles and of their copies together
    (also ``sources_with_duplicates``).
    """

    id: str
    label: str
    keywords: tuple[str, ...]
    size: int
    sources: int
    first_seen: datetime
    last_seen: datetime
    topic_id: str | None
    article_ids: tuple[int, ...]
    duplicates: int = 0
    canonical_sources: int = 0
    split_from: str | None = None   # the story most of its first articles left (a split), if any
    topic_name: str | None = None   # the name of the topic (topics.py), when it has one

    @property
    def sources_with_duplicates(self) -> int:
        """The outlets of the articles and of their duplicates (the same as ``sources``)."""
        return self.sources


@dataclass(frozen=True)
class StoryDetail:
    story: Story
    articles: tuple[Article, ...]
    duplicates: tuple[DuplicateLink, ...]
    similarity: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Topic:
    """Stories that tell one broader subject, named after the most central of their headlines
    (``name``, kept from run to run unless another is clearly more central) with c-TF-IDF
    ``keywords``; ``id`` is the id of its oldest story with ``t`` for ``s``."""

    id: str
    name: str
    keywords: tuple[str, ...]
    stories: int
    articles: int
    first_seen: datetime
    last_seen: datetime
    story_ids: tuple[str, ...]


@dataclass(frozen=True)
class RunRecord:
    """One processing run: when it finished (the pipeline's clock), how many articles it
    processed, and the window's articles in no story after it (``unassigned``; ``pending`` of
    them wait for a second run)."""

    id: int
    finished: datetime
    processed: int
    unassigned: int
    pending: int = 0


EVENT_KINDS = ("created", "joined", "left", "relabelled", "split", "merged")
"""What a :class:`StoryEvent` can say happened to a story in a run."""


@dataclass(frozen=True)
class StoryEvent:
    """One change a run made to a story.

    ``kind`` is one of :data:`EVENT_KINDS`: ``created`` (``label_after`` its first headline);
    ``joined`` / ``left`` (``article_id``; ``other_story_id`` the story it came from / went to,
    None when it was in none / became a duplicate or unassigned); ``relabelled``
    (``label_before`` -> ``label_after``); ``split`` (this story split off ``other_story_id``);
    ``merged`` (this story merged into ``other_story_id``).
    """

    run_id: int
    run_finished: datetime
    story_id: str
    kind: str
    article_id: int | None = None
    other_story_id: str | None = None
    label_before: str | None = None
    label_after: str | None = None
    title: str | None = None        # the article's title (joined, left)


@dataclass(frozen=True)
class FeedStatus:
    name: str
    url: str
    last_attempt: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_errors: int
    next_attempt: datetime | None
    articles: int


@dataclass(frozen=True)
class RunReport:
    feeds_ok: int
    feeds_failed: int
    feeds_not_modified: int
    feeds_skipped: int
    new_articles: int
    duplicates: int
    stories_new: int
    stories_updated: int
    stories_total: int
    unassigned: int
    seconds: float
    failed_feeds: tuple[str, ...] = ()
    moved: int = 0      # articles that left their story (a split, or a merge into another story)
    pending: int = 0    # articles in new groups waiting a run for confirmation
    merged: int = 0     # stories that merged into another story this run
    feeds_deferred: int = 0  # due feeds not fetched before settings.fetch.run_deadline: due again next run

    def as_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        result = asdict(self)
        result["failed_feeds"] = list(self.failed_feeds)
        return result
