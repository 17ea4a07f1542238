"""Exceptions raised by clustering.

Every exception the library raises on purpose derives from one root, so a
caller (and the CLI) needs a single ``except`` clause::

    ClusteringError
    ├── ConfigError (also ValueError)   feeds.yaml or an argument is invalid;
    │                                   names the file, the key and the line
    ├── FeedError                       one feed could not be fetched or parsed;
    │                                   recorded on that feed, never fatal to a run
    ├── StorageError                    SQLite failed; wraps sqlite3.Error once
    │   └── LockedError                 another run holds the database lock
    ├── EmbeddingError                  the embedding model could not be loaded/run
    └── NotFoundError (also KeyError)   a story or article id does not exist
"""

from __future__ import annotations


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
            where.append(f"key {key!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


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
    """Another ``clustering run`` holds the lock on this database."""


class EmbeddingError(ClusteringError):
    """The embedding model could not be loaded or failed to encode."""


class NotFoundError(ClusteringError, KeyError):
    """No story or article with the given id exists."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"
