"""The run lock: one run at a time on an SQLite database.

A run holds an exclusive ``flock`` on ``<database>.lock``, a plain file beside the database's
resolved path, from fetching to clustering (``Store.run_lock``), so two names of one file share one
lock.  The holder writes ``<pid> <start time>`` into the file.  A run that finds the lock held waits
``clustering run --wait`` seconds (none by default), then gets a LockedError carrying both (the
file's modification time stands in for a start time that cannot be read); the CLI prints
``skipped`` and exits 0, or fails when the holder has run longer than ``settings.fetch.run_deadline``
(a hung run shows in cron's mail instead of as a silent series of skipped runs).  The OS releases
the lock when its holder dies, so a crash never leaves a stale lock.  A symbolic link, a FIFO, a
device or a hard link in the lock's place is refused (docs/design.md, "The run lock is a plain
file").  PostgreSQL stores take none: their workers share the database and hold an advisory lock
for the window stages instead (store_pg.py).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from .errors import ConfigError, LockedError, StorageError
from .schema import read_time, to_text

_LOCK_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
"""The lock file is opened without following a symbolic link (one planted beside the database
would otherwise have its target truncated to our pid) and without blocking (a FIFO)."""


@contextlib.contextmanager
def run_lock(database: str | Path, *, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.lock`` for one run.

    Overlapping cron runs: the second waits up to ``wait_seconds`` and then raises
    LockedError (with the holder's pid and start time, which the holder writes into the
    file); the OS releases the lock if the holder dies, so a crash never leaves a stale
    lock behind.  The lock sits beside the database's resolved path, so two names of one
    file (a symbolic link, ``./`` or ``..`` in the path) share one lock.  The lock file
    itself must be a plain file: a symbolic link, a FIFO or a hard link there is refused
    (StorageError), and so is a disk too full to record the holder.
    """
    import fcntl
    import stat
    import time

    if not isinstance(wait_seconds, (int, float)) or not math.isfinite(wait_seconds) or wait_seconds < 0:
        raise ConfigError(f"lock wait must be a finite number of seconds, 0 or more, got {wait_seconds!r}")
    if str(database) == ":memory:":
        yield
        return
    lock_path = Path(f"{os.path.realpath(database)}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock_path, _LOCK_OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"the run lock {lock_path} is a symbolic link; a lock file never is one: "
                               "remove it") from exc
        raise StorageError(f"cannot open the run lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            raise StorageError(f"the run lock {lock_path} is not a plain file of its own (a FIFO, a device or "
                               "a hard link): remove it")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid, since = _lock_holder(descriptor)
                    holder = f" (pid {pid}, since {to_text(since)})" if pid is not None and since is not None else ""
                    raise LockedError(f"another clustering run holds {lock_path}{holder}",
                                      holder_pid=pid, held_since=since) from None
                time.sleep(0.2)
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()} {to_text(datetime.now(timezone.utc))}\n".encode(), 0)
        except OSError as exc:
            raise StorageError(f"cannot write the run lock {lock_path}: {exc.strerror or exc}") from exc
        yield
    finally:
        os.close(descriptor)


def _lock_holder(descriptor: int) -> tuple[int | None, datetime | None]:
    """The pid and start time the lock's holder wrote; the file's modification time (when it was
    written) stands in for a time that cannot be read."""
    try:
        words = os.pread(descriptor, 100, 0).decode("ascii", "replace").split()
        modified = datetime.fromtimestamp(os.fstat(descriptor).st_mtime, timezone.utc).replace(microsecond=0)
    except OSError:
        return None, None
    pid = int(words[0]) if words and words[0].isdigit() and len(words[0]) < 10 else None
    since = read_time(words[1]) if len(words) > 1 else None
    return pid, since or modified
