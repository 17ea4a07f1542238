"""Exceptions raised by clustering.

Every exception the library raises on purpose derives from one root, so a
caller (and the CLI) needs a single ``except`` clause::

    ClusteringError
    ├── ConfigError (also ValueError)   feeds.yaml or an argument is invalid;
    │                                   names the file, the key and the line
    ├── FeedError                       one feed could not be fetched or parsed;
    │                                   recorded on that feed, never fatal to a run
    ├── StorageError                    the database failed; wraps sqlite3.Error or
    │                                   psycopg.Error once, where it arises
    │   └── LockedError                 another run holds the database lock
    ├── EmbeddingError                  the embedding model could not be loaded/run
    └── NotFoundError (also KeyError)   a story or article id does not exist
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

QUOTE_LIMIT = 80
"""Longest quotation of a user's value in a message, in characters ("…" marks a cut).

Enough to recognise a URL, a name or a mistyped number; a message never repeats a whole
document (an alias-expanded YAML value once printed 351 MB)."""

MESSAGE_LIMIT = 2000
"""Longest ConfigError message: the last guard, should a message quote a value by other means."""

_MAX_QUOTE_DEPTH = 4
"""Nesting levels shown when quoting a list or mapping; deeper ones read as "...". """


def quote_value(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` in at most ``limit`` characters, computed without expanding more of the
    value than is shown: lists and mappings (a YAML alias can make them huge and deep) are
    walked only as far as the limit reaches."""
    text = _bounded_repr(value, limit + 1, 0)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_repr(value: object, budget: int, depth: int) -> str:
    if isinstance(value, str):
        return repr(value[:budget])
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        if depth >= _MAX_QUOTE_DEPTH:
            return "[...]" if not isinstance(value, Mapping) else "{...}"
        opening, closing = ("{", "}") if isinstance(value, (Mapping, set, frozenset)) else ("[", "]")
        items = value.items() if isinstance(value, Mapping) else value
        parts: list[str] = []
        used = 2
        for item in items:
            if used >= budget:
                parts.append("...")
                break
            if isinstance(value, Mapping):
                key, inner = item
                part = _bounded_repr(key, budget - used, depth + 1)
                part += ": " + _bounded_repr(inner, budget - used - len(part), depth + 1)
            else:
                part = _bounded_repr(item, budget - used, depth + 1)
            parts.append(part)
            used += len(part) + 2
        return opening + ", ".join(parts) + closing
    try:
        return repr(value)[:budget]
    except ValueError:  # an integer past Python's int-to-text digit limit
        return f"<{type(value).__name__} too long to show>"


class ClusteringError(Exception):
    """Root of every exception raised on purpose by clustering."""


class ConfigError(ClusteringError, ValueError):
    """The configuration (feeds.yaml or API arguments) is invalid.

    The message names the file, the key and, when known, the line.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.key = key
        self.line = line
        where = []
        if path:
            where.append(path if line is None else f"{path}:{line}")
        if key:
            where.append(f"key {quote_value(key, 2 * QUOTE_LIMIT)}")
        prefix = ", ".join(where)
        text = f"{prefix}: {message}" if prefix else message
        super().__init__(text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…")


class FeedError(ClusteringError):
    """A feed could not be fetched or parsed; ``feed`` names it."""

    def __init__(self, message: str, *, feed: str | None = None, url: str | None = None) -> None:
        self.feed = feed
        self.url = url
        label = feed or url
        super().__init__(f"feed {label!r}: {message}" if label else message)
        self.reason = message


class StorageError(ClusteringError):
    """The SQLite database could not be read or written."""


class LockedError(StorageError):
    """Another ``clustering run`` holds the lock on this database: ``holder_pid`` and
    ``held_since`` (a UTC datetime) as the holder wrote them in the lock file, when readable."""

    def __init__(self, message: str, *, holder_pid: int | None = None, held_since: datetime | None = None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid
        self.held_since = held_since


class EmbeddingError(ClusteringError):
    """The embedding model could not be loaded or failed to encode."""


class NotFoundError(ClusteringError, KeyError):
    """No story or article with the given id exists."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"
