"""Feeds management: add and remove feeds in feeds.yaml, import and export OPML.

feeds.yaml is edited by people: it is read and written with ruamel.yaml's round trip, so
comments, key order and blank lines stay as they were, and a new feed is appended to the
``feeds`` list in the style of the others.  The file is checked (config.parse_config) before
it is written: an edit that would make it invalid is refused and the file is left alone.
OPML is the outline format feed readers exchange subscriptions in (``<outline type="rss"
xmlUrl=...>``); it is parsed with the standard library's ElementTree, which resolves no
external entities.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

MAX_OPML_BYTES = 5_000_000
"""Largest OPML file read: subscription lists are kilobytes; this refuses a wrong file early."""


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: Path) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=str(path)) from exc
    try:
        document = _yaml().load(text)
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=str(path)) from exc
    if document is None:
        from ruamel.yaml.comments import CommentedMap

        document = CommentedMap()
    return document


def _save(path: Path, document: Any) -> None:
    from .config import parse_config

    parse_config(document, path=str(path), base_dir=path.resolve().parent)  # refuse an invalid result
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    try:
        path.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write config file: {exc.strerror or exc}", path=str(path)) from exc


def _feeds(document: Any) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    if document.get("feeds") is None:
        document["feeds"] = CommentedSeq()
    return document["feeds"]


def name_from_url(url: str) -> str:
    """A feed name from its URL: host and path words (``https://news.example/world/rss`` ->
    ``news.example-world-rss``)."""
    parts = urlsplit(url)
    words = [parts.hostname or "feed", *re.findall(r"[\w.]+", parts.path)]
    return "-".join(w.strip(".") for w in words if w.strip("."))[:100] or "feed"


def add_feed(path: Path, url: str, *, name: str | None = None, tags: Sequence[str] = ()) -> str:
    """Append a feed to feeds.yaml; returns its name.  A name or URL already there is an error."""
    from ruamel.yaml.comments import CommentedMap

    if not urlsplit(url).scheme:
        raise ConfigError(f"feed URL {url!r} has no scheme (http://, https:// or file://)")
    document = _load(path)
    feeds = _feeds(document)
    name = name or name_from_url(url)
    for feed in feeds:
        if isinstance(feed, dict) and feed.get("name") == name:
            raise ConfigError(f"a feed named {name!r} is already in {path} (pass --name)")
        if isinstance(feed, dict) and feed.get("url") == url:
            raise ConfigError(f"{url} is already in {path} as {feed.get('name')!r}")
    entry = CommentedMap([("name", name), ("url", url)])
    if tags:
        entry["tags"] = list(tags)
    feeds.append(entry)
    _save(path, document)
    return name


def remove_feed(path: Path, name: str) -> None:
    document = _load(path)
    feeds = _feeds(document)
    for index, feed in enumerate(feeds):
        if isinstance(feed, dict) and feed.get("name") == name:
            del feeds[index]
            _save(path, document)
            return
    raise ConfigError(f"no feed named {name!r} in {path}")


def import_opml(path: Path, opml: Path) -> list[str]:
    """Add every feed of an OPML file not in feeds.yaml yet (by URL); an outline's enclosing
    folders become its tags.  Returns the names added."""
    from ruamel.yaml.comments import CommentedMap

    try:
        if opml.stat().st_size > MAX_OPML_BYTES:
            raise ConfigError(f"{opml}: larger than {MAX_OPML_BYTES:,} bytes; not an OPML subscription list")
        root = ElementTree.fromstring(opml.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{opml}: cannot read: {exc.strerror or exc}") from exc
    except ElementTree.ParseError as exc:
        raise ConfigError(f"{opml}: not an OPML file: {exc}") from exc
    document = _load(path)
    feeds = _feeds(document)
    names = {f.get("name") for f in feeds if isinstance(f, dict)}
    urls = {f.get("url") for f in feeds if isinstance(f, dict)}
    added: list[str] = []

    def visit(node: ElementTree.Element, folders: list[str]) -> None:
        for outline in node.findall("outline"):
            url = outline.get("xmlUrl")
            label = outline.get("title") or outline.get("text") or ""
            if url:
                if url in urls:
                    continue
                base = re.sub(r"[^\w .@+-]+", " ", label)
                base = re.sub(r"\s+", " ", base).strip(" ._@+-")[:95] or name_from_url(url)
                name, n = base, 2
                while name in names:
                    name, n = f"{base} {n}", n + 1
                entry = CommentedMap([("name", name), ("url", url)])
                if folders:
                    entry["tags"] = list(folders)
                feeds.append(entry)
                names.add(name)
                urls.add(url)
                added.append(name)
            visit(outline, folders + ([label] if label and not url else []))

    body = root.find("body")
    visit(body if body is not None else root, [])
    if added:
        _save(path, document)
    return added


def export_opml(path: Path) -> str:
    """The feeds of feeds.yaml as OPML 2.0 (a feed's first tag as its folder)."""
    from .config import load_config

    config = load_config(path)
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = f"clustering feeds ({path.name})"
    body = ElementTree.SubElement(opml, "body")
    folders: dict[str, ElementTree.Element] = {}
    for feed in config.feeds:
        parent = body
        if feed.tags:
            if feed.tags[0] not in folders:
                folders[feed.tags[0]] = ElementTree.SubElement(body, "outline", text=feed.tags[0])
            parent = folders[feed.tags[0]]
        ElementTree.SubElement(parent, "outline", type="rss", text=feed.name, title=feed.name, xmlUrl=feed.url)
    ElementTree.indent(opml)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(opml, encoding="unicode") + "\n"
