"""What callers hand the pipeline, checked and made into rows to store.

Articles given through the API (``Pipeline.add_articles``) or an archive (``Pipeline.import_articles``)
are checked and cleaned by the rules feed entries follow (``_as_input``) and become ``NewArticle`` rows
(``_input_article``), as a parsed feed entry does (``_new_article``); a bad one is a ConfigError naming
it.  The reading methods' ``since`` and ``limit`` are checked here too.  core.py, ingest.py and
reading.py call these; none of them touches the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from . import dedup
from .errors import ConfigError, quote_value
from .store import NewArticle
from .types import ArticleInput, ParsedEntry

MAX_SOURCE_CHARS = 100
"""Longest ``source`` an API article may name: as long as a feed name may be."""

MAX_KEY_CHARS = 2048
"""Longest ``key`` or ``url`` an API article may give (the customary URL limit); an identifier
is refused rather than cut, since two cut ones could collide."""


def _check_since(since: object) -> None:
    if since is not None and (not isinstance(since, datetime) or since.utcoffset() is None):
        raise ConfigError(f"since must be a timezone-aware datetime, got {since!r}")


def _check_limit(limit: object) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")


def _text(moment: datetime) -> str:
    from .store import to_text

    return to_text(moment)


def _new_article(source: str, entry: ParsedEntry) -> NewArticle:
    return NewArticle(source=source, entry_key=entry.entry_key, title=entry.title, summary=entry.summary,
                      url=entry.url, published=entry.published, published_estimated=entry.published_estimated,
                      text_hash=dedup.text_hash(entry.title, entry.summary), author=entry.author)


def _as_input(value: ArticleInput | Mapping[str, Any], index: int, now: datetime) -> ArticleInput:
    """A checked ArticleInput whose strings are stored as given by parse.clean_article_text
    (the rule feed entries follow) and parse.clean_line; a bad one is a ConfigError naming it."""
    from .parse import EARLIEST_PLAUSIBLE_DATE, MAX_FUTURE_SKEW, clean_article_text, clean_line, is_plausible_date

    if isinstance(value, ArticleInput):
        article = value
    elif not isinstance(value, Mapping):
        raise ConfigError(f"article #{index}: expected a mapping or ArticleInput, got {type(value).__name__}")
    else:
        allowed = {f.name for f in dataclasses.fields(ArticleInput)}
        not_names = [key for key in value if not isinstance(key, str)]
        if not_names:
            raise ConfigError(f"article #{index}: field names must be strings, got {quote_value(not_names[0])}")
        unknown = set(value) - allowed
        if unknown:
            raise ConfigError(f"article #{index}: unknown field(s) {sorted(unknown)} (known: {sorted(allowed)})")
        article = ArticleInput(**{"title": "", **value})
    for name, optional in (("title", False), ("text", False), ("source", False), ("url", True), ("key", True)):
        field_value = getattr(article, name)
        if not (isinstance(field_value, str) or (optional and field_value is None)):
            raise ConfigError(f"article #{index}: {name} must be a string, got {type(field_value).__name__}")
    # API input may carry HTML like feed entries do: compare and store its plain text
    title, text = clean_article_text(article.title, [article.text])
    article = dataclasses.replace(article, title=title, text=text, source=clean_line(article.source),
                                  key=clean_line(article.key) if article.key is not None else None,
                                  url=clean_line(article.url) if article.url is not None else None)
    if not article.title and not article.text:
        raise ConfigError(f"article #{index}: needs a title or a text")
    if not article.source:
        raise ConfigError(f"article #{index}: source must not be empty")
    for name, limit in (("source", MAX_SOURCE_CHARS), ("key", MAX_KEY_CHARS), ("url", MAX_KEY_CHARS)):
        if len(getattr(article, name) or "") > limit:
            raise ConfigError(f"article #{index} {article.title[:60]!r}: {name} is longer than {limit} characters")
    if article.published is not None:
        if not isinstance(article.published, datetime):
            raise ConfigError(f"article #{index}: published must be a datetime, "
                              f"got {type(article.published).__name__}")
        if article.published.tzinfo is None or article.published.utcoffset() is None:
            raise ConfigError(f"article #{index} {article.title[:60]!r}: published must be timezone-aware")
        if not is_plausible_date(article.published, now):
            # the rule feed entries follow too; a feed's bad date is ignored, the caller can fix theirs
            raise ConfigError(f"article #{index} {article.title[:60]!r}: published {article.published.isoformat()} "
                              f"is not a plausible date (expected from {EARLIEST_PLAUSIBLE_DATE:%Y-%m-%d} to "
                              f"{now.astimezone(timezone.utc) + MAX_FUTURE_SKEW:%Y-%m-%d %H:%M} UTC)")
    return article


def _input_article(article: ArticleInput, now: datetime) -> NewArticle:
    """A checked and cleaned input (see _as_input) as a row to store."""
    from .parse import canonical_url

    published = article.published or now
    url = canonical_url(article.url) if article.url else None
    digest = dedup.text_hash(article.title, article.text)
    key = article.key or (f"url:{url}" if url else f"hash:{hashlib.sha1(digest.encode()).hexdigest()}")
    return NewArticle(source=article.source, entry_key=key, title=article.title, summary=article.text, url=url,
                      published=published.astimezone(timezone.utc), published_estimated=article.published is None,
                      text_hash=digest)
