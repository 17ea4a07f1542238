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
from typing import Any

from . import __version__
from .errors import ClusteringError, ConfigError, LockedError

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
                   f"skipped); 1 error; 2 bad arguments; {EXIT_ALL_FEEDS_FAILED} every feed fetched in this run "
                   "failed (the summary or JSON is printed all the same)")


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"feeds and settings (default: ./{DEFAULT_CONFIG})")
    parser.add_argument("--db", metavar="PATH", help="database file, or a postgresql:// URL (clustering[postgres]); "
                                                     "overrides settings.database")
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
    stories.add_argument("--since", metavar="WHEN",
                         help="only stories with an article published in the last WHEN (6h, 2d, 90m, 1w), counted "
                              "back from the newest stored article as the processing window is (not from the wall "
                              "clock: a replayed archive works), or since an ISO date (UTC unless it says)")
    stories.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="at most N stories")
    stories.add_argument("--json", action="store_true", help="print one JSON array")
    stories.add_argument("--html", metavar="FILE", help="also write an HTML page of the stories to FILE")

    story = add_command("story", help="one story: members, sources, duplicates, scores")
    _add_source_options(story)
    story.add_argument("story_id", metavar="ID")
    story.add_argument("--json", action="store_true", help="print one JSON object")

    feeds = add_command("feeds", help="status of each feed, with its last error")
    _add_source_options(feeds)
    feeds.add_argument("--json", action="store_true", help="print one JSON array")
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


def _open(args: argparse.Namespace, *, read_only: bool = False, **options: Any):  # noqa: ANN202 - a Pipeline
    """The pipeline the arguments name.  A reading command given ``--db`` needs no feeds.yaml."""
    from .config import Config, load_config, sample_config_path
    from .core import Pipeline

    if args.sample:
        if args.config:
            raise ConfigError("--sample and --config exclude each other")
        config = load_config(sample_config_path()).with_database(args.db or SAMPLE_DATABASE)
    else:
        path = Path(args.config or DEFAULT_CONFIG)
        if args.config is None and not path.exists():
            if read_only and args.db:
                return Pipeline(Config().with_database(args.db), read_only=True, **options)
            raise ConfigError(f"no {DEFAULT_CONFIG} in the current directory: pass --config FILE"
                              + (" or --db PATH" if read_only else "") + ", or try the offline sample with --sample")
        config = load_config(path)
        if args.db:
            config = config.with_database(args.db)
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
            # an overlapping cron run: not an error, nothing was touched
            if args.json:
                _print_json({"skipped": True, "reason": str(exc)})
            else:
                print(f"skipped: {exc}", file=sys.stderr)
            return 0
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


def cmd_stories(args: argparse.Namespace) -> int:
    from .report import stories_html, stories_table, story_dict

    now = datetime.now(timezone.utc)
    with _open(args, read_only=True) as pipeline:
        since = parse_since(args.since, pipeline.window_end()) if args.since else None
        found = pipeline.stories(since=since, limit=args.limit)
        if args.html:
            details = [pipeline.story(s.id) for s in found]
            page = stories_html(details, generated=f"{now:%Y-%m-%d %H:%M} UTC")
            try:
                Path(args.html).write_text(page, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--html {args.html}: cannot write the page: {exc.strerror or exc}") from exc
    if args.json:
        _print_json([story_dict(s) for s in found])
    else:
        print(stories_table(found))
    return 0


def cmd_story(args: argparse.Namespace) -> int:
    from .report import story_detail_dict, story_text

    with _open(args, read_only=True) as pipeline:
        detail = pipeline.story(args.story_id)
        copies = pipeline.store.articles([link.article_id for link in detail.duplicates])
    if args.json:
        _print_json(story_detail_dict(detail, copies))
    else:
        print(story_text(detail, copies))
    return 0


def cmd_feeds(args: argparse.Namespace) -> int:
    from .report import feed_dict, feeds_table

    with _open(args, read_only=True) as pipeline:
        statuses = pipeline.feeds()
    if args.json:
        _print_json([feed_dict(s) for s in statuses])
    else:
        print(feeds_table(statuses))
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
            "stories": cmd_stories, "story": cmd_story, "feeds": cmd_feeds, "eval": cmd_eval}


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
