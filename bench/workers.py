"""Workers benchmark: N ``clustering worker`` processes sharing one PostgreSQL store.

    python bench/workers.py [--feeds 200] [--articles 6000] [--workers 1,2,4] [--kills 10] [--out FILE]

A throwaway PostgreSQL (``store_pg.throwaway_server``: initdb + pg_ctl on a unix socket) and a
real ``http.server`` on 127.0.0.1 serving ``--feeds`` RSS feeds, which hold ``--articles``
synthetic articles between them (bench/scale.py's SyntheticNews: story structure, wire and near
copies), each response delayed ``--latency`` seconds as a remote server would be.  Embedding is
the built-in ``hashing`` embedder: on the 2 shared cores of the machine this was written on, the
real model (~240 texts/s there) would make every configuration wait on the same embedding and
measure nothing else; with a model the workers' embedding divides between them as the fetching does.

1. For each N in ``--workers``: a fresh database, N processes of
   ``clustering worker --until-idle`` started at once; the wall time until the last exits, from
   the first request to every article stored, embedded and clustered.  Articles per second end
   to end, and the ratio to one worker.
2. ``--kills`` times, while 3 workers run, one of them is killed with SIGKILL at a random moment
   and a new one started in its place (a short ``--claim-lease`` lets the dead one's feeds come
   back).  Then the stored articles are compared with the one-worker run's: none lost, none stored
   twice, each embedded once, each processed, the story tally equal to a count.
"""

from __future__ import annotations

import argparse
import http.server
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import WINDOW_DAYS, window_articles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rss(feed: str, items: list[dict[str, Any]]) -> bytes:
    body = "".join(
        f"<item><title>{escape(a['title'])}</title><link>{escape(a['url'])}</link><guid>{escape(a['key'])}</guid>"
        f"<description>{escape(a['text'])}</description><pubDate>{format_datetime(a['published'])}</pubDate></item>"
        for a in items)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{feed}</title><link>http://127.0.0.1/</link>'
            f"<description>{feed}</description>{body}</channel></rss>").encode()


def serve(feeds: dict[str, bytes], latency: float) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = feeds.get(self.path.strip("/"))
            time.sleep(latency)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def new_database(base_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return base_url.replace("/postgres?", f"/{name}?")


def start_worker(config: Path, url: str, lease: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "clustering", "-v", "worker", "--until-idle", "--interval", "0.2",
                             "--claim-lease", str(lease), "--config", str(config), "--db", url],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


STAGE_LINE = re.compile(r"INFO clustering: (fetch|embed|dedup|stories): .* in ([0-9.]+) s$", re.MULTILINE)
"""A stage's line in ``clustering -v`` output (core._StageTimer)."""


def wait_all(workers: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """Wait for every worker; the seconds each stage took, summed over the workers' logs."""
    stages: dict[str, float] = {}
    for worker in workers:
        _, errors = worker.communicate()
        if worker.returncode not in (0, -signal.SIGKILL):
            raise SystemExit(f"a worker failed ({worker.returncode}): {errors.decode()[-2000:]}")
        for stage, seconds in STAGE_LINE.findall(errors.decode(errors="replace")):
            stages[stage] = stages.get(stage, 0.0) + float(seconds)
    return stages


def state(url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url) as db:
        def one(sql: str) -> Any:
            return db.execute(sql).fetchone()[0]  # type: ignore[index]

        keys = db.execute("SELECT source, entry_key FROM articles").fetchall()
        return {"keys": set(keys), "rows": len(keys),
                "twice": one("SELECT count(*) FROM (SELECT 1 FROM articles GROUP BY source, entry_key"
                             " HAVING count(*) > 1) t"),
                "unprocessed": one("SELECT count(*) FROM articles WHERE processed = 0"),
                "unembedded": one("SELECT count(*) FROM articles a WHERE NOT EXISTS"
                                  " (SELECT 1 FROM embeddings e WHERE e.article_id = a.id)"),
                "stories": one("SELECT count(DISTINCT story_id) FROM story_members"),
                "tally": one("SELECT value FROM tallies WHERE name = 'stories_with_members'"),
                "duplicates": one("SELECT count(*) FROM duplicates"),
                "claimed": one("SELECT count(*) FROM feeds WHERE claimed_until IS NOT NULL")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--articles", type=int, default=6000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each feed response is delayed")
    parser.add_argument("--claim-lease", type=float, default=3.0, help="the kill runs' lease (seconds)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="folder for feeds.yaml (default: a temporary one)")
    args = parser.parse_args(argv)

    from clustering.store_pg import throwaway_server

    _, articles = window_articles(args.articles, args.seed)
    by_feed: dict[str, list[dict[str, Any]]] = {}
    for index, article in enumerate(articles):
        by_feed.setdefault(f"feed{index % args.feeds:04d}", []).append(article)
    server = serve({f"{name}.xml": rss(name, items) for name, items in by_feed.items()}, args.latency)
    work = args.work or Path(tempfile.mkdtemp(prefix="clustering-bench-workers-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "feeds.yaml"
    config.write_text("settings:\n  model: hashing\n  window_days: %s\n  poll_interval_minutes: 600\n"
                      "  fetch: {max_concurrency: 4}\nfeeds:\n" % WINDOW_DAYS
                      + "".join(f"  - name: {name}\n    url: http://127.0.0.1:{server.server_port}/{name}.xml\n"
                                for name in by_feed), encoding="utf-8")
    print(f"{len(articles)} articles in {len(by_feed)} loopback feeds ({args.latency * 1000:.0f} ms a response), "
          f"hashing embedder, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})")
    with throwaway_server(max_connections=40) as base:
        rates: dict[int, float] = {}
        reference: dict[str, Any] = {}
        for count in (int(n) for n in args.workers.split(",")):
            url = new_database(base, f"workers_{count}")
            started = time.monotonic()
            workers = [start_worker(config, url, 300.0) for _ in range(count)]
            stages = wait_all(workers)
            seconds = time.monotonic() - started
            result = state(url)
            rates[count] = result["rows"] / seconds
            reference = reference or result
            print(f"{count} worker(s): {result['rows']} articles in {seconds:.1f} s = {rates[count]:.0f} articles/s, "
                  f"ratio to 1: {rates[count] / rates[min(rates)]:.2f}; {result['stories']} stories, "
                  f"{result['duplicates']} duplicate links, {result['unprocessed']} unprocessed, "
                  f"{result['twice']} stored twice; stage seconds summed over the workers: "
                  + ", ".join(f"{stage} {total:.1f}" for stage, total in sorted(stages.items())), flush=True)
        if args.kills:
            rng = random.Random(args.seed)
            url = new_database(base, "workers_killed")
            started = time.monotonic()
            workers = [start_worker(config, url, args.claim_lease) for _ in range(3)]
            kills = 0
            while kills < args.kills:
                time.sleep(rng.uniform(0.3, 1.5))
                live = [w for w in workers if w.poll() is None]
                if not live:  # all done before every kill: start another round on what is left
                    workers = [start_worker(config, url, args.claim_lease) for _ in range(3)]
                    continue
                victim = rng.choice(live)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
                workers.append(start_worker(config, url, args.claim_lease))
            wait_all(workers)
            final = [start_worker(config, url, args.claim_lease)]  # after the last kill, one pass to finish
            wait_all(final)
            seconds = time.monotonic() - started
            result = state(url)
            lost = len(reference["keys"] - result["keys"])
            extra = len(result["keys"] - reference["keys"])
            print(f"{kills} workers killed (SIGKILL) among 3 running, each replaced; {seconds:.1f} s: "
                  f"{result['rows']} articles ({lost} lost, {extra} not in the reference, {result['twice']} stored "
                  f"twice), {result['unembedded']} not embedded, {result['unprocessed']} unprocessed, "
                  f"{result['claimed']} feeds still claimed, story tally {result['tally']} = count "
                  f"{result['stories']} ({result['stories'] - reference['stories']:+d} stories against the "
                  f"one-worker run, {result['duplicates'] - reference['duplicates']:+d} duplicate links)")
    server.shutdown()
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
