"""The command line, run as users run it: ``python -m clustering ...`` in a subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from clustering.store import run_lock

RUN_KEYS = {"feeds_ok", "feeds_failed", "new_articles", "duplicates", "stories_new", "stories_updated"}
STORY_KEYS = {"id", "label", "keywords", "size", "sources", "first_seen", "last_seen", "topic_id", "article_ids"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SCRIPT_TITLE = "&amp;lt;script&amp;gt;alert('pwned')&amp;lt;/script&amp;gt; Vellmar earthquake rescue"
"""A headline that, once parsed, reads ``<script>alert('pwned')</script> ...`` (escaped twice in XML)."""

TOPICS = {
    "quake": "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast "
             "epicentre",
    "rates": "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending",
}


def clustering(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clustering", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def feed_xml(topic: str, seeds: Sequence[int], titles: dict[int, str] | None = None) -> str:
    """An RSS document of shuffled-vocabulary articles about ``topic`` (hours-old dates)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    items = []
    for seed in seeds:
        words = TOPICS[topic].split()
        random.Random(seed).shuffle(words)
        title = (titles or {}).get(seed, " ".join(words[:5]).capitalize())
        published = format_datetime(now - timedelta(hours=6) + timedelta(minutes=seed))
        items.append(f"<item><title>{title}</title><link>https://{topic}.test/{seed}</link>"
                     f"<guid>{topic}-{seed}</guid><pubDate>{published}</pubDate>"
                     f"<description>{' '.join(words)}.</description></item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{topic}</title>'
            f"<link>https://{topic}.test/</link><description>d</description>{''.join(items)}</channel></rss>")


def write_config(folder: Path, feeds: Sequence[tuple[str, str]], name: str = "feeds.yaml") -> Path:
    lines = ["settings:", "  model: hashing", "  database: news.db", "feeds:"]
    lines += [f"  - name: {feed}\n    url: {url}" for feed, url in feeds]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A folder with feeds.yaml (two local feeds and one missing file) after one `run --json`."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "quake.xml").write_text(feed_xml("quake", [1, 2, 3, 4], {2: SCRIPT_TITLE}), encoding="utf-8")
    (folder / "rates.xml").write_text(feed_xml("rates", [5, 6, 7, 8]), encoding="utf-8")
    write_config(folder, [("quake-desk", "quake.xml"), ("rates-desk", "rates.xml"), ("gone", "missing.xml")])
    result = clustering("run", "--config", "feeds.yaml", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout)  # the whole of stdout is one JSON value


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = clustering("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "stories", "story", "feeds"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command
    run_help = clustering("run", "--help", cwd=tmp_path)
    assert run_help.returncode == 0 and "--force" in run_help.stdout and "--json" in run_help.stdout


def test_run_json_is_one_object_with_the_counts(workspace: tuple[Path, dict[str, Any]]) -> None:
    _, report = workspace
    assert isinstance(report, dict)
    assert RUN_KEYS <= set(report)
    assert report["skipped"] is False
    assert (report["feeds_ok"], report["feeds_failed"], report["new_articles"]) == (2, 1, 8)
    assert report["failed_feeds"] == ["gone"]
    assert (report["stories_new"], report["stories_updated"], report["duplicates"]) == (2, 0, 0)


def test_run_text_summary_and_a_second_run_adds_nothing(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("run", "--config", "feeds.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert "0 new articles" in result.stdout and "3 not due" in result.stdout
    forced = clustering("run", "--config", "feeds.yaml", "--force", "--json", cwd=folder)
    report = json.loads(forced.stdout)
    assert (report["feeds_not_modified"], report["new_articles"], report["stories_new"]) == (2, 0, 0)


def stories_json(folder: Path) -> list[dict[str, Any]]:
    result = clustering("stories", "--config", "feeds.yaml", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    stories = json.loads(result.stdout)
    assert isinstance(stories, list)
    return stories


def test_stories_json_shape(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    stories = stories_json(folder)
    assert len(stories) == 2
    for story in stories:
        assert STORY_KEYS <= set(story)
        assert isinstance(story["id"], str) and story["id"]
        assert isinstance(story["label"], str) and story["label"]
        assert isinstance(story["keywords"], list) and all(isinstance(k, str) for k in story["keywords"])
        assert story["size"] == len(story["article_ids"]) == 4
        assert all(isinstance(i, int) for i in story["article_ids"])
        assert story["sources"] == 1
        assert ISO_UTC.match(story["first_seen"]) and ISO_UTC.match(story["last_seen"])
        assert story["first_seen"] <= story["last_seen"]
        assert story["topic_id"] is None or isinstance(story["topic_id"], str)
    assert sorted(i for s in stories for i in s["article_ids"]) == list(range(1, 9))
    table = clustering("stories", "--config", "feeds.yaml", cwd=folder)
    assert table.returncode == 0
    for story in stories:
        assert story["id"] in table.stdout


def test_story_text_and_json(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    story = next(s for s in stories_json(folder) if 2 in s["article_ids"])
    text = clustering("story", story["id"], "--config", "feeds.yaml", cwd=folder)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"story {story['id']}: ")
    assert "<script>alert('pwned')</script>" in text.stdout  # plain text output is not HTML
    for article_id in story["article_ids"]:
        assert f"#{article_id}" in text.stdout
    as_json = clustering("story", story["id"], "--config", "feeds.yaml", "--json", cwd=folder)
    detail = json.loads(as_json.stdout)
    assert detail["id"] == story["id"] and detail["article_ids"] == story["article_ids"]
    assert [a["id"] for a in detail["articles"]] == story["article_ids"]
    assert all(a["story_id"] == story["id"] and a["source"] == "quake-desk" for a in detail["articles"])
    assert all(isinstance(a["similarity"], float) for a in detail["articles"])
    assert detail["duplicates"] == []


def test_unknown_story_id_exits_1(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("story", "s424242", "--config", "feeds.yaml", cwd=folder)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("clustering: error:") and "s424242" in result.stderr


def test_feeds_table_shows_the_last_error(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("feeds", "--config", "feeds.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr
    gone = next(line for line in result.stdout.splitlines() if line.startswith("gone "))
    assert "file not found" in gone and "missing.xml" in gone
    ok = next(line for line in result.stdout.splitlines() if line.startswith("rates-desk "))
    assert "error" not in ok.lower() and " 4 " in ok
    statuses = {s["name"]: s for s in json.loads(clustering("feeds", "--config", "feeds.yaml", "--json",
                                                              cwd=folder).stdout)}
    assert statuses["gone"]["consecutive_errors"] >= 1 and statuses["rates-desk"]["last_error"] is None


def test_stories_html_is_escaped(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("stories", "--config", "feeds.yaml", "--html", "page.html", cwd=folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "page.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count('class="story"') == 2
    assert page.count("<script") == 1  # the page's own filter script; none from a feed
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert 'href="https://quake.test/1"' in page


def test_html_into_a_missing_folder_is_an_error_not_a_traceback(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("stories", "--config", "feeds.yaml", "--html", "no/such/folder/page.html", cwd=folder)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no/such/folder/page.html" in result.stderr and "cannot write" in result.stderr


def test_a_reader_that_leaves_early_is_not_an_error(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    process = subprocess.Popen([sys.executable, "-m", "clustering", "stories", "--config", "feeds.yaml", "--json"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `clustering stories --json | head -0`
    errors = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in errors and "BrokenPipe" not in errors


# --------------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(("text", "line", "key", "reason"), [
    ("settings:\n  model: hashing\n  window_days: 3: 4\nfeeds: []\n", 3, None, "invalid YAML"),
    ("settings:\n  model: hashing\n  windw_days: 3\n", 3, "settings.windw_days", "unknown key"),
    ("settings:\n  model: hashing\n  window_days: soon\n", 3, "settings.window_days", "expected a number"),
    ("feeds:\n  - name: wire\n    url: wire.xml\n  - name: gazette\n    tags: [local]\n", 4, "feeds[1].url",
     "missing required key"),
    ("settings:\n  fetch:\n    timeout_seconds: [1]\n", 3, "settings.fetch.timeout_seconds", "expected a number"),
])
def test_malformed_config_names_file_key_and_line(tmp_path: Path, text: str, line: int, key: str | None,
                                                   reason: str) -> None:
    (tmp_path / "broken.yaml").write_text(text, encoding="utf-8")
    result = clustering("run", "--config", "broken.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"broken.yaml:{line}" in result.stderr
    assert reason in result.stderr
    if key is not None:
        assert f"'{key}'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "news.db").exists() and not (tmp_path / "clustering.db").exists()


def test_an_alias_bomb_gets_one_short_line(tmp_path: Path, alias_bomb: Callable[[int], str]) -> None:
    """Issue item 4: a 364-byte feeds.yaml made `clustering feeds` print 351 MB to stderr."""
    (tmp_path / "feeds.yaml").write_text(alias_bomb(7), encoding="utf-8")
    result = clustering("feeds", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("clustering: error: feeds.yaml:4, key 'feeds[0].language[6]': more than 100,000 values "
                             "once YAML aliases (*name) are expanded; write the values out instead\n")


def test_missing_config_exits_1_with_a_hint(tmp_path: Path) -> None:
    default = clustering("run", cwd=tmp_path)
    assert default.returncode == 1
    assert "feeds.yaml" in default.stderr and "--config" in default.stderr and "--sample" in default.stderr
    named = clustering("stories", "--config", "nowhere.yaml", cwd=tmp_path)
    assert named.returncode == 1
    assert "nowhere.yaml" in named.stderr and "not found" in named.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert clustering("frobnicate", cwd=tmp_path).returncode == 2
    assert clustering("stories", "--limit", "many", cwd=tmp_path).returncode == 2


def test_run_while_locked_is_skipped_with_exit_0(tmp_path: Path) -> None:
    (tmp_path / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    with run_lock(tmp_path / "news.db"):
        text = clustering("run", "--config", "feeds.yaml", cwd=tmp_path)
        as_json = clustering("run", "--config", "feeds.yaml", "--json", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "skipped" in text.stdout + text.stderr
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["skipped"] is True
    after = clustering("run", "--config", "feeds.yaml", "--json", cwd=tmp_path)
    assert json.loads(after.stdout)["new_articles"] == 3


def test_a_run_skipped_by_a_lock_held_past_the_run_deadline_exits_1_saying_since_when(tmp_path: Path) -> None:
    """A hung run held the lock for ever while every cron run printed `skipped` and exited 0."""
    (tmp_path / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    with run_lock(tmp_path / "news.db"):
        lock = tmp_path / "news.db.lock"
        pid = lock.read_text().split()[0]
        lock.write_text(f"{pid} 2026-01-02T03:04:05Z\n")  # taken long ago, past the 300 s default
        text = clustering("run", "--config", "feeds.yaml", cwd=tmp_path)
        as_json = clustering("run", "--config", "feeds.yaml", "--json", cwd=tmp_path)
    assert text.returncode == 1
    assert f"clustering: error: skipped: pid {pid} has held the run lock since 2026-01-02 03:04:05 UTC" in text.stderr
    assert "longer than settings.fetch.run_deadline (300 s)" in text.stderr
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) | {"reason": ""} == {"skipped": True, "overdue": True, "reason": "",
                                                          "held_since": "2026-01-02T03:04:05+00:00"}


def test_a_stored_time_the_run_cannot_read_is_repaired_not_fatal(tmp_path: Path) -> None:
    """Issue item 1: '999-01-01T00:00:00Z' stored for an unprocessed article failed every later run."""
    (tmp_path / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    assert clustering("run", "--config", "feeds.yaml", cwd=tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "news.db") as raw:
        raw.execute("UPDATE articles SET published = '999-01-01T00:00:00Z', processed = 0 WHERE id = 2")
    repairing = clustering("run", "--config", "feeds.yaml", "--force", "--json", cwd=tmp_path)
    assert repairing.returncode == 0, repairing.stderr
    assert json.loads(repairing.stdout)["skipped"] is False
    assert "article 2: stored publication time '999-01-01T00:00:00Z' is not a plausible date" in repairing.stderr
    with sqlite3.connect(tmp_path / "news.db") as raw:  # wedged again, had the first run not repaired it
        raw.execute("UPDATE articles SET processed = 0 WHERE id = 2")
    again = clustering("run", "--config", "feeds.yaml", "--force", cwd=tmp_path)
    assert again.returncode == 0 and "article 2" not in again.stderr, again.stderr
    listed = clustering("stories", "--config", "feeds.yaml", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert 2 in json.loads(listed.stdout)[0]["article_ids"]
    with sqlite3.connect(tmp_path / "news.db") as raw:
        assert raw.execute("SELECT processed, published_estimated FROM articles WHERE id = 2").fetchone() == (1, 1)


def test_a_run_through_a_symbolic_link_waits_for_the_run_on_the_file(tmp_path: Path) -> None:
    """Issue item 5: with `ln -s a.db b.db`, runs on --db a.db and --db b.db overlapped."""
    (tmp_path / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    (tmp_path / "b.db").symlink_to("a.db")
    with run_lock(tmp_path / "a.db"):
        through_link = clustering("run", "--config", "feeds.yaml", "--db", "b.db", "--force", "--json", cwd=tmp_path)
    assert through_link.returncode == 0, through_link.stderr
    assert json.loads(through_link.stdout)["skipped"] is True
    assert not (tmp_path / "b.db.lock").exists()


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "soon"])
def test_wait_must_be_a_finite_number_of_seconds(tmp_path: Path, wait: str) -> None:
    """Issue item 6: `--wait nan` and `--wait inf` never returned while another run held the lock."""
    (tmp_path / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    with run_lock(tmp_path / "news.db"):
        result = subprocess.run([sys.executable, "-m", "clustering", "run", "--config", "feeds.yaml", "--wait", wait],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "argument --wait: expected a" in result.stderr and repr(wait) in result.stderr


@pytest.mark.parametrize(("since", "message"), [
    ("99999999d", "argument --since: reaches outside the calendar"),
    ("9" * 400 + "w", "reaches outside the calendar"),
    ("0001-01-01T00:00:00+05:00", "reaches outside the calendar"),
    ("yesterday", "expected a duration like 6h"),
])
def test_since_out_of_range_is_an_error_not_a_traceback(workspace: tuple[Path, dict[str, Any]], since: str,
                                                         message: str) -> None:
    """Issue item 6: `clustering stories --since 99999999d` printed an OverflowError traceback.  A
    --since that cannot be read is a bad argument: exit 2, as the README says (issue 17)."""
    folder, _ = workspace
    result = clustering("stories", "--config", "feeds.yaml", "--since", since, cwd=folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "clustering stories: error: " in result.stderr and message in result.stderr


def test_a_huge_limit_means_no_limit(workspace: tuple[Path, dict[str, Any]]) -> None:
    folder, _ = workspace
    result = clustering("stories", "--config", "feeds.yaml", "--json", "--limit", "9" * 400, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2
    assert clustering("stories", "--config", "feeds.yaml", "--limit", "0", cwd=folder).returncode == 2


@pytest.mark.parametrize("command", [["stories"], ["story", "s1"], ["feeds"], ["stories", "--html", "page.html"]])
def test_reading_a_database_that_does_not_exist_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    """Issue item 7: reading commands created an empty database file where none was."""
    write_config(tmp_path, [("rates-desk", "rates.xml")])
    result = clustering(*command, "--config", "feeds.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert f"no database at {tmp_path / 'news.db'}: a `clustering run` creates it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.yaml"]


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: nothing for an ordinary user; for
    root, a new user namespace (``unshare -U``), where root's capabilities do not reach files."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode:
        pytest.skip("running as root, where a read-only folder is writable, and `unshare -U` is not available")
    return ["unshare", "-U"]


def test_reading_commands_work_on_read_only_storage(tmp_path: Path) -> None:
    """Issue item 7: `stories`, `feeds` and `story` could not read a database on read-only storage."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "rates.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    write_config(folder, [("rates-desk", "rates.xml")])
    assert clustering("run", "--config", "feeds.yaml", cwd=folder).returncode == 0
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert "news.db-shm" not in files  # the run closed cleanly: reading needs a -shm it cannot create
    prefix = unprivileged()
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("the folder stays writable after chmod 555 here")
        results = [subprocess.run([*prefix, sys.executable, "-m", "clustering", *command, "--config", "feeds.yaml"],
                                  cwd=folder, capture_output=True, text=True, timeout=300)
                   for command in (["stories", "--json"], ["story", "s1"], ["feeds"])]
    finally:
        folder.chmod(0o755)
    for result in results:
        assert result.returncode == 0, result.stderr
    assert [s["id"] for s in json.loads(results[0].stdout)] == ["s1"]
    assert results[1].stdout.startswith("story s1: ")
    assert "rates-desk" in results[2].stdout
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # nothing written, nothing created


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database replayed from an archive of March 2026, made through the API; no feeds.yaml beside it."""
    from clustering import open_pipeline
    from clustering.config import parse_config

    newest = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    folder = tmp_path_factory.mktemp("archive")
    articles = []
    for topic, days_back in (("quake", 0), ("rates", 2)):  # the rates story ended two days before the newest
        for seed in range(4):
            words = TOPICS[topic].split()
            random.Random(seed).shuffle(words)
            articles.append({"title": " ".join(words[:5]), "text": " ".join(words), "source": f"desk{seed}",
                             "published": newest - timedelta(days=days_back, hours=seed)})
    with open_pipeline(folder / "archive.db", parse_config({"settings": {"model": "hashing"}}),
                       now=lambda: newest) as pipeline:
        pipeline.add_articles(articles)
        assert pipeline.process().stories_total == 2
    return folder


def test_reading_commands_need_no_feeds_yaml_with_db(archive: Path) -> None:
    """Issue item 8: `clustering stories --db news.db` demanded a feeds.yaml."""
    assert not (archive / "feeds.yaml").exists()
    stories = clustering("stories", "--db", "archive.db", "--json", cwd=archive)
    assert stories.returncode == 0, stories.stderr
    assert len(json.loads(stories.stdout)) == 2
    story_id = json.loads(stories.stdout)[0]["id"]
    assert clustering("story", story_id, "--db", "archive.db", cwd=archive).stdout.startswith(f"story {story_id}: ")
    assert clustering("feeds", "--db", "archive.db", cwd=archive).returncode == 0
    run = clustering("run", "--db", "archive.db", cwd=archive)  # a run still needs its feeds
    assert run.returncode == 1 and "no feeds.yaml in the current directory" in run.stderr


def test_since_counts_back_from_the_newest_article_like_the_window(archive: Path) -> None:
    """Issue item 8: `stories --since 1d` counted from the wall clock, so a replayed archive showed 0 stories."""
    (archive / "settings").mkdir(exist_ok=True)
    (archive / "settings" / "feeds.yaml").write_text("settings:\n  model: hashing\n  database: ../archive.db\n",
                                                     encoding="utf-8")

    def labels(since: str) -> list[int]:
        result = clustering("stories", "--config", "settings/feeds.yaml", "--json", "--since", since, cwd=archive)
        assert result.returncode == 0, result.stderr
        return sorted(len(s["article_ids"]) for s in json.loads(result.stdout))

    assert labels("1d") == [4]  # the quake story; the rates story ended two days before the newest article
    assert labels("3d") == [4, 4]
    assert labels("2026-03-01") == [4] and labels("2026-02-01T00:00:00+00:00") == [4, 4]
    help_text = " ".join(clustering("stories", "--help", cwd=archive).stdout.split())
    assert "counted back from the newest stored article" in help_text and "not from the wall clock" in help_text


def test_a_run_in_which_every_feed_failed_exits_3(tmp_path: Path) -> None:
    """Issue item 10: a run in which every feed failed exited 0, so cron and monitoring could not see it."""
    write_config(tmp_path, [("gone", "missing.xml"), ("also-gone", "nowhere.xml")])
    outage = clustering("run", "--config", "feeds.yaml", "--json", cwd=tmp_path)
    assert outage.returncode == 3, outage.stderr
    report = json.loads(outage.stdout)  # the JSON is printed all the same
    assert (report["feeds_ok"], report["feeds_failed"], sorted(report["failed_feeds"])) == (0, 2, ["also-gone", "gone"])
    assert "every feed fetched in this run failed (2)" in outage.stderr
    text = clustering("run", "--config", "feeds.yaml", "--force", cwd=tmp_path)
    assert text.returncode == 3 and "2 failed" in text.stdout
    not_due = clustering("run", "--config", "feeds.yaml", cwd=tmp_path)  # backing off: nothing fetched, nothing failed
    assert not_due.returncode == 0 and "2 not due" in not_due.stdout
    (tmp_path / "missing.xml").write_text(feed_xml("rates", [5, 6, 7]), encoding="utf-8")
    partly = clustering("run", "--config", "feeds.yaml", "--force", "--json", cwd=tmp_path)
    assert partly.returncode == 0 and json.loads(partly.stdout)["feeds_failed"] == 1  # only some failed: 0
    for command in ([], ["run"]):
        help_text = " ".join(clustering(*command, "--help", cwd=tmp_path).stdout.split())
        assert "exit status: 0" in help_text and "3" in help_text and "every feed fetched" in help_text


def test_verbose_logs_each_stage_and_keeps_other_libraries_quiet(tmp_path: Path) -> None:
    """Issue item 12: `clustering run -v` was an error, and -v showed only a library's loader noise."""
    (tmp_path / "quake.xml").write_text(feed_xml("quake", [1, 2, 3, 4]), encoding="utf-8")
    write_config(tmp_path, [("quake-desk", "quake.xml"), ("gone", "missing.xml")])
    before = clustering("-v", "run", "--config", "feeds.yaml", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    lines = before.stderr.splitlines()
    stage = r"in \d+\.\d s$"
    for pattern in (r"fetch: 1 feeds ok, 0 not modified, 1 failed, 0 not due; 4 new articles ",
                    r"embed: 4 articles with hashing-256 ", r"dedup: 0 links in a window of 4 articles \(4 new\) ",
                    r"stories: 1 new, 0 updated, 0 unassigned; 4 of 4 window articles clustered afresh "):
        assert any(re.fullmatch(f"INFO clustering: {pattern}{stage}", line) for line in lines), (pattern, lines)
    assert any(line.startswith("WARNING clustering: 1 of 2 feeds failed: 'gone' (") for line in lines)
    assert all(line.startswith(("INFO clustering", "WARNING clustering")) for line in lines), lines  # no faiss.loader

    after = clustering("run", "--config", "feeds.yaml", "--force", "-v", cwd=tmp_path)  # after the command too
    assert after.returncode == 0, after.stderr
    assert "INFO clustering: fetch: 0 feeds ok, 1 not modified, 1 failed" in after.stderr
    assert "INFO clustering: process: no new articles" in after.stderr
    quiet = clustering("run", "--config", "feeds.yaml", "--force", cwd=tmp_path)
    assert "INFO" not in quiet.stderr and "WARNING clustering: 1 of 2 feeds failed: 'gone' (" in quiet.stderr

    (tmp_path / "quake.xml").write_text(feed_xml("quake", [5, 6, 7]), encoding="utf-8")
    chatty = clustering("-v", "run", "--config", "feeds.yaml", "--force", "-v", cwd=tmp_path)  # -vv: libraries too
    assert chatty.returncode == 0, chatty.stderr
    assert "DEBUG clustering" in chatty.stderr and "INFO faiss" in chatty.stderr


def test_each_count_says_what_it_counts_alike_in_table_json_and_html(tmp_path: Path) -> None:
    """Issue item 13: "4 articles from 5 sources" (sources counted the duplicates' outlets), and
    `duplicates` was a number in `stories --json` but a list in `story --json`."""
    from clustering import open_pipeline
    from clustering.config import parse_config

    newest = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    words = TOPICS["quake"].split()
    articles = []
    for seed, outlet in enumerate(["ara", "bel", "cor", "cor"]):  # four articles from three outlets
        random.Random(seed).shuffle(words)
        articles.append({"title": " ".join(words[:5]), "text": " ".join(words), "source": outlet,
                         "url": f"https://{outlet}.test/{seed}", "published": newest - timedelta(hours=seed + 1)})
    articles.append({**articles[0], "source": "copycat", "url": "https://copycat.test/1", "published": newest})
    with open_pipeline(tmp_path / "news.db", parse_config({"settings": {"model": "hashing"}}),
                       now=lambda: newest) as pipeline:
        pipeline.add_articles(articles)
        pipeline.process()

    (listed,) = json.loads(clustering("stories", "--db", "news.db", "--json", cwd=tmp_path).stdout)
    assert (listed["size"], listed["canonical_sources"]) == (4, 3)
    assert listed["duplicates"] == listed["duplicate_count"] == 1
    assert listed["sources"] == listed["sources_with_duplicates"] == 4  # ara, bel, cor and the copy's copycat
    detail = json.loads(clustering("story", listed["id"], "--db", "news.db", "--json", cwd=tmp_path).stdout)
    assert len(detail["duplicates"]) == detail["duplicate_count"] == 1  # the list, and beside it the number
    assert {k: detail[k] for k in ("size", "canonical_sources", "sources", "sources_with_duplicates")} == {
        k: listed[k] for k in ("size", "canonical_sources", "sources", "sources_with_duplicates")}

    words_line = "4 articles from 3 sources, plus 1 duplicate (4 sources with duplicates)"
    text = clustering("story", listed["id"], "--db", "news.db", cwd=tmp_path).stdout
    assert f"  {words_line}; topic" in text
    table = clustering("stories", "--db", "news.db", cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "ARTICLES", "SOURCES", "DUPLICATES"]
    assert table[1].split()[:4] == [listed["id"], "4", "3", "1"]
    assert clustering("stories", "--db", "news.db", "--html", "page.html", cwd=tmp_path).returncode == 0
    assert f'<p class="meta">{words_line} · ' in (tmp_path / "page.html").read_text(encoding="utf-8")


def test_run_summary_mentions_waiting_and_moved_articles_only_when_there_are_some() -> None:
    from clustering.report import run_summary
    from clustering.types import RunReport

    quiet = RunReport(feeds_ok=2, feeds_failed=0, feeds_not_modified=1, feeds_skipped=0, new_articles=9,
                      duplicates=1, stories_new=1, stories_updated=2, stories_total=5, unassigned=4, seconds=1.25)
    assert run_summary(quiet) == ("feeds: 2 ok, 1 not modified, 0 failed, 0 not due; 9 new articles, 1 duplicates; "
                                  "stories: 1 new, 2 updated, 5 total; 4 unassigned in the window; 1.2 s")
    busy = RunReport(**{**quiet.as_dict(), "failed_feeds": (), "pending": 3, "moved": 2, "merged": 1})
    assert run_summary(busy).endswith("4 unassigned in the window (3 waiting for a second run); "
                                      "2 articles moved (stories split or merged); 1 stories merged into others; 1.2 s")
    assert busy.as_dict()["pending"] == 3 and busy.as_dict()["moved"] == 2 and busy.as_dict()["merged"] == 1
    outage = RunReport(**{**quiet.as_dict(), "feeds_failed": 1980, "feeds_deferred": 7,
                          "failed_feeds": tuple(f"dead{i}" for i in range(1980))})
    assert run_summary(outage).startswith("feeds: 2 ok, 1 not modified, 1980 failed (dead0, dead1, dead2 and 1977 "
                                          "more), 0 not due, 7 left for the next run (run deadline); ")


# --- progress on a terminal, nothing extra under cron ------------------------------------------------
def on_a_terminal(*args: str, cwd: Path) -> tuple[int, str, bytes]:
    """``clustering ARGS`` with stderr on a pseudo-terminal and stdout a pipe, as a person at a
    terminal runs it: (exit status, stdout, everything the terminal received)."""
    controller, terminal = os.openpty()
    try:
        child = subprocess.Popen([sys.executable, "-m", "clustering", *args], cwd=cwd, stdout=subprocess.PIPE,
                                 stderr=terminal, stdin=subprocess.DEVNULL, text=True,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            received = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal's last descriptor
            break
        if not received:
            break
        shown += received
    os.close(controller)
    assert child.stdout is not None
    stdout = child.stdout.read()
    return child.wait(timeout=300), stdout, shown


@pytest.fixture
def six_hundred_articles(tmp_path: Path) -> Path:
    """A feed of 600 articles: more than one embedding chunk (EMBED_CHUNK = 512)."""
    (tmp_path / "big.xml").write_text(feed_xml("quake", range(600)), encoding="utf-8")
    write_config(tmp_path, [("big-desk", "big.xml")])
    return tmp_path


def test_a_run_at_a_terminal_shows_progress_on_stderr_and_clears_it(six_hundred_articles: Path) -> None:
    status, stdout, shown = on_a_terminal("run", "--config", "feeds.yaml", cwd=six_hundred_articles)
    assert status == 0, shown
    assert stdout.startswith("feeds: 1 ok") and "600 new articles" in stdout  # the summary, on stdout only
    text = shown.decode()
    assert "\rembedding 512/600 articles" in text and "\rembedding 600/600 articles" in text
    assert "\rlooking for duplicates: 600/600 new articles" in text
    assert text.endswith("\r" + " " * len("looking for duplicates: 600/600 new articles") + "\r")  # cleared
    assert "\n" not in text


def test_nothing_extra_on_stderr_under_cron_or_with_json(six_hundred_articles: Path) -> None:
    cron = clustering("run", "--config", "feeds.yaml", cwd=six_hundred_articles)  # stderr is a pipe
    assert cron.returncode == 0 and cron.stderr == ""
    assert "600 new articles" in cron.stdout
    (six_hundred_articles / "news.db").unlink()
    (six_hundred_articles / "news.db.window").unlink()  # kept, it would be another database's: a warning
    status, stdout, shown = on_a_terminal("run", "--config", "feeds.yaml", "--json", cwd=six_hundred_articles)
    assert status == 0 and shown == b""
    assert json.loads(stdout)["new_articles"] == 600


def test_progress_line_redraws_in_place_at_most_every_interval() -> None:
    import io

    from clustering.report import ProgressLine

    stream = io.StringIO()
    with ProgressLine(stream) as progress:
        progress("embedding", 512, 1100)
        progress("embedding", 1024, 1100)  # within the interval: not drawn
        progress("embedding", 1100, 1100)  # the last count always is
        progress("stories", 0, 1100)
    longest = "embedding 1,100/1,100 articles"
    assert stream.getvalue() == "\rembedding 512/1,100 articles" + "\r" + longest + "\r" + " " * len(longest) + "\r"


def test_a_story_without_copies_reads_without_a_duplicates_clause() -> None:
    """"4 articles from 4 sources, plus 0 duplicates (4 sources with duplicates)" said nothing twice."""
    from clustering.report import story_counts
    from clustering.types import Story

    moment = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    story = Story(id="s1", label="x", keywords=(), size=4, sources=4, first_seen=moment, last_seen=moment,
                  topic_id=None, article_ids=(1, 2, 3, 4), duplicates=0, canonical_sources=4)
    assert story_counts(story) == "4 articles from 4 sources"
    copied = dataclasses.replace(story, duplicates=2, sources=5)
    assert story_counts(copied) == "4 articles from 4 sources, plus 2 duplicates (5 sources with duplicates)"
