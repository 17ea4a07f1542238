"""Feed bytes -> :class:`ParsedEntry` values: plain text, canonical URLs, UTC dates.

This module is the parser's error boundary: whatever feedparser raises or
reports becomes either a :class:`ParsedFeed` (possibly with a ``warning``) or
a :class:`~clustering.errors.FeedError` naming the feed.  It never touches
the network or the file system: feedparser only ever sees an in-memory
stream of the bytes that ``fetch`` downloaded.

Decisions, in the order :func:`parse_feed` takes them:

* an empty (or whitespace-only) body is not a feed;
* an HTML page (by Content-Type or by its first bytes) that feedparser does
  not recognise as RSS/Atom/RDF is not a feed: "not a feed (HTML page)";
* nor is any other unrecognised document from which no entry was recovered:
  "not a feed: <reason>";
* a feed with entries is fine even when ill-formed ("bozo"): the entries
  feedparser recovered are returned with the reason as ``warning``;
* a feed with no entries is fine when its XML is sound (an empty channel),
  but an error when the XML is broken, since nothing was recovered and the
  feed owner should see it ("ill-formed feed with no entries: <reason>").
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.sax
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

import feedparser

from clustering.errors import ConfigError, FeedError
from clustering.types import ParsedEntry

__all__ = [
    "EARLIEST_PLAUSIBLE_DATE",
    "MAX_FUTURE_SKEW",
    "MAX_SUMMARY_CHARS",
    "MAX_TITLE_CHARS",
    "TRACKING_PARAMS",
    "TRACKING_PARAM_PREFIXES",
    "ParsedFeed",
    "canonical_url",
    "clean_article_text",
    "clean_line",
    "clean_text",
    "entry_key",
    "is_plausible_date",
    "parse_feed",
    "plain_text",
    "valid_unicode",
]

MAX_SUMMARY_CHARS = 10_000
"""Longest text kept per article, from a feed entry or from the API alike, in characters
(cut at a word boundary, "…" appended).

Trades storage against text for the lexical near-duplicate check (embedding reads only
the first ``embed.MAX_EMBED_CHARS`` of title + text, so embedding time does not change).
Measured with bench/quality.py's corpora, which reach the pipeline as API articles of
full length (ECB+ texts: median 1,388 characters, 99 % under 7,520, longest 16,141):
cutting at 2,000 lost near-duplicate recall 0.954 -> 0.941 and ECB+ story B-cubed F1
0.932 -> 0.930 (the shingle test sees less of a copy); 5,000 gave 0.952 / 0.932; 10,000
gives the uncut figures (0.954 / 0.932).  A full-text ``content:encoded`` of 20–100 kB
is still not stored whole.  Changing it changes the ``hash:`` entry keys of entries that
have neither guid nor link and a longer text.
"""

MAX_TITLE_CHARS = 500
"""Longest title kept per article, in characters (cut like the summary).

Headlines in the labelled corpora are far shorter (ECB+ first lines reach 343
characters, BBC 52, GoogleNews 77); longer "titles" are whole posts (microblog
feeds) or garbage, and the title also leads the embedded text.  Changing it
changes the ``hash:`` entry keys of entries with such titles and neither guid
nor link.
"""

EARLIEST_PLAUSIBLE_DATE = datetime(1990, 1, 1, tzinfo=timezone.utc)
"""Entry dates before this are treated as missing (estimated as the fetch time).

Broken CMSs emit the Unix epoch (1970-01-01) or year 1/1900 for "no date";
no web feed predates 1990, so anything earlier is a placeholder, not a date.
"""

MAX_FUTURE_SKEW = timedelta(days=1)
"""How far after the fetch an entry date may lie and still be believed.

Allows for wrong server clocks and wrongly labelled time zones (up to ±14 h)
while rejecting "scheduled" posts and year typos (2203 for 2023), which would
otherwise sort at the top of every report forever.
"""

TRACKING_PARAM_PREFIXES: tuple[str, ...] = ("utm_",)
"""Query-parameter name prefixes dropped by :func:`canonical_url` (case-insensitive).

Google Analytics campaign tags (``utm_source``, ``utm_medium``, …): the same
article reached through two feeds or newsletters differs only in these.
"""

TRACKING_PARAMS: frozenset[str] = frozenset({
    # ad-click identifiers: Facebook, Google Ads (incl. iOS/web variants),
    # DoubleClick, Microsoft Ads, Yandex, TikTok, Twitter/X, LinkedIn
    "fbclid", "gclid", "gclsrc", "gbraid", "wbraid", "dclid", "msclkid",
    "yclid", "ttclid", "twclid", "li_fat_id", "srsltid",
    # Mailchimp, Instagram, Google Analytics linker, Twitter share source
    "mc_cid", "mc_eid", "igshid", "_ga", "_gl", "ref_src", "ref_url",
    # HubSpot, Marketo, Vero, Olytics
    "_hsenc", "_hsmi", "__hstc", "__hssc", "__hsfp", "mkt_tok",
    "vero_id", "vero_conv", "oly_anon_id", "oly_enc_id",
    # AT Internet / Piano (BBC ``at_medium=RSS``, French press ``xtor=RSS-…``),
    # New York Times share id
    "at_medium", "at_campaign", "xtor", "smid",
})
"""Query parameters dropped by :func:`canonical_url` (names compared case-insensitively).

Only names that identify a click, a campaign or a sharer and never select
content, so dropping them cannot merge two different articles; ambiguous
names (``ref``, ``source``, ``partner``, ``cmp``) are kept.
"""

_DEFAULT_PORTS = {"http": 80, "https": 443}

_DATE_FIELDS = ("published_parsed", "updated_parsed", "created_parsed")
"""feedparser's normalized (UTC ``struct_time``) dates, in order of preference."""

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
"""Elements whose content is not text a reader sees."""

_INLINE_TAGS = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em",
    "font", "i", "ins", "kbd", "mark", "q", "s", "samp", "small", "span",
    "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
})
"""Elements that do not separate words; every other tag becomes a space."""

_INVISIBLE_CHARS = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]
)
"""Control characters and zero-width spaces/BOMs, deleted by :func:`plain_text`."""

_HTML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
"""An HTML page: optional BOM, XML declaration and comments, then doctype or <html>."""

_HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml")
"""What feedparser takes for an XML declaration (it replaces it rather than adding one)."""
_WIDE_ENCODING_START = re.compile(rb"\A(?:\xfe\xff|\xff\xfe|\x00|.\x00)", re.DOTALL)
"""A UTF-16/32 document (BOM or NUL bytes), where line numbers are not corrected."""

_SOUND_XML_BOZO = (
    feedparser.CharacterEncodingOverride,
    feedparser.NonXMLContentType,
)
"""bozo reasons that say nothing about the XML structure (the strict parser
still read the whole document): a feed with no entries and only these is fine."""


@dataclass(frozen=True)
class ParsedFeed:
    """The entries of one fetched feed document.

    ``warning`` is feedparser's reason when the document was ill-formed (or
    mislabelled) but entries were still recovered, e.g. ``"not well-formed
    (invalid token): line 5, column 3"``; ``None`` for a clean feed.
    Entries are unique by ``entry_key`` (the first occurrence is kept).
    """

    title: str | None
    entries: tuple[ParsedEntry, ...]
    warning: str | None


def parse_feed(
    body: bytes,
    *,
    feed_url: str,
    fetched_at: datetime,
    content_type: str | None = None,
    feed_name: str | None = None,
) -> ParsedFeed:
    """Parse a downloaded feed document into :class:`ParsedEntry` values.

    ``content_type`` is the HTTP Content-Type header; it decides the
    character encoding together with the XML declaration (RFC 3023, as
    feedparser implements it).  Without it the document is read like a local
    file: XML declaration, else BOM, else UTF-8.  Relative links are resolved
    against ``feed_url``; entries without a usable date get ``fetched_at``
    (tz-aware, converted to UTC) and ``published_estimated=True``.

    Raises :class:`FeedError` (naming ``feed_name`` and ``feed_url``) when the
    body is not a feed, see the module docstring; any exception raised inside
    feedparser becomes a :class:`FeedError` too.  Raises :class:`ConfigError`
    if ``fetched_at`` is naive.
    """
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise ConfigError("fetched_at must be timezone-aware", key="fetched_at")
    fetched_at = fetched_at.astimezone(timezone.utc)

    def fail(reason: str) -> FeedError:
        return FeedError(reason, feed=feed_name, url=feed_url)

    if not body.strip():
        raise fail("not a feed (empty document)")

    # No Content-Location header: feedparser would resolve relative <guid>s
    # against it, making entry keys depend on the feed's URL.  Links are
    # resolved by canonical_url() below instead.
    headers = {"content-type": content_type} if content_type else {}
    try:
        result = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # the parser's error boundary
        raise fail(f"parser failed: {type(exc).__name__}: {exc}") from exc

    bozo_exception = result.get("bozo_exception") if result.get("bozo") else None
    warning = _describe(bozo_exception, _line_offset(body)) if result.get("bozo") else None
    version = result.get("version") or ""
    raw_entries = result.get("entries") or []

    if not version and _looks_like_html(body, content_type):
        raise fail("not a feed (HTML page)")
    if not raw_entries:
        if not version:
            raise fail(f"not a feed: {warning}" if warning
                       else "not a feed (no RSS, Atom or RDF root element)")
        if warning and not isinstance(bozo_exception, _SOUND_XML_BOZO):
            raise fail(f"ill-formed feed with no entries: {warning}")

    feed_title = plain_text(_text(result.get("feed", {}).get("title"))) or None
    entries: dict[str, ParsedEntry] = {}
    for raw in raw_entries:
        entry = _parse_entry(raw, feed_url=feed_url, fetched_at=fetched_at)
        if entry is not None and entry.entry_key not in entries:
            entries[entry.entry_key] = entry
    return ParsedFeed(title=feed_title, entries=tuple(entries.values()), warning=warning)


def plain_text(html_or_text: str) -> str:
    """The visible text of an HTML fragment (or of plain text), on one line.

    Tags are removed (block-level tags and ``<br>`` separate words, inline
    tags such as ``<b>`` do not), ``<script>``/``<style>`` content is dropped,
    entities are unescaped, control and zero-width characters are deleted and
    all whitespace runs become single spaces.  Text that is not HTML survives:
    ``"AT&T <3 Verizon"`` is returned unchanged.
    """
    if not html_or_text:
        return ""
    extractor = _TextExtractor()
    # NUL is deleted before reading, not after: html.parser leaves an entity that a NUL follows
    # undecoded in an unclosed tag's tail ("<A&amp\0" read as "<A&amp", "<A&amp" as "<A&")
    extractor.feed(_escape_unclosed(html_or_text.replace("\x00", "")))
    extractor.close()
    text = "".join(extractor.parts).translate(_INVISIBLE_CHARS)
    return " ".join(text.split())


def _escape_unclosed(html: str) -> str:
    """``html`` with every ``<`` after its last ``>`` written as text (``&lt;``): nothing can close
    what such a ``<`` opens, and html.parser shows it as text anyway, but only after scanning to
    the end of the input for its end, at every one of them: quadratic (``"x<y "`` repeated, 20,000
    characters took 2 s, 40,000 16 s).  Comments are bounded in ``_TextExtractor.parse_comment``.
    tests/test_properties.py checks that the text read is the same."""
    last_close = html.rfind(">") + 1
    if html.find("<", last_close) >= 0:
        html = html[:last_close] + html[last_close:].replace("<", "&lt;")
    return html


_COMMENT_CLOSE = re.compile(r"--!?\s*>")
"""What can end a comment, for any Python's html.parser (3.11: ``--`` spaces ``>``; later also ``--!>``)."""


def valid_unicode(text: str) -> str:
    """``text`` with every lone surrogate (``"\\ud800"``, which no encoding can store)
    replaced by U+FFFD; a surrogate pair becomes the character it encodes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def clean_line(text: str) -> str:
    """A name or key as stored: :func:`valid_unicode`, control and zero-width characters
    deleted, whitespace runs made single spaces, no HTML processing."""
    return " ".join(valid_unicode(text).translate(_INVISIBLE_CHARS).split())


def clean_text(html_or_text: str, limit: int) -> str:
    """What is stored of a title, text or author, from a feed or from the API alike:
    the :func:`plain_text` of its :func:`valid_unicode`, cut at ``limit`` characters at a
    word boundary ("…" marks the cut)."""
    return _truncate(plain_text(valid_unicode(html_or_text)), limit)


def clean_article_text(title: str, texts: Iterable[str]) -> tuple[str, str]:
    """The (title, text) stored for an article, feed entry or API input: one rule for both.

    ``texts`` are the candidate bodies (a feed's summary and content values, the API's
    text); the longest one's plain text is kept.  The title is cut at
    :data:`MAX_TITLE_CHARS`, the text at :data:`MAX_SUMMARY_CHARS`; see :func:`clean_text`.
    """
    bodies = [plain_text(valid_unicode(text)) for text in texts]
    return clean_text(title, MAX_TITLE_CHARS), _truncate(max(bodies, key=len, default=""), MAX_SUMMARY_CHARS)


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """One spelling per article URL, or ``None`` when there is no http(s) URL.

    Resolves ``url`` against ``base``; lowercases scheme and host; drops the
    default port, the fragment and tracking parameters (:data:`TRACKING_PARAMS`,
    :data:`TRACKING_PARAM_PREFIXES`); keeps the other parameters, in their
    order and spelling; percent-encodes characters not allowed in URLs (so
    ``/café`` and ``/caf%C3%A9`` agree); an empty path becomes ``/``.
    """
    if not url or not url.strip():
        return None
    url = valid_unicode(url)
    try:
        absolute = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(absolute)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:  # e.g. "http://[::1" or a port out of range
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    path = quote(parts.path, safe="/%:@!$&'()*+,;=~") or "/"
    query = "&".join(
        quote(param, safe="/?%:@!$&'()*+,;=~")
        for param in parts.query.split("&")
        if param and not _is_tracking_param(param)
    )
    return urlunsplit((scheme, netloc, path, query, ""))


def entry_key(entry: Mapping[str, Any], *, link: str | None, title: str, summary: str) -> str:
    """A key that stays the same across fetches of one feed's entry.

    ``"id:<guid>"`` when the entry has a non-empty guid/id, else
    ``"url:<link>"`` (pass the canonical URL), else ``"hash:<sha1>"`` of the
    case-folded, whitespace-collapsed title and summary.
    """
    for field in ("id", "guid"):
        value = entry.get(field)
        if isinstance(value, str) and value.strip():
            return "id:" + value.strip()
    if link:
        return "url:" + link
    normalized = "\n".join(" ".join(text.casefold().split()) for text in (title, summary))
    return "hash:" + hashlib.sha1(normalized.encode("utf-8")).hexdigest()


def _parse_entry(
    raw: Mapping[str, Any], *, feed_url: str, fetched_at: datetime
) -> ParsedEntry | None:
    """One feedparser entry -> ParsedEntry, or None when it has no title, text or link."""
    title, summary = clean_article_text(_text(raw.get("title")), _candidate_texts(raw))
    url = canonical_url(_text(raw.get("link")) or None, base=feed_url)
    if not (title or summary or url):
        return None
    published, estimated = _published(raw, fetched_at)
    author = clean_text(_text(raw.get("author")), MAX_TITLE_CHARS) or None
    return ParsedEntry(
        entry_key=entry_key(raw, link=url, title=title, summary=summary),
        title=title,
        summary=summary,
        url=url,
        published=published,
        published_estimated=estimated,
        author=author,
    )


def _candidate_texts(raw: Mapping[str, Any]) -> Iterator[str]:
    """The entry's summary and each of its content values (HTML or text)."""
    yield _text(raw.get("summary"))
    contents = raw.get("content")
    if isinstance(contents, list):
        for content in contents:
            if isinstance(content, Mapping):
                yield _text(content.get("value"))


def is_plausible_date(when: datetime, seen_at: datetime) -> bool:
    """The one rule for an article's publication date, feed entries and API input alike.

    A date is believed when it is timezone-aware, not before
    :data:`EARLIEST_PLAUSIBLE_DATE` and at most :data:`MAX_FUTURE_SKEW` after
    ``seen_at`` (the fetch, the call or, for a stored article, its first-seen
    time).  Feeds treat a date that fails it as missing; ``add_articles``
    refuses it; a stored one is repaired by the next run.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        return False
    return EARLIEST_PLAUSIBLE_DATE <= when <= seen_at + MAX_FUTURE_SKEW


def _published(raw: Mapping[str, Any], fetched_at: datetime) -> tuple[datetime, bool]:
    """The first plausible date of published/updated/created, else (fetched_at, True)."""
    for field in _DATE_FIELDS:
        # dict.get: FeedParserDict.get("updated_parsed") falls back to
        # published_parsed with a DeprecationWarning (feedparser issue 310)
        value = dict.get(raw, field) if isinstance(raw, dict) else raw.get(field)
        when = _utc_datetime(value)
        if when is not None and is_plausible_date(when, fetched_at):
            return when, False
    return fetched_at, True


def _utc_datetime(parsed: Any) -> datetime | None:
    """feedparser's UTC ``struct_time`` as an aware datetime; None if absent or invalid."""
    try:
        year, month, day, hour, minute, second = (int(part) for part in tuple(parsed)[:6])
        # struct_time allows leap seconds (60, 61); datetime does not
        return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    head, space, _ = cut.rpartition(" ")
    if space and len(head) >= limit // 2:  # a giant "word" (a URL) is cut inside
        cut = head
    return cut.rstrip() + "…"


def _text(value: object) -> str:
    """``value`` if it is a string, else "" (feedparser fields can be odd on broken feeds)."""
    return value if isinstance(value, str) else ""


def _is_tracking_param(param: str) -> bool:
    name = unquote_plus(param.partition("=")[0]).lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PARAM_PREFIXES)


def _looks_like_html(body: bytes, content_type: str | None) -> bool:
    mime = (content_type or "").partition(";")[0].strip().lower()
    return mime in _HTML_CONTENT_TYPES or _HTML_START.match(body[:4096]) is not None


def _line_offset(body: bytes) -> int:
    """Lines feedparser added before the document: it prepends an XML
    declaration line to an 8-bit document that has none, so the XML parser's
    line numbers are one too high for it."""
    if _XML_DECLARATION.match(body) or _WIDE_ENCODING_START.match(body):
        return 0
    return 1


def _describe(exc: object, line_offset: int = 0) -> str:
    """A one-line reason for a feedparser bozo exception, lines numbered as in the body."""
    if isinstance(exc, xml.sax.SAXParseException):
        line = max(1, (exc.getLineNumber() or 1) - line_offset)
        return f"{exc.getMessage()}: line {line}, column {exc.getColumnNumber()}"
    text = " ".join(str(exc).split()) if exc is not None else ""
    return text or (type(exc).__name__ if exc is not None else "ill-formed document")


class _TextExtractor(HTMLParser):
    """Collects text nodes; see :func:`plain_text`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._scanned: str | None = None   # the input _last_comment_end was found in
        self._last_comment_end = -1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _INLINE_TAGS and tag not in _SKIPPED_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag not in _INLINE_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)

    def parse_comment(self, i: int, report: bool = True) -> int:
        # a comment starting after the last possible comment end never closes: say so at once
        # instead of searching the rest of the input for each one (quadratic on many "<!--")
        if self.rawdata is not self._scanned:
            self._scanned = self.rawdata
            self._last_comment_end = max((m.start() for m in _COMMENT_CLOSE.finditer(self.rawdata)), default=-1)
        if i + 4 > self._last_comment_end:
            return -1
        return int(super().parse_comment(i, report))

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # html.parser raises AssertionError on "<![" that opens no known
        # section ("<![foo[", "<![=x"); browsers show such text, and so do we.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            self.handle_data(self.rawdata[i : i + 3])
            return i + 3

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA[") and not self._skip_depth:
            self.parts.append(data[len("CDATA["):])
