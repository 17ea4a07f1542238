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
import csv
import functools
import http.server
import io
import json
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
ONE_OFFS = [(title, f"{title}. {body}") for title, body in [
    ("City museum reopens after renovation", "The museum's new wing shows medieval maps and ship models."),
    ("Recipe: a winter soup of lentils", "Slow-cooked lentils with cumin, carrots and lemon."),
    ("Local choir wins regional contest", "Forty singers took the cup with a programme of folk songs."),
    ("New bus timetable starts Monday", "Night buses will run every thirty minutes on the ring road."),
    ("Astronomers spot a distant comet", "The comet will be visible with binoculars before dawn."),
    ("Chess prodigy, 12, earns master title", "She beat three grandmasters in the open tournament."),
    ("Bakery chain recalls rye bread", "A labelling error left out a sesame allergy warning."),
    ("Zoo welcomes twin red pandas", "Keepers say the cubs are healthy and feeding well."),
    ("Library extends opening hours", "Reading rooms will stay open until ten on weekdays."),
    ("Marathon route changes for roadworks", "Runners will cross the old bridge instead of the harbour."),
    ("Violinist donates rare instrument", "The 18th-century violin goes to the conservatory."),
    ("Startup unveils electric cargo bike", "The bike carries 200 kilograms and folds for storage."),
    ("Farmers market moves to the square", "Stalls sell cheese, honey and apples every Saturday."),
    ("Film festival announces jury", "A documentary maker will chair this year's jury."),
    ("Hospital opens new maternity ward", "Twelve rooms and a neonatal unit were added."),
    ("Old lighthouse to become a hotel", "Investors plan six rooms in the restored tower."),
    ("School robotics team heads to finals", "Their robot sorts recycling by colour and weight."),
    ("Rare orchid blooms in botanic garden", "The flower opens once every seven years."),
    ("Ferry fares to rise in spring", "Operators blame fuel costs and new safety rules."),
    ("Poet laureate named", "Her collection about the coast won last year's prize."),
]]
"""One article a day per outlet on nothing any other article tells: it stays in no story."""
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
            title, text = ONE_OFFS[(d - 1) * len(OUTLETS) + OUTLETS.index(outlet)]
            items.append((f"{outlet}-{d}-misc", title, text, start + timedelta(days=d - 1, hours=20)))
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


def show(folder: Path, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``clustering ARGS`` in ``folder`` and print the command and its output (not when ``quiet``)."""
    result = subprocess.run([sys.executable, "-m", "clustering", *args], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}, timeout=600)
    if not quiet:
        print(f"$ clustering {' '.join(args)}")
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
                    events = json.loads(show(folder, "changes", "--format", "json", quiet=True).stdout)
                    created = [e["story_id"] for e in events if e["kind"] == "created"]
                    grew = sorted({e["story_id"] for e in events if e["kind"] == "joined"} - set(created))
                    for story_id in (created[:1] + grew[:1]):
                        show(folder, "story", story_id, "--history")
                        history = json.loads(show(folder, "story", story_id, "--history", "--json", quiet=True).stdout)
                        mine = [e for e in events if e["story_id"] == story_id or (
                            e["other_story_id"] == story_id and e["kind"] in ("split", "merged"))]
                        print(f"check: {story_id}'s run-{events[0]['run_id']} history equals `changes`' events for "
                              f"it: {[e for e in history if e['run_id'] == events[0]['run_id']] == mine} "
                              f"({len(mine)} events)\n")
        quiet = json.loads(show(folder, "run", "--force", "--json").stdout)  # nothing new
        show(folder, "run", "--force")  # its summary keeps the window's unassigned count
        show(folder, "changes", "--since", "2")
        unassigned_csv = show(folder, "articles", "--unassigned", "--format", "csv").stdout
        try:
            import pandas

            frame = pandas.read_csv(io.StringIO(unassigned_csv))
            print(f"check: pandas.read_csv(articles --unassigned --format csv) has {len(frame)} rows; the run "
                  f"summary says {quiet['unassigned']} unassigned: {len(frame) == quiet['unassigned']}\n")
        except ImportError:
            print("check: pandas is not installed (pip install pandas) - skipped\n")
        for command, key in (("stories", "id"), ("articles", "id"), ("duplicates", "article_id")):
            as_json = json.loads(show(folder, command, "--json", quiet=True).stdout)
            rows = list(csv.DictReader(io.StringIO(show(folder, command, "--format", "csv", quiet=True).stdout)))
            lines = [json.loads(line) for line in show(folder, command, "--format", "jsonl", quiet=True).stdout
                     .splitlines()]
            same = [str(r[key]) for r in as_json] == [r[key] for r in rows] == [str(r[key]) for r in lines]
            print(f"check: {command}: --json {len(as_json)} rows, csv {len(rows)}, jsonl {len(lines)}; "
                  f"ids equal in order: {same}; jsonl == json: {lines == as_json}")
        print()
        show(folder, "articles", "--tag", "agency", "--search", "Vellmar")
        show(folder, "duplicates")
        show(folder, "feeds")
    finally:
        server.shutdown()
    print(f"report: {folder / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
