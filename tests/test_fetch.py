"""Tests for clustering.fetch against a real HTTP server on localhost (pytest-httpserver)."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from clustering.errors import ConfigError
from clustering.fetch import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    DEFAULT_USER_AGENT,
    MAX_REDIRECTS,
    FetchRequest,
    FetchResult,
    fetch_feeds,
    next_attempt_delay,
    parse_cache_max_age,
    parse_retry_after,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
ETAG = '"v1-abc"'
LAST_MODIFIED = "Wed, 01 Jan 2025 10:00:00 GMT"


def fetch_one(url: str, **kwargs: object) -> FetchResult:
    (result,) = fetch_feeds([FetchRequest("feed", url)], **kwargs)  # type: ignore[arg-type]
    return result


def closed_port() -> int:
    """A port on 127.0.0.1 with nobody listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- conditional GET


def test_200_then_304_sends_validators(httpserver: HTTPServer) -> None:
    seen: list[dict[str, str | None]] = []

    def handler(request: Request) -> Response:
        seen.append({name: request.headers.get(name)
                     for name in ("If-None-Match", "If-Modified-Since", "User-Agent", "Accept")})
        if request.headers.get("If-None-Match") == ETAG:
            return Response(status=304, headers={"ETag": ETAG})
        return Response(FEED, status=200, content_type="application/rss+xml",
                        headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})

    httpserver.expect_request("/feed.xml").respond_with_handler(handler)
    url = httpserver.url_for("/feed.xml")

    first = fetch_one(url)
    assert first.status == "ok"
    assert first.body == FEED
    assert first.http_status == 200
    assert first.etag == ETAG
    assert first.last_modified == LAST_MODIFIED
    assert first.content_type == "application/rss+xml"
    assert first.final_url == url
    assert first.error is None
    assert first.elapsed_seconds > 0

    (second,) = fetch_feeds([FetchRequest("feed", url, etag=first.etag, last_modified=first.last_modified)])
    assert second.status == "not_modified"
    assert second.http_status == 304
    assert second.body is None
    assert second.etag == ETAG
    assert second.last_modified == LAST_MODIFIED  # not repeated by the server: the sent one is kept

    assert len(seen) == 2
    assert seen[0]["If-None-Match"] is None and seen[0]["If-Modified-Since"] is None
    assert seen[1]["If-None-Match"] == ETAG
    assert seen[1]["If-Modified-Since"] == LAST_MODIFIED
    assert seen[0]["User-Agent"] == DEFAULT_USER_AGENT
    assert "application/rss+xml" in (seen[0]["Accept"] or "")


def test_304_on_last_modified_only_keeps_sent_validators(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed", headers={"If-Modified-Since": LAST_MODIFIED}).respond_with_data(
        "", status=304)
    (result,) = fetch_feeds([FetchRequest("f", httpserver.url_for("/feed"), etag=None,
                                          last_modified=LAST_MODIFIED)])
    assert result.status == "not_modified"
    assert result.etag is None
    assert result.last_modified == LAST_MODIFIED


def test_custom_user_agent_and_max_age(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed", headers={"User-Agent": "test-agent/1"}).respond_with_data(
        FEED, headers={"Cache-Control": "public, max-age=900"})
    result = fetch_one(httpserver.url_for("/feed"), user_agent="test-agent/1")
    assert result.status == "ok", result.error
    assert result.retry_after_seconds == 900.0


# --------------------------------------------------------------------------- HTTP errors


def test_500_is_an_error_with_status_and_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data("boom", status=500)
    result = fetch_one(httpserver.url_for("/feed"))
    assert result.status == "error"
    assert result.error == "HTTP 500 Internal Server Error"
    assert result.http_status == 500
    assert result.body is None
    assert result.retry_after_seconds is None


def test_404_is_an_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_data("", status=404)
    result = fetch_one(httpserver.url_for("/gone"))
    assert (result.status, result.http_status, result.error) == ("error", 404, "HTTP 404 Not Found")


def test_429_with_retry_after_seconds(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed").respond_with_data("slow down", status=429, headers={"Retry-After": "120"})
    result = fetch_one(httpserver.url_for("/feed"))
    assert result.status == "error"
    assert result.error == "HTTP 429 Too Many Requests"
    assert result.http_status == 429
    assert result.retry_after_seconds == 120.0


def test_503_with_retry_after_http_date(httpserver: HTTPServer) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    httpserver.expect_request("/feed").respond_with_data(
        "", status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    result = fetch_one(httpserver.url_for("/feed"))
    assert result.error == "HTTP 503 Service Unavailable"
    assert result.retry_after_seconds is not None
    assert 3500 < result.retry_after_seconds <= 3600


def test_timeout_waiting_for_response(httpserver: HTTPServer) -> None:
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(5)  # far longer than the client's timeout; released at test end
        return Response(FEED)

    httpserver.expect_request("/slow").respond_with_handler(slow)
    try:
        started = time.monotonic()
        result = fetch_one(httpserver.url_for("/slow"), timeout_seconds=0.3)
        took = time.monotonic() - started
    finally:
        release.set()
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("timed out after 0.3 s"), result.error
    assert took < 2.0


def test_body_trickling_past_total_deadline(httpserver: HTTPServer) -> None:
    def trickle(request: Request) -> Response:
        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(30):
                yield b"x" * 10
                time.sleep(0.1)  # each read is well within the 0.3 s read timeout

        return Response(chunks(), content_type="application/xml")

    httpserver.expect_request("/trickle").respond_with_handler(trickle)
    started = time.monotonic()
    result = fetch_one(httpserver.url_for("/trickle"), timeout_seconds=0.3)
    assert result.status == "error"
    assert result.error is not None and "timed out" in result.error and "in total" in result.error
    assert time.monotonic() - started < 2.5  # the full body would take 3 s


# --------------------------------------------------------------------------- size cap


def test_oversized_body_with_content_length(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000)
    result = fetch_one(httpserver.url_for("/big"), max_bytes=1000)
    assert result.status == "error"
    assert result.error == "response larger than 1000 bytes"
    assert result.http_status == 200
    assert result.body is None


def test_oversized_streamed_body_without_content_length(httpserver: HTTPServer) -> None:
    sent_headers: list[dict[str, str]] = []

    def streamed(request: Request) -> Response:
        response = Response((b"y" * 1000 for _ in range(100)), content_type="application/xml")
        sent_headers.append(dict(response.headers))
        return response

    httpserver.expect_request("/stream").respond_with_handler(streamed)
    result = fetch_one(httpserver.url_for("/stream"), max_bytes=5000)
    assert "Content-Length" not in sent_headers[0]
    assert result.status == "error"
    assert result.error == "response larger than 5000 bytes"


def test_gzip_bomb_is_capped_after_decoding(httpserver: HTTPServer) -> None:
    compressed = gzip.compress(b"z" * 200_000)
    assert len(compressed) < 5000
    httpserver.expect_request("/bomb").respond_with_data(compressed, headers={"Content-Encoding": "gzip"})
    result = fetch_one(httpserver.url_for("/bomb"), max_bytes=5000)
    assert result.error == "response larger than 5000 bytes"


def test_body_exactly_at_cap_is_ok(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/exact").respond_with_data(b"x" * 1000)
    result = fetch_one(httpserver.url_for("/exact"), max_bytes=1000)
    assert result.status == "ok"
    assert result.body == b"x" * 1000


# --------------------------------------------------------------------------- redirects, connection


def test_redirects_are_followed_and_final_url_recorded(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/middle"})
    httpserver.expect_request("/middle").respond_with_data("", status=302, headers={"Location": "/new"})
    httpserver.expect_request("/new").respond_with_data(FEED, headers={"ETag": ETAG})
    result = fetch_one(httpserver.url_for("/old"))
    assert result.status == "ok"
    assert result.body == FEED
    assert result.url == httpserver.url_for("/old")
    assert result.final_url == httpserver.url_for("/new")
    assert result.etag == ETAG


def test_redirect_loop_is_an_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": "/a"})
    result = fetch_one(httpserver.url_for("/a"))
    assert result.status == "error"
    assert result.error == f"too many redirects (more than {MAX_REDIRECTS})"
    assert len(httpserver.log) == MAX_REDIRECTS + 1


def test_redirect_to_unsupported_scheme_is_an_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ftp").respond_with_data("", status=302, headers={"Location": "ftp://127.0.0.1/x"})
    result = fetch_one(httpserver.url_for("/ftp"))
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("unsupported URL")


def test_connection_refused() -> None:
    result = fetch_one(f"http://127.0.0.1:{closed_port()}/feed.xml", timeout_seconds=2)
    assert result.status == "error"
    assert result.error == "connection refused"
    assert result.http_status is None


def test_server_closing_connection_is_an_error() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept_and_hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()

    thread = threading.Thread(target=accept_and_hang_up, daemon=True)
    thread.start()
    try:
        result = fetch_one(f"http://127.0.0.1:{port}/", timeout_seconds=2)
    finally:
        thread.join(5)
        listener.close()
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("protocol error"), result.error


def test_unsupported_scheme_and_empty_url() -> None:
    results = fetch_feeds([FetchRequest("ftp", "ftp://127.0.0.1/feed"), FetchRequest("empty", "  ")])
    assert [r.status for r in results] == ["error", "error"]
    assert results[0].error is not None and "unsupported URL scheme 'ftp'" in results[0].error
    assert results[1].error == "empty URL"


def test_caller_supplied_client_is_used_and_left_open(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed", headers={"X-Test": "1"}).respond_with_data(FEED)
    with httpx.Client(headers={"X-Test": "1"}) as client:
        result = fetch_one(httpserver.url_for("/feed"), client=client)
        assert result.status == "ok", result.error
        assert not client.is_closed


# --------------------------------------------------------------------------- local files


def test_file_url_and_validators(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    result = fetch_one(path.as_uri())
    assert result.status == "ok"
    assert result.body == FEED
    assert result.final_url == path.as_uri()
    assert result.content_type == "application/xml"
    assert result.etag and result.last_modified and result.last_modified.endswith("GMT")

    (again,) = fetch_feeds([FetchRequest("feed", path.as_uri(), etag=result.etag)])
    assert again.status == "not_modified"
    assert again.etag == result.etag

    path.write_bytes(FEED + b"<!-- changed -->")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    (changed,) = fetch_feeds([FetchRequest("feed", path.as_uri(), etag=result.etag)])
    assert changed.status == "ok"
    assert changed.body is not None and changed.body.endswith(b"<!-- changed -->")
    assert changed.etag != result.etag


def test_relative_and_absolute_plain_paths(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "local.xml").write_bytes(FEED)
    relative, absolute = fetch_feeds(
        [FetchRequest("rel", "feeds/local.xml"), FetchRequest("abs", str(tmp_path / "feeds" / "local.xml"))],
        base_dir=tmp_path,
    )
    assert (relative.status, relative.body) == ("ok", FEED)
    assert relative.final_url == (tmp_path / "feeds" / "local.xml").as_uri()
    assert (absolute.status, absolute.body) == ("ok", FEED)


def test_missing_file_directory_and_remote_file_host(tmp_path: Path) -> None:
    missing, directory, remote = fetch_feeds(
        [FetchRequest("missing", "nope/feed.xml"), FetchRequest("dir", str(tmp_path)),
         FetchRequest("remote", "file://example.com/feed.xml")],
        base_dir=tmp_path,
    )
    assert missing.status == "error"
    assert missing.error == f"file not found: {tmp_path / 'nope' / 'feed.xml'}"
    assert directory.status == "error"
    assert directory.error is not None and directory.error.startswith("not a file")
    assert remote.status == "error"
    assert remote.error is not None and "remote host" in remote.error


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 2000)
    result = fetch_one(str(path), max_bytes=1000)
    assert result.status == "error"
    assert result.error == f"file larger than 1000 bytes: {path}"


def test_local_files_need_no_httpx() -> None:
    code = (
        "import sys, pathlib; import clustering.fetch as f\n"
        "assert 'httpx' not in sys.modules, 'import clustering.fetch imported httpx'\n"
        "r = f.fetch_feeds([f.FetchRequest('x', 'missing.xml')], base_dir=pathlib.Path('/nonexistent'))\n"
        "assert r[0].status == 'error', r\n"
        "assert 'httpx' not in sys.modules, 'fetching a local file imported httpx'\n"
    )
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


# --------------------------------------------------------------------------- many feeds


def test_many_feeds_one_failing_order_preserved(httpserver: HTTPServer, tmp_path: Path) -> None:
    (tmp_path / "local.xml").write_bytes(b"local")
    for index in range(4):
        httpserver.expect_request(f"/feed{index}").respond_with_data(f"feed {index}".encode())
    httpserver.expect_request("/broken").respond_with_data("", status=500)
    requests = [
        FetchRequest("f0", httpserver.url_for("/feed0")),
        FetchRequest("broken", httpserver.url_for("/broken")),
        FetchRequest("f1", httpserver.url_for("/feed1")),
        FetchRequest("local", "local.xml"),
        FetchRequest("refused", f"http://127.0.0.1:{closed_port()}/"),
        FetchRequest("f2", httpserver.url_for("/feed2")),
        FetchRequest("f3", httpserver.url_for("/feed3")),
    ]
    results = fetch_feeds(requests, max_concurrency=3, base_dir=tmp_path, timeout_seconds=5)
    assert [r.feed_name for r in results] == [r.feed_name for r in requests]
    assert [r.status for r in results] == ["ok", "error", "ok", "ok", "error", "ok", "ok"]
    assert [r.body for r in results] == [b"feed 0", None, b"feed 1", b"local", None, b"feed 2", b"feed 3"]
    assert results[1].error == "HTTP 500 Internal Server Error"
    assert results[4].error == "connection refused"


def test_feeds_are_fetched_concurrently() -> None:
    """The server counts requests in flight at once (no wall-clock assertion)."""
    import threading

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    lock = threading.Lock()
    in_flight = {"now": 0, "most": 0}
    try:
        def slow(request: Request) -> Response:
            with lock:
                in_flight["now"] += 1
                in_flight["most"] = max(in_flight["most"], in_flight["now"])
            time.sleep(0.4)
            with lock:
                in_flight["now"] -= 1
            return Response(request.path.encode())

        server.expect_request("/slow", query_string=None).respond_with_handler(slow)
        requests = [FetchRequest(f"f{i}", server.url_for(f"/slow?i={i}")) for i in range(4)]
        results = fetch_feeds(requests, max_concurrency=4)
    finally:
        server.clear()
        server.stop()
    assert [r.status for r in results] == ["ok"] * 4
    assert in_flight["most"] >= 2  # fetched one at a time, the server would never see two


def test_empty_request_list() -> None:
    assert fetch_feeds([]) == []


@pytest.mark.parametrize(
    ("argument", "value"),
    [("timeout_seconds", 0), ("timeout_seconds", float("inf")), ("max_bytes", 0), ("max_concurrency", 0)],
)
def test_invalid_arguments_raise_config_error(argument: str, value: float) -> None:
    with pytest.raises(ConfigError, match=argument):
        fetch_feeds([FetchRequest("f", "x.xml")], **{argument: value})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("errors", "poll", "retry_after", "expected"),
    [
        (0, 1800.0, None, 1800.0),  # success: the poll interval
        (0, 1800.0, 7200.0, 7200.0),  # success: the server asked for longer
        (0, 1800.0, 60.0, 1800.0),  # success: never more often than the poll interval
        (1, 60.0, None, BACKOFF_BASE_SECONDS),
        (2, 60.0, None, BACKOFF_BASE_SECONDS * 2),
        (3, 60.0, None, BACKOFF_BASE_SECONDS * 4),
        (1, 3600.0, None, 3600.0),  # backoff below the poll interval: the poll interval
        (5, 3600.0, None, max(3600.0, BACKOFF_BASE_SECONDS * 16)),
        (1, 60.0, 10_000.0, 10_000.0),  # Retry-After longer than the backoff wins
        (40, 60.0, None, BACKOFF_MAX_SECONDS),  # capped
        (10_000, 60.0, None, BACKOFF_MAX_SECONDS),  # no overflow
        (40, 4 * 24 * 3600.0, None, 4 * 24 * 3600.0),  # poll interval above the cap still wins
    ],
)
def test_next_attempt_delay(errors: int, poll: float, retry_after: float | None, expected: float) -> None:
    assert next_attempt_delay(
        consecutive_errors=errors, poll_interval_seconds=poll, retry_after_seconds=retry_after
    ) == pytest.approx(expected)


def test_next_attempt_delay_grows_monotonically() -> None:
    delays = [next_attempt_delay(consecutive_errors=n, poll_interval_seconds=60.0) for n in range(1, 20)]
    assert delays == sorted(delays)
    assert delays[0] == BACKOFF_BASE_SECONDS and delays[-1] == BACKOFF_MAX_SECONDS


def test_next_attempt_delay_rejects_negative_errors() -> None:
    with pytest.raises(ConfigError):
        next_attempt_delay(consecutive_errors=-1, poll_interval_seconds=60.0)


NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 Jan 2025 12:10:00 GMT", 600.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # in the past
        ("99999999999", BACKOFF_MAX_SECONDS),  # clamped
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=300", 300.0),
        ("public, MAX-AGE=60, must-revalidate", 60.0),
        ('max-age="30"', 30.0),
        ("no-cache", None),
        ("max-age=abc", None),
        (None, None),
    ],
)
def test_parse_cache_max_age(value: str | None, expected: float | None) -> None:
    assert parse_cache_max_age(value) == expected


def test_iter_fetch_holds_at_most_max_concurrency_bodies_whatever_the_number_of_feeds(httpserver: HTTPServer) -> None:
    """Every body was held until all feeds were fetched (300 feeds of 9.5 MB: 2.8 GB): now the
    caller gets each one, in request order, while at most ``2 * max_concurrency`` others are fetched
    or waiting for their turn."""
    from clustering.fetch import iter_fetch

    served = []

    def handler(request: Request) -> Response:
        served.append(request.path)
        return Response(b"<rss/>" * 100, content_type="application/rss+xml")

    httpserver.expect_request("/many").respond_with_handler(handler)
    requests = [FetchRequest(f"feed{i}", httpserver.url_for("/many")) for i in range(40)]
    consumed = 0
    for request, result in iter_fetch(requests, max_concurrency=3):
        assert result.status == "ok" and request.feed_name == result.feed_name == f"feed{consumed}"
        consumed += 1
        time.sleep(0.01)  # the caller parses and stores this one meanwhile
        assert len(served) <= consumed + 2 * 3  # fetched, not yet handed over
    assert consumed == len(served) == 40


def test_iter_fetch_starts_nothing_after_its_deadline(httpserver: HTTPServer) -> None:
    from clustering.fetch import iter_fetch

    httpserver.expect_request("/feed").respond_with_data(b"<rss/>")
    requests = [FetchRequest(f"feed{i}", httpserver.url_for("/feed")) for i in range(5)]
    assert list(iter_fetch(requests, deadline=time.monotonic() - 1)) == []
    assert len(list(iter_fetch(requests, deadline=time.monotonic() + 60))) == 5
