"""The HTML report: one self-contained page (``clustering report FILE``, ``stories --html``,
``settings.report`` after every run).

Topics -> stories; each story with its sources in time order, copies folded under their
original with the outlets that republished them, first/last seen, an inline SVG of its
articles per hour, "new"/"grew" markers against the run before; a timeline of the window's
stories; a filter box.

Safe to open whatever the feeds wrote: every value from a feed is HTML-escaped, nothing from
a feed goes into a script, a style or an event handler, and a Content-Security-Policy
allows no request at all (``default-src 'none'``), only this page's own style and the one
script whose hash it names.  Links to the articles are plain ``<a href>`` (``http(s)`` only).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .history import grown
from .report import story_counts
from .types import Article, Story, Topic

if TYPE_CHECKING:
    from .core import Pipeline

CHART_MAX_BARS = 72
"""Most bars in a story's articles-per-hour chart: three days of hours; a longer story's bars
count several hours each (the chart's title says how many)."""

TIMELINE_MAX_STORIES = 60
"""Stories drawn in the timeline: the largest of the page's (the page lists them all)."""

_FILTER_SCRIPT = (
    "(function(){var box=document.getElementById('filter');"
    "box.addEventListener('input',function(){var q=box.value.toLowerCase().trim();"
    "document.querySelectorAll('.story').forEach(function(s){"
    "s.hidden=q!==''&&s.textContent.toLowerCase().indexOf(q)<0;});"
    "document.querySelectorAll('.topic').forEach(function(t){"
    "t.hidden=!t.querySelector('.story:not([hidden])');});});})();"
)
"""The page's only script: hides the stories whose text does not hold the filter's words.
Static text: no value from a feed is ever written into it."""

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:64rem;margin:1.5rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{margin:1.6rem 0 .3rem;border-bottom:2px solid #ccd} h3{margin:.2rem 0}
.meta{color:#666;font-size:.85rem} .story{border-bottom:1px solid #ddd;padding:.7rem 0}
.kw{background:#eef;border-radius:3px;padding:0 .3rem;margin-right:.3rem;font-size:.8rem}
.badge{font-size:.7rem;border-radius:3px;padding:0 .35rem;margin-left:.4rem;vertical-align:middle;color:#fff}
.new{background:#2a7} .grew{background:#27a}
ol.sources{margin:.3rem 0;padding-left:1.2rem} li{margin:.15rem 0} .src{color:#555;font-weight:600}
details{margin-left:1rem;font-size:.85rem;color:#555} summary{cursor:pointer}
#filter{width:100%;font-size:1rem;padding:.4rem;margin:.6rem 0;box-sizing:border-box}
svg text{font-size:10px;fill:#444} .chart{display:block;margin:.2rem 0}
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_FILTER_SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"


@dataclass(frozen=True)
class StoryView:
    """A story as the page shows it: members in time order, each with its copies."""

    story: Story
    members: tuple[Article, ...]
    copies: Mapping[int, tuple[Article, ...]]
    marker: str = ""        # "new", "grew +N" or ""


def report_page(pipeline: Pipeline, *, stories: Sequence[Story] | None = None, title: str = "News report") -> str:
    """The page of ``stories`` (default: those active in the processing window)."""
    end = pipeline.window_end()
    start = end - timedelta(days=pipeline.config.window_days)
    if stories is None:
        stories = pipeline.stories(since=start)
    wanted = {s.id for s in stories}
    earliest = min([s.first_seen for s in stories], default=start)
    members: dict[str, list[Article]] = defaultdict(list)
    copies: dict[int, list[Article]] = defaultdict(list)
    for article in pipeline.articles(since=min(earliest, start)):
        if article.story_id not in wanted:
            continue
        if article.duplicate_of is None:
            members[article.story_id].append(article)
        else:
            copies[article.duplicate_of].append(article)
    last_runs = pipeline.runs(last=1)
    events = pipeline.changes() if last_runs else []
    created = {e.story_id for e in events if e.kind == "created"}
    growth = grown([e for e in events if e.story_id not in created])
    views = [StoryView(story=s, members=tuple(members.get(s.id, ())),
                       copies={a.id: tuple(copies.get(a.id, ())) for a in members.get(s.id, ())},
                       marker="new" if s.id in created else f"grew +{growth[s.id]}" if growth[s.id] > 0 else "")
             for s in stories]
    topics = {t.id: t for t in pipeline.topics()}
    against = f" · markers against run {last_runs[0].id}" if last_runs else ""
    return render_page(views, topics, title=title,
                       subtitle=f"window {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC{against}")


def render_page(views: Sequence[StoryView], topics: Mapping[str, Topic], *, title: str = "News report",
                subtitle: str = "") -> str:
    """The page (pure: what report_page gathered)."""
    esc = html.escape
    by_topic: dict[str | None, list[StoryView]] = defaultdict(list)
    for view in views:
        by_topic[view.story.topic_id if view.story.topic_id in topics else None].append(view)
    order = sorted(by_topic, key=lambda t: (t is None, -max(v.story.last_seen.timestamp() for v in by_topic[t])))
    sections = []
    for topic_id in order:
        topic = topics.get(topic_id) if topic_id is not None else None
        if topic is not None:
            keywords = "".join(f'<span class="kw">{esc(k)}</span>' for k in topic.keywords)
            heading = (f'<h2>{esc(topic.name or topic.id)}</h2><p class="meta">topic {esc(topic.id)} · '
                       f'{_plural(len(by_topic[topic_id]), "story", "stories")} · {keywords}</p>')
        else:
            heading = '<h2>Other stories</h2><p class="meta">stories in no topic</p>'
        body = "\n".join(_story_html(v) for v in by_topic[topic_id])
        anchor = f' id="{esc(topic_id, quote=True)}"' if topic_id else ""
        sections.append(f'<section class="topic"{anchor}>{heading}\n{body}</section>')
    article_count = sum(len(v.members) for v in views)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"meta\">{len(by_topic) - (None in by_topic)} topics, "
            f"{_plural(len(views), 'story', 'stories')}, {_plural(article_count, 'article', 'articles')} · "
            f"{esc(subtitle)}</p>"
            f'<input type="search" id="filter" placeholder="Filter stories by any word" aria-label="filter">'
            f'<section id="timeline"><h2>Timeline</h2>{_timeline(views)}</section>\n'
            + "\n".join(sections) + f"\n<script>{_FILTER_SCRIPT}</script></body></html>\n")


def _plural(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _link(article: Article) -> str:
    esc = html.escape
    if article.url and article.url.lower().startswith(("http://", "https://")):
        return f'<a href="{esc(article.url, quote=True)}" rel="noopener noreferrer">{esc(article.title)}</a>'
    return esc(article.title)


def _story_html(view: StoryView) -> str:
    esc = html.escape
    story = view.story
    badge = (f'<span class="badge {"new" if view.marker == "new" else "grew"}">{esc(view.marker)}</span>'
             if view.marker else "")
    keywords = "".join(f'<span class="kw">{esc(k)}</span>' for k in story.keywords)
    split = f" · split from {esc(story.split_from)}" if story.split_from else ""
    items = []
    for article in view.members:
        copies = view.copies.get(article.id, ())
        folded = ""
        if copies:
            outlets = ", ".join(sorted({esc(c.source) for c in copies}))
            rows = "".join(f'<li>{c.published:%m-%d %H:%M} <span class="src">{esc(c.source)}</span> — {_link(c)}'
                           f"</li>" for c in copies)
            folded = (f"<details><summary>{_plural(len(copies), 'copy', 'copies')}: republished by {outlets}"
                      f"</summary><ul>{rows}</ul></details>")
        items.append(f'<li><time datetime="{article.published:%Y-%m-%dT%H:%MZ}">{article.published:%m-%d %H:%M}'
                     f'</time> <span class="src">{esc(article.source)}</span> — {_link(article)}{folded}</li>')
    return (f'<article class="story" id="{esc(story.id, quote=True)}"><h3>{esc(story.label)}{badge}</h3>'
            f'<p class="meta">{esc(story_counts(story))} · first seen {story.first_seen:%Y-%m-%d %H:%M}, last seen '
            f"{story.last_seen:%Y-%m-%d %H:%M} UTC · story {esc(story.id)}{split}</p>"
            f"<p>{keywords}</p>{_hourly_chart(view)}<ol class=\"sources\">{''.join(items)}</ol></article>")


def _hourly_chart(view: StoryView) -> str:
    """Articles (and copies) per hour from the story's first to its last, as SVG bars."""
    times = [a.published for a in view.members] + [c.published for cs in view.copies.values() for c in cs]
    if not times:
        return ""
    start = min(times).replace(minute=0, second=0, microsecond=0)
    hours = int((max(times) - start).total_seconds() // 3600) + 1
    per_bar = max(1, math.ceil(hours / CHART_MAX_BARS))
    bars = [0] * math.ceil(hours / per_bar)
    for moment in times:
        bars[int((moment - start).total_seconds() // 3600) // per_bar] += 1
    width, height, step = 240, 28, 240 / len(bars)
    top = max(bars)
    rects = "".join(f'<rect x="{i * step:.1f}" y="{height - 2 - (height - 4) * n / top:.1f}" '
                    f'width="{max(step - 1, 1):.1f}" height="{(height - 4) * n / top:.1f}" fill="#58a"/>'
                    for i, n in enumerate(bars) if n)
    unit = "hour" if per_bar == 1 else f"{per_bar} hours"
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f"<title>articles per {unit} from {start:%m-%d %H:00} UTC (most: {top})</title>"
            f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" stroke="#bbb"/>{rects}</svg>')


def _timeline(views: Sequence[StoryView]) -> str:
    """Each of the largest stories as a bar from its first to its last article, oldest first."""
    esc = html.escape
    chosen = sorted(views, key=lambda v: (-v.story.size, v.story.id))[:TIMELINE_MAX_STORIES]
    if not chosen:
        return '<p class="meta">no stories in the window</p>'
    chosen.sort(key=lambda v: (v.story.first_seen, v.story.id))
    start = min(v.story.first_seen for v in chosen)
    end = max(v.story.last_seen for v in chosen)
    span = max((end - start).total_seconds(), 3600.0)
    label_width, plot_width, row = 330, 620, 14
    height = row * len(chosen) + 18

    def x(moment: datetime) -> float:
        return label_width + plot_width * (moment - start).total_seconds() / span

    rows = []
    for i, view in enumerate(chosen):
        y = 4 + i * row
        story = view.story
        left, right = x(story.first_seen), max(x(story.last_seen), x(story.first_seen) + 3)
        rows.append(f'<a href="#{esc(story.id, quote=True)}"><text x="0" y="{y + 10}">{esc(_short(story.label, 55))}'
                    f'</text><rect x="{left:.1f}" y="{y + 2}" width="{right - left:.1f}" height="9" rx="2" '
                    f'fill="{"#2a7" if view.marker == "new" else "#58a"}"><title>{esc(story.id)}: {esc(story.label)}'
                    f"</title></rect></a>")
    axis_y = height - 4
    return (f'<svg width="{label_width + plot_width + 10}" height="{height}" role="img">'
            f'<text x="{label_width}" y="{axis_y}">{start:%m-%d %H:%M}</text>'
            f'<text x="{label_width + plot_width}" y="{axis_y}" text-anchor="end">{end:%m-%d %H:%M} UTC</text>'
            + "".join(rows) + "</svg>")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

