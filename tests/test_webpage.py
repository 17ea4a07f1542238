"""The HTML report (webpage.py): escaped, self-contained; and, under the ``browser`` marker, opened
in a real headless chromium driven over the DevTools protocol (``--remote-debugging-pipe``):
a screenshot, console errors and every request the page makes are counted."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from clustering import open_pipeline
from clustering.webpage import report_page

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
WORDS = {"quake": "Vellmar earthquake magnitude tremor rubble rescue collapsed buildings survivors aftershock coast",
         "rates": "Ostreich central bank interest rates inflation governor hike percentage bonds currency lending"}
INJECTED = ("<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"
            "<img src=\"http://127.0.0.1:9/tracker.png\"> Vellmar")
"""A headline a hostile feed could send (titles are stored as plain text, so this is its text)."""


def article(topic: str, source: str, seed: int, hours: float) -> dict[str, Any]:
    words = WORDS[topic].split()
    random.Random(seed).shuffle(words)
    return {"title": " ".join(words[:5]).capitalize(), "text": " ".join(words) + ".", "source": source,
            "url": f"https://{source}.test/{topic}/{seed}", "published": NOW - timedelta(hours=24 - hours)}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of two stories over two runs, a copy, and a hostile headline in every member of one."""
    folder = tmp_path_factory.mktemp("report")
    clock = {"now": NOW}
    with open_pipeline(folder / "news.db", {"settings": {"model": "hashing"}}, now=lambda: clock["now"]) as pipeline:
        items = [article("quake", s, 10 + i, hours=i) for i, s in enumerate(["ara", "bel", "cor", "dun"])]
        items += [article("rates", s, 20 + i, hours=i) for i, s in enumerate(["ara", "bel", "cor", "dun"])]
        items.append({**items[1], "source": "metro", "url": "javascript:alert(1)",
                      "published": items[1]["published"] + timedelta(minutes=20)})  # a reprint: a copy
        pipeline.add_articles(items)
        pipeline.process()
        clock["now"] += timedelta(hours=2)
        pipeline.add_articles([article("quake", s, 30 + i, hours=8 + i) for i, s in enumerate(["eka", "fin"])])
        pipeline.process()
        # what a feed's doubly escaped headline is stored as (API input would have its markup removed)
        with pipeline.store.transaction() as raw:
            raw.execute("UPDATE articles SET title = ? WHERE id = 1", (INJECTED,))
            raw.execute("UPDATE stories SET label = ? WHERE id = 's1'", (INJECTED,))
        path = folder / "report.html"
        path.write_text(report_page(pipeline), encoding="utf-8")
    return path


def test_the_page_is_escaped_and_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count("<script") == 1 and "<img" not in text and "onerror=" not in text.replace("onerror=&quot;", "")
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in text
    assert "javascript:" not in text.split("<body>", 1)[1].replace("javascript:alert(1)", "")  # never as a link
    assert 'href="javascript:' not in text
    assert "default-src 'none'" in text
    assert text.count('class="story"') == 2 and 'class="topic"' in text
    assert "republished by metro" in text and 'class="chart"' in text and 'id="timeline"' in text
    assert "grew +2" in text  # against the run before: the quake story gained two articles


def test_members_are_in_time_order(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    times = [chunk.split('"', 1)[0] for chunk in text.split('<time datetime="')[1:]]
    quake = times[:6] if len(times) > 6 else times
    assert quake == sorted(quake)


# --- in a real browser ---------------------------------------------------------------------------
def _above_9(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """A headless chromium driven over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-ended JSON)."""

    def __init__(self, binary: str, profile: Path) -> None:
        # the pipes' ends above fd 9 first, so that dup2 onto 3 and 4 never meets one of them there
        # (a dup2 of a descriptor onto itself would keep it close-on-exec)
        to_browser_read, self._to_browser = (_above_9(fd) for fd in os.pipe())
        self._from_browser, from_browser_write = (_above_9(fd) for fd in os.pipe())

        def arrange_fds() -> None:
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"],
            preexec_fn=arrange_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e.get("method") == method]
            if found:
                return found[0]
            self.events.append(self._read())
        raise TimeoutError(method)

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on this machine (.ci/run installs Debian's `chromium`)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    tools = DevTools(chromium_binary(), tmp_path / "profile")
    try:
        yield tools
    finally:
        tools.close()


def open_page(tools: DevTools, url: str) -> tuple[str, list[str], list[str]]:
    """Open ``url`` in a new tab; (session, console errors, requests other than the page itself)."""
    target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.send(f"{domain}.enable", session=session)
    tools.events.clear()
    tools.send("Page.navigate", {"url": url}, session=session)
    tools.wait_for("Page.loadEventFired")
    time.sleep(0.5)  # late requests and errors (an onerror handler would have run by now)
    tools.send("Runtime.evaluate", {"expression": "1"}, session=session)  # collect pending events
    errors = [json.dumps(e["params"])[:300] for e in tools.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    requests = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"
                and e["params"]["request"]["url"] != url and not e["params"]["request"]["url"].startswith("data:")]
    return session, errors, requests


def evaluate(tools: DevTools, session: str, expression: str) -> Any:
    return tools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session=session)["result"].get("value")


@pytest.mark.browser
def test_the_page_in_chromium(browser: DevTools, page: Path) -> None:
    session, errors, requests = open_page(browser, page.as_uri())
    assert errors == [] and requests == []
    assert evaluate(browser, session, "typeof window.pwned") == "undefined"  # injected markup is inert
    assert evaluate(browser, session, "document.querySelectorAll('.story').length") == 2
    # the filter box hides what does not match, and shows it all again when cleared
    filtered = ("(() => {const box = document.getElementById('filter'); box.value = 'ostreich';"
                " box.dispatchEvent(new Event('input'));"
                " return [...document.querySelectorAll('.story')].filter(s => !s.hidden).length})()")
    assert evaluate(browser, session, filtered) == 1
    cleared = ("(() => {const box = document.getElementById('filter'); box.value = '';"
               " box.dispatchEvent(new Event('input'));"
               " return [...document.querySelectorAll('.story')].filter(s => !s.hidden).length})()")
    assert evaluate(browser, session, cleared) == 2
    browser.send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 1600, "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    target = Path(os.environ.get("CLUSTERING_SCREENSHOT", page.with_suffix(".png")))
    target.write_bytes(base64.b64decode(shot))
    assert target.stat().st_size > 10_000


@pytest.mark.browser
def test_the_checks_can_fail(browser: DevTools, tmp_path: Path) -> None:
    """The counters are not blind: an unescaped image is a request, and under the report's
    policy an inline handler is a console error."""
    plain = tmp_path / "plain.html"
    plain.write_text('<!doctype html><img src="http://127.0.0.1:9/probe.png">', encoding="utf-8")
    _, _, requests = open_page(browser, plain.as_uri())
    assert requests == ["http://127.0.0.1:9/probe.png"]
    guarded = tmp_path / "guarded.html"
    guarded.write_text("<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                       "<script>window.pwned = 1</script>", encoding="utf-8")
    session, errors, _ = open_page(browser, guarded.as_uri())
    assert errors and evaluate(browser, session, "typeof window.pwned") == "undefined"
