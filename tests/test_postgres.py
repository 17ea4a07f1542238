"""The PostgreSQL store (store_pg.py): what only it has, and a run on each backend giving the same stories.

The store tests of test_store.py run on both backends through conftest's ``database`` fixture; these
need a PostgreSQL server too (conftest ``postgres_server``), and skip, saying how to get one, without.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from clustering import ConfigError, LockedError, StorageError, listing_queries, open_pipeline
from clustering.config import load_config
from clustering.store import SCHEMA_VERSION, NewArticle, open_store

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "clustering" / "sample"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def new_article(key: str) -> NewArticle:
    return NewArticle(source="wire", entry_key=key, title=f"Title {key}", summary="", url=None, published=T0,
                      published_estimated=False, text_hash=key)


def raw(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def pg_url(postgres_server: Any) -> str:
    return str(postgres_server.database())


# --- which database a --db names ------------------------------------------------------------------
@pytest.mark.parametrize("url", ["mysql://u@h/db", "http://example.com/x.db", "sqlite://x.db", "file://x.db"])
def test_other_url_schemes_are_refused_before_anything_is_created(url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="unsupported URL scheme"):
        open_pipeline(url)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_an_unknown_url_and_creates_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from clustering.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["stories", "--db", "mysql://user:secret@localhost/news"]) == 1
    assert "unsupported URL scheme 'mysql'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_storage_error_without_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:hunter2@/nowhere?host={tmp_path}&port=1"
    with pytest.raises(StorageError) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value) and "someone:***@" in str(caught.value)


# --- schema ----------------------------------------------------------------------------------------
def test_new_database_gets_the_schema_and_its_version(pg_url: str) -> None:
    open_store(pg_url).close()
    assert raw(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    open_store(pg_url).close()  # reopening migrates nothing
    assert raw(pg_url, "SELECT count(*) FROM schema_version") == [(1,)]


def test_newer_schema_version_is_refused(pg_url: str) -> None:
    open_store(pg_url).close()
    raw(pg_url, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    for read_only in (False, True):
        with pytest.raises(StorageError, match="newer"):
            open_store(pg_url, read_only=read_only)


def test_a_database_with_tables_of_our_names_but_no_version_is_refused(pg_url: str) -> None:
    raw(pg_url, "CREATE TABLE articles (body TEXT)")
    with pytest.raises(StorageError, match="not a clustering database"):
        open_store(pg_url)
    assert raw(pg_url, "SELECT count(*) FROM articles") == [(0,)]


def test_two_first_opens_at_once_both_find_one_schema(pg_url: str) -> None:
    errors: list[BaseException] = []

    def first_open() -> None:
        try:
            open_store(pg_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_open) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert raw(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_read_only_store_never_creates_and_never_writes(pg_url: str) -> None:
    with pytest.raises(StorageError, match="not a clustering database yet"):
        open_store(pg_url, read_only=True)
    assert raw(pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]
    writer = open_store(pg_url)
    with writer.transaction():
        writer.add_articles([new_article("a")], T0)
    writer.close()
    reader = open_store(pg_url, read_only=True)
    try:
        assert reader.article(1).entry_key == "a"
        with pytest.raises(StorageError, match="read-only"), reader.transaction():
            reader.add_articles([new_article("b")], T0)
    finally:
        reader.close()
    assert raw(pg_url, "SELECT count(*) FROM articles") == [(1,)]


# --- workers ---------------------------------------------------------------------------------------
def test_feeds_are_claimed_by_one_worker_each_and_a_lapsed_lease_frees_them(pg_url: str) -> None:
    first, second = open_store(pg_url), open_store(pg_url)
    try:
        names = [f"feed{i}" for i in range(6)]
        with first.transaction():
            first.sync_feeds((n, f"https://example.com/{n}") for n in names)
        lease = T0 + timedelta(minutes=5)
        a = [r["name"] for r in first.claim_feeds(names, now=T0, lease_until=lease, limit=4)]
        b = [r["name"] for r in second.claim_feeds(names, now=T0, lease_until=lease, limit=4)]
        assert sorted(a + b) == names and not set(a) & set(b)
        assert second.claim_feeds(names, now=T0, lease_until=lease, limit=4) == []
        with first.transaction():  # a fetch recorded: released, and due again only at next_attempt
            first.record_fetch(a[0], now=T0, ok=True, error=None, warning=None, etag=None, last_modified=None,
                               next_attempt=T0 + timedelta(hours=1))
        assert second.claim_feeds(names, now=T0 + timedelta(minutes=1), lease_until=lease, limit=9) == []
        # the worker holding the rest was killed: its leases lapse and another worker takes them
        later = [r["name"] for r in second.claim_feeds(names, now=lease, lease_until=lease + timedelta(minutes=5),
                                                       limit=9)]
        assert sorted(later) == sorted(set(names) - {a[0]})
    finally:
        first.close()
        second.close()


def test_one_worker_clusters_at_a_time_and_a_dead_ones_lock_is_freed(pg_url: str) -> None:
    first, second = open_store(pg_url), open_store(pg_url)
    try:
        with first.cluster_lock():
            with pytest.raises(LockedError, match="another clustering worker"), second.cluster_lock():
                pass
        with second.cluster_lock():  # released on leaving
            pass
        with first.cluster_lock():
            first.close()  # the connection ends (as when the process is killed): PostgreSQL frees the lock
            with second.cluster_lock(wait_seconds=5):
                pass
    finally:
        second.close()


# --- a run on each backend -------------------------------------------------------------------------
def sample_runs(database: str | Path, folder: Path) -> dict[str, Any]:
    """Day 1 and day 2 of the bundled sample with the hashing embedder: what a reader would see."""
    config = dataclasses.replace(load_config(folder / "sample-feeds.yaml"), model="hashing")
    with open_pipeline(database, config) as pipeline:
        first = pipeline.run()
        for path in (folder / "update").glob("*.xml"):
            shutil.copyfile(path, folder / "feeds" / path.name)
        second = pipeline.run(force=True)
        stories = [(s.id, s.label, s.keywords, s.article_ids, s.size, s.sources, s.duplicates, s.topic_id)
                   for s in pipeline.stories()]
        articles = [pipeline.article(i) for i in range(1, first.new_articles + second.new_articles + 1)]
        duplicates = {a.id: [(l.canonical_id, l.kind, round(l.score, 6)) for l in pipeline.duplicates_of(a.id)]
                      for a in articles}
        # schema 6 (issue 17): runs and story events, topic names, listings and the views
        runs = [(r.id, r.processed, r.unassigned, r.pending) for r in pipeline.runs()]
        changes = [(e.run_id, e.story_id, e.kind, e.article_id, e.other_story_id, e.label_before, e.label_after)
                   for e in pipeline.changes(since=0)]
        histories = {s[0]: [(e.run_id, e.kind, e.article_id) for e in pipeline.story_history(s[0])]
                     for s in stories}
        topics = [(t.id, t.name, t.keywords, t.stories, t.articles, t.story_ids) for t in pipeline.topics()]
        listed = {"unassigned": [a.id for a in pipeline.articles(unassigned=True)],
                  "search": [a.id for a in pipeline.articles(search=["the"])],
                  "none": [a.id for a in pipeline.articles(sources=[])],
                  "copies": [tuple(r) for r in listing_queries.duplicate_rows(pipeline.store)]}
        views = {view: [tuple(r) for r in pipeline.store._query(f"SELECT {columns} FROM {view} ORDER BY 1")]
                 for view, columns in (("story_list", "*"), ("duplicate_list", "*"),  # first_seen: the wall clock
                                       ("article_list", "id, source, title, url, published, duplicate_of, story_id"))}
    return {"reports": [(r.new_articles, r.duplicates, r.stories_new, r.stories_total) for r in (first, second)],
            "stories": stories, "articles": [(a.id, a.source, a.entry_key, a.story_id, a.duplicate_of)
                                             for a in articles], "duplicates": duplicates,
            "runs": runs, "changes": changes, "histories": histories, "topics": topics, "listed": listed,
            "views": views}


def test_the_sample_gives_the_same_stories_on_both_backends(pg_url: str, tmp_path: Path) -> None:
    results = []
    for name, database in (("sqlite", tmp_path / "sample.db"), ("postgres", pg_url)):
        folder = tmp_path / name
        shutil.copytree(SAMPLE_DIR, folder)
        results.append(sample_runs(database, folder))
    sqlite_run, postgres_run = results
    assert sqlite_run["reports"][0][0] > 0 and sqlite_run["stories"]
    assert len(sqlite_run["runs"]) == 2 and sqlite_run["changes"] and sqlite_run["topics"]
    assert sqlite_run["views"]["story_list"] and sqlite_run["views"]["duplicate_list"]
    for key in sqlite_run:
        assert postgres_run[key] == sqlite_run[key], key


def test_two_workers_share_the_feeds_and_store_each_article_once(pg_url: str, tmp_path: Path) -> None:
    """Two workers (threads here; bench/workers.py runs processes and kills them) on one store and
    twelve loopback feeds: each feed fetched once, every article stored once, embedded and clustered."""
    from pytest_httpserver import HTTPServer

    from clustering.config import parse_config

    requests: list[str] = []
    words = ["quake rescue rubble coast survivors", "bank rates inflation bonds governor",
             "final striker goal stadium trophy"]
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        for feed in range(12):
            items = "".join(f"<item><title>Feed {feed} item {n} {words[n % 3]}</title><guid>f{feed}-{n}</guid>"
                            f"<description>{words[n % 3]} report {n}</description>"
                            f"<pubDate>Fri, 20 Nov 2026 0{n}:00:00 GMT</pubDate></item>" for n in range(5))

            def respond(request: Any, body: str = f"<rss version='2.0'><channel><title>f</title>{items}"
                                                    "</channel></rss>") -> Any:
                from werkzeug import Response

                requests.append(request.path)
                return Response(body, content_type="application/rss+xml")

            server.expect_request(f"/f{feed}.xml").respond_with_handler(respond)
        config = parse_config({"settings": {"model": "hashing", "fetch": {"max_concurrency": 2}},
                               "feeds": [{"name": f"f{n}", "url": server.url_for(f"/f{n}.xml")} for n in range(12)]})
        passes: list[int] = []

        def work() -> None:
            with open_pipeline(pg_url, config) as pipeline:
                passes.append(pipeline.work(until_idle=True, interval_seconds=0.1))

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        server.clear()
        server.stop()
    assert len(passes) == 2
    assert sorted(requests) == sorted(f"/f{n}.xml" for n in range(12))  # each feed fetched once
    assert raw(pg_url, "SELECT count(*), count(DISTINCT (source, entry_key)), sum(processed) FROM articles") == \
        [(60, 60, 60)]
    assert raw(pg_url, "SELECT count(*) FROM embeddings") == [(60,)]
    assert raw(pg_url, "SELECT count(*) FROM feeds WHERE claimed_until IS NOT NULL") == [(0,)]
    assert raw(pg_url, "SELECT value FROM tallies") == raw(pg_url, "SELECT count(DISTINCT story_id) FROM story_members")


def test_a_run_that_finds_another_worker_clustering_embeds_and_leaves_the_rest(pg_url: str) -> None:
    config = {"settings": {"model": "hashing"}}
    with open_pipeline(pg_url, config) as first, open_pipeline(pg_url, config) as second:
        second.add_articles([{"title": "Quake rescue", "text": "rubble survivors", "source": "api",
                              "published": T0}])
        with first.store.cluster_lock():
            report = second.run()
            assert (report.unassigned, second.store.has_unprocessed()) == (0, True)
            assert raw(pg_url, "SELECT count(*) FROM embeddings") == [(0,)]  # nothing of its own fetched
        second.run()  # the lock is free again: this run clusters
        assert not second.store.has_unprocessed()
        assert raw(pg_url, "SELECT count(*) FROM embeddings") == [(1,)]


def hashing_sample(tmp_path: Path) -> Path:
    """The bundled sample copied into ``tmp_path/sample`` with the hashing embedder; its feeds.yaml."""
    folder = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, folder)
    config = folder / "sample-feeds.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("settings:\n", "settings:\n  model: hashing\n", 1),
                      encoding="utf-8")
    return config


def test_cli_worker_until_idle_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`clustering worker` works on SQLite too: one pass fetches, the next finds nothing and stops."""
    from clustering.cli import main

    config = hashing_sample(tmp_path)
    assert main(["worker", "--until-idle", "--interval", "0", "--config", str(config), "--db",
                 str(tmp_path / "news.db")]) == 0
    captured = capsys.readouterr()
    assert "45 new articles" in captured.out and "worker: 2 passes" in captured.err


def test_cli_run_then_read_commands_on_postgres(pg_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from clustering.cli import main

    config = hashing_sample(tmp_path)
    assert main(["run", "--config", str(config), "--db", pg_url, "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["new_articles"] == 45 and run["stories_total"] > 0
    assert main(["stories", "--db", pg_url, "--json"]) == 0  # read-only, no feeds.yaml needed
    stories = json.loads(capsys.readouterr().out)
    assert len(stories) == run["stories_total"]
    assert main(["story", stories[0]["id"], "--db", pg_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == stories[0]["id"]
    assert main(["feeds", "--config", str(config), "--db", pg_url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5
    # issue 17's reading commands on the same store
    story_id = stories[0]["id"]
    assert main(["story", story_id, "--history", "--db", pg_url, "--format", "json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert history and {e["story_id"] for e in history} == {story_id}
    assert main(["changes", "--db", pg_url, "--format", "json"]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert {e["story_id"] for e in changes} >= {s["id"] for s in stories}
    assert main(["articles", "--story", story_id, "--db", pg_url, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) >= stories[0]["size"]
    assert main(["articles", "--unassigned", "--db", pg_url, "--format", "jsonl"]) == 0
    capsys.readouterr()
    assert main(["articles", "--search", "the", "--db", pg_url, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("id,")
    assert main(["topics", "--db", pg_url, "--format", "json"]) == 0
    topics = json.loads(capsys.readouterr().out)
    assert topics and sum(t["stories"] for t in topics) == len(stories)
    assert main(["duplicates", "--db", pg_url, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("article_id,")
    assert main(["stories", "--db", pg_url, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split(",")[:3] == ["id", "label", "keywords"]
    assert main(["report", str(tmp_path / "report.html"), "--db", pg_url]) == 0
    assert story_id in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_clustering_db_names_a_postgresql_store(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """CLUSTERING_DB=postgresql://... selects PostgreSQL as --db does (issue 17's variable, issue 18's URLs)."""
    import json

    from clustering.cli import main

    config = hashing_sample(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLUSTERING_DB", pg_url)
    monkeypatch.setenv("CLUSTERING_CONFIG", str(config))
    assert main(["run", "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["stories_total"]
    assert raw(pg_url, "SELECT count(*) FROM runs") == [(1,)]
    monkeypatch.delenv("CLUSTERING_CONFIG")
    assert main(["stories", "--format", "json"]) == 0  # read-only: the URL alone, no feeds.yaml
    assert len(json.loads(capsys.readouterr().out)) == total
    assert not (tmp_path / "news.db").exists() and not (config.parent / "news.db").exists()


def test_a_version_4_store_is_read_before_a_run_migrates_it(pg_url: str) -> None:
    """A PostgreSQL store of issue 18's schema 4: a reading command finds schema 6's tables and views
    empty (temporary, in its own session) and leaves the store at version 4; a run migrates it."""
    from clustering import store_pg

    open_store(pg_url).close()  # the schema, then put back to version 4 below
    for statement in ("DROP VIEW story_list", "DROP VIEW article_list", "DROP VIEW duplicate_list",
                      "DROP TABLE story_events", "DROP TABLE runs", "DROP TABLE topics",
                      "DROP INDEX stories_topic", *WITHOUT_VERSION_5, "UPDATE schema_version SET version = 4"):
        raw(pg_url, statement)
    reader = open_store(pg_url, read_only=True)
    try:
        assert reader.stories() == []
        assert listing_queries.topics(reader) == []
        assert reader._query("SELECT count(*) FROM story_list")[0][0] == 0
    finally:
        reader.close()
    assert raw(pg_url, "SELECT version FROM schema_version") == [(4,)]
    assert raw(pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'runs'") == [(0,)]
    open_store(pg_url).close()  # a writer migrates it
    assert raw(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert raw(pg_url, "SELECT count(*) FROM story_list") == [(0,)]
    assert store_pg.MIGRATIONS[5] == store_pg.VERSION_5
    assert_version_5(pg_url)


# --- schema 5 (issue 16): content hashes, their trigger, the window cache's key ----------------------
WITHOUT_VERSION_5 = ("DROP TRIGGER article_text_edited ON articles", "DROP FUNCTION clustering_text_edited()",
                     "DROP TABLE cache_keys", "ALTER TABLE articles DROP COLUMN content_hash")
"""Undo schema 5 on a PostgreSQL store (as issue 18's stores made at 6 before it was merged)."""


def assert_version_5(url: str) -> None:
    assert raw(url, "SELECT data_type FROM information_schema.columns WHERE table_name = 'articles'"
                    " AND column_name = 'content_hash'") == [("bigint",)]
    assert raw(url, "SELECT count(*) FROM information_schema.triggers WHERE trigger_name = 'article_text_edited'"
                    " AND event_manipulation = 'UPDATE' AND action_timing = 'BEFORE'") == [(1,)]
    assert raw(url, "SELECT name, length(key) FROM cache_keys") == [("window", 32)]


def test_a_store_made_at_6_without_schema_5_gains_it_once(pg_url: str) -> None:
    """Schema 6 was merged while schema 5 was an empty placeholder: a PostgreSQL store made at 6
    meanwhile gets the content hash, its trigger and the key when next opened for writing."""
    open_store(pg_url).close()
    assert_version_5(pg_url)
    key = raw(pg_url, "SELECT key FROM cache_keys")
    for statement in WITHOUT_VERSION_5:
        raw(pg_url, statement)
    reader = open_store(pg_url, read_only=True)  # a reader changes nothing
    reader.close()
    assert raw(pg_url, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'cache_keys'") == [(0,)]
    first, second = open_store(pg_url), open_store(pg_url)  # the second finds them added
    first.close()
    second.close()
    assert_version_5(pg_url)
    assert raw(pg_url, "SELECT key FROM cache_keys") != key  # a new random key
    assert raw(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_run_records_content_hashes_and_an_edit_clears_them(pg_url: str, tmp_path: Path) -> None:
    """Schema 5 on PostgreSQL: a run stores each article's content hash; an edit of the title or
    summary clears it (trigger), an edit of anything else does not; the next run that reads the
    window stores it anew.  The window state is kept in the worker (no cache file for a URL)."""
    from clustering.store import content_hash

    config = dataclasses.replace(load_config(hashing_sample(tmp_path)), model="hashing")
    with open_pipeline(pg_url, config) as pipeline:
        report = pipeline.run()
        assert report.new_articles > 2
        rows = raw(pg_url, "SELECT id, title, summary, content_hash FROM articles ORDER BY id")
        assert len(rows) == report.new_articles
        assert all(h == content_hash(title, summary) for _, title, summary, h in rows)
        assert_version_5(pg_url)
        first, second, third = rows[0][0], rows[1][0], rows[2][0]
        raw(pg_url, f"UPDATE articles SET title = 'Edited by hand' WHERE id = {first}")
        raw(pg_url, f"UPDATE articles SET summary = summary WHERE id = {second}")  # named: cleared as on SQLite
        raw(pg_url, f"UPDATE articles SET url = 'https://example.com/moved' WHERE id = {third}")
        assert raw(pg_url, f"SELECT id, content_hash FROM articles WHERE id IN ({first}, {second}) ORDER BY id") == \
            [(first, None), (second, None)]
        assert raw(pg_url, f"SELECT content_hash FROM articles WHERE id = {third}") == [(rows[2][3],)]
        assert {a.id: a.content_hash for a in pipeline.store.window(T0.replace(year=1970))}[first] is None
        newest = max(a.published for a in pipeline.store.window(T0.replace(year=1970)))
        pipeline.add_articles([{"title": "Quake rescue", "text": "rubble survivors", "source": "api",
                                "published": newest}])
        pipeline.run()  # processes the new article: the window's hashes are stored anew
        assert pipeline._window is not None  # kept in the process
    assert raw(pg_url, f"SELECT content_hash FROM articles WHERE id = {first}") == \
        [(content_hash("Edited by hand", rows[0][2]),)]
    assert raw(pg_url, "SELECT count(*) FROM articles WHERE content_hash IS NULL") == [(0,)]
    assert not list(tmp_path.rglob("*.window"))


def test_snapshot_reads_one_state_while_a_worker_commits(pg_url: str) -> None:
    """Store.snapshot on PostgreSQL: one REPEATABLE READ READ ONLY transaction, so a story listed
    is still there when read, whatever another connection commits meanwhile."""
    writer = open_store(pg_url)
    try:
        with writer.transaction():
            writer.add_articles([new_article("a")], T0)
        reader = open_store(pg_url, read_only=True)
        try:
            with reader.snapshot():
                assert raw(pg_url, "SELECT 1") == [(1,)]
                before = reader._query("SELECT count(*) FROM articles")[0][0]
                with writer.transaction():
                    writer.add_articles([new_article("b")], T0)
                with reader.snapshot():  # nested: adds nothing
                    assert reader._query("SELECT count(*) FROM articles")[0][0] == before == 1
                assert reader._query("SHOW transaction_isolation")[0][0] == "repeatable read"
                assert reader._query("SHOW transaction_read_only")[0][0] == "on"
            assert reader._query("SELECT count(*) FROM articles")[0][0] == 2  # a new state after it
        finally:
            reader.close()
        with writer.snapshot(), pytest.raises(StorageError, match="read-only"):
            writer.add_articles([new_article("c")], T0)  # a snapshot is for reading, on a writer too
        assert writer._query("SELECT count(*) FROM articles")[0][0] == 2
    finally:
        writer.close()


# --- issue 16's bounded run on claimed feeds ------------------------------------------------------
def test_claimed_feeds_stop_at_the_run_deadline_and_the_rest_stay_due(pg_url: str) -> None:
    """The claimed path fetches feed by feed through the same iter_fetch under run_deadline: the
    feeds it claimed but did not reach are released (due now, not at the lease's end), counted as
    deferred with the due feeds it never claimed, and fetched by the next pass."""
    import re
    import time

    from pytest_httpserver import HTTPServer
    from werkzeug import Response

    from clustering.config import parse_config

    fetched: list[str] = []
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        def slow(request: Any) -> Any:
            time.sleep(0.4)
            name = request.path.strip("/")
            fetched.append(name)
            return Response(f"<rss version='2.0'><channel><title>{name}</title><item><title>{name} quake</title>"
                            f"<guid>{name}-1</guid><pubDate>Fri, 20 Nov 2026 01:00:00 GMT</pubDate></item>"
                            "</channel></rss>", content_type="application/rss+xml")

        server.expect_request(re.compile(r"/f\d+")).respond_with_handler(slow)
        config = parse_config({"settings": {"model": "hashing", "fetch": {"run_deadline": 1.5, "max_concurrency": 1}},
                               "feeds": [{"name": f"f{i:02d}", "url": server.url_for(f"/f{i:02d}")}
                                         for i in range(12)]})
        with open_pipeline(pg_url, config) as pipeline:
            first = pipeline.run(force=True)
            assert first.feeds_failed == 0 and 0 < first.feeds_deferred < 12
            assert first.feeds_ok + first.feeds_deferred == 12 and first.feeds_skipped == 0
            assert raw(pg_url, "SELECT count(*) FROM feeds WHERE claimed_until IS NOT NULL") == [(0,)]
            assert raw(pg_url, "SELECT count(*) FROM feeds WHERE next_attempt IS NULL") == [(first.feeds_deferred,)]
            done_first = list(fetched)
            second = pipeline.run()  # not forced: the deferred feeds are still due, the others are not
            assert second.feeds_skipped == first.feeds_ok and second.feeds_failed == 0
            assert second.feeds_ok > 0 and not set(fetched[len(done_first):]) & set(done_first)
    finally:
        server.clear()
        server.stop()


def test_a_pass_stopped_by_an_error_releases_the_feeds_it_claimed(pg_url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose pass fails while storing (here the second feed of its batch) gives back the
    claims of the feeds it did not record: another worker need not wait for the lease to lapse."""
    from clustering.core import Pipeline

    config = dataclasses.replace(load_config(hashing_sample(tmp_path)), model="hashing")
    stored: list[str] = []
    real = Pipeline._store_fetched

    def failing(self: Pipeline, feed: Any, result: Any, new_ids: list[int]) -> Any:
        if stored:
            raise StorageError("disk gone")
        stored.append(feed.name)
        return real(self, feed, result, new_ids)

    monkeypatch.setattr(Pipeline, "_store_fetched", failing)
    with open_pipeline(pg_url, config) as pipeline, pytest.raises(StorageError, match="disk gone"):
        pipeline.run()
    assert raw(pg_url, "SELECT count(*) FROM feeds WHERE claimed_until IS NOT NULL") == [(0,)]
    assert raw(pg_url, "SELECT name FROM feeds WHERE last_attempt IS NOT NULL") == [(stored[0],)]
    monkeypatch.undo()
    with open_pipeline(pg_url, config) as pipeline:
        report = pipeline.run()  # the rest are due at once
    assert report.feeds_ok == len(config.feeds) - 1 and report.feeds_skipped == 1


def test_failures_on_claimed_feeds_are_one_warning_line(pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import socket

    from clustering.config import parse_config

    def dead_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    config = parse_config({"settings": {"model": "hashing"},
                           "feeds": [{"name": f"dead{i}", "url": f"http://127.0.0.1:{dead_port()}/feed.xml"}
                                     for i in range(6)]})
    caplog.set_level(logging.WARNING, logger="clustering")
    with open_pipeline(pg_url, config) as pipeline:
        report = pipeline.run()
        assert report.feeds_failed == 6 and report.feeds_deferred == 0
        assert all(status.last_error == "connection refused" for status in pipeline.feeds())
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith("6 of 6 feeds failed: 'dead") and "and 3 more" in line
