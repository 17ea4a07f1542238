"""The fetch stage of a run: due feeds fetched, parsed and stored, one transaction per feed.

``PipelineIngest`` is a mixin of ``core.Pipeline``: ``Pipeline.run`` and ``Pipeline.ingest`` call its
``_ingest``, which fetches the due feeds (fetch.iter_fetch) and stores each one's new articles and
fetch state as it comes, until the run deadline; on a shared (PostgreSQL) store the feeds are claimed
in batches first, so that several workers split them.  It reads the pipeline's ``store``, ``config``,
clock and HTTP client, which ``Pipeline.__init__`` sets; the rest of a run (embedding, dedup, stories)
stays in core.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .config import FeedConfig
from .errors import FeedError, StorageError
from .inputs import _new_article, _text
from .report import _StageTimer
from .types import ParsedEntry

if TYPE_CHECKING:
    from .config import Config
    from .store import Store

log = logging.getLogger("clustering")
"""The pipeline's logger, as before these methods left core.py."""

FAILED_FEEDS_NAMED = 3
"""Failed feeds named (with their errors) in a run's one warning line about failures; the rest are
counted.  1,980 dead feeds printed 1,980 warning lines."""

FEED_CLAIM_BATCH = 2
"""Feeds a worker claims at a time on a shared (PostgreSQL) store, per concurrent fetch it may make
(``settings.fetch.max_concurrency``): enough to keep its fetches busy, few enough that the feeds
spread over the workers instead of going to whichever claims first."""

FEED_CLAIM_LEASE_SECONDS = 300.0
"""How long a worker's claim on a feed lasts if it never records the fetch (it was killed): then the
feed is due again for any worker.  Longer than a batch's fetches can take (timeouts, retries)."""


@dataclasses.dataclass
class _IngestTally:
    ok: int = 0
    not_modified: int = 0
    skipped: int = 0
    deferred: int = 0   # due, not fetched before the run deadline
    requested: int = 0  # feeds asked of fetch.iter_fetch
    new_ids: list[int] = dataclasses.field(default_factory=list)
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (feed, error)


@dataclasses.dataclass(frozen=True)
class IngestReport:
    feeds_ok: int
    feeds_failed: int
    feeds_not_modified: int
    feeds_skipped: int
    new_article_ids: tuple[int, ...]
    failed_feeds: tuple[str, ...]
    feeds_deferred: int = 0     # due, not fetched before the run deadline: due again next run


class PipelineIngest:
    """The fetch stage of a ``Pipeline`` (a mixin: ``Pipeline.__init__`` sets what it reads)."""

    if TYPE_CHECKING:
        config: Config
        store: Store
        claim_lease_seconds: float
        _now: Callable[[], datetime]
        _http_client: Any

    def _ingest(self, *, force: bool) -> IngestReport:
        """Fetch the due feeds, each parsed and stored in turn (one transaction per feed) while the
        next ones are fetched (fetch.iter_fetch), until ``settings.fetch.run_deadline``: the feeds
        not reached stay due, and the least recently tried go first, so a deadline never starves the
        same feeds.  On a shared (PostgreSQL) store the feeds are claimed in batches first
        (``_ingest_claimed``), each batch fetched the same way under the same deadline.  Failures are
        logged one per feed at INFO and summed up in one WARNING line; each feed's error is in
        ``clustering feeds``."""
        from .fetch import FetchRequest

        stage = _StageTimer("fetch")
        deadline = time.monotonic() + self.config.fetch.run_deadline
        now = self._now()
        feeds = [f for f in self.config.feeds if f.enabled]
        with self.store.transaction():
            self.store.sync_feeds((f.name, f.url) for f in feeds)
            self.store.repair_feed_state()
        tally = _IngestTally()
        if self.store.shared:
            self._ingest_claimed(feeds, force, tally, deadline)
        else:
            due: dict[str, FeedConfig] = {}
            last_attempt: dict[str, str] = {}
            requests = []
            for feed in feeds:
                row = self.store.feed_row(feed.name)
                next_attempt = row["next_attempt"] if row is not None else None
                if not force and next_attempt is not None and next_attempt > _text(now):
                    tally.skipped += 1
                    continue
                due[feed.name] = feed
                last_attempt[feed.name] = (row["last_attempt"] or "") if row is not None else ""
                requests.append(FetchRequest(feed_name=feed.name, url=feed.url,
                                             etag=row["etag"] if row is not None else None,
                                             last_modified=row["last_modified"] if row is not None else None))
            requests.sort(key=lambda r: last_attempt[r.feed_name])  # never tried, then the longest ago
            tally.deferred += len(self._fetch_and_store(due, requests, tally, deadline))
        failures = tally.failures
        if failures:
            named = ", ".join(f"{name!r} ({error})" for name, error in failures[:FAILED_FEEDS_NAMED])
            more = f" and {len(failures) - FAILED_FEEDS_NAMED} more" if len(failures) > FAILED_FEEDS_NAMED else ""
            log.warning("%d of %d feeds failed: %s%s; `clustering feeds` shows each one's error",
                        len(failures), tally.requested, named, more)
        if tally.deferred:
            log.warning("the run deadline (settings.fetch.run_deadline, %g s) passed: %d due feeds were not "
                        "fetched and go first in the next run", self.config.fetch.run_deadline, tally.deferred)
        stage.done("%d feeds ok, %d not modified, %d failed, %d not due%s; %d new articles", tally.ok,
                   tally.not_modified, len(failures), tally.skipped,
                   f", {tally.deferred} left for the next run" if tally.deferred else "", len(tally.new_ids))
        return IngestReport(tally.ok, len(failures), tally.not_modified, tally.skipped, tuple(tally.new_ids),
                            tuple(name for name, _ in failures), tally.deferred)

    def _ingest_claimed(self, feeds: Sequence[FeedConfig], force: bool, tally: _IngestTally,
                        deadline: float) -> None:
        """Several workers on one store: claim due feeds in batches (``Store.claim_feeds``: each
        feed goes to one worker, under a lease; never tried or tried longest ago first), and fetch
        and store each batch feed by feed (``_fetch_and_store``), until none is left or the run
        deadline passes.  A claimed feed not reached before the deadline has its claim released
        and stays due (another worker, or the next pass, takes it); due feeds left unclaimed at the
        deadline count as deferred too."""
        from .fetch import FetchRequest

        by_name = {f.name: f for f in feeds}
        left = list(by_name)  # the configured order breaks ties, as a run on SQLite does
        batch = max(1, FEED_CLAIM_BATCH * self.config.fetch.max_concurrency)
        while left and time.monotonic() < deadline:
            claim_now = self._now()
            lease_until = claim_now + timedelta(seconds=self.claim_lease_seconds)
            claimed = self.store.claim_feeds(  # type: ignore[attr-defined]
                left, now=claim_now, lease_until=lease_until, limit=batch, force=force)
            if not claimed:
                break
            names = {row["name"] for row in claimed}
            left = [n for n in left if n not in names]
            requests = [FetchRequest(feed_name=row["name"], url=by_name[row["name"]].url, etag=row["etag"],
                                     last_modified=row["last_modified"]) for row in claimed]
            # the feeds of the batch not recorded (the deadline passed, or an error stopped the
            # pass) are released: due again now, not when the lease lapses; recording a feed
            # released its claim already
            try:
                not_reached = self._fetch_and_store(by_name, requests, tally, deadline)
            except BaseException:
                with contextlib.suppress(StorageError):  # never mask the cause
                    self.store.release_claims(list(names), lease_until=lease_until)  # type: ignore[attr-defined]
                raise
            self.store.release_claims(not_reached, lease_until=lease_until)  # type: ignore[attr-defined]
            tally.deferred += len(not_reached)
        if left and time.monotonic() >= deadline:
            due_left = self.store.due_unclaimed(left, now=self._now(), force=force)  # type: ignore[attr-defined]
            tally.deferred += due_left
            tally.skipped += len(left) - due_left
        else:
            tally.skipped += len(left)

    def _fetch_and_store(self, feeds: Mapping[str, FeedConfig], requests: Sequence[Any], tally: _IngestTally,
                         deadline: float) -> list[str]:
        """Fetch ``requests`` in order (fetch.iter_fetch: at most 2 x max_concurrency bodies held) and
        store each feed as it comes (``_store_fetched``: one transaction per feed), until ``deadline``
        (a ``time.monotonic()`` value); the names of the feeds not reached, which stay due."""
        from .fetch import iter_fetch

        fetch_options: dict[str, Any] = {"timeout_seconds": self.config.fetch.timeout_seconds,
                                         "max_bytes": self.config.fetch.max_bytes,
                                         "max_concurrency": self.config.fetch.max_concurrency,
                                         "base_dir": self.config.base_dir, "client": self._http_client,
                                         "deadline": deadline}
        if self.config.fetch.user_agent:
            fetch_options["user_agent"] = self.config.fetch.user_agent
        tally.requested += len(requests)
        reached: set[str] = set()
        for request, result in iter_fetch(list(requests), **fetch_options):
            reached.add(request.feed_name)
            error = self._store_fetched(feeds[request.feed_name], result, tally.new_ids)
            if error is not None:
                tally.failures.append((request.feed_name, error))
            elif result.status == "not_modified":
                tally.not_modified += 1
            else:
                tally.ok += 1
        return [r.feed_name for r in requests if r.feed_name not in reached]

    def _store_fetched(self, feed: FeedConfig, result: Any, new_ids: list[int]) -> str | None:
        """Parse one fetched feed and store its new articles and its fetch state (one transaction);
        the feed's error, or None."""
        from .fetch import next_attempt_delay
        from .parse import parse_feed

        fetched_at = self._now()
        poll_seconds = 60.0 * (feed.poll_interval_minutes or self.config.poll_interval_minutes)
        row = self.store.feed_row(feed.name)
        errors_before = int(row["consecutive_errors"]) if row is not None else 0
        error: str | None = result.error if result.status == "error" else None
        warning: str | None = None
        entries: Sequence[ParsedEntry] = ()
        if result.status == "ok":
            try:
                parsed = parse_feed(result.body or b"", feed_url=result.final_url or feed.url,
                                    fetched_at=fetched_at, content_type=result.content_type, feed_name=feed.name)
                entries, warning = parsed.entries, parsed.warning
            except FeedError as exc:
                error = exc.reason
        with self.store.transaction():
            if error is None:
                delay = next_attempt_delay(consecutive_errors=0, poll_interval_seconds=poll_seconds,
                                           retry_after_seconds=result.retry_after_seconds)
                new_ids.extend(self.store.add_articles([_new_article(feed.name, e) for e in entries], fetched_at))
                self.store.record_fetch(feed.name, now=fetched_at, ok=True, error=None, warning=warning,
                                        etag=result.etag, last_modified=result.last_modified,
                                        next_attempt=fetched_at + timedelta(seconds=delay))
            else:
                delay = next_attempt_delay(consecutive_errors=errors_before + 1, poll_interval_seconds=poll_seconds,
                                           retry_after_seconds=result.retry_after_seconds)
                self.store.record_fetch(feed.name, now=fetched_at, ok=False, error=error, warning=None,
                                        etag=None, last_modified=None,
                                        next_attempt=fetched_at + timedelta(seconds=delay))
                log.info("feed %r failed: %s", feed.name, error)
        return error
