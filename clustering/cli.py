"""The command line: parse arguments, make one call into the pipeline, print.

Every ClusteringError becomes a one-line message on stderr and exit status 1;
argument errors exit 2 (argparse).  Heavy modules load only inside the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ClusteringError, ConfigError, LockedError

DEFAULT_CONFIG = "feeds.yaml"
SAMPLE_DATABASE = "clustering-sample.db"
DEFAULT_EVAL_CACHE = Path.home() / ".cache" / "clustering" / "embeddings"


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"feeds and settings (default: ./{DEFAULT_CONFIG})")
    parser.add_argument("--db", metavar="PATH", help="database file (overrides settings.database)")
    parser.add_argument("--sample", action="store_true",
                        help=f"use the bundled offline sample feeds (database ./{SAMPLE_DATABASE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clustering",
        description="Turn news feeds into a deduplicated set of stories with stable ids.")
    parser.add_argument("--version", action="version", version=f"clustering {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeatable)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser("run", help="fetch due feeds, store new articles, dedup and cluster them")
    _add_source_options(run)
    run.add_argument("--force", action="store_true", help="fetch every feed now, ignoring poll intervals/backoff")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="if another run holds the lock, wait this long (default: exit at once)")
    run.add_argument("--json", action="store_true", help="print one JSON object")

    stories = commands.add_parser("stories", help="list stories, most recently active first")
    _add_source_options(stories)
    stories.add_argument("--since", metavar="WHEN", help="only stories seen since: 6h, 2d, 90m or an ISO date")
    stories.add_argument("--limit", type=int, default=None, metavar="N", help="at most N stories")
    stories.add_argument("--json", action="store_true", help="print one JSON array")
    stories.add_argument("--html", metavar="FILE", help="also write an HTML page of the stories to FILE")

    story = commands.add_parser("story", help="one story: members, sources, duplicates, scores")
    _add_source_options(story)
    story.add_argument("story_id", metavar="ID")
    story.add_argument("--json", action="store_true", help="print one JSON object")

    feeds = commands.add_parser("feeds", help="status of each feed, with its last error")
    _add_source_options(feeds)
    feeds.add_argument("--json", action="store_true", help="print one JSON array")
    evaluate = commands.add_parser("eval", help="score dedup + stories on a labelled corpus (B-cubed, ARI, AMI)")
    evaluate.add_argument("path", metavar="PATH", help="labelled corpus: .jsonl/.json/.tsv/.csv")
    evaluate.add_argument("--text", required=True, metavar="FIELD", help="text field (column index if no header)")
    evaluate.add_argument("--label", required=True, metavar="FIELD", help="gold story/event label field")
    evaluate.add_argument("--title", metavar="FIELD", help="title field (default: first line of the text)")
    evaluate.add_argument("--time", metavar="FIELD", help="publication time field (ISO-8601 or Unix seconds)")
    evaluate.add_argument("--source", metavar="FIELD", help="source/outlet field")
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


def parse_since(value: str, now: datetime) -> datetime:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", value)
    if match:
        amount = float(match.group(1))
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--since {value!r}: expected a duration like 6h, 2d, 90m or an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _open(args: argparse.Namespace, **options: Any):  # noqa: ANN202 - returns a Pipeline
    from .config import Config, load_config, sample_config_path
    from .core import Pipeline

    if args.sample:
        if args.config:
            raise ConfigError("--sample and --config exclude each other")
        config = load_config(sample_config_path()).with_database(args.db or SAMPLE_DATABASE)
    else:
        path = Path(args.config or DEFAULT_CONFIG)
        if args.config is None and not path.exists():
            raise ConfigError(f"no {DEFAULT_CONFIG} in the current directory: pass --config FILE, "
                              "or try the offline sample with --sample")
        config = load_config(path)
        if args.db:
            config = config.with_database(args.db)
    assert isinstance(config, Config)
    return Pipeline(config, **options)


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
    return 0


def cmd_stories(args: argparse.Namespace) -> int:
    from .report import stories_html, stories_table, story_dict

    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    now = datetime.now(timezone.utc)
    since = parse_since(args.since, now) if args.since else None
    with _open(args) as pipeline:
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

    with _open(args) as pipeline:
        detail = pipeline.story(args.story_id)
        copies = pipeline.store.articles([link.article_id for link in detail.duplicates])
    if args.json:
        _print_json(story_detail_dict(detail, copies))
    else:
        print(story_text(detail, copies))
    return 0


def cmd_feeds(args: argparse.Namespace) -> int:
    from .report import feed_dict, feeds_table

    with _open(args) as pipeline:
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
                         time_field=args.time, topic_field=args.topic_label, source_field=args.source)
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
    print(f"{result.documents} documents, {result.mode} ({result.runs} runs), {result.seconds:.1f} s; "
          f"duplicates: {result.duplicates['links']} ({result.duplicates['exact']} exact, "
          f"{result.duplicates['near']} near)")
    keys = ["b3_precision", "b3_recall", "b3_f1", "pair_f1", "ari", "ami", "n_clusters", "unassigned"]
    print(f"{'level':<6} " + " ".join(f"{k:>12}" for k in keys))
    for level, scores in (("story", result.story), ("topic", result.topic)):
        if scores is not None:
            print(f"{level:<6} " + " ".join(f"{scores[k]:>12.4g}" for k in keys))
    if result.id_churn is not None:
        print(f"id churn: {result.id_churn:.2%}")
    return 0


COMMANDS = {"run": cmd_run, "stories": cmd_stories, "story": cmd_story, "feeds": cmd_feeds, "eval": cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        for noisy in ("httpx", "sentence_transformers", "transformers", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
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
