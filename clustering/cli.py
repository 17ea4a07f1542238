"""The command line: parse arguments, make one call into the pipeline, print.

Every ClusteringError becomes a one-line message on stderr and exit status 1;
argument errors exit 2 (argparse); a run in which every feed it fetched failed exits
EXIT_ALL_FEEDS_FAILED (3).  Heavy modules load only inside the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ClusteringError, ConfigError, LockedError

if TYPE_CHECKING:
    from .core import Pipeline

DEFAULT_CONFIG = "feeds.yaml"
SAMPLE_DATABASE = "clustering-sample.db"
DEFAULT_EVAL_CACHE = Path.home() / ".cache" / "clustering" / "embeddings"

EXIT_ALL_FEEDS_FAILED = 3
"""Exit status of a `clustering run` in which no feed succeeded (none ok or not modified) and at
least one failed: a total outage (network down, a broken proxy) that cron and monitoring must see.
Feeds not due this run count neither way; a run in which only some feeds failed exits 0."""

VERBOSE_HELP = ("log more, before or after the command: -v each stage of a run with its counts and seconds, "
                "-vv also other libraries' messages (repeatable)")

RUN_EXIT_STATUS = (f"exit status: 0 done (also when some feeds failed, or when another run holds the lock: "
                   f"skipped); 1 error (also skipped because another run has held the lock for longer than "
                   f"settings.fetch.run_deadline); 2 bad arguments; {EXIT_ALL_FEEDS_FAILED} every feed fetched in "
                   "this run failed (the summary or JSON is printed all the same)")


CONFIG_ENV = "CLUSTERING_CONFIG"
"""Environment variable naming the feeds.yaml when ``--config`` is not given."""
DATABASE_ENV = "CLUSTERING_DB"
"""Environment variable naming the database when ``--db`` is not given (overrides settings.database)."""


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"feeds and settings (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG})")
    parser.add_argument("--db", metavar="PATH",
                        help=f"database file, or a postgresql:// URL (clustering[postgres]) "
                             f"(default: ${DATABASE_ENV}, else settings.database)")
    parser.add_argument("--sample", action="store_true",
                        help=f"use the bundled offline sample feeds (database ./{SAMPLE_DATABASE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clustering",
        description="Turn news feeds into a deduplicated set of stories with stable ids.",
        epilog=f"exit status: 0 done; 1 error; 2 bad arguments; {EXIT_ALL_FEEDS_FAILED} `run` in which every "
               "feed fetched failed (see `clustering run --help`)")
    parser.add_argument("--version", action="version", version=f"clustering {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # -v after the command too: `clustering run -v`; its own count, added to the one before
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-v", "--verbose", dest="verbose_after", action="count", default=0, help=VERBOSE_HELP)
    add_command = functools.partial(commands.add_parser, parents=[verbosity])

    run = add_command("run", help="fetch due feeds, store new articles, dedup and cluster them",
                              epilog=RUN_EXIT_STATUS)
    _add_source_options(run)
    run.add_argument("--force", action="store_true", help="fetch every feed now, ignoring poll intervals/backoff")
    run.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                     help="if another run holds the lock, wait this long (default: exit at once)")
    run.add_argument("--json", action="store_true", help="print one JSON object")

    worker = add_command("worker", help="run pass after pass; several workers share a PostgreSQL --db",
                         description="Fetch the due feeds this worker claims, store and embed them, and cluster "
                                     "when no other worker is clustering; then again.  Several workers on one "
                                     "PostgreSQL store (--db postgresql://...) share the feeds between them.")
    _add_source_options(worker)
    worker.add_argument("--interval", type=_seconds, default=60.0, metavar="SECONDS",
                        help="wait after a pass that fetched nothing (default 60)")
    worker.add_argument("--claim-lease", type=_seconds, default=300.0, metavar="SECONDS",
                        help="how long a feed this worker claimed stays its own if it dies before storing it "
                             "(default 300)")
    worker.add_argument("--until-idle", action="store_true",
                        help="stop once no feed is due or claimed and nothing is left to cluster")

    importer = add_command("import", help="store articles from a JSON Lines or CSV file (then `backfill`)",
                           description="Store the articles of FILE (.jsonl: one JSON object a line; .csv: a header "
                                       "row) with the fields title, text, url, published (ISO-8601 with a zone, or "
                                       "Unix seconds), source, key, by the rules of Pipeline.add_articles; a bad "
                                       "record names the file and the line, and then nothing is stored.")
    _add_source_options(importer)
    importer.add_argument("file", metavar="FILE")
    backfill = add_command("backfill", help="embed and cluster an imported archive, window by window",
                           description="Embed every article without a vector (in this process, or on Ray with "
                                       "--ray), then dedup and cluster one window at a time in publication order, "
                                       "as cron runs over the same articles would have.")
    _add_source_options(backfill)
    backfill.add_argument("--ray", metavar="auto|ADDRESS", help="embed on a Ray cluster (clustering[ray]): auto "
                                                                "or an address such as ray://HOST:10001")
    backfill.add_argument("--step", type=_days, default=None, metavar="DAYS",
                          help="publication time between windowed passes (default: settings.window_days)")

    stories = add_command("stories", help="list stories, most recently active first")
    _add_source_options(stories)
    _add_since(stories, "only stories with an article published")
    stories.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N stories")
    stories.add_argument("--topic", metavar="ID", help="only the stories of this topic")
    _add_tag(stories, "only stories with an article from a feed tagged TAG")
    _add_format(stories)
    stories.add_argument("--html", metavar="FILE", help="also write the HTML report of these stories to FILE")

    story = add_command("story", help="one story: members in time order, sources, duplicates, scores")
    _add_source_options(story)
    story.add_argument("story_id", metavar="ID")
    story.add_argument("--history", action="store_true",
                       help="what each run changed in the story: articles that joined or left, headline changes, "
                            "splits and merges")
    _add_format(story, formats=("table", "json"), noun="one JSON object")

    articles = add_command("articles", help="list articles, oldest first: of a story, in no story, by feed, by words")
    _add_source_options(articles)
    chosen = articles.add_mutually_exclusive_group()
    chosen.add_argument("--story", metavar="ID", help="the articles of this story and their copies")
    chosen.add_argument("--unassigned", action="store_true",
                        help="the window's articles in no story and copying none (what the run summary counts)")
    articles.add_argument("--search", metavar="WORDS", help="only articles whose title or text holds every word")
    articles.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N articles")
    _add_article_filters(articles, "articles")

    duplicates = add_command("duplicates", help="list duplicate links: each copy, its original and their outlets")
    _add_source_options(duplicates)
    duplicates.add_argument("--story", metavar="ID", help="only the copies of this story's articles")
    _add_article_filters(duplicates, "copies")

    topics = add_command("topics", help="list topics (named groups of stories), most recently active first")
    _add_source_options(topics)
    _add_since(topics, "only topics with an article published")
    topics.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N topics")
    _add_tag(topics, "only topics with an article from a feed tagged TAG")
    _add_format(topics)

    changes = add_command("changes", help="what runs changed: new and grown stories, moved articles, new headlines")
    _add_source_options(changes)
    changes.add_argument("--since", type=_run_or_since, metavar="RUN|WHEN",
                         help="the runs after run RUN, or those finished in the last WHEN (6h, 2d) before the last "
                              "run, or since an ISO date (default: the last run)")
    _add_tag(changes, "only changes to stories with an article from a feed tagged TAG")
    _add_format(changes)

    report = add_command("report", help="write the HTML report: topics, stories, sources, copies, timeline")
    _add_source_options(report)
    report.add_argument("path", metavar="FILE", help="the page to write")
    _add_since(report, "only stories with an article published")

    feeds = add_command("feeds", help="status of each feed, with its last error; add, remove, import, export")
    _add_source_options(feeds)
    _add_tag(feeds, "only feeds tagged TAG")
    _add_format(feeds)
    feed_actions = feeds.add_subparsers(dest="feeds_action", metavar="ACTION")
    add_feed = feed_actions.add_parser("add", help="add a feed to feeds.yaml (comments are kept)")
    add_feed.add_argument("url", metavar="URL")
    add_feed.add_argument("--name", help="the feed's name (default: from the URL's host and path)")
    add_feed.add_argument("--tags", metavar="T1,T2", help="tags, comma-separated")
    remove_feed = feed_actions.add_parser("remove", help="remove a feed from feeds.yaml (its articles stay stored)")
    remove_feed.add_argument("name", metavar="NAME")
    import_feeds = feed_actions.add_parser("import", help="add the feeds of an OPML file to feeds.yaml")
    import_feeds.add_argument("opml", metavar="FILE")
    export_feeds = feed_actions.add_parser("export", help="print feeds.yaml's feeds as OPML (or write FILE)")
    export_feeds.add_argument("opml", metavar="FILE", nargs="?")
    for action in (add_feed, remove_feed, import_feeds, export_feeds):  # --config after the action too
        action.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                            help=f"the feeds.yaml to edit (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG})")
    evaluate = add_command("eval", help="score dedup + stories on a labelled corpus (B-cubed, ARI, AMI)")
    evaluate.add_argument("path", metavar="PATH", help="labelled corpus: .jsonl/.json/.tsv/.csv")
    evaluate.add_argument("--text", required=True, metavar="FIELD", help="text field (column index if no header)")
    evaluate.add_argument("--label", required=True, metavar="FIELD", help="gold story/event label field")
    evaluate.add_argument("--title", metavar="FIELD", help="title field (default: first line of the text)")
    evaluate.add_argument("--time", metavar="FIELD", help="publication time field (ISO-8601 or Unix seconds)")
    evaluate.add_argument("--source", metavar="FIELD", help="source/outlet field")
    evaluate.add_argument("--id", metavar="FIELD", help="document id field (names documents in warnings and "
                                                        "assignments)")
    evaluate.add_argument("--topic-label", metavar="FIELD", help="coarser gold label: also score topics")
    evaluate.add_argument("--stream", action="store_true", help="feed the corpus in chunks, as cron runs would")
    evaluate.add_argument("--chunks", type=int, default=10, metavar="N", help="stream mode: runs (default 10)")
    evaluate.add_argument("--seed", type=int, default=13, help="stream order for undated corpora (default 13)")
    evaluate.add_argument("--config", "-c", metavar="FILE", help="settings to evaluate (default: built-in)")
    evaluate.add_argument("--model", metavar="NAME", help="embedding model (overrides the config)")
    evaluate.add_argument("--assignments", metavar="FILE", help="write one JSON line per input document")
    evaluate.add_argument("--no-cache", action="store_true", help="do not cache embeddings")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _add_format(parser: argparse.ArgumentParser, formats: Sequence[str] = ("table", "json", "jsonl", "csv"),
                noun: str = "one JSON array") -> None:
    parser.add_argument("--format", choices=formats, default=None,
                        help=f"output: {', '.join(formats)} (default: table, fitted to the terminal)")
    parser.add_argument("--json", action="store_true", help=f"print {noun} (the same as --format json)")


def _add_since(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--since", type=_since_text, metavar="WHEN",
                        help=f"{what} in the last WHEN (6h, 2d, 90m, 1w), counted back from the newest stored "
                             "article as the processing window is (not from the wall clock: a replayed archive "
                             "works), or since an ISO date (UTC unless it says)")


def _add_article_filters(parser: argparse.ArgumentParser, noun: str) -> None:
    parser.add_argument("--feed", action="append", metavar="NAME", help=f"only {noun} from this feed (repeatable)")
    _add_since(parser, f"only {noun} published")
    _add_tag(parser, f"only {noun} from feeds tagged TAG")
    _add_format(parser)


def _add_tag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--tag", action="append", metavar="TAG", help=f"{what} (feeds.yaml tags; repeatable: any)")


def _output_format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise ConfigError(f"--json and --format {args.format} exclude each other")
    return "json" if args.json else args.format or "table"


def _since_text(value: str) -> str:
    """An argparse type: a ``--since`` that parse_since can read (else exit 2, bad arguments)."""
    try:
        parse_since(value, datetime.now(timezone.utc))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--since {value[:40]!r}: ")) from None
    return value


def _run_or_since(value: str) -> int | str:
    """``changes --since``: a run id (digits) or what ``_since_text`` takes."""
    return int(value) if value.strip().isdigit() else _since_text(value)


def _number_type(kind: type[int] | type[float], minimum: int, expected: str) -> Callable[[str], float]:
    """An argparse type: a finite number of ``kind``, at least ``minimum`` (``--wait nan``
    and ``--wait inf`` would never end)."""
    def convert(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            number = math.nan
        if (isinstance(number, float) and not math.isfinite(number)) or number < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
        return number
    return convert


_seconds = _number_type(float, 0, "a finite number of seconds, 0 or more")
_positive_int = _number_type(int, 1, "a whole number, 1 or more")
_days = _number_type(float, 0, "a number of days")


def parse_since(value: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (6h, 2d, 90m, 1w) or an ISO date; UTC.
    ``clustering stories`` passes the window's end as ``now`` (Pipeline.window_end)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", value)
    try:
        if match:
            amount = float(match.group(1))
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
            return now - timedelta(**{unit: amount})
        moment = datetime.fromisoformat(value.strip())
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except OverflowError:
        raise ConfigError(f"--since {value[:40]!r}: reaches outside the calendar (years 1 to 9999)") from None
    except ValueError:
        raise ConfigError(f"--since {value[:40]!r}: expected a duration like 6h, 2d, 90m or an ISO date") from None


def _open(args: argparse.Namespace, *, read_only: bool = False, **options: Any) -> Pipeline:
    """The pipeline the arguments name.  A reading command given ``--db`` needs no feeds.yaml."""
    from .config import Config, load_config, sample_config_path
    from .core import Pipeline

    if args.sample:
        if args.config:
            raise ConfigError("--sample and --config exclude each other")
        config = load_config(sample_config_path()).with_database(args.db or SAMPLE_DATABASE)
    else:
        database = args.db or os.environ.get(DATABASE_ENV) or None
        named = args.config or os.environ.get(CONFIG_ENV) or None
        path = Path(named or DEFAULT_CONFIG)
        if named is None and not path.exists():
            if read_only and database:
                return Pipeline(Config().with_database(database), read_only=True, **options)
            raise ConfigError(f"no {DEFAULT_CONFIG} in the current directory: pass --config FILE"
                              + (" or --db PATH" if read_only else "") + ", or try the offline sample with --sample")
        config = load_config(path)
        if database:
            config = config.with_database(database)
    assert isinstance(config, Config)
    return Pipeline(config, read_only=read_only, **options)


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def cmd_run(args: argparse.Namespace) -> int:
    from .report import ProgressLine, run_summary

    # progress only for a person at a terminal: not under cron, not in front of --json; cleared
    # (leaving the block) before the summary or an error message is printed
    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() and not args.json else None
    with _open(args, lock_wait_seconds=args.wait, progress=progress) as pipeline, \
            progress or contextlib.nullcontext():
        try:
            report = pipeline.run(force=args.force)
        except LockedError as exc:
            # an overlapping cron run: not an error, nothing was touched; unless the holder has had
            # the lock for longer than a run may fetch (a hung run): then every skipped run says so
            overdue = _held_too_long(exc, pipeline.config.fetch.run_deadline)
            if args.json:
                _print_json({"skipped": True, "reason": overdue or str(exc), "overdue": bool(overdue),
                             "held_since": exc.held_since.isoformat() if exc.held_since else None})
            else:
                print(f"clustering: error: {overdue}" if overdue else f"skipped: {exc}", file=sys.stderr)
            return 1 if overdue else 0
    if args.json:
        _print_json({"skipped": False, **report.as_dict()})
    else:
        print(run_summary(report))
    if report.feeds_failed and not report.feeds_ok + report.feeds_not_modified:
        print(f"clustering: every feed fetched in this run failed ({report.feeds_failed}); "
              "see `clustering feeds` for their errors", file=sys.stderr)
        return EXIT_ALL_FEEDS_FAILED
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .report import run_summary

    def report(run: Any) -> None:  # a RunReport
        if run.new_articles or run.stories_new or run.stories_updated or run.feeds_failed:
            print(run_summary(run), flush=True)

    with _open(args, claim_lease_seconds=args.claim_lease) as pipeline:
        passes = pipeline.work(until_idle=args.until_idle, interval_seconds=args.interval, on_pass=report)
    print(f"worker: {passes} passes", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    with _open(args) as pipeline:
        report = pipeline.import_articles(args.file)
    print(f"imported {report.new_articles} new articles of {report.records} in {args.file} "
          f"({report.seconds:.1f} s); `clustering backfill` embeds and clusters them")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    with _open(args) as pipeline:
        report = pipeline.backfill(ray=args.ray, step_days=args.step)
    where = f"on Ray ({args.ray})" if args.ray else "in this process"
    print(f"backfill: {report.embedded} articles embedded {where} in {report.embed_seconds:.1f} s; "
          f"{report.passes} windowed passes in {report.cluster_seconds:.1f} s: {report.duplicates} duplicates, "
          f"{report.stories_total} stories")
    return 0


def _held_too_long(locked: LockedError, run_deadline: float) -> str | None:
    """What to say when the run lock has been held for longer than the run deadline, else None."""
    if locked.held_since is None:
        return None
    held = datetime.now(timezone.utc) - locked.held_since
    if held.total_seconds() <= run_deadline:
        return None
    holder = f"pid {locked.holder_pid}" if locked.holder_pid is not None else "another run"
    return (f"skipped: {holder} has held the run lock since {locked.held_since:%Y-%m-%d %H:%M:%S} UTC "
            f"({held.total_seconds() / 60:.0f} min), longer than settings.fetch.run_deadline ({run_deadline:g} s): "
            "is that run stuck?")


def _tagged_sources(pipeline: Any, tags: Sequence[str] | None) -> list[str] | None:
    """The feeds carrying any of ``tags`` (None: no --tag given)."""
    if not tags:
        return None
    if not pipeline.config.feeds:
        raise ConfigError("--tag needs a feeds.yaml with the feeds' tags (pass --config FILE)")
    return [f.name for f in pipeline.config.feeds if set(f.tags) & set(tags)]


def _since(args: argparse.Namespace, pipeline: Any) -> datetime | None:
    return parse_since(args.since, pipeline.window_end()) if args.since else None


def _print_listing(args: argparse.Namespace, rows: Sequence[dict[str, Any]], table: Callable[[int], str],
                   columns: Sequence[str] | None = None) -> None:
    from .listing import render, terminal_width

    text = render(rows, _output_format(args), lambda: table(terminal_width()), columns)
    if text:
        print(text)


def cmd_stories(args: argparse.Namespace) -> int:
    from .listing import stories_table, story_row
    from .report import story_dict

    fmt = _output_format(args)
    with _open(args, read_only=True) as pipeline, pipeline.snapshot():  # the list and its stories: one state
        found = pipeline.stories(since=_since(args, pipeline), limit=None if (args.tag or args.topic) else args.limit)
        sources = _tagged_sources(pipeline, args.tag)
        if sources is not None:
            tagged = {a.story_id for a in pipeline.articles(sources=sources)}
            found = [s for s in found if s.id in tagged]
        if args.topic:
            found = [s for s in found if s.topic_id == args.topic]
        found = found[:args.limit] if args.limit else found
        if args.html:
            _write_report(pipeline, args.html, found)
    rows = [story_row(s) for s in found] if fmt == "csv" else [story_dict(s) for s in found]
    _print_listing(args, rows, lambda width: stories_table(found, width), columns=STORY_COLUMNS)
    return 0


STORY_COLUMNS = ("id", "label", "keywords", "size", "canonical_sources", "sources", "duplicates", "first_seen",
                 "last_seen", "topic_id", "topic_name", "split_from")
"""The columns of ``stories --format csv``: those of the ``story_list`` view."""


def _write_report(pipeline: Any, path: str, found: Sequence[Any] | None = None) -> None:
    from .webpage import report_page

    page = report_page(pipeline, stories=found)
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the page: {exc.strerror or exc}") from exc


def cmd_report(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as pipeline, pipeline.snapshot():  # the list and its stories: one state
        since = _since(args, pipeline)
        _write_report(pipeline, args.path, pipeline.stories(since=since) if since else None)
    return 0


def cmd_story(args: argparse.Namespace) -> int:
    from .listing import event_row, history_text
    from .report import story_detail_dict, story_text

    fmt = _output_format(args)
    with _open(args, read_only=True) as pipeline:
        if args.history:
            events = pipeline.story_history(args.story_id)
            if fmt == "json":
                _print_json([event_row(e) for e in events])
            else:
                print(history_text(args.story_id, events))
            return 0
        detail = pipeline.story(args.story_id)
        copies = pipeline.store.articles([link.article_id for link in detail.duplicates])
    if fmt == "json":
        _print_json(story_detail_dict(detail, copies))
    else:
        print(story_text(detail, copies))
    return 0


def cmd_articles(args: argparse.Namespace) -> int:
    from .listing import article_row, articles_table

    with _open(args, read_only=True) as pipeline:
        sources = _tagged_sources(pipeline, args.tag)
        if args.feed:
            sources = [f for f in args.feed if sources is None or f in sources]
        found = pipeline.articles(story=args.story, unassigned=args.unassigned, sources=sources,
                                  search=args.search or (), since=_since(args, pipeline), limit=args.limit)
    _print_listing(args, [article_row(a) for a in found], lambda width: articles_table(found, width),
                   columns=ARTICLE_COLUMNS)
    if args.unassigned and _output_format(args) == "table":
        print(f"{len(found)} articles in no story", file=sys.stderr)
    return 0


ARTICLE_COLUMNS = ("id", "source", "title", "url", "published", "first_seen", "duplicate_of", "story_id")
"""The columns of ``articles`` in every format: those of the ``article_list`` view."""
DUPLICATE_COLUMNS = ("article_id", "canonical_id", "kind", "score", "source", "canonical_source", "title",
                     "published", "story_id")
"""The columns of ``duplicates`` in every format: those of the ``duplicate_list`` view."""


def cmd_duplicates(args: argparse.Namespace) -> int:
    from .listing import duplicates_table

    with _open(args, read_only=True) as pipeline:
        sources = _tagged_sources(pipeline, args.tag)
        if args.feed:
            sources = [f for f in args.feed if sources is None or f in sources]
        rows = pipeline.duplicates(story=args.story, since=_since(args, pipeline), sources=sources)
    _print_listing(args, rows, lambda width: duplicates_table(rows, width), columns=DUPLICATE_COLUMNS)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from .listing import topic_row, topics_table

    with _open(args, read_only=True) as pipeline:
        found = pipeline.topics(since=_since(args, pipeline), limit=None if args.tag else args.limit)
        sources = _tagged_sources(pipeline, args.tag)
        if sources is not None:
            tagged = {a.story_id for a in pipeline.articles(sources=sources)}
            found = [t for t in found if tagged & set(t.story_ids)][:args.limit]
    _print_listing(args, [topic_row(t) for t in found], lambda width: topics_table(found, width),
                   columns=("id", "name", "keywords", "stories", "articles", "first_seen", "last_seen", "story_ids"))
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    from .listing import changes_text, event_row

    with _open(args, read_only=True) as pipeline:
        if isinstance(args.since, int):
            runs = pipeline.runs(after=args.since)
        elif args.since:
            last = pipeline.runs(last=1)
            runs = pipeline.runs(since=parse_since(args.since, last[0].finished)) if last else []
        else:
            runs = pipeline.runs(last=1)
        events = pipeline.changes(since=runs[0].id - 1) if runs else []
        sources = _tagged_sources(pipeline, args.tag)
        if sources is not None:
            tagged = {a.story_id for a in pipeline.articles(sources=sources)}
            events = [e for e in events if e.story_id in tagged]
        stories = {s.id: s for s in pipeline.stories()}
    _print_listing(args, [event_row(e) for e in events], lambda width: changes_text(runs, events, stories, width),
                   columns=("run_id", "run_finished", "story_id", "kind", "article_id", "other_story_id",
                            "label_before", "label_after", "title"))
    return 0


def cmd_feeds(args: argparse.Namespace) -> int:
    from .listing import feed_row, feeds_table

    if getattr(args, "feeds_action", None):
        return _edit_feeds(args)
    with _open(args, read_only=True) as pipeline:
        statuses = pipeline.feeds()
        tags = {f.name: f.tags for f in pipeline.config.feeds}
        if args.tag:
            statuses = [s for s in statuses if set(tags.get(s.name, ())) & set(args.tag)]
    _print_listing(args, [feed_row(s, tags.get(s.name, ())) for s in statuses],
                   lambda width: feeds_table(statuses, tags, width))
    return 0


def _edit_feeds(args: argparse.Namespace) -> int:
    from . import feedlist

    if args.sample:
        raise ConfigError("the bundled sample's feeds cannot be edited: pass --config FILE")
    path = Path(getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if args.feeds_action == "add":
        tags = [t.strip() for t in (args.tags or "").split(",") if t.strip()]
        name = feedlist.add_feed(path, args.url, name=args.name, tags=tags)
        print(f"added feed {name!r} to {path}")
    elif args.feeds_action == "remove":
        feedlist.remove_feed(path, args.name)
        print(f"removed feed {args.name!r} from {path} (its articles stay stored)")
    elif args.feeds_action == "import":
        added = feedlist.import_opml(path, Path(args.opml))
        print(f"added {len(added)} feeds to {path}" + (f": {', '.join(added)}" if added else ""))
    else:
        text = feedlist.export_opml(path)
        if args.opml:
            try:
                Path(args.opml).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{args.opml}: cannot write: {exc.strerror or exc}") from exc
        else:
            print(text, end="")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from .config import Config, load_config
    from .corpora import load_labelled, split_headline
    from .eval import evaluate

    config = load_config(args.config) if args.config else Config()
    if args.model:
        config = dataclasses.replace(config, model=args.model)
    docs = load_labelled(Path(args.path), text_field=args.text, label_field=args.label, title_field=args.title,
                         time_field=args.time, topic_field=args.topic_label, source_field=args.source,
                         id_field=args.id)
    if not args.title:
        docs = [dataclasses.replace(d, title=title, text=body)
                for d in docs for title, body in [split_headline(d.text)]]
    result = evaluate(docs, config=config, stream=args.stream, chunks=args.chunks, seed=args.seed,
                      cache_dir=None if args.no_cache else DEFAULT_EVAL_CACHE)
    if args.assignments:
        with open(args.assignments, "w", encoding="utf-8") as handle:
            for row in result.assignments:
                handle.write(json.dumps(row) + "\n")
    if args.json:
        _print_json(result.as_dict())
        return 0
    skipped = f" ({len(result.skipped)} without text skipped)" if result.skipped else ""
    print(f"{result.documents} documents{skipped}, {result.mode} ({result.runs} runs), {result.seconds:.1f} s; "
          f"duplicates: {result.duplicates['links']} ({result.duplicates['exact']} exact, "
          f"{result.duplicates['near']} near)")
    keys = ["b3_precision", "b3_recall", "b3_f1", "pair_f1", "ari", "ami", "n_clusters", "unassigned"]
    print(f"{'level':<6} " + " ".join(f"{k:>12}" for k in keys))
    for level, scores in (("story", result.story), ("topic", result.topic)):
        if scores is not None:
            print(f"{level:<6} " + " ".join(f"{scores[k]:>12.4g}" for k in keys))
    if result.id_churn is not None:
        print(f"id churn: {result.id_churn:.2%}")
    if result.headline_churn is not None:
        print(f"headline changes: {result.headline_churn:.2%} of the stories carried from one run to the next")
    return 0


COMMANDS = {"run": cmd_run, "worker": cmd_worker, "import": cmd_import, "backfill": cmd_backfill,
            "stories": cmd_stories, "story": cmd_story, "articles": cmd_articles,
            "duplicates": cmd_duplicates, "topics": cmd_topics, "changes": cmd_changes, "report": cmd_report,
            "feeds": cmd_feeds, "eval": cmd_eval}


def configure_logging(verbosity: int) -> None:
    """Warnings always; ``-v`` adds clustering's INFO (each stage of a run, its counts and
    seconds); ``-vv`` clustering's DEBUG and other libraries' INFO; ``-vvv`` everything.
    Other libraries (httpx, sentence-transformers, transformers, faiss, numba, ...) log
    through the root logger, which stays at WARNING below ``-vv``."""
    logging.basicConfig(level=logging.DEBUG if verbosity >= 3 else logging.INFO if verbosity == 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clustering").setLevel(
        logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose + args.verbose_after)
    handler = COMMANDS.get(args.command)
    try:
        assert handler is not None
        status = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return status
    except ClusteringError as exc:
        print(f"clustering: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clustering: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `clustering stories | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # silence the final flush
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
