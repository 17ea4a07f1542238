"""The facade: ``open_pipeline`` wires config, fetch, parse, store, embed, dedup and stories.

No other module imports this one.  Each stage of a run is one transaction, so a crash
or a kill between stages loses nothing: articles stay ``processed = 0`` until the
story stage commits, and the next run picks them up again.

``Pipeline`` is this module's run (embedding, dedup, stories) and two mixins: the fetch stage
(ingest.py, ``PipelineIngest``) and the reading methods (reading.py, ``PipelineReads``); what
callers pass in is checked in inputs.py.  Their public names (``IngestReport``, the
``FEED_CLAIM_*`` and ``MAX_*_CHARS`` constants, ``FAILED_FEEDS_NAMED``) are re-exported here.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import dedup, history, labels, listing_queries, stories, topics
from .config import Config, load_config, parse_config
from .embed import Embedder, article_text, make_embedder
from .errors import ConfigError, EmbeddingError, LockedError, StorageError
from .ingest import FAILED_FEEDS_NAMED as FAILED_FEEDS_NAMED
from .ingest import FEED_CLAIM_BATCH as FEED_CLAIM_BATCH
from .ingest import FEED_CLAIM_LEASE_SECONDS as FEED_CLAIM_LEASE_SECONDS
from .ingest import IngestReport as IngestReport
from .ingest import PipelineIngest
from .inputs import MAX_KEY_CHARS as MAX_KEY_CHARS
from .inputs import MAX_SOURCE_CHARS as MAX_SOURCE_CHARS
from .inputs import _as_input, _input_article
from .reading import PipelineReads
from .report import _StageTimer
from .store import NewArticle, WindowArticle, open_store
from .types import ArticleInput, RunReport
from .window import WindowState

log = logging.getLogger("clustering")

EMBED_CHUNK = 512
"""Articles embedded, and their vectors saved (one transaction), at a time: a long first run
shows progress and keeps what it embedded if it is stopped; 512 texts are 16 batches of 32,
so the model's own batching is unchanged."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``"embedding"`` and ``"duplicates"`` count articles
as they are done; ``"stories"`` (0 of N) says that N articles are being grouped."""


KEYWORD_BACKGROUND_STORIES = 1000
"""Stories whose words a run's keywords are weighed against (c-TF-IDF: frequent in this story, rare
in the others): the relabelled ones and, up to this many in all, the window's newest other stories.
Bounds the text a run reads for labels; more stories change which words count as common little."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class ProcessReport:
    embedded: int
    duplicates: int
    stories_new: int
    stories_updated: int
    stories_total: int
    unassigned: int
    moved: int = 0      # articles that left their story (a split, or a merge into another story)
    pending: int = 0    # articles in new groups waiting a run for confirmation
    merged: int = 0     # stories that merged into another story


@dataclasses.dataclass(frozen=True)
class ImportReport:
    records: int        # articles read from the file
    new_articles: int   # of them not stored before (same source and key)
    seconds: float


@dataclasses.dataclass(frozen=True)
class BackfillReport:
    embedded: int       # articles embedded (those without a vector of the configured model)
    passes: int         # windowed passes (dedup, stories), one per step in time order
    duplicates: int
    stories_total: int
    embed_seconds: float
    cluster_seconds: float


PAIRED_COPIES = 14
"""Pairs a row keeps beyond the graph's candidates on a large first run (graph.window_pairs), for the
copies dedup then takes out of the window: a row that keeps fewer than the graph's candidates among
the articles left is searched again (graph.build_graph)."""

IMPORT_CHUNK = 5000
"""Articles stored in one transaction by ``clustering import`` (the file is checked whole first)."""


class Pipeline(PipelineIngest, PipelineReads):
    """One clustering database and its configuration.  Use as a context manager."""

    def __init__(self, config: Config, *, embedder: Embedder | None = None,
                 now: Callable[[], datetime] = utc_now, http_client: Any = None,
                 lock_wait_seconds: float = 0.0, read_only: bool = False,
                 progress: Progress | None = None, claim_lease_seconds: float = FEED_CLAIM_LEASE_SECONDS) -> None:
        """``read_only=True`` opens the database for reading only (stories, story, feeds):
        nothing is created, migrated or written, and it works on read-only storage.
        ``progress`` is told how long work advances (see ``Progress``).  ``claim_lease_seconds``: on a
        PostgreSQL store, how long the feeds this worker claims stay its own if it dies (see
        ``FEED_CLAIM_LEASE_SECONDS``)."""
        self.config = config
        self._embedder = embedder
        self._window: WindowState | None = None   # the window's graph and terms, kept between runs
        self._now = now
        self._http_client = http_client
        if not isinstance(lock_wait_seconds, (int, float)) or not 0 <= lock_wait_seconds < math.inf:
            raise ConfigError(f"lock_wait_seconds must be a finite number, 0 or more, got {lock_wait_seconds!r}")
        self.lock_wait_seconds = lock_wait_seconds
        self._progress = progress
        self.claim_lease_seconds = claim_lease_seconds
        self.store = open_store(config.database, read_only=read_only)

    # --- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.config.model, device=self.config.embedding.device,
                                           batch_size=self.config.embedding.batch_size,
                                           precision=self.config.embedding.precision,
                                           threads=self.config.embedding.threads)
        return self._embedder

    @property
    def model_name(self) -> str:
        """The name stored beside the vectors.  Asking the embedder loads no model, and
        the configured name may differ from it (``hashing`` embeds as ``hashing-256``)."""
        return self.embedder.name

    # --- the run ------------------------------------------------------------------------
    def run(self, *, force: bool = False) -> RunReport:
        """Fetch every due feed, store new articles, then process them."""
        started = time.monotonic()
        self._check_writable()
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds):
            ingest = self._ingest(force=force)
            processed = self._process_shared(ingest.new_article_ids) if self.store.shared else self._process()
            if self.config.report is not None:
                self._write_report(self.config.report)
        return RunReport(
            feeds_ok=ingest.feeds_ok, feeds_failed=ingest.feeds_failed,
            feeds_not_modified=ingest.feeds_not_modified, feeds_skipped=ingest.feeds_skipped,
            new_articles=len(ingest.new_article_ids), duplicates=processed.duplicates,
            stories_new=processed.stories_new, stories_updated=processed.stories_updated,
            stories_total=processed.stories_total, unassigned=processed.unassigned,
            seconds=round(time.monotonic() - started, 3), failed_feeds=ingest.failed_feeds,
            moved=processed.moved, pending=processed.pending, merged=processed.merged,
            feeds_deferred=ingest.feeds_deferred)

    def work(self, *, until_idle: bool = False, interval_seconds: float = 60.0,
             on_pass: Callable[[RunReport], None] | None = None) -> int:
        """Run pass after pass (``clustering worker``): several workers share a PostgreSQL store,
        each fetching the feeds it claims and one at a time clustering.  A pass that fetched nothing
        waits ``interval_seconds`` (1 s while articles wait to be clustered).  ``until_idle``: return
        once a pass finds no feed due, none claimed by another worker and nothing left to cluster.
        Returns the number of passes."""
        passes = 0
        while True:
            try:
                report = self.run()
            except LockedError:  # an SQLite store another run holds: try again after the interval
                time.sleep(interval_seconds)
                continue
            passes += 1
            if on_pass is not None:
                on_pass(report)
            if report.feeds_ok + report.feeds_failed + report.feeds_not_modified:
                continue
            waiting = self.store.has_unprocessed() or (
                self.store.shared and self.store.feeds_claimed(self._now()))  # type: ignore[attr-defined]
            if until_idle and not waiting:
                return passes
            time.sleep(min(interval_seconds, 1.0) if waiting else interval_seconds)

    def _write_report(self, path: Path) -> None:
        """``settings.report``: the HTML page after a run; a page that cannot be written is a
        warning (the run's work is stored), not an error."""
        from .webpage import report_page

        try:
            path.write_text(report_page(self), encoding="utf-8")
        except OSError as exc:
            log.warning("settings.report %s: cannot write the page: %s", path, exc.strerror or exc)

    def ingest(self, *, force: bool = False) -> IngestReport:
        self._check_writable()
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds):
            return self._ingest(force=force)

    def process(self) -> ProcessReport:
        self._check_writable()
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds), \
                self.store.cluster_lock(wait_seconds=self.lock_wait_seconds):
            return self._process()

    def _check_writable(self) -> None:
        if self.store.read_only:
            raise StorageError(f"database {self.store.path} was opened read-only (read_only=True)")

    # --- bring your own articles --------------------------------------------------------
    def add_articles(self, articles: Iterable[ArticleInput | Mapping[str, Any]]) -> list[int]:
        """Store articles given by the caller; returns the ids of those not stored before."""
        self._check_writable()
        now = self._now()
        rows = [_input_article(_as_input(a, i, now), now) for i, a in enumerate(articles)]
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds), self.store.transaction():
            return self.store.add_articles(rows, now)

    # --- archives ---------------------------------------------------------------------
    def import_articles(self, path: str | Path) -> ImportReport:
        """Store the articles of a JSON Lines or CSV file (archive.read_records), by the rules of
        ``add_articles``; every record is checked before any is stored, so a bad line (a ConfigError
        naming the file and the line) stores nothing.  They are processed by the next run or backfill."""
        from .archive import read_records

        self._check_writable()
        started = time.monotonic()
        now = self._now()
        rows: list[NewArticle] = []
        for line, record in read_records(path):
            try:
                rows.append(_input_article(_as_input(record, line, now), now))
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(f"article #{line}", "article", 1), path=str(path),
                                  line=line) from None
        added = 0
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds):
            for start in range(0, len(rows), IMPORT_CHUNK):
                with self.store.transaction():
                    added += len(self.store.add_articles(rows[start:start + IMPORT_CHUNK], now))
                self._report("importing", min(start + IMPORT_CHUNK, len(rows)), len(rows))
        return ImportReport(len(rows), added, round(time.monotonic() - started, 3))

    def backfill(self, *, ray: str | None = None, step_days: float | None = None) -> BackfillReport:
        """Process an archive: embed every article without a vector (in this process, or on Ray with
        ``ray="auto"`` or a cluster address: archive.embed_on_ray), then one windowed pass (dedup,
        stories) per ``step_days`` (default ``window_days``) of publication time, oldest first, each
        as a run would have seen the store then: the stories are those of cron runs at those times."""
        self._check_writable()
        step = timedelta(days=step_days if step_days is not None else self.config.window_days)
        if step <= timedelta(0):
            raise ConfigError(f"backfill step must be more than 0 days, got {step_days!r}")
        with self.store.run_lock(wait_seconds=self.lock_wait_seconds), \
                self.store.cluster_lock(wait_seconds=self.lock_wait_seconds):
            started = time.monotonic()
            model = self.model_name
            missing = self.store.articles_without_embedding(model)
            if ray is not None:
                from .archive import embed_on_ray

                def save(ids: list[int], vectors: Any) -> None:
                    with self.store.transaction():
                        self.store.save_embeddings(model, ids, vectors)

                embed_on_ray(missing, model=self.config.model, device=self.config.embedding.device,
                             batch_size=self.config.embedding.batch_size, address=ray, save=save,
                             progress=lambda done, total: self._report("embedding", done, total))
            else:
                self._embed_rows(missing, model)
            embed_seconds = time.monotonic() - started
            started = time.monotonic()
            passes = duplicates = 0
            bounds = self.store.unprocessed_span()
            if bounds is not None:
                until, last = bounds[0] + step, bounds[1]
                while True:
                    report = self._process(until=min(until, last))
                    passes += 1
                    duplicates += report.duplicates
                    self._report("windowed passes", passes, math.ceil((last - bounds[0]) / step))
                    if until >= last:
                        break
                    until += step
            return BackfillReport(len(missing), passes, duplicates, self.store.story_count(),
                                  round(embed_seconds, 3), round(time.monotonic() - started, 3))

    def _embed_rows(self, rows: Sequence[Any], model: str) -> None:
        """Embed (id, title, summary) rows and store the vectors, a transaction per EMBED_CHUNK."""
        for start in range(0, len(rows), EMBED_CHUNK):
            chunk = rows[start:start + EMBED_CHUNK]
            vectors = self._embed([article_text(r["title"], r["summary"]) for r in chunk], chunk)
            with self.store.transaction():
                self.store.save_embeddings(model, [r["id"] for r in chunk], vectors)
            self._report("embedding", start + len(chunk), len(rows))

    # --- processing ---------------------------------------------------------------------
    def _process(self, until: datetime | None = None) -> ProcessReport:
        """Embed, dedup and cluster the unprocessed articles; ``until`` (backfill): as if no article
        published after it were stored yet."""
        if not self.store.has_unprocessed(until):
            log.info("process: no new articles (nothing embedded or clustered)")
            # the window has not moved since the last run: its articles in no story are the same
            last = history.last_run(self.store)
            return ProcessReport(0, 0, 0, 0, self.store.story_count(), last.unassigned if last else 0,
                                 pending=last.pending if last else 0)
        stage = _StageTimer("embed")
        model = self.model_name
        # the window only moves forward, so what it holds after embedding is covered
        missing = self.store.articles_without_embedding(model, since=self._window_start(self._now(), until))
        self._embed_rows(missing, model)
        stage.done("%d articles with %s", len(missing), model)
        stage = _StageTimer("dedup")
        now = self._now()
        since = self._readable_window_start(now, until)
        window = self.store.window(since, until)
        if self.store.shared:  # another worker may have stored articles since the embedding above
            waiting = [a.id for a in window if not a.processed]
            embedded = self.store.embedded_ids(waiting, model)
            if len(embedded) < len(waiting):
                window = [a for a in window if a.processed or a.id in embedded]
        vectors = self.store.vectors([a.id for a in window], model)
        unprocessed = [a.id for a in window if not a.processed]

        items = [dedup.DedupItem(article_id=a.id, published=a.published, text=_lexical_text(a),
                                 canonical_url=a.url, text_hash=a.text_hash, is_new=not a.processed,
                                 duplicate_of=a.duplicate_of, link_kind=a.duplicate_kind,
                                 link_score=a.duplicate_score) for a in window]
        pairs = None
        if dedup.shares_search(items):   # a large first run: one search for dedup and the graph
            from .graph import SEARCH_EXTRA, window_pairs

            pairs = window_pairs(vectors, self.config.stories.neighbours + SEARCH_EXTRA + PAIRED_COPIES,
                                 dedup.pairs_floor(self.config.dedup), rows=dedup.searched_items(items))
        links = dedup.find_duplicates(items, vectors, self.config.dedup,
                                      progress=lambda done, total: self._report("duplicates", done, total),
                                      pairs=pairs)
        with self.store.transaction():
            memberships = self.store.save_duplicates([(link.article_id, link.canonical_id, link.kind, link.score)
                                                      for link in links], now)
        duplicate_of = {a.id: a.duplicate_of for a in window}
        duplicate_of.update({link.article_id: link.canonical_id for link in links})
        stage.done("%d links in a window of %d articles (%d new)", len(links), len(window), len(unprocessed))
        stage = _StageTimer("stories")

        position = {a.id: i for i, a in enumerate(window)}
        before = window
        # an earlier copy that took over a group takes over its story too
        window = [dataclasses.replace(a, story_id=memberships[a.id]) if a.id in memberships else a for a in window]
        canonical = [a for a in window if duplicate_of.get(a.id) is None]
        canonical_vectors = vectors[[position[a.id] for a in canonical]] if canonical else vectors[:0]
        taken_ids = _StoredStoryIds(self.store)  # the ids a new story could take, asked one at a time
        self._report("stories", 0, len(canonical))
        state = self._window_state(canonical, canonical_vectors,
                                   pairs.restricted([position[a.id] for a in canonical])
                                   if pairs is not None and canonical else None)
        copies = collections.Counter(c for c in duplicate_of.values() if c is not None)
        docs = [stories.StoryDoc(article_id=a.id, title=a.title, text=a.summary,
                                 published=a.published, source=a.source, story_id=a.story_id,
                                 is_new=not a.processed, pending_group=a.pending_group,
                                 copies=copies.get(a.id, 0)) for a in canonical]
        assignment = stories.assign_stories(docs, canonical_vectors, self.config.stories,
                                            taken_ids=taken_ids, graph=state.graph, terms=state.terms)
        unassigned = sum(1 for a in canonical if a.story_id is None and a.id not in assignment.story_of)
        # history: the window's memberships before this run (``before``) and after it
        after = {a.id: a.story_id for a in before}
        after.update(memberships)
        after.update(assignment.story_of)
        with self.store.transaction():
            self.store.add_story_members(assignment.story_of, now)
            self.store.record_lineage(assignment.merged_into, assignment.split_from)
            self.store.set_pending(assignment.pending)
            labels_before, labels_after = self._relabel(
                canonical, canonical_vectors, assignment,
                (story for story in memberships.values() if story is not None), now)
            self.store.mark_processed(unprocessed)
            events = history.run_events({a.id: a.story_id for a in before}, after, labels_before=labels_before,
                                        labels_after=labels_after, created=assignment.new_story_ids,
                                        split_from=assignment.split_from, merged_into=assignment.merged_into)
            history.store_run(self.store, finished=now, processed=len(unprocessed), unassigned=unassigned,
                              pending=len(assignment.pending), events=events)
            history.compact(self.store, since)
        clustered = len(canonical) if assignment.region is None else len(assignment.region)
        stage.done("%d new, %d updated, %d unassigned; %d of %d window articles clustered afresh",
                   len(assignment.new_story_ids), len(assignment.updated_story_ids), unassigned, clustered,
                   len(canonical))
        new_ids = set(unprocessed)
        return ProcessReport(embedded=len(missing),
                             duplicates=sum(1 for link in links if link.article_id in new_ids),
                             stories_new=len(assignment.new_story_ids),
                             stories_updated=len(assignment.updated_story_ids),
                             stories_total=self.store.story_count(), unassigned=unassigned,
                             moved=len(assignment.moved_from), pending=len(assignment.pending),
                             merged=len(assignment.merged_into))

    def _process_shared(self, new_ids: Sequence[int]) -> ProcessReport:
        """A worker on a shared store: embed what it fetched, then run the window stages unless
        another worker is running them (that worker, or the next run, takes these articles)."""
        embedded = self._embed_articles(new_ids)
        try:
            with self.store.cluster_lock():
                report = self._process()
        except LockedError:
            log.info("process: another worker is clustering; %d new articles wait for the next pass", len(new_ids))
            return ProcessReport(embedded, 0, 0, 0, self.store.story_count(), 0)
        return dataclasses.replace(report, embedded=report.embedded + embedded)

    def _embed_articles(self, ids: Sequence[int]) -> int:
        """Embed those of ``ids`` that have no vector yet (a transaction per chunk); the count."""
        if not ids:
            return 0
        model = self.model_name
        missing = self.store.articles_to_embed(ids, model)
        self._embed_rows(missing, model)
        return len(missing)

    def _report(self, stage: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(stage, done, total)

    def _embed(self, texts: Sequence[str], rows: Sequence[Any]) -> Any:
        """The embedder's error boundary: whatever it raises becomes an EmbeddingError
        (the articles stay stored and unprocessed for the next run)."""
        import numpy as np

        span = f"articles {rows[0]['id']}..{rows[-1]['id']}"
        try:
            vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"embedding {span} with {self.model_name!r} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbeddingError(f"embedding {span} with {self.model_name!r}: expected {len(texts)} vectors, "
                                 f"got an array of shape {vectors.shape}")
        return vectors

    def window_end(self) -> datetime:
        """Where the processing window ends: the newest stored article's publication time,
        never later than now.  ``clustering stories --since 2d`` counts back from here too."""
        return self._window_end(self._now())

    def _window_end(self, now: datetime, until: datetime | None = None) -> datetime:
        latest = self.store.latest_published(until) or now
        return min(now, latest)

    def _window_start(self, now: datetime, until: datetime | None = None) -> datetime:
        """The window ends at the newest article (never after now): a replayed archive or
        the bundled sample behaves as it did live."""
        return self._window_end(now, until) - timedelta(days=self.config.window_days)

    def _readable_window_start(self, now: datetime, until: datetime | None = None) -> datetime:
        """The window start, once every stored time the window reads is readable: reading a
        stored value is never fatal to a run (Store.repair_times warns about each repair)."""
        since = self._window_start(now, until)
        with self.store.transaction():
            repaired = self.store.repair_times(since=since, now=now)
        return self._window_start(now, until) if repaired else since

    def _relabel(self, canonical: Sequence[WindowArticle], vectors: Any, assignment: stories.StoryAssignment,
                 copies_moved: Iterable[str], now: datetime) -> tuple[dict[str, str], dict[str, str]]:
        """Labels of the stories whose members changed this run (``copies_moved``: stories an
        earlier copy took over in dedup) and of any story without one; topics of every story with
        members in the window; a story whose stored label cannot be read is relabelled too.  A story
        whose members did not change keeps its headline and keywords: recomputing them against whichever
        stories a run happens to touch renamed one unchanged story in six (ECB+ stream of 40 runs: 252 of
        1,584).  Topics are named (topics.py).
        Returns the relabelled stories' headlines before and after (the story history's input)."""
        import numpy as np

        story_of = assignment.story_of
        row_of = {a.id: i for i, a in enumerate(canonical)}
        members: dict[str, list[WindowArticle]] = {}
        for article in canonical:
            story_id = story_of.get(article.id) or article.story_id
            if story_id is not None:
                members.setdefault(story_id, []).append(article)
        if not members:
            return {}, {}
        story_ids = sorted(members, key=lambda s: (len(s), s))
        stored = self.store.stored_labels(story_ids)
        current = {s: label for s, (label, _) in stored.items()}
        changed = set(story_of.values()) | set(assignment.moved_from.values()) | set(copies_moved)
        relabelled = [s for s in story_ids if s in changed or not stored.get(s, ("", False))[1]]

        def story_text(story_id: str) -> labels.StoryText:
            return labels.StoryText(titles=[a.title for a in members[story_id]],
                                    texts=[article_text(a.title, a.summary) for a in members[story_id]],
                                    vectors=vectors[[row_of[a.id] for a in members[story_id]]],
                                    current_label=current.get(story_id, ""))

        texts = {s: story_text(s) for s in relabelled}
        others = [s for s in reversed(story_ids) if s not in texts][:max(0, KEYWORD_BACKGROUND_STORIES - len(texts))]
        background = {s: story_text(s) for s in others}
        found = labels.story_labels(texts, self.config.stories.keywords, background=background)
        import scipy.sparse

        rows = np.asarray([row_of[a.id] for s in story_ids for a in members[s]])
        group = np.repeat(np.arange(len(story_ids)), [len(members[s]) for s in story_ids])
        membership = scipy.sparse.csr_matrix((np.ones(len(rows)), (group, rows)),
                                             shape=(len(story_ids), len(canonical)))
        sums = membership @ np.asarray(vectors, dtype=np.float64)
        topic_of = labels.group_topics(story_ids, sums, self.config.stories.topic_threshold,
                                       self.config.stories.topic_pair_threshold)
        self.store.update_story_labels(found, topic_of)
        self.store.set_topics({s: t for s, t in topic_of.items() if s not in found})
        headlines = {s: found[s][0] if s in found else current.get(s, "") for s in story_ids}
        names = topics.topic_names(topic_of, story_ids, sums, headlines,
                                   listing_queries.topic_names(self.store, sorted(set(topic_of.values()))))
        listing_queries.save_topics(self.store, names, now)
        return ({s: current[s] for s in found if current.get(s)}, {s: label for s, (label, _) in found.items()})

    def _window_state(self, canonical: Sequence[WindowArticle], vectors: Any, pairs: Any = None) -> WindowState:
        """The window's neighbour lists and terms: this process's from the last run, else the
        cache file's, updated for what changed; saved for the next run (window.py).  Whatever the
        state says about an article is checked against its stored text and vector first."""
        from . import window
        from .store import content_hash

        started = time.monotonic()
        path = window.cache_path(self.config.database)
        key = self.store.cache_key("window") if path is not None else b""  # no file: nothing to seal
        previous = self._window if self._window is not None else window.load(path, key, window_rows=len(canonical))
        by_id = {a.id: a for a in canonical}
        unhashed = {a.id: content_hash(a.title, a.summary) for a in canonical if a.content_hash is None}
        if unhashed:  # stored before schema 5, or edited since (a trigger clears the hash)
            with self.store.transaction():
                self.store.save_content_hashes(unhashed)
        text_hashes = [a.content_hash if a.content_hash is not None else unhashed[a.id] for a in canonical]
        state, report = window.refresh(previous, [a.id for a in canonical], vectors,
                                       lambda article_id: (by_id[article_id].title, by_id[article_id].summary),
                                       text_hashes, model=self.model_name, neighbours=self.config.stories.neighbours,
                                       pairs=pairs)
        window.save(path, state, key)
        self._window = state
        log.debug("window graph: %s, %d of %d articles searched, %d read for names, %.1f s",
                  "rebuilt" if report.rebuilt else "updated", report.searched, len(canonical), report.new_terms,
                  time.monotonic() - started)
        return state


def open_pipeline(database: str | Path | None = None,
                  config: Config | str | Path | Mapping[str, Any] | None = None, **options: Any) -> Pipeline:
    """Open a pipeline: ``config`` is a Config, a path to feeds.yaml, what a feeds.yaml holds as a
    mapping (``{"settings": {"window_days": 2}}``), or None (defaults); ``database`` overrides the
    configured database path."""
    if config is None:
        resolved = Config()
    elif isinstance(config, Config):
        resolved = config
    elif isinstance(config, Mapping):
        resolved = parse_config(config)
    elif isinstance(config, (str, Path)):
        resolved = load_config(config)
    else:
        raise ConfigError(f"config must be a Config, a path to feeds.yaml, a mapping or None, "
                          f"not {type(config).__name__}")
    if database is not None:
        resolved = resolved.with_database(database)
    return Pipeline(resolved, **options)


# --- helpers ----------------------------------------------------------------------------------
class _StoredStoryIds:
    """``story_id in taken``: whether the store holds a story of that id.  The story stage asks only
    for the ids a new story founded by a window article could take (``s<id>``, ``s<id>-<n>``), a few
    dozen a run: a lookup each, where reading every such id of the window's articles first
    (``Store.existing_story_ids``) took 0.2 s of a 100k window's run."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __contains__(self, story_id: object) -> bool:
        return isinstance(story_id, str) and self.store.story_exists(story_id)


def _lexical_text(article: WindowArticle) -> str:
    """The body compared by the shingle test: copies keep the body, change the headline.  (A
    summary of 8 words or more: ``split(None, 7)`` stops after the eighth, which splitting every
    summary of a 100k window whole took 0.3 s to learn.)"""
    return article.summary if len(article.summary.split(None, 7)) >= 8 else f"{article.title} {article.summary}"
