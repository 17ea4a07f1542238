"""A four-day deployment on loopback feeds, to follow stories as a desk would (issue 17).

    python bench/follow.py [--model hashing] [--folder DIR]

Serves invented RSS feeds from 127.0.0.1 (the standard library's HTTP server), writes a
feeds.yaml, and for each of four days publishes that day's articles and runs
``clustering run``; after day 3 and day 4 it prints ``clustering changes``, the history of
two stories, ``topics``, and checks ``articles --unassigned --format csv`` against the run's
summary.  Everything it ran is printed with its output.  Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import random
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

EVENTS = {
    "quake": (["Magnitude 6.1 earthquake strikes Vellmar coast", "Rescuers search rubble after Vellmar earthquake",
               "Vellmar quake: survivors pulled from collapsed buildings", "Aftershocks rattle Vellmar after quake",
               "Vellmar earthquake toll rises as rescue goes on"],
              "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast "
              "epicentre"),
    "relief": (["Aid convoys reach Vellmar", "Vellmar relief: tents and water for the homeless",
                "Donations pour in for Vellmar", "Volunteers bring food and blankets to Vellmar",
                "Vellmar shelters fill as aid arrives"],
               "Vellmar relief aid convoy tents donations shelters water blankets volunteers food homeless"),
    "rates": (["Ostreich central bank raises rates", "Ostreich hikes interest rates to fight inflation",
               "Bond yields climb after Ostreich rate rise", "Ostreich governor defends rate hike",
               "Lending costs rise in Ostreich"],
              "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending"),
    "final": (["Dunmore win the cup final", "Late penalty gives Dunmore the trophy", "Dunmore fans celebrate title",
               "Dunmore striker scores twice in final", "Dunmore coach hails champions"],
              "Dunmore football final trophy striker goal penalty stadium fans champions coach"),
    "election": (["Brevia votes in tight election", "Brevia election: coalition talks begin",
                  "Turnout high as Brevia goes to the polls", "Brevia parliament result too close to call",
                  "Candidates make last pitch to Brevia voters"],
                 "Brevia election ballot voters parliament coalition candidate polls turnout campaign results"),
    "floods": (["Kessa river bursts its banks", "Villages evacuated as Kessa floods", "Kessa floods: boats rescue "
                "families", "Storm rain swells Kessa river", "Levees fail along the Kessa"],
               "Kessa floods river rain levees evacuated villages water rescue boats storm"),
}
SCHEDULE = {  # day -> events with articles that day (articles per outlet)
    1: ["quake", "rates", "final"],
    2: ["quake", "rates", "election"],
    3: ["quake", "relief", "election", "floods"],
    4: ["relief", "floods", "final"],
}
OUTLETS = ["wire", "herald", "gazette", "ledger", "courier"]
"""Outlets with their own articles; ``metro`` reprints the wire's (a duplicate of each)."""


def article_words(event: str, seed: int) -> tuple[str, str]:
    headlines, vocabulary = EVENTS[event]
    words = vocabulary.split()
    random.Random(seed).shuffle(words)
    return headlines[seed % len(headlines)], " ".join(words) + "."


def feed_items(day: int, outlet: str, start: datetime) -> list[tuple[str, str, str, datetime]]:
    """(guid, title, text, published) of one outlet's articles up to ``day``."""
    items = []
    for d in range(1, day + 1):
        for e, event in enumerate(SCHEDULE[d]):
            source = "wire" if outlet == "metro" else outlet
            if source not in OUTLETS:
                continue
            seed = d * 1000 + e * 100 + OUTLETS.index(source)
            title, text = article_words(event, seed)
            published = start + timedelta(days=d - 1, hours=2 + e * 3 + OUTLETS.index(source) * 0.5 +
                                          (0.25 if outlet == "metro" else 0))
            items.append((f"{outlet}-{d}-{event}", title, text, published))
        # one article a day on nothing else: it stays in no story
        if outlet != "metro":
            rng = random.Random(f"{outlet}{d}")
            words = [f"w{rng.randrange(10**6)}" for _ in range(12)]
            items.append((f"{outlet}-{d}-misc", " ".join(words[:5]).capitalize(), " ".join(words) + ".",
                          start + timedelta(days=d - 1, hours=20)))
    return items


def rss(outlet: str, items: list[tuple[str, str, str, datetime]]) -> str:
    entries = "".join(f"<item><title>{escape(t)}</title><link>https://{outlet}.test/{g}</link><guid>{g}</guid>"
                      f"<pubDate>{format_datetime(p)}</pubDate><description>{escape(x)}</description></item>"
                      for g, t, x, p in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{outlet}</title>'
            f"<link>https://{outlet}.test/</link><description>{outlet}</description>{entries}</channel></rss>")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def show(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ clustering {' '.join(args)}")
    result = subprocess.run([sys.executable, "-m", "clustering", *args], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}, timeout=600)
    print(result.stdout.rstrip())
    if result.stderr.strip():
        print("[stderr] " + result.stderr.rstrip())
    print(f"[exit {result.returncode}]\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hashing", help="embedding model (default: hashing, fast)")
    parser.add_argument("--folder", help="work here (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="clustering-follow-"))
    served = folder / "served"
    served.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    outlets = [*OUTLETS, "metro"]
    tags = {"wire": "agency", "metro": "agency"}
    (folder / "feeds.yaml").write_text(
        "settings:\n  database: news.db\n  model: " + args.model + "\n  window_days: 3\n  report: report.html\n"
        "  poll_interval_minutes: 0.01\nfeeds:\n"
        + "".join(f"  - name: {o}\n    url: http://127.0.0.1:{port}/{o}.xml\n    tags: [{tags.get(o, 'press')}]\n"
                  for o in outlets), encoding="utf-8")
    start = (datetime.now(timezone.utc) - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    print(f"folder {folder}; feeds on http://127.0.0.1:{port}/; day 1 is {start:%Y-%m-%d}\n")
    try:
        for day in range(1, 5):
            for outlet in outlets:
                (served / f"{outlet}.xml").write_text(rss(outlet, feed_items(day, outlet, start)), encoding="utf-8")
            print(f"===== day {day}: {', '.join(SCHEDULE[day])}")
            show(folder, "run", "--force")
            if day >= 3:
                show(folder, "changes")
                show(folder, "topics")
                show(folder, "stories")
                if day == 3:
                    show(folder, "story", "s1", "--history")
        show(folder, "run", "--force")  # nothing new: the summary keeps the window's unassigned count
        show(folder, "changes", "--since", "2")
        show(folder, "articles", "--unassigned", "--format", "csv")
        show(folder, "articles", "--tag", "agency", "--search", "Vellmar")
        show(folder, "duplicates")
        show(folder, "feeds")
    finally:
        server.shutdown()
    print(f"report: {folder / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
