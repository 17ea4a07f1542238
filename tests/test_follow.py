"""Following the news from the command line: a four-day deployment on loopback feeds (a real
HTTP server on 127.0.0.1, real SQLite file, ``python -m clustering`` in a subprocess, hashing
embedder), then what a desk reads: changes, story histories, topics, listings and exports."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

EVENTS = {
    "quake": (["Magnitude 6.1 earthquake strikes Vellmar coast", "Rescuers search rubble after Vellmar earthquake",
               "Vellmar quake: survivors pulled from collapsed buildings", "Aftershocks rattle Vellmar"],
              "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast"),
    "rates": (["Ostreich central bank raises rates", "Ostreich hikes interest rates to fight inflation",
               "Bond yields climb after Ostreich rate rise", "Ostreich governor defends rate hike"],
              "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending"),
    "election": (["Brevia votes in tight election", "Brevia election: coalition talks begin",
                  "Turnout high as Brevia goes to the polls", "Brevia parliament result too close to call"],
                 "Brevia election ballot voters parliament coalition candidate polls turnout campaign results"),
    "floods": (["Kessa river bursts its banks", "Villages evacuated as Kessa floods",
                "Kessa floods: boats rescue families", "Storm rain swells Kessa river"],
               "Kessa floods river rain levees evacuated villages water rescue boats storm"),
}
SCHEDULE = {1: ["quake", "rates"], 2: ["quake", "election"], 3: ["quake", "election", "floods"], 4: ["floods"]}
OUTLETS = ["wire", "herald", "gazette", "ledger"]
START = (datetime.now(timezone.utc) - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)


def items(outlet: str, day: int) -> list[tuple[str, str, str, datetime]]:
    """(guid, title, text, published) of one outlet's feed on ``day``: every article so far;
    ``metro`` reprints the wire's, and each outlet has one article a day on nothing else."""
    source = "wire" if outlet == "metro" else outlet
    found = []
    for d in range(1, day + 1):
        for e, event in enumerate(SCHEDULE[d]):
            seed = 100 * d + 10 * e + OUTLETS.index(source)
            headlines, vocabulary = EVENTS[event]
            words = vocabulary.split()
            random.Random(seed).shuffle(words)
            published = START + timedelta(days=d - 1, hours=2 + 3 * e + OUTLETS.index(source) / 2 +
                                          (0.25 if outlet == "metro" else 0))
            found.append((f"{outlet}-{d}-{event}", headlines[seed % 4], " ".join(words) + ".", published))
        if outlet != "metro":
            rng = random.Random(f"{outlet}-{d}")
            words = [f"w{rng.randrange(10**6)}" for _ in range(12)]
            found.append((f"{outlet}-{d}-misc", " ".join(words[:5]), " ".join(words) + ".",
                          START + timedelta(days=d - 1, hours=20)))
    return found


def rss(outlet: str, day: int) -> str:
    body = "".join(f"<item><title>{t}</title><link>https://{outlet}.test/{g}</link><guid>{g}</guid>"
                   f"<pubDate>{format_datetime(p)}</pubDate><description>{x}</description></item>"
                   for g, t, x, p in items(outlet, day))
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{outlet}</title>'
            f"<link>https://{outlet}.test/</link><description>d</description>{body}</channel></rss>")


def clustering(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "clustering", *args], cwd=folder, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)
    return result


def output(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = clustering(folder, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Deployment:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {"CLUSTERING_CONFIG": str(folder / "desk.yaml")}  # no --config: the variable names it
        self.runs: dict[int, dict[str, Any]] = {}
        self.changes_after_day3: list[dict[str, Any]] = []
        self.changes_text_after_day3 = ""

    def cli(self, *args: str) -> str:
        return output(self.folder, *args, env=self.env)

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("follow")
    state = {"day": 1}
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        for outlet in [*OUTLETS, "metro"]:
            def handler(request: Request, outlet: str = outlet) -> Response:
                return Response(rss(outlet, state["day"]), content_type="application/rss+xml")
            server.expect_request(f"/{outlet}.xml").respond_with_handler(handler)
        (folder / "desk.yaml").write_text(
            "# the desk's feeds\nsettings:\n  model: hashing\n  database: news.db\n  window_days: 3\n"
            "  report: report.html\nfeeds:\n" + "".join(
                f"  - name: {o}\n    url: {server.url_for(f'/{o}.xml')}\n"
                f"    tags: [{'agency' if o in ('wire', 'metro') else 'press'}]\n" for o in [*OUTLETS, "metro"]),
            encoding="utf-8")
        desk = Deployment(folder)
        for day in range(1, 5):
            state["day"] = day
            desk.runs[day] = desk.json("run", "--force", "--json")
            if day == 3:
                desk.changes_after_day3 = desk.json("changes", "--format", "json")
                desk.changes_text_after_day3 = desk.cli("changes")
        desk.runs[5] = desk.json("run", "--force", "--json")  # nothing new
        yield desk
    finally:
        server.clear()
        server.stop()


def test_changes_after_day_3_agree_with_the_story_histories(deployment: Deployment) -> None:
    changes = deployment.changes_after_day3
    assert changes and {c["run_id"] for c in changes} == {3}
    day3 = deployment.runs[3]
    created = [c["story_id"] for c in changes if c["kind"] == "created"]
    assert len(created) == day3["stories_new"] >= 1
    grown = {c["story_id"] for c in changes if c["kind"] == "joined"} - set(created)
    assert len(grown) >= 1
    assert "new stories" in deployment.changes_text_after_day3
    for story_id in [created[0], sorted(grown)[0]]:
        history = deployment.json("story", story_id, "--history", "--json")
        in_run_3 = [e for e in history if e["run_id"] == 3]
        assert in_run_3 == [c for c in changes if c["story_id"] == story_id or (
            c["other_story_id"] == story_id and c["kind"] in ("split", "merged"))]
        text = deployment.cli("story", story_id, "--history")
        assert text.startswith(f"story {story_id}: history") and "run 3" in text


def test_topics_have_names(deployment: Deployment) -> None:
    topics = deployment.json("topics", "--json")
    assert topics and all(t["name"] and t["keywords"] for t in topics)
    table = deployment.cli("topics")
    assert table.splitlines()[0].split()[:2] == ["TOPIC", "STORIES"] and topics[0]["name"][:20] in table
    stories = deployment.json("stories", "--json")
    assert all(s["topic_name"] for s in stories)


def test_unassigned_csv_loads_in_pandas_with_the_summarys_count(deployment: Deployment) -> None:
    pandas = pytest.importorskip("pandas")
    quiet = deployment.runs[5]
    assert quiet["new_articles"] == 0 and quiet["unassigned"] == deployment.runs[4]["unassigned"] > 0
    frame = pandas.read_csv(io.StringIO(deployment.cli("articles", "--unassigned", "--format", "csv")))
    assert len(frame) == quiet["unassigned"]
    assert frame["story_id"].isna().all() and frame["duplicate_of"].isna().all()
    summary = clustering(deployment.folder, "run", env=deployment.env)
    assert f"{quiet['unassigned']} unassigned in the window" in summary.stdout


@pytest.mark.parametrize(("command", "key"), [("stories", "id"), ("articles", "id"), ("duplicates", "article_id")])
def test_csv_and_jsonl_round_trip(deployment: Deployment, command: str, key: str) -> None:
    as_json = deployment.json(command, "--json")
    rows = list(csv.DictReader(io.StringIO(deployment.cli(command, "--format", "csv"))))
    lines = [json.loads(line) for line in deployment.cli(command, "--format", "jsonl").splitlines()]
    assert len(as_json) == len(rows) == len(lines) > 0
    assert [str(r[key]) for r in as_json] == [r[key] for r in rows] == [str(r[key]) for r in lines]
    assert lines == as_json


def test_members_in_time_order_and_filters(deployment: Deployment) -> None:
    story = deployment.json("stories", "--json")[0]
    detail = deployment.json("story", story["id"], "--json")
    published = [a["published"] for a in detail["articles"]]
    assert published == sorted(published) and [a["id"] for a in detail["articles"]] == story["article_ids"]
    agency = deployment.json("articles", "--tag", "agency", "--json")
    assert agency and {a["source"] for a in agency} == {"wire", "metro"}
    found = deployment.json("articles", "--search", "kessa river", "--feed", "herald", "--json")
    assert found and all(a["source"] == "herald" for a in found)
    copies = deployment.json("duplicates", "--json")
    assert copies and all(c["source"] == "metro" and c["canonical_source"] == "wire" for c in copies)


def test_bad_arguments_exit_2(deployment: Deployment) -> None:
    for args in (["stories", "--since", "yesterday"], ["changes", "--since", "last tuesday"],
                 ["stories", "--format", "xml"], ["articles", "--story", "s1", "--unassigned"]):
        result = clustering(deployment.folder, *args, env=deployment.env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, args


def test_the_database_variable_needs_no_config(deployment: Deployment, tmp_path: Path) -> None:
    env = {"CLUSTERING_DB": str(deployment.folder / "news.db")}
    stories = json.loads(output(tmp_path, "stories", "--json", env=env))
    assert stories == deployment.json("stories", "--json")


def test_the_report_is_written_after_every_run(deployment: Deployment) -> None:
    page = (deployment.folder / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and 'class="topic"' in page and "republished by metro" in page


def test_feeds_add_and_remove_from_the_command_line(deployment: Deployment, tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text((deployment.folder / "desk.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert "added feed 'courier'" in output(tmp_path, "feeds", "add", "https://courier.example/rss",
                                            "--name", "courier", "--tags", "press,local")
    assert "# the desk's feeds" in config.read_text(encoding="utf-8")
    exported = output(tmp_path, "feeds", "export")
    assert 'xmlUrl="https://courier.example/rss"' in exported
    output(tmp_path, "feeds", "remove", "courier")
    assert "courier" not in config.read_text(encoding="utf-8")
    every_change = deployment.json("changes", "--since", "0", "--json")
    assert deployment.json("changes", "--since", "0", "--tag", "press", "--json") == every_change  # all have press
    assert deployment.json("changes", "--since", "0", "--tag", "sports", "--json") == []
    feeds = deployment.json("feeds", "--tag", "agency", "--json")
    assert {f["name"] for f in feeds} == {"wire", "metro"} and feeds[0]["tags"] == ["agency"]
