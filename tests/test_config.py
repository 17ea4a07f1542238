"""config.py: feeds.yaml -> validated Config; errors name the file, the key and the line."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from clustering.config import (
    DEFAULT_DATABASE,
    DEFAULT_POLL_INTERVAL_MINUTES,
    DEFAULT_WINDOW_DAYS,
    Config,
    EmbeddingSettings,
    FeedConfig,
    FetchSettings,
    load_config,
    parse_config,
    sample_config_path,
)
from clustering.dedup import DedupParams
from clustering.embed import DEFAULT_MODEL
from clustering.errors import ClusteringError, ConfigError
from clustering.scoring import StoryParams

REPO_FEEDS_YAML = Path(__file__).resolve().parents[1] / "feeds.yaml"


def _nudged(value: int | float) -> int | float:
    """A valid value other than the default (every key must be seen to take effect)."""
    if value is None:  # an optional number (StoryParams.story_threshold)
        return 0.5
    return value + 1 if isinstance(value, int) else round(value * 0.9, 4)


def _section(cls: type) -> str:
    return "".join(f"    {f.name}: {_nudged(getattr(cls(), f.name))}\n" for f in dataclasses.fields(cls))


FULL = f"""\
settings:
  database: data/news.db
  model: hashing-64
  window_days: 2
  poll_interval_minutes: 30.5
  fetch:
    timeout_seconds: 5
    max_bytes: 2000000
    max_concurrency: 3
    user_agent: test-agent/1.0
    run_deadline: 120
  embedding:
    device: cuda:1
    batch_size: 128
  dedup:
{_section(DedupParams)}  stories:
{_section(StoryParams)}feeds:
  - name: bbc-world
    url: https://feeds.bbci.co.uk/news/world/rss.xml
    tags: [world, uk]
    language: en
    poll_interval_minutes: 60
    enabled: true
  - name: Local File.1
    url: feeds/local.xml
    tags: single
    enabled: false
"""


def write(tmp_path: Path, text: str, name: str = "feeds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert str(path) in str(error)  # every error names the file
    return error


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


# --- valid files ---------------------------------------------------------------------------------
def test_full_config_parses_every_key(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.database == tmp_path.resolve() / "data" / "news.db"
    assert config.model == "hashing-64"
    assert config.window_days == 2.0 and isinstance(config.window_days, float)
    assert config.poll_interval_minutes == 30.5
    assert config.fetch == FetchSettings(timeout_seconds=5.0, max_bytes=2_000_000, max_concurrency=3,
                                         user_agent="test-agent/1.0", run_deadline=120.0)
    assert config.embedding == EmbeddingSettings(device="cuda:1", batch_size=128)
    for cls, parsed in ((DedupParams, config.dedup), (StoryParams, config.stories)):
        for field in dataclasses.fields(cls):
            expected = _nudged(getattr(cls(), field.name))
            assert getattr(parsed, field.name) == expected, field.name
            default = getattr(cls(), field.name)
            assert isinstance(getattr(parsed, field.name), type(default) if default is not None else float), field.name
    assert config.feeds == (
        FeedConfig(name="bbc-world", url="https://feeds.bbci.co.uk/news/world/rss.xml", tags=("world", "uk"),
                   language="en", poll_interval_minutes=60.0, enabled=True),
        FeedConfig(name="Local File.1", url="feeds/local.xml", tags=("single",), enabled=False),
    )
    assert config.base_dir == tmp_path.resolve()
    assert config.path == tmp_path / "feeds.yaml"


def test_full_config_covers_every_fetch_field() -> None:
    body = FULL.split("  fetch:\n", 1)[1]
    for field in dataclasses.fields(FetchSettings):
        assert re.search(rf"^    {field.name}:", body, re.M), f"settings.fetch.{field.name} missing in FULL"


def test_defaults_when_settings_are_missing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        feeds:
          - name: one
            url: https://example.com/feed.xml
        """))
    assert config.database == tmp_path.resolve() / DEFAULT_DATABASE
    assert config.model == DEFAULT_MODEL
    assert config.window_days == DEFAULT_WINDOW_DAYS
    assert config.poll_interval_minutes == DEFAULT_POLL_INTERVAL_MINUTES
    assert (config.fetch, config.dedup, config.stories) == (FetchSettings(), DedupParams(), StoryParams())
    assert config.embedding == EmbeddingSettings(device="auto", batch_size="auto", precision="auto", threads="auto")
    assert config.feeds == (FeedConfig(name="one", url="https://example.com/feed.xml"),)


def test_empty_sections_and_empty_file_mean_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "settings:\n  dedup:\n  stories:\n  fetch:\nfeeds:\n"))
    assert (config.fetch, config.dedup, config.stories, config.feeds) == (
        FetchSettings(), DedupParams(), StoryParams(), ())
    empty = load_config(write(tmp_path, "", name="empty.yaml"))
    assert dataclasses.replace(empty, database=Config().database, base_dir=Config().base_dir, path=None) == Config()


def test_partial_sections_keep_other_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        settings:
          dedup:
            near_threshold: 0.95
          stories:
            min_cluster_size: 5
        """))
    assert config.dedup == dataclasses.replace(DedupParams(), near_threshold=0.95)
    assert config.stories == dataclasses.replace(StoryParams(), min_cluster_size=5)


def test_relative_database_resolves_against_the_config_folder(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, "settings:\n  database: ../db/news.db\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf") / "feeds.yaml")  # a relative config path too
    assert config.database.is_absolute()
    assert config.database.resolve() == (tmp_path / "db" / "news.db").resolve()
    assert config.base_dir == folder.resolve()
    absolute = tmp_path / "elsewhere.db"
    path.write_text(f"settings:\n  database: {absolute}\n", encoding="utf-8")
    assert load_config(path).database == absolute
    path.write_text("settings:\n  database: ':memory:'\n", encoding="utf-8")
    assert str(load_config(path).database) == ":memory:"


def test_parse_config_without_a_file() -> None:
    config = parse_config({"settings": {"window_days": 1}, "feeds": [{"name": "a", "url": "https://a.example/"}]})
    assert config.window_days == 1.0 and config.path is None and config.database == Path(DEFAULT_DATABASE)
    with pytest.raises(ConfigError, match="<config>"):
        parse_config({"nope": 1})


def test_with_database() -> None:
    assert Config().with_database("x.db").database == Path("x.db")


def test_bundled_sample_config_loads() -> None:
    config = load_config(sample_config_path())
    assert len(config.feeds) == 5 and all(feed.enabled for feed in config.feeds)


# --- errors ---------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as caught:
        load_config(missing)
    assert str(missing) in str(caught.value)


def test_config_error_is_a_value_error_and_a_clustering_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_config(tmp_path / "nope.yaml")
    assert issubclass(ConfigError, ClusteringError)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = """\
        settings:
          window_days: 3
        feeds:
          - name: one
            url: [unclosed
        """
    error = config_error(tmp_path, text)
    assert "invalid YAML" in str(error)
    assert error.line is not None and error.line >= line_of(text, "unclosed")
    assert f"feeds.yaml:{error.line}" in str(error)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = "settings:\n  window_days: 3\n  window_days: 4\n"
    error = config_error(tmp_path, text)
    assert error.line == 3


@pytest.mark.parametrize(("text", "key", "needle"), [
    ("setings:\n  window_days: 3\n", "setings", "setings"),
    ("settings:\n  window_day: 3\n", "settings.window_day", "window_day"),
    ("settings:\n  fetch:\n    timeout: 3\n", "settings.fetch.timeout", "timeout"),
    ("settings:\n  dedup:\n    near_treshold: 0.9\n", "settings.dedup.near_treshold", "near_treshold"),
    ("settings:\n  stories:\n    min_size: 3\n", "settings.stories.min_size", "min_size"),
    ("settings:\n  embedding:\n    model: x\n", "settings.embedding.model", "model"),
    ("feeds:\n  - name: a\n    url: https://a.example/\n  - name: b\n    url: https://b.example/\n    tag: x\n",
     "feeds[1].tag", "tag:"),
])
def test_unknown_keys(tmp_path: Path, text: str, key: str, needle: str) -> None:
    error = config_error(tmp_path, text)
    assert "unknown key" in str(error)
    assert error.key == key and repr(key) in str(error)
    assert error.line == line_of(text, needle)


@pytest.mark.parametrize(("text", "key", "needle", "message"), [
    ("settings:\n  window_days: three\n", "settings.window_days", "window_days",
     "expected a number, got the text 'three'"),
    ("settings:\n  database: 12\n", "settings.database", "database",
     'expected text, got the number 12 (to mean the text, put it in quotes: "12")'),
    ("settings:\n  fetch:\n    max_bytes: 1.5\n", "settings.fetch.max_bytes", "max_bytes",
     "expected a whole number, got the number 1.5"),
    ("settings:\n  fetch:\n    user_agent: [a]\n", "settings.fetch.user_agent", "user_agent",
     "expected text, got a list ['a']"),
    ("settings:\n  dedup:\n    near_threshold: high\n", "settings.dedup.near_threshold", "near_threshold",
     "expected a number"),
    ("settings:\n  stories:\n    min_cluster_size: true\n", "settings.stories.min_cluster_size",
     "min_cluster_size", "expected a whole number, got true (a yes/no value)"),
    ("settings:\n  stories:\n    keywords: 2.5\n", "settings.stories.keywords", "keywords", "expected a whole number"),
    ("settings:\n  dedup: [1, 2]\n", "settings.dedup", "dedup",
     "expected a mapping (indented key: value lines), got a list [1, 2]"),
    ("settings:\n  fetch: fast\n", "settings.fetch", "fetch", "expected a mapping"),
    ("settings:\n  embedding: gpu\n", "settings.embedding", "embedding", "expected a mapping"),
    ("settings:\n  embedding:\n    device: 0\n", "settings.embedding.device", "device", "expected text"),
    ("settings:\n  embedding:\n    batch_size: 2.5\n", "settings.embedding.batch_size", "batch_size",
     "expected a whole number"),
    ("settings: [1]\n", "settings", "settings", "expected a mapping"),
    ("feeds:\n  name: a\n", "feeds", "feeds", "expected a list"),
    ("feeds:\n  - name: a\n    url: https://a.example/\n    enabled: 'no'\n", "feeds[0].enabled", "enabled",
     "expected true or false, got the text 'no'"),
    ("feeds:\n  - name: a\n    url: https://a.example/\n    tags: [1, 2]\n", "feeds[0].tags", "tags",
     "expected a list of texts, got a list [1, 2]"),
    ("feeds:\n  - name: a\n    url: https://a.example/\n    poll_interval_minutes: often\n",
     "feeds[0].poll_interval_minutes", "poll_interval_minutes", "expected a number"),
])
def test_wrong_types(tmp_path: Path, text: str, key: str, needle: str, message: str) -> None:
    error = config_error(tmp_path, text)
    assert message in str(error)
    assert error.key == key
    assert error.line == line_of(text, needle)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error = config_error(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in str(error)


def test_feed_that_is_not_a_mapping(tmp_path: Path) -> None:
    text = "feeds:\n  - name: a\n    url: https://a.example/\n  - https://b.example/feed\n"
    error = config_error(tmp_path, text)
    assert error.key == "feeds[1]" and "name and url" in str(error)


@pytest.mark.parametrize(("text", "key", "needle"), [
    ("settings:\n  window_days: -1\n", "settings.window_days", "window_days"),
    ("settings:\n  poll_interval_minutes: -5\n", "settings.poll_interval_minutes", "poll_interval"),
    ("settings:\n  fetch:\n    max_bytes: -1\n", "settings.fetch.max_bytes", "max_bytes"),
    ("settings:\n  dedup:\n    neighbours: -3\n", "settings.dedup.neighbours", "neighbours"),
    ("settings:\n  stories:\n    keywords: -1\n", "settings.stories.keywords", "keywords"),
    ("settings:\n  embedding:\n    batch_size: -8\n", "settings.embedding.batch_size", "batch_size"),
    ("feeds:\n  - name: a\n    url: https://a.example/\n    poll_interval_minutes: -1\n",
     "feeds[0].poll_interval_minutes", "poll_interval"),
])
def test_negative_numbers(tmp_path: Path, text: str, key: str, needle: str) -> None:
    error = config_error(tmp_path, text)
    assert "negative" in str(error)
    assert error.key == key and error.line == line_of(text, needle)


@pytest.mark.parametrize(("text", "key"), [
    ("settings:\n  window_days: .nan\n", "settings.window_days"),
    ("settings:\n  poll_interval_minutes: .inf\n", "settings.poll_interval_minutes"),
    ("settings:\n  dedup:\n    near_threshold: .nan\n", "settings.dedup.near_threshold"),
])
def test_non_finite_numbers(tmp_path: Path, text: str, key: str) -> None:
    error = config_error(tmp_path, text)
    assert "finite" in str(error) and error.key == key


@pytest.mark.parametrize(("text", "key", "needle"), [
    ("settings:\n  window_days: 0\n", "settings.window_days", "window_days"),
    ("settings:\n  fetch:\n    timeout_seconds: 0\n", "settings.fetch.timeout_seconds", "timeout_seconds"),
])
def test_zero_where_a_positive_number_is_needed(tmp_path: Path, text: str, key: str, needle: str) -> None:
    error = config_error(tmp_path, text)
    assert "greater than 0" in str(error)
    assert error.key == key and error.line == line_of(text, needle)


@pytest.mark.parametrize(("text", "key", "needle", "message"), [
    ("settings:\n  dedup:\n    near_threshold: 1.5\n", "settings.dedup.near_threshold", "near_threshold",
     "between 0 and 1"),
    ("settings:\n  dedup:\n    lexical_floor: 0.5\n    neighbours: 0\n", "settings.dedup.neighbours", "neighbours",
     "at least 1"),
    ("settings:\n  stories:\n    min_cluster_size: 1\n", "settings.stories.min_cluster_size", "min_cluster_size",
     "at least 2"),
    ("settings:\n  stories:\n    topic_threshold: 2\n", "settings.stories.topic_threshold", "topic_threshold",
     "between -1 and 1"),
    ("settings:\n  embedding:\n    batch_size: 0\n", "settings.embedding.batch_size", "batch_size", "at least 1"),
    ("settings:\n  embedding:\n    device: gpu\n", "settings.embedding.device", "device",
     "expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("settings:\n  window_days: 2\n  embedding:\n    device: cuda:x\n", "settings.embedding.device", "device",
     "cuda:x"),
    # a rule over several keys names the section
    ("settings:\n  stories:\n    embedding_weight: 0\n    lexical_weight: 0\n    entity_weight: 0\n",
     "settings.stories", "stories", "weights"),
])
def test_out_of_range_values(tmp_path: Path, text: str, key: str, needle: str, message: str) -> None:
    error = config_error(tmp_path, text)
    assert message in str(error)
    assert error.key == key and error.line == line_of(text, needle)


def test_duplicate_feed_names(tmp_path: Path) -> None:
    text = ("feeds:\n  - name: same\n    url: https://a.example/\n"
            "  - name: same\n    url: https://b.example/\n")
    error = config_error(tmp_path, text)
    assert "duplicate feed name 'same'" in str(error) and "feeds[0]" in str(error)
    assert error.key == "feeds[1].name" and error.line == 4


@pytest.mark.parametrize(("text", "key", "line"), [
    ("feeds:\n  - url: https://a.example/\n", "feeds[0].name", 2),
    ("feeds:\n  - name: a\n    url: https://a.example/\n  - name: b\n    language: en\n", "feeds[1].url", 4),
    ("feeds:\n  - name: ''\n    url: https://a.example/\n", "feeds[0].name", 2),
])
def test_missing_name_or_url(tmp_path: Path, text: str, key: str, line: int) -> None:
    error = config_error(tmp_path, text)
    assert "missing required key" in str(error)
    assert error.key == key and error.line == line


@pytest.mark.parametrize("name", ["bad/name", "-leading-dash", "x" * 101, "tab\there", "emoji 📰"])
def test_bad_feed_name(tmp_path: Path, name: str) -> None:
    text = f'feeds:\n  - name: "{name}"\n    url: https://a.example/\n'
    error = config_error(tmp_path, text)
    assert "invalid feed name" in str(error)
    assert error.key == "feeds[0].name" and error.line == 2


def test_alias_bomb_is_refused_with_file_and_line(tmp_path: Path, alias_bomb: Callable[[int], str]) -> None:
    """Issue item 4: a few hundred bytes of aliases made `clustering feeds` print 351 MB."""
    text = alias_bomb(9)  # 387 million values
    assert len(text) < 600
    error = config_error(tmp_path, text)
    assert "more than 100,000 values once YAML aliases" in str(error) and error.line == 4
    assert len(str(error)) < len(str(tmp_path)) + 200


def test_an_alias_bomb_is_reported_where_it_is_used_not_where_it_is_defined(tmp_path: Path) -> None:
    """The anchors sit at the top of the file; the error names the key that refers to them."""
    levels = [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    levels += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 7)]
    text = "\n".join(levels) + "\nfeeds:\n  - name: x\n    url: https://a.example/\n    language: *l6\n"
    error = config_error(tmp_path, text)
    assert (error.key, error.line) == ("feeds[0].language", 11)
    assert str(error).startswith(f"{tmp_path / 'feeds.yaml'}:11, key 'feeds[0].language': more than 100,000 values")


def test_a_long_value_is_quoted_short(tmp_path: Path, alias_bomb: Callable[[int], str]) -> None:
    error = config_error(tmp_path, alias_bomb(5))  # 66,000 values: allowed in size, not as a language
    assert error.key == "feeds[0].language"
    assert str(error).startswith(f"{tmp_path / 'feeds.yaml'}:4, key 'feeds[0].language': expected text, got a list")
    quoted = str(error).partition("got a list ")[2]
    assert len(quoted) == 80 and quoted.endswith("…")
    error = config_error(tmp_path, f"feeds:\n  - name: {'n' * 5000}\n    url: https://a.example/\n")
    assert "invalid feed name 'nnnn" in str(error) and len(str(error)) < len(str(tmp_path)) + 300


def test_aliases_of_ordinary_size_still_work(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "feeds:\n  - name: a\n    url: https://a.example/\n    tags: &t [x, y]\n"
                                         "  - name: b\n    url: https://b.example/\n    tags: *t\n"))
    assert [f.tags for f in config.feeds] == [("x", "y"), ("x", "y")]


@pytest.mark.parametrize(("text", "key", "message"), [
    # issue item 11: "expected str, got int"; "got CommentedSeq"; max_concurrency 0 became 1
    ("feeds:\n  - name: 500\n    url: https://a.example/\n", "feeds[0].name",
     'expected text, got the number 500 (to mean the text, put it in quotes: "500")'),
    ("feeds:\n  - name: [a, b]\n    url: https://a.example/\n", "feeds[0].name",
     "expected text, got a list ['a', 'b']"),
    ("feeds:\n  - name: {a: 1}\n    url: https://a.example/\n", "feeds[0].name",
     "expected text, got a mapping {'a': 1}"),
    ("settings:\n  fetch:\n    max_concurrency: 0\n", "settings.fetch.max_concurrency",
     "must be greater than 0, got 0"),
    ("settings:\n  fetch:\n    max_bytes: 0\n", "settings.fetch.max_bytes", "must be greater than 0, got 0"),
    ("settings:\n  fetch:\n    run_deadline: -5\n", "settings.fetch.run_deadline", "must not be negative, got -5"),
    ("settings:\n  fetch:\n    run_deadline: .inf\n", "settings.fetch.run_deadline", "must be a finite number"),
])
def test_messages_speak_yaml_not_python(tmp_path: Path, text: str, key: str, message: str) -> None:
    error = config_error(tmp_path, text)
    assert error.key == key and message in str(error)
    assert not re.search(r"Commented|\b(str|int|float|bool|dict|NoneType)\b", str(error))


# --- the feeds.yaml shipped at the repository root --------------------------------------------------
def test_repository_feeds_yaml_documents_the_defaults() -> None:
    """feeds.yaml shows every setting with its code default, so docs and code cannot drift.

    (It is only loaded, never fetched.)
    """
    config = load_config(REPO_FEEDS_YAML)
    assert config.database == REPO_FEEDS_YAML.parent / DEFAULT_DATABASE
    assert config.model == DEFAULT_MODEL
    assert config.window_days == DEFAULT_WINDOW_DAYS
    assert config.poll_interval_minutes == DEFAULT_POLL_INTERVAL_MINUTES
    assert config.fetch == FetchSettings()
    assert config.embedding == EmbeddingSettings()
    assert config.dedup == DedupParams()
    assert config.stories == StoryParams()


def test_repository_feeds_yaml_sets_and_comments_every_key() -> None:
    from ruamel.yaml import YAML

    text = REPO_FEEDS_YAML.read_text(encoding="utf-8")
    settings = YAML(typ="rt").load(text)["settings"]
    assert set(settings) == {"database", "model", "window_days", "poll_interval_minutes", "fetch", "embedding",
                             "dedup", "stories"}
    for section, cls in (("fetch", FetchSettings), ("embedding", EmbeddingSettings), ("dedup", DedupParams),
                         ("stories", StoryParams)):
        assert set(settings[section]) == {f.name for f in dataclasses.fields(cls)}, section
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^  +(\w+):", line)
        in_settings = number < next(i for i, text_line in enumerate(lines) if text_line.startswith("feeds:"))
        if match and in_settings and match.group(1) not in ("fetch", "embedding", "dedup", "stories"):
            assert "#" in line or lines[number - 1].lstrip().startswith("#"), f"undocumented: {line.strip()}"


def test_repository_feeds_yaml_feeds() -> None:
    config = load_config(REPO_FEEDS_YAML)
    assert 6 <= len(config.feeds) <= 10
    assert len({feed.url for feed in config.feeds}) == len(config.feeds)
    for feed in config.feeds:
        assert feed.url.startswith("https://"), feed.name
        assert feed.enabled and feed.language == "en" and feed.tags
