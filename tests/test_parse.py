"""Tests of clustering.parse: plain text, canonical URLs, entry keys, feed parsing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clustering import parse
from clustering.errors import ConfigError, FeedError
from clustering.parse import (
    MAX_SUMMARY_CHARS,
    ParsedFeed,
    canonical_url,
    entry_key,
    parse_feed,
    plain_text,
)

FEEDS = Path(__file__).parent / "data" / "feeds"
FEED_URL = "https://news.example.com/feeds/main.xml"
FETCHED_AT = datetime(2024, 6, 5, 12, 0, tzinfo=timezone.utc)


def parse_fixture(name: str) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), feed_url=FEED_URL, fetched_at=FETCHED_AT,
                      feed_name=name)


def parse_bytes(body: bytes, content_type: str | None = None) -> ParsedFeed:
    return parse_feed(body, feed_url=FEED_URL, fetched_at=FETCHED_AT, content_type=content_type,
                      feed_name="test")


def rss(items: str, *, declaration: bool = True) -> bytes:
    head = '<?xml version="1.0" encoding="utf-8"?>\n' if declaration else ""
    return (f'{head}<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
            .encode())


# --- plain_text ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("html", "text"), [
    ("<p>Hello <b>wor</b>ld</p>", "Hello world"),
    ("<p>one</p><p>two</p>", "one two"),
    ("line<br>break<br/>here", "line break here"),
    ("<ul><li>a</li><li>b</li></ul>", "a b"),
    ("fish &amp; chips &lt;3 &#8217;quoted&#x2019; &eacute;t&eacute;",
     "fish & chips <3 ’quoted’ été"),
    ("a&nbsp;b", "a b"),
    ("before<script>var x = '<p>no</p>'; if (a<b) {}</script>after", "beforeafter"),
    ("<style>p { color: red }</style><p>styled</p>", "styled"),
    ("<noscript><img src=x>enable js</noscript>visible", "visible"),
    ("  lots \n\n of \t  space  ", "lots of space"),
    ("<!-- a comment -->text", "text"),
    ("<![CDATA[cdata text]]>", "cdata text"),
    ("zero\u200bwidth\ufeff and \x00control", "zerowidth and control"),
    ("AT&T <3 Verizon", "AT&T <3 Verizon"),  # plain text with HTML-ish characters survives
    ("a < b and c > d", "a < b and c > d"),
    ("<![foo[bar]]> ok", "<![foo[bar]]> ok"),  # html.parser alone raises AssertionError here
    ("<A&amp\x00", "<A&"),  # an entity before a NUL in an unclosed tail reads as without the NUL
    ("", ""),
])
def test_plain_text(html: str, text: str) -> None:
    assert plain_text(html) == text


# --- canonical_url ------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.com/a?utm_source=rss&utm_medium=feed&utm_campaign=x",
     "https://example.com/a"),
    ("https://example.com/a?UTM_Source=rss&id=3", "https://example.com/a?id=3"),
    ("https://example.com/a?fbclid=IwAR0&gclid=xyz&p=1", "https://example.com/a?p=1"),
    ("https://example.com/a?mc_cid=1&mc_eid=2&igshid=3&msclkid=4&yclid=5&_ga=6&ref_src=twsrc",
     "https://example.com/a"),
    ("https://example.com/a?at_medium=RSS&at_campaign=KARANGA", "https://example.com/a"),
    ("https://example.com/a#section-2", "https://example.com/a"),
    ("https://example.com/a?", "https://example.com/a"),
    ("HTTPS://News.Example.COM/Path/Case", "https://news.example.com/Path/Case"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com/a?z=1&utm_source=x&a=2&m=3", "https://example.com/a?z=1&a=2&m=3"),
    ("https://example.com/a?q=caf%C3%A9+au+lait&x", "https://example.com/a?q=caf%C3%A9+au+lait&x"),
    ("https://example.com/café", "https://example.com/caf%C3%A9"),
    ("  https://example.com/padded \n", "https://example.com/padded"),
    ("http://[2001:db8::1]:80/v6", "http://[2001:db8::1]/v6"),
])
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("/2024/story", "https://news.example.com/2024/story"),
    ("story?id=1", "https://news.example.com/feeds/story?id=1"),
    ("../up", "https://news.example.com/up"),
    ("//cdn.example.net/x", "https://cdn.example.net/x"),
    ("https://other.example.org/abs", "https://other.example.org/abs"),
])
def test_canonical_url_resolves_relative_links(url: str, expected: str) -> None:
    assert canonical_url(url, base=FEED_URL) == expected


@pytest.mark.parametrize("url", [
    None, "", "   ", "javascript:alert(1)", "JavaScript:void(0)", "mailto:news@example.com",
    "ftp://example.com/file", "feed://example.com/rss", "/relative/without/base", "http:///no-host",
    "http://[::1", "http://example.com:99999/",
])
def test_canonical_url_rejects_non_http(url: str | None) -> None:
    assert canonical_url(url) is None


def test_canonical_url_javascript_link_stays_none_with_base() -> None:
    assert canonical_url("javascript:open()", base="https://example.com/") is None


def test_canonical_url_is_idempotent() -> None:
    once = canonical_url("HTTP://Example.com:80/a b/?utm_source=x&k=v#f")
    assert once == "http://example.com/a%20b/?k=v"
    assert canonical_url(once) == once


# --- entry_key ----------------------------------------------------------------------------------

def test_entry_key_prefers_guid() -> None:
    entry = {"id": "  tag:example.com,2024:42 ", "link": "https://example.com/x"}
    assert entry_key(entry, link="https://example.com/x", title="T", summary="S") == (
        "id:tag:example.com,2024:42")
    assert entry_key({"guid": "g-1"}, link=None, title="", summary="") == "id:g-1"


@pytest.mark.parametrize("entry", [{}, {"id": ""}, {"id": "   "}, {"id": None}])
def test_entry_key_falls_back_to_link(entry: dict[str, object]) -> None:
    assert entry_key(entry, link="https://example.com/x", title="T", summary="S") == (
        "url:https://example.com/x")


def test_entry_key_falls_back_to_content_hash() -> None:
    key = entry_key({}, link=None, title="Storm hits  coast", summary="Rivers rose.")
    expected = hashlib.sha1("storm hits coast\nrivers rose.".encode()).hexdigest()
    assert key == "hash:" + expected
    # case and whitespace do not matter, the text does
    assert entry_key({}, link=None, title=" STORM hits coast ", summary="Rivers\nrose.") == key
    assert entry_key({}, link=None, title="Storm hits coast", summary="Rivers fell.") != key
    # the boundary between title and summary matters
    assert entry_key({}, link=None, title="a b", summary="c") != entry_key(
        {}, link=None, title="a", summary="b c")


# --- expected results beside each fixture ----------------------------------------------------

def _as_expected(feed: ParsedFeed) -> dict[str, object]:
    return {
        "title": feed.title,
        "warning": feed.warning,
        "entries": [
            {**asdict(entry), "published": entry.published.isoformat()} for entry in feed.entries
        ],
    }


FIXTURES = sorted(path for path in FEEDS.iterdir() if not path.name.endswith(".expected.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=[path.name for path in FIXTURES])
def test_fixture_matches_expected(path: Path) -> None:
    """Each ``tests/data/feeds/<name>`` has ``<name>.expected.json`` beside it."""
    expected = json.loads(path.with_name(path.name + ".expected.json").read_text("utf-8"))
    if "error" in expected:
        with pytest.raises(FeedError) as caught:
            parse_fixture(path.name)
        assert caught.value.reason == expected["error"]
    else:
        assert _as_expected(parse_fixture(path.name)) == expected


# --- RSS 2.0 ------------------------------------------------------------------------------------

def test_rss_entries() -> None:
    feed = parse_fixture("rss20.xml")
    assert feed.title == "Example & Sons News"
    assert feed.warning is None
    titles = [entry.title for entry in feed.entries]
    # the item with neither title, text nor link is skipped
    assert titles == ["Storm & floods hit coast ’again’ été", "No date, relative link", "",
                      "Epoch placeholder date", "Far future date"]


def test_rss_full_entry() -> None:
    storm = parse_fixture("rss20.xml").entries[0]
    assert storm.entry_key == "id:storm-2024-0042"
    assert storm.url == "https://news.example.com/2024/storm?id=7"
    # +0200 converted to UTC
    assert storm.published == datetime(2024, 6, 4, 7, 30, tzinfo=timezone.utc)
    assert storm.published.tzinfo == timezone.utc
    assert not storm.published_estimated
    assert storm.author == "Jane Reporter"
    # content:encoded is longer than the description teaser and wins; script dropped
    assert storm.summary == "The storm reached the coast on Tuesday. Rivers rose fast."


def test_rss_missing_and_absurd_dates_are_estimated() -> None:
    entries = {entry.title: entry for entry in parse_fixture("rss20.xml").entries}
    for title in ("No date, relative link", "Epoch placeholder date", "Far future date"):
        assert entries[title].published == FETCHED_AT
        assert entries[title].published_estimated


def test_rss_relative_link_and_fallback_keys() -> None:
    entries = parse_fixture("rss20.xml").entries
    assert entries[1].url == "https://news.example.com/2024/no-date"
    assert entries[1].entry_key == "url:https://news.example.com/2024/no-date"
    assert entries[2].url is None
    assert entries[2].entry_key.startswith("hash:")


def test_date_falls_back_to_updated_when_published_is_absurd() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>
<entry><id>e1</id><title>x</title><published>1970-01-01T00:00:00Z</published>
<updated>2024-05-31T23:30:00-01:00</updated></entry></feed>"""
    (entry,) = parse_bytes(body).entries
    assert entry.published == datetime(2024, 6, 1, 0, 30, tzinfo=timezone.utc)
    assert not entry.published_estimated


def test_date_within_a_day_after_fetch_is_believed() -> None:
    (entry,) = parse_bytes(rss("<item><title>x</title><pubDate>Thu, 06 Jun 2024 06:00:00 GMT"
                               "</pubDate></item>")).entries
    assert entry.published == datetime(2024, 6, 6, 6, 0, tzinfo=timezone.utc)
    assert not entry.published_estimated


def test_fetched_at_in_another_zone_is_converted_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    feed = parse_feed(rss("<item><title>x</title></item>"), feed_url=FEED_URL,
                      fetched_at=datetime(2024, 6, 5, 14, 0, tzinfo=cest))
    assert feed.entries[0].published == FETCHED_AT
    assert feed.entries[0].published.utcoffset() == timedelta(0)


def test_naive_fetched_at_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fetched_at"):
        parse_feed(rss(""), feed_url=FEED_URL, fetched_at=datetime(2024, 6, 5, 12, 0))


def test_long_summary_is_cut_at_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(3000))  # about 23,000 characters, past the cut
    (entry,) = parse_bytes(rss(f"<item><title>x</title><description>{words}</description></item>")
                           ).entries
    assert len(entry.summary) <= MAX_SUMMARY_CHARS
    assert entry.summary.endswith("…")
    assert words.startswith(entry.summary[:-1])
    assert entry.summary[:-1].split()[-1] in words.split()  # no half word before "…"


def test_entries_with_the_same_key_are_kept_once() -> None:
    feed = parse_bytes(rss("<item><guid>same</guid><title>first</title></item>"
                           "<item><guid>same</guid><title>second</title></item>"))
    assert [entry.title for entry in feed.entries] == ["first"]


# --- Atom ---------------------------------------------------------------------------------------

def test_atom_entries() -> None:
    feed = parse_fixture("atom10.xml")
    assert feed.title == "Dev & Ops Blog"
    cafe, updated_only = feed.entries
    assert cafe.title == "Café <3 & tea"  # double-escaped entities in an html title
    assert cafe.entry_key == "id:tag:blog.example.org,2024:1"
    assert cafe.url == "https://blog.example.org/posts/cafe?lang=en"  # xml:base, gclid dropped
    assert cafe.published == datetime(2024, 6, 4, 3, 15, tzinfo=timezone.utc)  # -05:00
    assert cafe.summary == "A much longer body about cafés and tea houses."  # content wins
    assert cafe.author == "Ana Author"
    assert updated_only.published == datetime(2024, 6, 1, 8, 0, tzinfo=timezone.utc)  # +02:00
    assert updated_only.summary == "The summary is the longer text here, longer than the content."


# --- broken and non-feeds -------------------------------------------------------------------------

def test_bozo_feed_with_entries_returns_entries_and_warning() -> None:
    feed = parse_fixture("bozo.xml")
    assert feed.warning == "not well-formed (invalid token): line 5, column 23"
    assert [entry.title for entry in feed.entries] == ["Fish & chips price up", "Second item"]


def test_warning_line_numbers_count_from_the_body_without_xml_declaration() -> None:
    body = b'<rss version="2.0"><channel><title>T</title>\n<item><title>a & b</title></item>\n' \
           b"</channel></rss>"
    feed = parse_bytes(body)
    assert feed.warning is not None and "line 2," in feed.warning
    assert [entry.title for entry in feed.entries] == ["a & b"]


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(FeedError) as caught:
        parse_fixture("page.html")
    assert caught.value.reason == "not a feed (HTML page)"
    assert caught.value.feed == "page.html"
    assert caught.value.url == FEED_URL
    assert "page.html" in str(caught.value)


def test_html_content_type_without_doctype_is_an_html_page() -> None:
    with pytest.raises(FeedError, match=r"not a feed \(HTML page\)"):
        parse_bytes(b"<div><p>just markup</p></div>", content_type="text/html; charset=utf-8")


def test_feed_served_as_text_html_still_parses() -> None:
    feed = parse_bytes(rss("<item><title>x</title></item>"), content_type="text/html")
    assert [entry.title for entry in feed.entries] == ["x"]
    assert feed.warning is not None


@pytest.mark.parametrize("body", [b"", b"  \n\t "])
def test_empty_body_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(FeedError) as caught:
        parse_bytes(body)
    assert caught.value.reason == "not a feed (empty document)"
    assert caught.value.feed == "test"


@pytest.mark.parametrize("body", [b"\x00\x01garbage{}", b'{"items": []}', b"<foo><bar/></foo>"])
def test_garbage_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(FeedError, match="not a feed"):
        parse_bytes(body)


def test_body_is_never_opened_as_a_path_or_url(tmp_path: Path) -> None:
    # feedparser.parse(bytes) would open() a body that names a file
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(rss("<item><title>read from disk</title></item>"))
    for body in (str(feed_file).encode(), feed_file.as_uri().encode(), b"http://127.0.0.1:9/f"):
        with pytest.raises(FeedError, match="not a feed"):
            parse_bytes(body)


def test_well_formed_feed_without_entries_is_fine() -> None:
    feed = parse_fixture("empty-channel.xml")
    assert feed == ParsedFeed(title="Quiet feed", entries=(), warning=None)


def test_ill_formed_feed_without_entries_is_an_error() -> None:
    with pytest.raises(FeedError, match="ill-formed feed with no entries: .*line 2"):
        parse_bytes(b'<?xml version="1.0"?>\n<rss version="2.0"><channel><title>T</titl')


def test_unexpected_parser_exception_becomes_feed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse.feedparser, "parse", explode)
    with pytest.raises(FeedError, match="parser failed: RecursionError") as caught:
        parse_bytes(rss(""))
    assert caught.value.url == FEED_URL


# --- encodings ----------------------------------------------------------------------------------

def test_encoding_declared_in_xml() -> None:
    latin1 = parse_fixture("latin1.xml")
    assert latin1.warning is None
    assert latin1.entries[0].title == "Café crème à Paris"
    assert latin1.entries[0].summary == "L'été est là."
    koi8 = parse_fixture("koi8r.xml")
    assert koi8.title == "Новости"
    assert koi8.entries[0].title == "Привет, мир"


def test_charset_from_content_type() -> None:
    body = rss("<item><title>Caf\u00e9</title></item>", declaration=False).replace(
        b"Caf\xc3\xa9", "Caf\u00e9".encode("cp1252"))
    feed = parse_bytes(body, content_type="application/rss+xml; charset=windows-1252")
    assert feed.entries[0].title == "Café"
    assert feed.warning is None


def test_utf8_without_declaration_or_content_type() -> None:
    feed = parse_bytes(rss("<item><title>Zürich – 東京</title></item>", declaration=False))
    assert feed.entries[0].title == "Zürich – 東京"
    assert feed.warning is None


def test_clean_article_text_is_storable_plain_and_bounded() -> None:
    title, text = parse.clean_article_text("<b>bad</b> \ud800 pair \ud83d\ude00\x00",
                                           ["short", "a\x00b <p>longer</p> text"])
    assert (title, text) == ("bad \ufffd pair \U0001f600", "ab longer text")
    title.encode("utf-8")  # storable
    long_title, long_text = parse.clean_article_text("word " * 1000, ["word " * 3000])
    assert len(long_title) <= parse.MAX_TITLE_CHARS and len(long_text) <= MAX_SUMMARY_CHARS < 15_000
    assert parse.clean_line(" wire\x1b[0m \ud800\n desk ") == "wire[0m \ufffd desk"


def test_feed_entry_titles_are_cut_like_api_titles() -> None:
    (entry,) = parse_bytes(rss(f"<item><title>{'Headline ' * 300}</title><link>https://x.test/1</link></item>")).entries
    assert len(entry.title) <= parse.MAX_TITLE_CHARS and entry.title.endswith("…")


def test_text_with_many_unclosed_angle_brackets_is_read_in_linear_time() -> None:
    """``"x<y "`` repeated: html.parser scanned to the end from every ``<`` (20,000 characters 2 s,
    40,000 16 s; the 400,000 here about half an hour).  Not a timing: a child with 60 s of CPU, which
    the linear reading uses a hundredth of, and the quadratic one overruns many times."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_CPU, (60, 60))\n"
            "from clustering.parse import clean_article_text\n"
            "for unit in ('x<y ', '<a b=c ', '<!-- a> ', 'a<a\\n'):\n"
            "    title, text = clean_article_text('t', [unit * 100_000])\n"
            "    assert text.startswith(unit.strip()[:3]) and 9_000 < len(text) <= 10_000, text[:40]\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-500:]
