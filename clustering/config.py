"""feeds.yaml -> validated, frozen settings.

Errors name the file, the key path and the line (ruamel.yaml keeps line numbers).
No logic lives here beyond validation and defaults; the algorithm parameters are the
dataclasses owned by their stages (``DedupParams`` in dedup.py, ``StoryParams`` in
scoring.py, below both story modules), so a key documented there is a key accepted here.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dedup import DedupParams
from .embed import (
    DEFAULT_DEVICE,
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    DEFAULT_THREADS,
    EMBED_BATCH_SIZE,
    PRECISIONS,
    is_device,
)
from .errors import ConfigError, quote_value
from .scoring import StoryParams

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "clustering.db"
DEFAULT_WINDOW_DAYS = 3.0
"""Articles older than this (by publication time) leave the dedup and story window:
stories of one event rarely run longer; longer windows cost time and merge recurring
events (the second earthquake in the same region)."""
DEFAULT_POLL_INTERVAL_MINUTES = 15.0
"""Minimum minutes between two fetches of one feed (a feed may set its own)."""

RETIRED_KEYS = {
    "settings.stories": {
        "attach_threshold": "since 0.2 an article in no group joins the story its close neighbours belong to "
                            "(docs/design.md, Stories)",
        "short_attach_threshold": "since 0.2 an article in no group joins the story its close neighbours "
                                  "belong to (docs/design.md, Stories)",
        "min_samples": "since 0.2 HDBSCAN only finds dense cores (min_samples 1); average linkage decides "
                       "how far a story reaches (docs/design.md, Stories)",
        "short_story_threshold": "since 0.3 the merge threshold follows text length through the calibrated "
                                 "same-story model (story_probability; docs/design.md, Stories)",
    },
}
"""Keys earlier versions documented, accepted with a warning so that an old feeds.yaml still runs."""

_FEED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,99}$")

MAX_CONFIG_VALUES = 100_000
"""Most values (scalars, lists and mappings, counted after YAML aliases are expanded) a
config file may hold.  A feeds.yaml of 5,000 feeds holds about 40,000; nine nested aliases
of nine items each ("billion laughs") hold 387 million in a few hundred bytes, and every
later step that walks or prints them would take minutes and gigabytes."""


def describe(value: object) -> str:
    """What a YAML value is, in the words of someone writing feeds.yaml (never a Python
    class name such as ``CommentedSeq``), with the value quoted short."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a yes/no value)"
    if isinstance(value, (int, float)):
        return f"the number {quote_value(value)}"
    if isinstance(value, str):
        return f"the text {quote_value(value)}"
    if isinstance(value, Mapping):
        return f"a mapping {quote_value(value)}"
    if isinstance(value, (list, tuple)):
        return f"a list {quote_value(value)}"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"the date {value.isoformat()}"
    return f"a value {quote_value(value)}"


_EXPECTED = {str: "text", float: "a number", int: "a whole number", bool: "true or false"}
"""The kinds a key may expect, named for feeds.yaml's writers."""


DEFAULT_RUN_DEADLINE = 300.0
"""Seconds a run spends fetching (``settings.fetch.run_deadline``): no feed starts after it, one in
flight gets the time left, and the feeds not fetched stay due for the next run, first in line.  Five
minutes fits under a cron interval of 10–15 minutes; 2,000 feeds of which 1,980 refuse took 6 s
(bench/feeds_scale.py), 80 feeds that never answer took 204 s before there was a deadline.  A run
found holding the lock longer than this is reported by the run it made skip (exit status 1)."""


@dataclass(frozen=True)
class FetchSettings:
    timeout_seconds: float = 20.0
    max_bytes: int = 10_000_000
    max_concurrency: int = 8
    user_agent: str | None = None
    run_deadline: float = DEFAULT_RUN_DEADLINE


@dataclass(frozen=True)
class EmbeddingSettings:
    """Where and how the model embeds (``settings.embedding``; documented in embed.py)."""

    device: str = DEFAULT_DEVICE
    batch_size: int | str = EMBED_BATCH_SIZE
    precision: str = DEFAULT_PRECISION
    threads: int | str = DEFAULT_THREADS


@dataclass(frozen=True)
class FeedConfig:
    name: str
    url: str
    tags: tuple[str, ...] = ()
    language: str | None = None
    poll_interval_minutes: float | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Config:
    """Everything a run needs.  ``base_dir`` resolves relative paths (feeds.yaml's folder)."""

    database: Path | str = Path(DEFAULT_DATABASE)
    """An SQLite file (a Path, or ``:memory:``) or a ``postgresql://`` URL (a str, see ``database_location``)."""
    model: str = DEFAULT_MODEL
    window_days: float = DEFAULT_WINDOW_DAYS
    poll_interval_minutes: float = DEFAULT_POLL_INTERVAL_MINUTES
    fetch: FetchSettings = field(default_factory=FetchSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    dedup: DedupParams = field(default_factory=DedupParams)
    stories: StoryParams = field(default_factory=StoryParams)
    feeds: tuple[FeedConfig, ...] = ()
    base_dir: Path = Path(".")
    path: Path | None = None
    report: Path | None = None  # settings.report: the HTML report written after every run

    def with_database(self, database: str | Path) -> Config:
        return dataclasses.replace(self, database=database_location(database))


def database_location(value: str | Path) -> Path | str:
    """A database setting as the store takes it: a ``postgresql://`` URL stays text (a Path would
    fold its ``//``); another ``scheme://`` is a ConfigError; anything else is a file path."""
    from .store import check_database, database_url_scheme

    check_database(value)
    return str(value) if database_url_scheme(value) is not None else Path(value)


def _line(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node`` (or of ``key`` inside it) when ruamel recorded it."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except (KeyError, TypeError, AttributeError):
        return None


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, message: str, key: str, node: Any = None, name: Any = None) -> ConfigError:
        return ConfigError(message, path=self.path, key=key, line=_line(node, name))

    def mapping(self, node: Any, key: str, parent: Any = None, name: Any = None) -> Mapping[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, Mapping):
            raise self.error(f"expected a mapping (indented key: value lines), got {describe(node)}", key, parent,
                             name)
        return node

    def check_keys(self, node: Mapping[str, Any], allowed: set[str], key: str) -> None:
        for name in node:
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                shown = name if isinstance(name, str) else quote_value(name)
                raise self.error(f"unknown key (known keys: {known})", f"{key}.{shown}" if key else shown,
                                 node, name)

    def value(self, node: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str,
              default: Any) -> Any:
        if name not in node or node[name] is None:
            return default
        raw = node[name]
        full = f"{key}.{name}" if key else name
        if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            raw = float(raw)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(raw, kinds) or (isinstance(raw, bool) and bool not in kinds):
            want = " or ".join(_EXPECTED.get(k, k.__name__) for k in kinds)
            hint = ""
            if str in kinds and isinstance(raw, (int, float, datetime.date)):  # YAML read `500` as a number
                shown = raw.isoformat() if isinstance(raw, datetime.date) else quote_value(raw)
                hint = f' (to mean the text, put it in quotes: "{shown}")'
            raise self.error(f"expected {want}, got {describe(raw)}{hint}", full, node, name)
        if isinstance(raw, float) and not math.isfinite(raw):
            raise self.error(f"must be a finite number, got {quote_value(raw)}", full, node, name)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw < 0:
            raise self.error(f"must not be negative, got {quote_value(raw)}", full, node, name)
        return str(raw) if kind is str else raw

    def params(self, node: Any, cls: type, key: str, parent: Any) -> Any:
        mapping = self.mapping(node, key, parent, key.rsplit(".", 1)[-1])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        retired = RETIRED_KEYS.get(key, {})
        for name in mapping:
            if name in retired:
                log.warning("%s:%s: key '%s.%s' is no longer used and is ignored: %s", self.path,
                            _line(mapping, name) or "?", key, name, retired[name])
        self.check_keys(mapping, set(fields) | set(retired), key)
        values = {}
        for name, spec in fields.items():
            default = getattr(cls(), name)
            kind: type | tuple[type, ...] = type(default) if default is not None else \
                (int, float) if "float" in str(spec.type) else (str, int, float)
            values[name] = self.value(mapping, name, kind, key, default)
        try:
            return cls(**values)
        except ValueError as exc:  # the params' own range checks
            # a check of one key names it ("near_threshold must be ..."): point at that key
            for name in mapping:
                if str(exc).startswith(f"{name} "):
                    raise self.error(str(exc), f"{key}.{name}", mapping, name) from exc
            raise self.error(str(exc), key, parent, key.rsplit(".", 1)[-1]) from exc


def parse_config(document: Any, *, path: str = "<config>", base_dir: Path | None = None) -> Config:
    """Validate a loaded YAML document (mapping) into a Config."""
    reader = _Reader(path)
    root = reader.mapping(document, "(top level)")
    reader.check_keys(root, {"settings", "feeds"}, "")
    settings = reader.mapping(root.get("settings"), "settings", root, "settings")
    reader.check_keys(settings, {"database", "model", "window_days", "poll_interval_minutes", "fetch",
                                 "embedding", "dedup", "stories", "report"}, "settings")
    fetch_node = reader.mapping(settings.get("fetch"), "settings.fetch", settings, "fetch")
    reader.check_keys(fetch_node, {f.name for f in dataclasses.fields(FetchSettings)}, "settings.fetch")
    fetch = FetchSettings(
        timeout_seconds=reader.value(fetch_node, "timeout_seconds", float, "settings.fetch", 20.0),
        max_bytes=reader.value(fetch_node, "max_bytes", int, "settings.fetch", 10_000_000),
        max_concurrency=reader.value(fetch_node, "max_concurrency", int, "settings.fetch", 8),
        user_agent=reader.value(fetch_node, "user_agent", str, "settings.fetch", None),
        run_deadline=reader.value(fetch_node, "run_deadline", float, "settings.fetch", DEFAULT_RUN_DEADLINE),
    )
    for name in ("timeout_seconds", "max_bytes", "max_concurrency", "run_deadline"):
        if getattr(fetch, name) <= 0:
            raise reader.error(f"must be greater than 0, got {getattr(fetch, name)!r}", f"settings.fetch.{name}",
                               fetch_node, name)
    embedding = _parse_embedding(reader, settings)
    window_days = reader.value(settings, "window_days", float, "settings", DEFAULT_WINDOW_DAYS)
    if window_days <= 0:
        raise reader.error("must be greater than 0", "settings.window_days", settings, "window_days")
    feeds = _parse_feeds(reader, root)
    base = base_dir if base_dir is not None else Path(".")
    return Config(
        database=_database_setting(reader, settings),
        model=reader.value(settings, "model", str, "settings", DEFAULT_MODEL),
        window_days=window_days,
        poll_interval_minutes=reader.value(settings, "poll_interval_minutes", float, "settings",
                                           DEFAULT_POLL_INTERVAL_MINUTES),
        fetch=fetch,
        embedding=embedding,
        dedup=reader.params(settings.get("dedup"), DedupParams, "settings.dedup", settings),
        stories=reader.params(settings.get("stories"), StoryParams, "settings.stories", settings),
        feeds=feeds,
        base_dir=base,
        path=Path(path) if path != "<config>" else None,
        report=Path(report) if (report := reader.value(settings, "report", str, "settings", None)) else None,
    )


def _parse_embedding(reader: _Reader, settings: Mapping[str, Any]) -> EmbeddingSettings:
    key = "settings.embedding"
    node = reader.mapping(settings.get("embedding"), key, settings, "embedding")
    reader.check_keys(node, {f.name for f in dataclasses.fields(EmbeddingSettings)}, key)
    embedding = EmbeddingSettings(
        device=reader.value(node, "device", str, key, DEFAULT_DEVICE),
        batch_size=reader.value(node, "batch_size", (int, str), key, EMBED_BATCH_SIZE),
        precision=reader.value(node, "precision", str, key, DEFAULT_PRECISION),
        threads=reader.value(node, "threads", (int, str), key, DEFAULT_THREADS))
    if not is_device(embedding.device):
        raise reader.error(f"expected auto, cpu, cuda, cuda:N or mps, got {embedding.device!r}", f"{key}.device",
                           node, "device")
    for name, value in (("batch_size", embedding.batch_size), ("threads", embedding.threads)):
        if isinstance(value, str) and value != "auto":
            raise reader.error(f"expected auto or a number, got {value!r}", f"{key}.{name}", node, name)
        if isinstance(value, int) and value < 1:
            raise reader.error(f"must be at least 1, got {value}", f"{key}.{name}", node, name)
    if embedding.precision not in PRECISIONS:
        raise reader.error(f"expected auto, fp32 or bf16, got {embedding.precision!r}", f"{key}.precision", node,
                           "precision")
    return embedding


def _parse_feeds(reader: _Reader, root: Mapping[str, Any]) -> tuple[FeedConfig, ...]:
    node = root.get("feeds")
    if node is None:
        return ()
    if not isinstance(node, list):
        raise reader.error(f"expected a list of feeds (lines starting with '- '), got {describe(node)}", "feeds",
                           root, "feeds")
    feeds: list[FeedConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(node):
        key = f"feeds[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"expected a mapping with name and url, got {describe(item)}", path=reader.path,
                              key=key, line=_line(node) if _line(item) is None else _line(item))
        reader.check_keys(item, {"name", "url", "tags", "language", "poll_interval_minutes", "enabled"}, key)
        for required in ("name", "url"):
            if not item.get(required):
                raise ConfigError(f"missing required key {required!r}", path=reader.path,
                                  key=f"{key}.{required}", line=_line(item))
        name = reader.value(item, "name", str, key, None).strip()
        if not _FEED_NAME.match(name):
            raise reader.error(f"invalid feed name {quote_value(name)} (up to 100 letters, digits, spaces"
                               " and . _ @ + -, starting with a letter or digit)",
                               f"{key}.name", item, "name")
        if name in seen:
            raise reader.error(f"duplicate feed name {name!r} (first used in feeds[{seen[name]}])",
                               f"{key}.name", item, "name")
        seen[name] = index
        tags = item.get("tags") or []
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise reader.error(f"expected a list of texts, got {describe(tags)}", f"{key}.tags", item, "tags")
        feeds.append(FeedConfig(
            name=name,
            url=reader.value(item, "url", str, key, None).strip(),
            tags=tuple(tags),
            language=reader.value(item, "language", str, key, None),
            poll_interval_minutes=reader.value(item, "poll_interval_minutes", float, key, None),
            enabled=reader.value(item, "enabled", bool, key, True),
        ))
    return tuple(feeds)


def load_config(path: str | Path) -> Config:
    """Read and validate feeds.yaml; relative paths in it resolve against its folder."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(config_path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=str(config_path)) from exc
    try:
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", path=str(config_path), line=line) from exc
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=str(config_path)) from exc
    _check_size(document, str(config_path))
    base_dir = config_path.resolve().parent
    config = parse_config(document if document is not None else {}, path=str(config_path), base_dir=base_dir)
    if isinstance(config.database, Path) and not config.database.is_absolute() and str(config.database) != ":memory:":
        config = dataclasses.replace(config, database=base_dir / config.database)
    if config.report is not None and not config.report.is_absolute():
        config = dataclasses.replace(config, report=base_dir / config.report)
    return config


def _check_size(document: Any, path: str) -> None:
    """Refuse a document of more than MAX_CONFIG_VALUES values, aliases expanded.  Aliases are
    shared, not copied, when loaded; this walk stops at the limit, so it costs little even for
    an alias bomb (or an alias that contains itself).  The error names the key whose value grew
    too large, at the line where the document says it (``feeds[0].language: *bomb``), not where
    the anchor it refers to was defined: inside an anchored value every node is reported as the
    key that holds it."""
    count = 0
    pending: list[tuple[Any, str | None, int | None]] = [(document, None, _line(document))]
    while pending:
        node, key, line = pending.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"more than {MAX_CONFIG_VALUES:,} values once YAML aliases (*name) are expanded; "
                              "write the values out instead", path=path, key=key, line=line)
        anchored = getattr(getattr(node, "anchor", None), "value", None) is not None
        if isinstance(node, Mapping):
            for child_key, child in node.items():
                inner = (key, line) if anchored else (_key_path(key, child_key), _line(node, child_key) or line)
                pending.append((child_key, *inner))
                pending.append((child, *inner))
        elif isinstance(node, (list, tuple)):
            for index, child in enumerate(node):
                inner = (key, line) if anchored else (f"{key or ''}[{index}]", _item_line(node, index) or line)
                pending.append((child, *inner))


def _key_path(parent: str | None, key: Any) -> str:
    """``feeds[0]`` + ``language`` -> ``feeds[0].language`` (a key as a feeds.yaml writer reads it)."""
    name = key if isinstance(key, str) else quote_value(key)
    return f"{parent}.{name}" if parent else name


def _item_line(node: Any, index: int) -> int | None:
    """1-based line of a list's item when ruamel recorded it."""
    try:
        return int(node.lc.item(index)[0]) + 1
    except (KeyError, TypeError, AttributeError, IndexError):
        return None


def sample_config_path() -> Path:
    """The bundled offline sample (invented outlets covering a few events)."""
    return Path(__file__).resolve().parent / "sample" / "sample-feeds.yaml"


def _database_setting(reader: Any, settings: Mapping[str, Any]) -> Path | str:
    """``settings.database``: a file path or a ``postgresql://`` URL (another scheme names the line)."""
    value = reader.value(settings, "database", str, "settings", DEFAULT_DATABASE)
    try:
        return database_location(value)
    except ConfigError as exc:
        raise reader.error(exc.args[0] if exc.args else str(exc), "settings.database", settings, "database") from None
