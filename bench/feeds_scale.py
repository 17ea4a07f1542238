"""A deployment of many feeds, as cron runs it: wall time and peak RSS of `clustering run`.

Three setups, each served from 127.0.0.1 and run as a fresh `clustering run` process (its peak
RSS is its own, read from wait4):

* ``dead``: 2,000 feeds, 1,980 on loopback ports nothing listens on (bound, never listening:
  connection refused), 20 live ones of 30 small entries each;
* ``large``: N feeds of 9.5 MB each (50 entries of 190 KB), for N in ``--large-feeds`` (default
  30 and 300): memory must not grow with N (bodies are parsed and stored as they arrive);
* ``hung``: 80 feeds on a port that accepts connections and never answers, with
  ``run_deadline`` 30 s: the run ends near its deadline and leaves the rest due.

    python bench/feeds_scale.py                    # all three
    python bench/feeds_scale.py --only dead --code /path/to/other/checkout   # the same on other code

``--code`` runs another checkout's clustering (PYTHONPATH) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LARGE_BODY_BYTES = 9_500_000
LARGE_ITEMS = 50
SMALL_ITEMS = 30
PUBLISHED = "Sun, 06 Dec 2026 03:00:00 GMT"


def feed_body(feed: int, items: int, item_bytes: int) -> bytes:
    words = ("Officials in Northvale said rescue teams searched collapsed buildings after the quake, "
             f"and feed {feed} reported more. ")
    text = (words * (item_bytes // len(words) + 1))[:item_bytes]
    entries = "".join(f"<item><guid>f{feed}-{n}</guid><title>Feed {feed} story {n} about Northvale</title>"
                      f"<description>{text}</description><pubDate>{PUBLISHED}</pubDate></item>"
                      for n in range(items))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
            f"{entries}</channel></rss>").encode()


class FeedServer:
    """/small/<i> and /large/<i> feeds on a threaded loopback server."""

    def __init__(self) -> None:
        large_item = (LARGE_BODY_BYTES - 200) // LARGE_ITEMS - 200

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                kind, _, number = self.path.strip("/").partition("/")
                body = feed_body(int(number), *((LARGE_ITEMS, large_item) if kind == "large" else (SMALL_ITEMS, 400)))
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


KNOWS_DEADLINE = True
"""Whether the code run has settings.fetch.run_deadline (code from before it refuses the key)."""


def write_config(folder: Path, feeds: list[tuple[str, str]], **fetch: object) -> Path:
    if not KNOWS_DEADLINE:
        fetch.pop("run_deadline", None)
    lines = ["settings:", "  model: hashing", f"  database: {folder / 'news.db'}", "  fetch:"]
    lines += [f"    {key}: {value}" for key, value in fetch.items()] or ["    max_concurrency: 8"]
    lines.append("feeds:")
    lines += [f"  - name: {name}\n    url: {url}" for name, url in feeds]
    path = folder / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


INGEST_ONLY = ("import dataclasses, json, sys\n"
               "from clustering import open_pipeline\n"
               "with open_pipeline(None, sys.argv[1]) as pipeline:\n"
               "    report = dataclasses.asdict(pipeline.ingest())\n"
               "report['new_articles'] = len(report.pop('new_article_ids'))\n"
               "report['feeds_failed'] = len(report.pop('failed_feeds'))\n"
               "print(json.dumps(report))\n")
"""The fetch stage alone (``Pipeline.ingest``): fetch, parse and store, no embedding or clustering."""


def cron_run(config: Path, code: Path, *, ingest_only: bool = False) -> dict[str, object]:
    """One `clustering run --json` (or the fetch stage alone) in a fresh process started in ``code``
    (``python -m`` puts the working folder first on the path): its wall time, peak RSS and report."""
    environment = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    command = ["-c", INGEST_ONLY, str(config)] if ingest_only else ["-m", "clustering", "run", "--config",
                                                                   str(config), "--json"]
    child = subprocess.Popen([sys.executable, *command], cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=environment, text=True)
    streams: dict[str, str] = {}
    readers = [threading.Thread(target=lambda name=name, stream=stream: streams.__setitem__(name, stream.read()))
               for name, stream in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    child.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    wall = time.monotonic() - started
    output, errors, peak = streams["out"], streams["err"], usage.ru_maxrss
    try:
        report = json.loads(output)
    except ValueError:
        report = {"error": errors[-500:]}
    warnings = [line for line in errors.splitlines() if line.startswith("WARNING")]
    return {"seconds": round(wall, 1), "peak_rss_mb": round(peak / 1024), "exit": child.returncode,
            "warning_lines": len(warnings), "report": report}


def summary(result: dict[str, object]) -> str:
    report = result["report"]
    assert isinstance(report, dict)
    if "error" in report:
        return f"{result['seconds']} s, exit {result['exit']}: {report['error']}"
    keys = ("feeds_ok", "feeds_failed", "feeds_deferred", "new_articles")
    counts = ", ".join(f"{k} {report.get(k)}" for k in keys if k in report)
    return (f"{result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, exit {result['exit']}, "
            f"{result['warning_lines']} WARNING line(s); {counts}")


def dead(code: Path, server: FeedServer) -> None:
    holders = []
    for _ in range(1980):  # bound, never listening: each port refuses, and none is reused meanwhile
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holders.append(holder)
    try:
        with tempfile.TemporaryDirectory(prefix="feeds-scale-") as folder:
            feeds = [(f"dead{i:04d}", f"http://127.0.0.1:{h.getsockname()[1]}/feed.xml") for i, h in enumerate(holders)]
            feeds += [(f"live{i:02d}", f"http://127.0.0.1:{server.port}/small/{i}") for i in range(20)]
            result = cron_run(write_config(Path(folder), feeds), code)
            print(f"dead: 2,000 feeds (1,980 refusing, 20 live): {summary(result)}", flush=True)
    finally:
        for holder in holders:
            holder.close()


def large(code: Path, server: FeedServer, count: int, deadline: float, *, ingest_only: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="feeds-scale-") as folder:
        feeds = [(f"large{i:03d}", f"http://127.0.0.1:{server.port}/large/{i}") for i in range(count)]
        config = write_config(Path(folder), feeds, max_concurrency=8, run_deadline=deadline)
        result = cron_run(config, code, ingest_only=ingest_only)
        what = "fetch stage (ingest)" if ingest_only else "whole run"
        print(f"large: {count} feeds of 9.5 MB, {what} (run_deadline {deadline:g} s): {summary(result)}", flush=True)


def hung(code: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1000)  # the kernel completes each handshake; nobody ever reads or answers
    try:
        with tempfile.TemporaryDirectory(prefix="feeds-scale-") as folder:
            feeds = [(f"hung{i:02d}", f"http://127.0.0.1:{listener.getsockname()[1]}/{i}") for i in range(80)]
            config = write_config(Path(folder), feeds, max_concurrency=8, run_deadline=30)
            result = cron_run(config, code)
            print(f"hung: 80 feeds that never answer (run_deadline 30 s, timeout 20 s): {summary(result)}",
                  flush=True)
    finally:
        listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["dead", "large", "hung"], action="append")
    parser.add_argument("--large-feeds", type=int, nargs="+", default=[30, 300])
    parser.add_argument("--large-deadline", type=float, default=3600.0,
                        help="run_deadline of the large runs (default: long enough to fetch every feed)")
    parser.add_argument("--ingest-only", action="store_true",
                        help="large: run the fetch stage alone (Pipeline.ingest), whose memory must not grow with "
                             "the number of feeds; the whole run also embeds and clusters every article")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout whose clustering runs (default: this one)")
    args = parser.parse_args()
    chosen = args.only or ["dead", "large", "hung"]
    global KNOWS_DEADLINE
    KNOWS_DEADLINE = "run_deadline" in (args.code / "clustering" / "config.py").read_text(encoding="utf-8")
    server = FeedServer()
    try:
        print(f"code: {args.code}; {os.cpu_count()} CPUs", flush=True)
        if "dead" in chosen:
            dead(args.code, server)
        if "large" in chosen:
            for count in args.large_feeds:
                large(args.code, server, count, args.large_deadline, ingest_only=args.ingest_only)
        if "hung" in chosen:
            hung(args.code)
    finally:
        server.close()


if __name__ == "__main__":
    main()
