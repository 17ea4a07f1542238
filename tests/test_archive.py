"""``clustering import`` and ``clustering backfill`` (archive.py, Pipeline.import_articles/backfill).

Backfill's promise: the stories equal those of cron runs over the same articles (a run after each
step of publication time).  The Ray tests (marker ``ray``) start one local Ray for the session
(``ray.init(num_cpus=2)``); ``.ci/run`` runs them after installing the ``ray`` extra.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clustering import ConfigError, open_pipeline
from clustering.cli import main

START = datetime(2025, 3, 1, tzinfo=timezone.utc)
EVENTS = [
    "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast",
    "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending",
    "Dunmore football final trophy striker goal penalty stadium fans champions coach",
    "Harlow election ballots turnout candidates parliament coalition polling vote campaign",
    "Kestrel wildfire smoke evacuation firefighters hectares drought wind blaze homes",
    "Norvane vaccine outbreak virus hospital cases clinic doses infections health",
]


def archive(count: int, days: float, seed: int = 3) -> list[dict[str, Any]]:
    """``count`` articles over ``days``: each a shuffle of one event's words (the hashing embedder
    sees an event's articles as one story), some exact copies; sorted by publication time."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        event = rng.randrange(len(EVENTS))
        words = EVENTS[event].split()
        rng.shuffle(words)
        text = " ".join(words) if rng.random() > 0.05 or not made else made[-1]["text"]
        made.append({"title": " ".join(words[:6]).capitalize(), "text": text,
                     "source": f"outlet{rng.randrange(5)}", "key": f"a{index}",
                     "published": START + timedelta(seconds=rng.uniform(0, days * 86400))})
    return sorted(made, key=lambda a: a["published"])


def write_jsonl(path: Path, articles: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({**a, "published": a["published"].isoformat()}) + "\n" for a in articles),
                    encoding="utf-8")
    return path


def snapshot(pipeline: Any) -> dict[str, Any]:
    stories = {s.id: (s.article_ids, s.label) for s in pipeline.stories()}
    articles = {i: (a.story_id, a.duplicate_of) for i in range(1, 10_000)
                if (a := _article_or_none(pipeline, i)) is not None}
    return {"stories": stories, "articles": articles}


def _article_or_none(pipeline: Any, article_id: int) -> Any:
    from clustering import NotFoundError

    try:
        return pipeline.article(article_id)
    except NotFoundError:
        return None


def cron_runs(database: Path, config: dict[str, Any], articles: list[dict[str, Any]], step: timedelta) -> Any:
    """The reference: articles arriving in publication order, a run after each ``step``."""
    pipeline = open_pipeline(database, config)
    until, last = articles[0]["published"] + step, articles[-1]["published"]
    position = 0
    while True:
        end = min(until, last)
        batch = []
        while position < len(articles) and articles[position]["published"] <= end:
            batch.append(articles[position])
            position += 1
        pipeline.add_articles(batch)
        pipeline.process()
        if until >= last:
            return pipeline
        until += step


CONFIG = {"settings": {"model": "hashing", "window_days": 2}}


# --- import -----------------------------------------------------------------------------------------
def test_import_reads_jsonl_and_csv_and_skips_what_is_stored(tmp_path: Path) -> None:
    articles = archive(40, 3)
    jsonl = write_jsonl(tmp_path / "a.jsonl", articles[:30])
    with (tmp_path / "b.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["title", "text", "source", "key", "published", "url"])
        writer.writeheader()
        for a in articles[20:]:
            writer.writerow({**a, "published": int(a["published"].timestamp()), "url": ""})
    with open_pipeline(tmp_path / "news.db", CONFIG) as pipeline:
        assert (pipeline.import_articles(jsonl).new_articles, pipeline.import_articles(jsonl).new_articles) == (30, 0)
        report = pipeline.import_articles(tmp_path / "b.csv")
        assert (report.records, report.new_articles) == (20, 10)
        assert pipeline.article(31).published == articles[30]["published"].replace(microsecond=0)


@pytest.mark.parametrize(("line", "message"), [
    ('{"title": "x", "source": "s", "published": "2025-03-01T10:00:00"}', "has no time zone"),
    ('{"title": "x", "source": "s", "published": "yesterday"}', "not an ISO-8601 time"),
    ('{"title": "x", "source": "s", "colour": "red"}', "unknown field"),
    ('{"title": "", "text": "", "source": "s"}', "needs a title or a text"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ("{not json", "not a JSON object"),
])
def test_a_bad_record_names_the_file_and_line_and_nothing_is_stored(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"title": "fine", "source": "s", "published": "2025-03-01T10:00:00Z"}\n\n' + line + "\n",
                    encoding="utf-8")
    with open_pipeline(tmp_path / "news.db", CONFIG) as pipeline:
        with pytest.raises(ConfigError, match=rf"bad\.jsonl:3: .*{message}"):
            pipeline.import_articles(path)
        assert pipeline.feeds() == [] and _article_or_none(pipeline, 1) is None


def test_import_refuses_an_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<x/>", encoding="utf-8")
    with open_pipeline(tmp_path / "news.db", CONFIG) as pipeline, pytest.raises(ConfigError, match="suffix"):
        pipeline.import_articles(tmp_path / "a.xml")


# --- backfill ---------------------------------------------------------------------------------------
def test_backfill_gives_the_stories_of_cron_runs_over_the_same_articles(tmp_path: Path) -> None:
    articles = archive(400, 9)
    with cron_runs(tmp_path / "cron.db", CONFIG, articles, timedelta(days=2)) as reference:
        expected = snapshot(reference)
    with open_pipeline(tmp_path / "backfill.db", CONFIG) as pipeline:
        pipeline.import_articles(write_jsonl(tmp_path / "a.jsonl", articles))
        report = pipeline.backfill()
        assert (report.embedded, report.passes) == (400, 5)
        assert snapshot(pipeline) == expected
        assert len(expected["stories"]) >= len(EVENTS)
        assert pipeline.backfill().embedded == 0  # nothing left


def test_cli_import_then_backfill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("settings:\n  model: hashing\n  window_days: 2\nfeeds: []\n", encoding="utf-8")
    path = write_jsonl(tmp_path / "a.jsonl", archive(60, 3))
    assert main(["import", str(path), "--config", str(config)]) == 0
    assert main(["backfill", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "imported 60 new articles of 60" in out and "backfill: 60 articles embedded in this process" in out


# --- on Ray -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="the Ray tests need `pip install -e '.[ray]'` (.ci/run installs it)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_backfill_on_ray_equals_backfill_in_process(tmp_path: Path, local_ray: None) -> None:
    articles = archive(2000, 6)
    path = write_jsonl(tmp_path / "a.jsonl", articles)
    results = []
    for name, ray in (("local", None), ("ray", "auto")):
        with open_pipeline(tmp_path / f"{name}.db", CONFIG) as pipeline:
            pipeline.import_articles(path)
            report = pipeline.backfill(ray=ray)
            assert report.embedded == 2000
            results.append(snapshot(pipeline))
    assert results[0] == results[1]


@pytest.mark.ray
@pytest.mark.slow
def test_backfill_on_ray_with_the_real_model(tmp_path: Path, local_ray: None) -> None:
    """A few hundred articles through model actors: the same vectors (to float noise) and stories."""
    articles = archive(300, 4)
    path = write_jsonl(tmp_path / "a.jsonl", articles)
    config = {"settings": {"window_days": 2}}
    vectors, results = [], []
    for name, ray in (("local", None), ("ray", "auto")):
        with open_pipeline(tmp_path / f"{name}.db", config) as pipeline:
            pipeline.import_articles(path)
            pipeline.backfill(ray=ray)
            vectors.append(pipeline.store.vectors(list(range(1, 301)), pipeline.model_name))
            results.append(snapshot(pipeline))
    assert vectors[0].shape == (300, 384)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)
    assert results[0] == results[1]
