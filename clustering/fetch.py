"""Fetch feeds over HTTP(S) or from local files, politely and robustly.

This module is the error boundary for HTTP and for reading feed files: every
exception from httpx or the operating system is caught here and becomes a
``FetchResult`` with ``status="error"`` and a human-readable ``error`` reason.
One feed's failure never affects the others, and ``fetch_feeds`` never raises
for a single feed (only for invalid arguments, as ``ConfigError``).

Politeness:

* conditional GET: ``If-None-Match`` / ``If-Modified-Since`` from the previous
  fetch's validators; a ``304`` becomes ``status="not_modified"``;
* a descriptive ``User-Agent``;
* ``Retry-After`` (429/503) and ``Cache-Control: max-age`` (success) are
  reported as ``retry_after_seconds`` so the scheduler can honour them;
* ``next_attempt_delay`` turns a feed's error count into exponential backoff.

Robustness: per-phase timeouts (connect/read/write/pool) plus a total deadline,
a size cap on the streamed (decoded) body, bounded redirects.

Local files (``file://`` URLs and plain paths) get validators too: ``etag`` is
derived from the file's modification time in nanoseconds and its size, and
``last_modified`` is the modification time as an HTTP date.  When the request
carries the same ``etag`` the file is not read and the result is
``not_modified``, exactly as for HTTP.

httpx is imported lazily, and only when there is an http(s) URL to fetch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_USER_AGENT",
    "MAX_REDIRECTS",
    "FetchRequest",
    "FetchResult",
    "fetch_feeds",
    "iter_fetch",
    "next_attempt_delay",
    "parse_cache_max_age",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 20.0
"""Limit for each phase of a request: connecting, waiting for data between two
reads, sending, and waiting for a pooled connection.  Feed servers answer in
well under a second; 20 s tolerates a slow one without letting one hung feed
hold a worker for long."""

TOTAL_TIMEOUT_FACTOR = 3.0
"""The whole exchange (redirects and body included) must end within this many
times ``timeout_seconds``.  The per-phase timeouts alone do not stop a server
that trickles one byte just before each read timeout; 3x leaves room for a
slow connect, a slow first byte and a slow body together."""

DEFAULT_MAX_BYTES = 10_000_000
"""Cap on a feed body, after content decoding (so it also stops gzip bombs).
Large real feeds are 1-3 MB; 10 MB leaves a wide margin while bounding memory
per worker."""

DEFAULT_MAX_CONCURRENCY = 8
"""Feeds fetched at the same time.  Mostly distinct hosts, so this bounds our
own sockets and threads rather than the load on any one server."""

MAX_REDIRECTS = 5
"""Redirects followed before giving up (applies to the client this module
creates; a caller-supplied client keeps its own setting).  Feed moves are
usually one or two hops; more is a loop or a misconfiguration."""

DEFAULT_USER_AGENT = "clustering/0.1 (+https://example.invalid/clustering; news feed clustering)"
"""Sent with every request so feed operators can tell who is polling them.
Replace the placeholder address with the project's homepage when it has one."""

BACKOFF_BASE_SECONDS = 300.0
"""Delay after the first consecutive failure; it doubles with each further
failure (5 min, 10, 20, ...) and never drops below the feed's poll interval."""

BACKOFF_MAX_SECONDS = 3 * 24 * 3600.0
"""Ceiling of the backoff (3 days): a feed that is down for weeks is still
retried a few times a week, and picked up again soon after it recovers.
Also the ceiling for a ``Retry-After`` or ``max-age`` a server asks for."""

MIN_TIMEOUT_SECONDS = 1.0
"""The least time a request started just before the run's deadline gets for each phase."""

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Statuses whose ``Retry-After`` header is honoured (RFC 9110 section 10.2.3)."""

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
"""``Accept`` header: feed types first, anything else as a fallback."""

@dataclass(frozen=True)
class FetchRequest:
    """One feed to fetch, with the validators stored after its last success."""

    feed_name: str
    url: str  # http(s)://..., file://..., or a plain local path (relative or absolute)
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one feed.

    ``status`` is ``"ok"`` (``body`` holds the bytes), ``"not_modified"`` (the
    validators sent are still current; they are returned, or the server's if
    it repeated them) or ``"error"`` (``error`` says why).  ``etag`` and
    ``last_modified`` are the validators to store for the next request.
    ``retry_after_seconds`` is the server's ``Retry-After`` on 429/503, or its
    ``Cache-Control: max-age`` on success, clamped to ``BACKOFF_MAX_SECONDS``.
    """

    feed_name: str
    url: str
    status: str  # "ok" | "not_modified" | "error"
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    error: str | None = None
    retry_after_seconds: float | None = None
    elapsed_seconds: float = 0.0


# --------------------------------------------------------------------------- pure helpers


def next_attempt_delay(
    *, consecutive_errors: int, poll_interval_seconds: float, retry_after_seconds: float | None = None
) -> float:
    """Seconds to wait before the next fetch of a feed.

    Success (``consecutive_errors == 0``): ``max(poll_interval, retry_after or 0)``.
    After *n* consecutive failures: ``min(BACKOFF_BASE_SECONDS * 2**(n-1),
    BACKOFF_MAX_SECONDS)``, never less than the poll interval and at least
    ``retry_after_seconds`` when given.  Pure.
    """
    if consecutive_errors < 0:
        raise ConfigError("must be >= 0", key="consecutive_errors")
    if poll_interval_seconds < 0:
        raise ConfigError("must be >= 0", key="poll_interval_seconds")
    floor = max(poll_interval_seconds, retry_after_seconds or 0.0)
    if consecutive_errors == 0:
        return float(floor)
    # Cap the exponent: 2**60 * base is far past the ceiling, and avoids huge ints.
    backoff = min(BACKOFF_BASE_SECONDS * 2.0 ** min(consecutive_errors - 1, 60), BACKOFF_MAX_SECONDS)
    return float(max(backoff, floor))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from ``now`` asked for by a ``Retry-After`` header value.

    Accepts delay-seconds (``"120"``) or an HTTP date; a date in the past gives
    0.  Returns None when absent or unparseable; clamps to ``BACKOFF_MAX_SECONDS``.
    ``now`` must be timezone-aware.  Pure.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # older Pythons return None instead of raising
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max((when - now).total_seconds(), 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, BACKOFF_MAX_SECONDS)


def parse_cache_max_age(value: str | None) -> float | None:
    """The ``max-age`` of a ``Cache-Control`` header value, in seconds, or None.

    ``no-cache``/``no-store`` and other directives are ignored; clamps to
    ``BACKOFF_MAX_SECONDS``.  Pure.
    """
    if not value:
        return None
    for directive in value.split(","):
        name, _, argument = directive.strip().partition("=")
        if name.strip().lower() != "max-age":
            continue
        try:
            seconds = int(argument.strip().strip('"'))
        except ValueError:
            return None
        return float(min(max(seconds, 0), BACKOFF_MAX_SECONDS))
    return None


# --------------------------------------------------------------------------- the shell


def fetch_feeds(requests: Sequence[FetchRequest], **options: Any) -> list[FetchResult]:
    """Fetch all feeds concurrently (``options`` as for :func:`iter_fetch`); results in request
    order, every body held at once (a run uses :func:`iter_fetch`, which hands them over one by
    one).  Never raises for a single feed's failure; ``ConfigError`` for invalid arguments."""
    return [result for _, result in iter_fetch(requests, **options)]


def iter_fetch(
    requests: Sequence[FetchRequest],
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    user_agent: str = DEFAULT_USER_AGENT,
    client: httpx.Client | None = None,
    base_dir: Path | None = None,
    deadline: float | None = None,
) -> Iterator[tuple[FetchRequest, FetchResult]]:
    """Fetch feeds concurrently, yielding ``(request, result)`` in request order.

    ``max_concurrency`` requests are in flight and at most as many finished ones wait for their
    turn, so at most ``2 * max_concurrency`` bodies are held while the caller parses and stores
    one: memory does not grow with the number of feeds, and the order (hence the article ids a
    run gives) does not depend on which server answers first.  ``deadline`` (a
    ``time.monotonic()`` value) ends the fetching: no request starts after it, one in flight
    gets no more than the time left for each phase and in total, and the requests not started
    are not yielded (the caller leaves them due).  ``base_dir`` resolves relative local paths
    (the directory of feeds.yaml; default: the current directory).  Uses a ThreadPoolExecutor
    and one shared ``httpx.Client`` (``client``, or one created here and closed afterwards;
    only when some URL is http(s)).
    """
    if not (timeout_seconds > 0 and math.isfinite(timeout_seconds)):
        raise ConfigError(f"must be a positive number of seconds, got {timeout_seconds!r}", key="timeout_seconds")
    if max_bytes < 1:
        raise ConfigError(f"must be >= 1, got {max_bytes!r}", key="max_bytes")
    if max_concurrency < 1:
        raise ConfigError(f"must be >= 1, got {max_concurrency!r}", key="max_concurrency")
    if not requests:
        return

    needs_http = any(_scheme(request.url) in ("http", "https") for request in requests)
    own_client = client is None and needs_http
    if own_client:
        client = _make_client(timeout_seconds=timeout_seconds, max_concurrency=max_concurrency, user_agent=user_agent)

    def fetch(request: FetchRequest) -> FetchResult | None:
        if deadline is not None and time.monotonic() >= deadline:
            return None  # queued before the deadline, its turn came after: not started
        return _fetch_one(request, client=client, timeout_seconds=timeout_seconds, max_bytes=max_bytes,
                          user_agent=user_agent, base_dir=base_dir, deadline=deadline)

    waiting = iter(requests)
    queued: deque[tuple[FetchRequest, Future[FetchResult | None]]] = deque()
    try:
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(requests)),
                                thread_name_prefix="clustering-fetch") as executor:
            try:
                while True:
                    while len(queued) < 2 * max_concurrency and (deadline is None or time.monotonic() < deadline):
                        request = next(waiting, None)
                        if request is None:
                            break
                        queued.append((request, executor.submit(fetch, request)))
                    if not queued:
                        return
                    request, future = queued.popleft()
                    result = future.result()
                    if result is not None:
                        yield request, result
            finally:  # the caller stopped early: what has not started never will
                for _, future in queued:
                    future.cancel()
    finally:
        if own_client and client is not None:
            client.close()


def _make_client(*, timeout_seconds: float, max_concurrency: int, user_agent: str) -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        headers={"User-Agent": user_agent},
    )


def _scheme(url: str) -> str:
    """The lower-case URL scheme; ``""`` for a plain path (also ``C:\\x`` on Windows)."""
    scheme = urlsplit(url.strip()).scheme.lower()
    if len(scheme) == 1 and os.name == "nt":  # a drive letter, not a scheme
        return ""
    return scheme


def _fetch_one(
    request: FetchRequest,
    *,
    client: httpx.Client | None,
    timeout_seconds: float,
    max_bytes: int,
    user_agent: str,
    base_dir: Path | None,
    deadline: float | None = None,
) -> FetchResult:
    """Fetch one feed; the catch-all that keeps one feed from failing the run.  ``deadline`` (the
    run's, monotonic) caps each phase's timeout and the exchange's total."""
    started = time.monotonic()
    if deadline is not None:
        timeout_seconds = max(min(timeout_seconds, deadline - started), MIN_TIMEOUT_SECONDS)
    try:
        url = request.url.strip()
        scheme = _scheme(url)
        if not url:
            result = _error(request, "empty URL", started)
        elif scheme in ("http", "https"):
            assert client is not None  # fetch_feeds creates one when any URL is http(s)
            result = _fetch_http(
                request, client=client, timeout_seconds=timeout_seconds, max_bytes=max_bytes,
                user_agent=user_agent, started=started, deadline=deadline,
            )
        elif scheme in ("file", ""):
            result = _fetch_file(request, max_bytes=max_bytes, base_dir=base_dir, started=started)
        else:
            result = _error(request, f"unsupported URL scheme {scheme!r} (use http, https, file or a path)", started)
    except Exception as exc:  # the boundary: nothing escapes for a single feed
        logger.warning("unexpected error fetching feed %r (%s)", request.feed_name, request.url, exc_info=True)
        result = _error(request, f"unexpected error: {type(exc).__name__}: {exc}", started)
    if result.status == "error":
        logger.info("feed %r (%s): %s", request.feed_name, request.url, result.error)
    else:
        logger.debug("feed %r (%s): %s in %.2f s", request.feed_name, request.url, result.status,
                     result.elapsed_seconds)
    return result


def _error(
    request: FetchRequest,
    reason: str,
    started: float,
    *,
    http_status: int | None = None,
    final_url: str | None = None,
    retry_after_seconds: float | None = None,
) -> FetchResult:
    return FetchResult(
        feed_name=request.feed_name,
        url=request.url,
        status="error",
        error=reason,
        http_status=http_status,
        final_url=final_url,
        retry_after_seconds=retry_after_seconds,
        elapsed_seconds=time.monotonic() - started,
    )


# --------------------------------------------------------------------------- HTTP


def _fetch_http(
    request: FetchRequest,
    *,
    client: httpx.Client,
    timeout_seconds: float,
    max_bytes: int,
    user_agent: str,
    started: float,
    deadline: float | None = None,
) -> FetchResult:
    import httpx

    headers = {"User-Agent": user_agent, "Accept": FEED_ACCEPT}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    total_seconds = timeout_seconds * TOTAL_TIMEOUT_FACTOR
    if deadline is not None and deadline - started < total_seconds:
        total_seconds = max(deadline - started, MIN_TIMEOUT_SECONDS)
    deadline = started + total_seconds
    response: httpx.Response | None = None
    try:
        with client.stream(
            "GET", request.url.strip(), headers=headers, timeout=httpx.Timeout(timeout_seconds), follow_redirects=True
        ) as response:
            return _read_response(request, response, max_bytes=max_bytes, deadline=deadline,
                                  total_seconds=total_seconds, started=started)
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        return _error(
            request,
            _describe_http_error(exc, timeout_seconds=timeout_seconds),
            started,
            http_status=response.status_code if response is not None else None,
            final_url=str(response.url) if response is not None else None,
        )


def _read_response(
    request: FetchRequest,
    response: httpx.Response,
    *,
    max_bytes: int,
    deadline: float,
    total_seconds: float,
    started: float,
) -> FetchResult:
    """Turn a response (headers received, body not yet read) into a result."""
    status = response.status_code
    final_url = str(response.url)
    if status == 304:
        return FetchResult(
            feed_name=request.feed_name,
            url=request.url,
            status="not_modified",
            etag=response.headers.get("ETag") or request.etag,
            last_modified=response.headers.get("Last-Modified") or request.last_modified,
            retry_after_seconds=parse_cache_max_age(response.headers.get("Cache-Control")),
            http_status=status,
            final_url=final_url,
            elapsed_seconds=time.monotonic() - started,
        )
    if not 200 <= status < 300:
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=datetime.now(timezone.utc))
        return _error(request, f"HTTP {status} {_reason_phrase(response)}".rstrip(), started,
                      http_status=status, final_url=final_url, retry_after_seconds=retry_after)

    too_large = f"response larger than {max_bytes} bytes"
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        return _error(request, too_large, started, http_status=status, final_url=final_url)
    chunks: list[bytes] = []
    size = 0
    # No chunk_size: httpx would buffer up to it, delaying the cap and deadline checks.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            return _error(request, too_large, started, http_status=status, final_url=final_url)
        chunks.append(chunk)
        if time.monotonic() > deadline:
            return _error(request, f"timed out after {total_seconds:g} s in total (body arrived too slowly)",
                          started, http_status=status, final_url=final_url)
    return FetchResult(
        feed_name=request.feed_name,
        url=request.url,
        status="ok",
        body=b"".join(chunks),
        content_type=response.headers.get("Content-Type"),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        retry_after_seconds=parse_cache_max_age(response.headers.get("Cache-Control")),
        http_status=status,
        final_url=final_url,
        elapsed_seconds=time.monotonic() - started,
    )


def _reason_phrase(response: httpx.Response) -> str:
    """The standard reason phrase for the status, else the server's (servers vary in case)."""
    from http import HTTPStatus

    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return response.reason_phrase


def _describe_http_error(exc: Exception, *, timeout_seconds: float) -> str:
    """A short human-readable reason for an httpx exception."""
    import socket
    import ssl

    import httpx

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "while connecting",
            httpx.ReadTimeout: "waiting for the server",
            httpx.WriteTimeout: "while sending the request",
            httpx.PoolTimeout: "waiting for a free connection",
        }.get(type(exc), "")
        return f"timed out after {timeout_seconds} s {phase}".rstrip()
    if isinstance(exc, httpx.TooManyRedirects):
        return f"too many redirects (more than {MAX_REDIRECTS})"
    if isinstance(exc, httpx.ConnectError):
        for cause in _causes(exc):
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, socket.gaierror):
                try:
                    return f"could not resolve host {exc.request.url.host!r}"
                except RuntimeError:  # httpx raises it when the request is not set
                    return "could not resolve host"
            if isinstance(cause, ssl.SSLError):
                return f"TLS error: {cause}"
        if "refused" in detail.lower():
            return "connection refused"
        return f"could not connect: {detail}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"unsupported URL: {detail}"
    if isinstance(exc, httpx.InvalidURL):
        return f"invalid URL: {detail}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {detail}"
    if isinstance(exc, httpx.DecodingError):
        return f"could not decode the response body: {detail}"
    if isinstance(exc, httpx.NetworkError):
        return f"network error: {detail}"
    return f"HTTP error: {type(exc).__name__}: {detail}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its chain of causes/contexts (httpx wraps httpcore wraps OSError)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


# --------------------------------------------------------------------------- local files


def _local_path(url: str, base_dir: Path | None) -> Path:
    """The file a ``file://`` URL or a plain path names; relative ones resolve against base_dir.

    Raises ValueError for a file URL naming another host.
    """
    if _scheme(url) == "file":
        from urllib.request import url2pathname

        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL names a remote host {parts.netloc!r}")
        path = Path(url2pathname(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return path


def _file_validators(stat_result: os.stat_result) -> tuple[str, str]:
    """(etag, last_modified) for a file: mtime in ns plus size, and mtime as an HTTP date."""
    from email.utils import formatdate

    etag = f'"{stat_result.st_mtime_ns:x}-{stat_result.st_size:x}"'
    return etag, formatdate(stat_result.st_mtime, usegmt=True)


def _fetch_file(request: FetchRequest, *, max_bytes: int, base_dir: Path | None, started: float) -> FetchResult:
    import mimetypes

    url = request.url.strip()
    try:
        path = _local_path(url, base_dir)
    except ValueError as exc:
        return _error(request, f"invalid file URL: {exc}", started)
    final_url = path.as_uri()
    try:
        with path.open("rb") as file:
            stat_result = os.fstat(file.fileno())
            etag, last_modified = _file_validators(stat_result)
            if request.etag is not None and request.etag == etag:
                return FetchResult(
                    feed_name=request.feed_name, url=request.url, status="not_modified", etag=etag,
                    last_modified=last_modified, final_url=final_url, elapsed_seconds=time.monotonic() - started,
                )
            if stat_result.st_size > max_bytes:
                return _error(request, f"file larger than {max_bytes} bytes: {path}", started, final_url=final_url)
            body = file.read(max_bytes + 1)  # +1: special files report size 0
    except FileNotFoundError:
        return _error(request, f"file not found: {path}", started, final_url=final_url)
    except IsADirectoryError:
        return _error(request, f"not a file (a directory): {path}", started, final_url=final_url)
    except PermissionError:
        return _error(request, f"permission denied: {path}", started, final_url=final_url)
    except OSError as exc:
        return _error(request, f"could not read {path}: {exc.strerror or exc}", started, final_url=final_url)
    if len(body) > max_bytes:
        return _error(request, f"file larger than {max_bytes} bytes: {path}", started, final_url=final_url)
    content_type, _ = mimetypes.guess_type(path.name)
    return FetchResult(
        feed_name=request.feed_name,
        url=request.url,
        status="ok",
        body=body,
        content_type=content_type,
        etag=etag,
        last_modified=last_modified,
        final_url=final_url,
        elapsed_seconds=time.monotonic() - started,
    )
