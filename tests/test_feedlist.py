"""Feeds management (feedlist.py): feeds.yaml edited with its comments kept; OPML in and out."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustering import ConfigError
from clustering.config import load_config
from clustering.feedlist import add_feed, export_opml, import_opml, name_from_url, remove_feed

FEEDS_YAML = """\
# my newsroom's feeds
settings:
  model: hashing   # fast, for tests
feeds:
  # the wire first
  - name: wire
    url: https://wire.example/rss
    tags: [agency]
  - name: herald
    url: https://herald.example/feed.xml
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(FEEDS_YAML, encoding="utf-8")
    return path


def test_add_and_remove_keep_the_comments(config_path: Path) -> None:
    assert add_feed(config_path, "https://gazette.example/world/rss", tags=["press", "world"]) == \
        "gazette.example-world-rss"
    text = config_path.read_text(encoding="utf-8")
    for comment in ("# my newsroom's feeds", "# fast, for tests", "# the wire first"):
        assert comment in text
    feeds = load_config(config_path).feeds
    assert [(f.name, f.tags) for f in feeds][-1] == ("gazette.example-world-rss", ("press", "world"))
    remove_feed(config_path, "herald")
    assert [f.name for f in load_config(config_path).feeds] == ["wire", "gazette.example-world-rss"]
    assert "# the wire first" in config_path.read_text(encoding="utf-8")


def test_edits_that_would_clash_or_break_are_refused(config_path: Path) -> None:
    with pytest.raises(ConfigError, match="already"):
        add_feed(config_path, "https://other.example/rss", name="wire")
    with pytest.raises(ConfigError, match="already"):
        add_feed(config_path, "https://wire.example/rss", name="wire2")
    with pytest.raises(ConfigError, match="no scheme"):
        add_feed(config_path, "wire.example/rss")
    with pytest.raises(ConfigError, match="no feed named"):
        remove_feed(config_path, "nope")
    assert config_path.read_text(encoding="utf-8") == FEEDS_YAML


def test_opml_round_trip(config_path: Path, tmp_path: Path) -> None:
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(export_opml(config_path), encoding="utf-8")
    assert 'xmlUrl="https://wire.example/rss"' in opml.read_text(encoding="utf-8")
    other = tmp_path / "other.yaml"
    other.write_text("feeds: []\n", encoding="utf-8")
    assert import_opml(other, opml) == ["wire", "herald"]
    assert [(f.name, f.url, f.tags) for f in load_config(other).feeds] == [
        ("wire", "https://wire.example/rss", ("agency",)), ("herald", "https://herald.example/feed.xml", ())]
    assert import_opml(other, opml) == []  # the same URLs are not added twice


def test_opml_from_a_feed_reader(config_path: Path, tmp_path: Path) -> None:
    opml = tmp_path / "reader.opml"
    opml.write_text('<?xml version="1.0"?><opml version="1.0"><head><title>x</title></head><body>'
                    '<outline text="Science"><outline type="rss" text="Lab News" xmlUrl="https://lab.example/rss"/>'
                    '<outline type="rss" text="wire" xmlUrl="https://wire2.example/rss"/></outline>'
                    '<outline type="rss" title="Wire dup" xmlUrl="https://wire.example/rss"/></body></opml>',
                    encoding="utf-8")
    assert import_opml(config_path, opml) == ["Lab News", "wire 2"]
    feeds = {f.name: f for f in load_config(config_path).feeds}
    assert feeds["Lab News"].tags == ("Science",) and feeds["wire 2"].url == "https://wire2.example/rss"
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body>", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an OPML file"):
        import_opml(config_path, broken)


def test_names_from_urls() -> None:
    assert name_from_url("https://news.example/world/rss.xml") == "news.example-world-rss.xml"
    assert name_from_url("file:///srv/feeds/a.xml") == "feed-srv-feeds-a.xml"
