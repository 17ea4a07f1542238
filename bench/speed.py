"""Speed benchmark: what a cron run costs, side by side in one run.

    python bench/speed.py [--shared ../shared] [--feeds 10] [--articles 600] [--repeat 3]

Serves RSS feeds built from ECB+ articles (../shared/datasets) from a local HTTP server on
127.0.0.1 (conditional GET supported: Last-Modified / If-Modified-Since), and times
`clustering run` as cron would start it, one new process per run, on one database:

1. the first run: fetch every feed, store, embed and cluster every article;
2. a run right after it: every feed is not yet due, nothing is fetched;
3. a forced run: every feed is fetched again and answers 304 Not Modified;
4. a forced run after one feed gained new entries: only those are embedded, the window
   is re-clustered.

Runs 2–4 are repeated ``--repeat`` times (median reported; run 4 adds new entries each time).
Figures depend on the machine; the ratios to the first run are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clustering.corpora import load_labelled, split_headline  # noqa: E402

START = datetime(2026, 3, 1, 6, 0, tzinfo=timezone.utc)
SCALE_SECTION = "<!-- scale"
"""Where bench/scale.py's sections of docs/speed.md begin: this script rewrites what comes before."""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def rss(items: list[tuple[str, str, str, datetime]]) -> str:
    entries = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link><guid>{escape(link)}</guid>"
        f"<pubDate>{format_datetime(published)}</pubDate><description>{escape(body)}</description></item>"
        for title, body, link, published in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>bench</title>'
            f"<link>http://127.0.0.1/</link><description>bench</description>{entries}</channel></rss>")


def write_feeds(folder: Path, articles: list[tuple[str, str]], feeds: int) -> dict[str, list]:
    """Spread ``articles`` round-robin over ``feeds`` files; returns the items per feed."""
    items: dict[str, list] = {f"feed{k:02d}": [] for k in range(feeds)}
    names = list(items)
    for i, (title, body) in enumerate(articles):
        name = names[i % feeds]
        items[name].append((title, body, f"http://127.0.0.1/{name}/{i}", START + timedelta(minutes=i)))
    for name, entries in items.items():
        (folder / f"{name}.xml").write_text(rss(entries), encoding="utf-8")
    return items


def timed_run(config: Path, *extra: str) -> tuple[float, dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "clustering", "run", "--config", str(config), "--json", *extra],
                          capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"clustering run failed ({done.returncode}):\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--feeds", type=int, default=10)
    parser.add_argument("--articles", type=int, default=600, help="ECB+ articles in the first run")
    parser.add_argument("--new", type=int, default=20, help="new entries per incremental run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "speed.md",
                        help="markdown file to (re)write, up to bench/scale.py's section")
    args = parser.parse_args(argv)
    corpus = args.shared / "datasets/ecbplus-cybulska2014/ecbplus_docs.jsonl"
    if not corpus.is_file():
        print(f"error: {corpus} not found (pass --shared)", file=sys.stderr)
        return 1
    docs = load_labelled(corpus, text_field="text", label_field="subtopic")
    articles = [split_headline(d.text) for d in docs]
    needed = args.articles + args.new * args.repeat
    if needed > len(articles):
        print(f"error: {needed} articles needed, the corpus has {len(articles)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "feeds"
        folder.mkdir()
        items = write_feeds(folder, articles[:args.articles], args.feeds)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        config = Path(tmp) / "feeds.yaml"
        config.write_text("settings:\n  database: bench.db\n  window_days: 30\nfeeds:\n" + "".join(
            f"  - name: {name}\n    url: {base}/{name}.xml\n" for name in items), encoding="utf-8")
        try:
            first, first_report = timed_run(config)
            idle, forced, incremental = [], [], []
            idle_reports, forced_reports, incremental_reports = [], [], []
            next_article = args.articles
            for _ in range(args.repeat):
                for times, reports, extra in ((idle, idle_reports, ()), (forced, forced_reports, ("--force",))):
                    seconds, report = timed_run(config, *extra)
                    times.append(seconds)
                    reports.append(report)
                # one feed gains new entries (a new file: its Last-Modified moves on)
                name = next(iter(items))
                for title, body in articles[next_article:next_article + args.new]:
                    items[name].append((title, body, f"http://127.0.0.1/{name}/{next_article}",
                                        START + timedelta(minutes=next_article)))
                    next_article += 1
                path = folder / f"{name}.xml"
                path.write_text(rss(items[name]), encoding="utf-8")
                later = time.time() + 2 + len(incremental)  # a Last-Modified the server has not sent yet
                os.utime(path, (later, later))
                seconds, report = timed_run(config, "--force")
                incremental.append(seconds)
                incremental_reports.append(report)
        finally:
            server.shutdown()
    rows = [
        (f"first run: {args.feeds} feeds, {first_report['new_articles']} new articles", first, first_report),
        ("nothing due (feeds polled too recently)", statistics.median(idle), idle_reports[-1]),
        ("forced, every feed 304 Not Modified", statistics.median(forced), forced_reports[-1]),
        (f"forced, {args.new} new entries in one feed", statistics.median(incremental), incremental_reports[-1]),
    ]
    lines = ["| run | seconds | ratio to the first run | feeds ok / 304 / not due | new articles | stories total |",
             "|---|---|---|---|---|---|"]
    for name, seconds, report in rows:
        feeds = f"{report['feeds_ok']} / {report['feeds_not_modified']} / {report['feeds_skipped']}"
        lines.append(f"| {name} | {seconds:.2f} | {seconds / first:.3f} | {feeds} | {report['new_articles']} | "
                     f"{report['stories_total']} |")
    text = f"""# Speed

Produced by `python bench/speed.py` (this part is rewritten by it) on this machine (2 CPU cores, no
GPU). `clustering run` is started as cron would start it, one new process per run, against feeds
built from {args.articles} ECB+ articles served from 127.0.0.1; later runs are the median of
{args.repeat}. Absolute seconds depend on the machine; the ratios are measured side by side.

{chr(10).join(lines)}

A run with nothing new imports neither torch nor FAISS nor HDBSCAN (tests/test_lazy_imports.py); the
first run's time is mostly loading the model and embedding full-length articles.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    kept = current[current.index(SCALE_SECTION):] if SCALE_SECTION in current else ""  # bench/scale.py's parts
    args.out.write_text(text + ("\n" + kept if kept else ""), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
