"""Scale benchmark: what a run costs as the window grows, and whether stored history costs anything.

    python bench/scale.py [--sizes 2000,5000] [--history 1000000] [--new 500] [--out docs/speed.md]
    python bench/scale.py --dedup 10000,20000      (dedup alone: batched search vs one per article)
    python bench/scale.py --recall 20000,100000    (a first run's searches: exact, IVF, window pairs)

Through the public API (``clustering.open_pipeline`` with ``model: hashing``, the built-in
HashingEmbedder, so the figures are the pipeline's own and not the model's), on synthetic news
with story structure (below).  For each window size N:

1. the first run (backfill): N articles published over ``window_days`` (3), all new;
2. a run adding ``--new`` (500) articles at the window's end (most continue stories, some are new).

Each is run ``--repeat`` (3) times on copies of the same database: the median time, each stage's
median, the largest peak RSS are reported.

With ``--history H``, each size is measured again on a database that also holds H processed
articles published before the window (with embeddings, stories and duplicates): a run must not
read them.  That database is built once through the store API (``Store.add_articles`` and friends
in one transaction) under ``--work`` and copied for each measurement.

Every measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own.
Each reports ``process()`` seconds split into store (every call into the Store, commits
included), dedup (``dedup.find_duplicates``, and ``graph.window_pairs`` where a large first run
searches its window once for dedup and the graph), stories (the window graph and terms, then
``stories.assign_stories``) and the rest
(embedding, labels, topics).  The growth exponent is the log-log slope between sizes.

With and without history, the runs of one size take turns (one of each, then the next round), so
that the machine's drift weighs on both alike.  The figures depend on the machine; ratios
measured in one run are the point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOW_END = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
"""The newest article of the window (before any real clock: the window ends at the newest article)."""
WINDOW_DAYS = 3.0
SOURCES = [f"feed{k:02d}" for k in range(40)]
SECTION = "scale"

# --- synthetic news ---------------------------------------------------------------------------------
SYLLABLES = ["ka", "lor", "ven", "mi", "sto", "ra", "bel", "dun", "or", "is", "tha", "quin", "mar", "el", "zo", "pri",
             "an", "te", "gor", "u", "vas", "ne", "li", "bro", "cas", "fen", "hal", "jo", "mu", "rek", "sil", "tor"]
GENERIC = ["the", "a", "of", "to", "in", "and", "on", "for", "with", "at", "by", "from", "that", "this", "after",
           "over", "new", "said", "says", "officials", "report", "government", "people", "week", "year", "day",
           "local", "national", "more", "than", "about", "its", "their", "his", "her", "they", "were", "was", "has",
           "have", "had", "will", "would", "could", "also", "but", "not", "two", "three", "first", "last", "since",
           "during", "while", "before", "under", "between", "against", "amid", "into", "out", "up", "down", "city",
           "country", "region", "area", "state", "public", "group", "members", "according", "told", "statement",
           "monday", "tuesday", "wednesday", "thursday", "friday", "weekend", "morning", "night", "early", "late",
           "plans", "move", "decision", "expected", "announced", "confirmed", "continued", "began", "called",
           "warned", "sources", "agency", "president", "minister", "leader", "police", "court", "company", "market",
           "workers", "residents", "team", "season", "officials'", "latest", "update", "further", "some", "many",
           "several", "most", "other", "such", "only", "still", "even", "just", "well", "back", "time", "part",
           "number", "percent", "million", "billion", "support", "concern", "issue", "talks", "plan", "service",
           "system", "power", "water", "health", "school", "police", "board"]
EVENT_KINDS = [
    ["earthquake", "magnitude", "tremor", "rescue", "collapsed", "aftershock"],
    ["election", "vote", "ballot", "candidate", "campaign", "polls"],
    ["strike", "union", "wages", "walkout", "negotiations", "pay"],
    ["flood", "rain", "river", "evacuated", "levee", "storm"],
    ["trial", "jury", "verdict", "judge", "prosecutors", "defence"],
    ["merger", "shares", "acquisition", "deal", "investors", "bid"],
    ["fire", "blaze", "firefighters", "smoke", "wildfire", "acres"],
    ["match", "goal", "final", "striker", "coach", "championship"],
    ["protest", "demonstrators", "march", "rally", "crowd", "square"],
    ["outbreak", "virus", "cases", "hospital", "vaccine", "infections"],
    ["crash", "collision", "passengers", "injured", "road", "train"],
    ["budget", "tax", "spending", "deficit", "parliament", "bill"],
]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables))


@dataclass(frozen=True)
class SyntheticStory:
    """One invented event: its own names and numbers, its own words, and an event kind it shares
    with other stories (two earthquakes: the names tell them apart)."""

    names: tuple[str, ...]
    words: tuple[str, ...]
    kind: tuple[str, ...]

    @classmethod
    def make(cls, seed: int, number: int) -> SyntheticStory:
        rng = random.Random(seed * 1_000_003 + number)
        people = [f"{_word(rng, 2).capitalize()} {_word(rng, 3).capitalize()}" for _ in range(2)]
        place = _word(rng, 3).capitalize() + rng.choice(["", "ville", "burg", " Bay", " County"])
        organisation = f"{_word(rng, 2).capitalize()} {rng.choice(['Group', 'Council', 'Bank', 'United'])}"
        numbers = [str(rng.randint(2, 999)), f"{rng.randint(1, 99)}.{rng.randint(1, 9)} million"]
        words = tuple(_word(rng, rng.choice((2, 3))) for _ in range(12))
        return cls(names=(*people, place, organisation, *numbers), words=words,
                   kind=tuple(EVENT_KINDS[number % len(EVENT_KINDS)]))

    def article(self, rng: random.Random) -> tuple[str, str]:
        """(title, summary): a title of 6–12 words and a summary of 30–80, about a third of
        them the story's names and words, the rest generic."""
        def token() -> str:
            roll = rng.random()
            if roll < 0.12:
                return rng.choice(self.names)
            if roll < 0.30:
                return rng.choice(self.words)
            if roll < 0.38:
                return rng.choice(self.kind)
            return rng.choice(GENERIC)

        title = [rng.choice(self.names), rng.choice(self.kind), *(token() for _ in range(rng.randint(4, 10)))]
        rng.shuffle(title)
        words = [token() for _ in range(rng.randint(30, 80))]
        sentences = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
        summary = ". ".join(s[0].upper() + s[1:] for s in sentences) + "."
        return " ".join(title)[0].upper() + " ".join(title)[1:], summary


class SyntheticNews:
    """Articles with story structure: story sizes heavy-tailed (most stories one article, a few
    hundreds), each story's articles spread over hours around its start, 3 % exact copies (another
    outlet, another URL) and 3 % near copies (new headline, a few words changed)."""

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.stories = 0

    def story(self, number: int) -> SyntheticStory:
        return SyntheticStory.make(self.seed, number)

    def articles(self, count: int, start: datetime, end: datetime, *, key: str,
                 continuing: range | None = None, continuing_share: float = 0.0) -> list[dict[str, Any]]:
        """``count`` articles published between ``start`` and ``end``; with ``continuing``, that
        share of them belongs to those (earlier) stories."""
        rng = self.rng
        span = (end - start).total_seconds()
        made: list[dict[str, Any]] = []
        while len(made) < count:
            if continuing and rng.random() < continuing_share:
                number, size = rng.choice(continuing), 1
            else:
                number, size = self.stories, min(int(rng.paretovariate(1.3)), 300, count - len(made))
                self.stories += 1
            story = self.story(number)
            centre = rng.uniform(0, span)
            spread = 3600 * (2 + 4 * math.log(size + 1))
            for _ in range(size):
                at = start + timedelta(seconds=min(max(centre + abs(rng.gauss(0, spread)), 0), span))
                title, summary = story.article(rng)
                original = len(made)
                made.append(self._article(key, original, title, summary, at, number))
                roll = rng.random()
                if roll < 0.06 and len(made) < count:
                    later = min(at + timedelta(minutes=rng.randint(5, 600)), end)
                    if roll < 0.03:  # a wire copy: same text elsewhere
                        made.append(self._article(key, len(made), title, summary, later, number, original))
                    else:  # a near copy: new headline, a few words changed
                        edited = " ".join(rng.choice(GENERIC) if rng.random() < 0.05 else w for w in summary.split())
                        made.append(self._article(key, len(made), story.article(rng)[0], edited, later, number,
                                                  original))
        return made[:count]

    def _article(self, key: str, index: int, title: str, summary: str, at: datetime, story: int,
                 copy_of: int | None = None) -> dict[str, Any]:
        """An article as ``Pipeline.add_articles`` takes it, plus its ``story`` number and the
        index of the article it copies (``copy_of``), which the benchmark knows and the pipeline not."""
        source = self.rng.choice(SOURCES)
        return {"title": title, "text": summary, "source": source, "published": at,
                "url": f"https://{source}.example/{key}/{index}", "key": f"{key}-{index}",
                "story": story, "copy_of": copy_of}


def window_articles(size: int, seed: int) -> tuple[SyntheticNews, list[dict[str, Any]]]:
    news = SyntheticNews(seed)
    start = WINDOW_END - timedelta(days=WINDOW_DAYS)
    return news, news.articles(size, start, WINDOW_END, key="w")


def new_articles(news: SyntheticNews, count: int) -> list[dict[str, Any]]:
    """The next run's articles: the 30 minutes after the window's end; 70 % continue stories of the window."""
    return news.articles(count, WINDOW_END, WINDOW_END + timedelta(minutes=30), key="n",
                         continuing=range(news.stories), continuing_share=0.7)


# --- child processes --------------------------------------------------------------------------------
def bench_config(database: Path) -> Any:
    from clustering.config import parse_config

    return parse_config({"settings": {"database": str(database), "model": "hashing",
                                      "window_days": WINDOW_DAYS}})


def child_add(database: Path, size: int, seed: int, new: int) -> dict[str, Any]:
    """Store the window's articles (``new`` == 0) or the next run's ``new`` articles."""
    import clustering

    news, window = window_articles(size, seed)
    articles = window if new == 0 else new_articles(news, new)
    with clustering.open_pipeline(database, bench_config(database)) as pipeline:
        added = pipeline.add_articles([{k: v for k, v in a.items() if k not in ("story", "copy_of")}
                                       for a in articles])
    return {"added": len(added)}


@contextlib.contextmanager
def stage_timer(seconds: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


def instrument_store(store: Any, seconds: dict[str, float], methods: dict[str, float]) -> None:
    """Time every call into the store, in total (``seconds["store"]``) and per method (outermost
    calls only; a transaction's BEGIN and COMMIT, not the work done inside it)."""
    depth = [0]

    def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                if depth[0] > 1:
                    return method(*args, **kwargs)
                with stage_timer(seconds, "store"), stage_timer(methods, name):
                    return method(*args, **kwargs)
            finally:
                depth[0] -= 1
        return call

    for name in dir(store):
        if not name.startswith("_") and name not in ("transaction", "close", "path"):
            attribute = getattr(store, name)
            if callable(attribute):
                setattr(store, name, timed(name, attribute))
    transaction = store.transaction

    @contextlib.contextmanager
    def timed_transaction() -> Iterator[Any]:
        manager = transaction()
        with stage_timer(seconds, "store"), stage_timer(methods, "begin"):
            db = manager.__enter__()
        try:
            yield db
        except BaseException:
            manager.__exit__(*sys.exc_info())
            raise
        with stage_timer(seconds, "store"), stage_timer(methods, "commit"):
            manager.__exit__(None, None, None)

    store.transaction = timed_transaction


def child_process(database: Path) -> dict[str, Any]:
    """One timed ``process()`` with its stages; peak RSS of this process."""
    import clustering
    from clustering import core, dedup, graph, stories

    seconds: dict[str, float] = {}
    methods: dict[str, float] = {}
    # a large first run's one search for dedup and the graph (graph.window_pairs) counts as dedup
    for module, name, stage in ((dedup, "find_duplicates", "dedup"), (graph, "window_pairs", "dedup"),
                                (stories, "assign_stories", "stories"), (core.Pipeline, "_window_state", "stories")):
        original = getattr(module, name, None)
        if original is None:  # code from before the window pairs
            continue

        def wrapped(*args: Any, _original: Callable[..., Any] = original, _stage: str = stage, **kwargs: Any) -> Any:
            with stage_timer(seconds, _stage):
                return _original(*args, **kwargs)

        setattr(module, name, wrapped)
    with clustering.open_pipeline(database, bench_config(database)) as pipeline:
        instrument_store(pipeline.store, seconds, methods)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        report = pipeline.process()
        total = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    seconds["other"] = total - sum(seconds.values())
    slowest = dict(sorted(methods.items(), key=lambda kv: -kv[1])[:4])
    return {"seconds": total, "stages": seconds, "store_methods": slowest,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "blocks_read": after.ru_inblock - before.ru_inblock,
            "report": {k: getattr(report, k) for k in ("embedded", "duplicates", "stories_new", "stories_total")}}


def child_history(database: Path, count: int, seed: int) -> dict[str, Any]:
    """``count`` processed articles published in the year before the window, through the store API
    in one transaction: embeddings (random unit vectors: a run must never read them), stories of
    their own and some duplicate links."""
    import numpy as np

    from clustering.dedup import text_hash
    from clustering.embed import make_embedder
    from clustering.store import NewArticle, Store

    model = make_embedder("hashing").name
    news = SyntheticNews(seed + 1)
    generator = np.random.default_rng(seed)
    end = WINDOW_END - timedelta(days=WINDOW_DAYS + 1)
    chunk = 50_000
    store = Store(database)
    started = time.perf_counter()
    with store.transaction():
        for first in range(0, count, chunk):
            begin = end - timedelta(days=365) + timedelta(days=365) * first / count
            finish = end - timedelta(days=365) + timedelta(days=365) * min(first + chunk, count) / count
            before = news.stories
            articles = news.articles(min(chunk, count - first), begin, finish, key=f"h{first}")
            ids = store.add_articles([NewArticle(
                source=a["source"], entry_key=a["key"], title=a["title"], summary=a["text"], url=a["url"],
                published=a["published"], published_estimated=False, text_hash=text_hash(a["title"], a["text"]))
                for a in articles], finish)
            vectors = generator.standard_normal((len(ids), 256)).astype(np.float32)
            store.save_embeddings(model, ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
            store.mark_processed(ids)
            members: dict[int, list[int]] = {}
            for article, article_id in zip(articles, ids, strict=True):
                if article["copy_of"] is None:
                    members.setdefault(article["story"], []).append(article_id)
            store.add_story_members({article_id: f"s{group[0]}" for group in members.values() if len(group) >= 3
                                     for article_id in group}, finish)
            store.save_duplicates([(article_id, ids[article["copy_of"]], "near", 0.9)
                                   for article, article_id in zip(articles, ids, strict=True)
                                   if article["copy_of"] is not None], finish)
            progress(f"history: {first + len(ids):,}/{count:,} articles ({news.stories - before} stories)")
    store.close()
    return {"seconds": time.perf_counter() - started, "bytes": database.stat().st_size}


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed ({done.returncode}); its error is above")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# --- the measurements ---------------------------------------------------------------------------------
def copy_database(source: Path, target: Path) -> None:
    """Copy, with its window cache (what the last run left for the next one), write the copy out
    (a run's commits, fsync, must not wait for the copy's pages), then read it through once.

    A database that cron runs every few minutes sits in the page cache; a file just written does
    not read like one: the first reads of a 2.4 GB copy were twice as slow as those of a 0.2 GB
    one (`vectors` of a 100k window 0.94 s vs 0.47 s; 0.4 s for both once read), which measured
    the copy, not the run.  Reading each copy through puts every measured run on the same footing."""
    from clustering.window import cache_path

    shutil.copyfile(source, target)
    cache, target_cache = cache_path(source), cache_path(target)
    if cache is not None and target_cache is not None:
        if cache.exists():
            shutil.copyfile(cache, target_cache)
        elif target_cache.exists():
            target_cache.unlink()
    os.sync()
    with open(target, "rb") as handle:
        while handle.read(1 << 24):
            pass


def repeated_runs(databases: list[Path], labels: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``process()`` on ``--repeat`` copies of each database, taking turns (one run of each, then
    the next round), so that whatever else the machine does weighs on all of them alike: per
    database the median run (each stage's median, the largest peak RSS); each database's last
    copy, processed, replaces it."""
    runs: list[list[dict[str, Any]]] = [[] for _ in databases]
    for repeat in range(args.repeat):
        for database, label, done in zip(databases, labels, runs, strict=True):
            copy = args.work / f"{database.stem}-run{repeat}.db"
            copy_database(database, copy)
            done.append(run_child("process", str(copy)))
            slowest = ", ".join(f"{name} {value:.3f}" for name, value in done[-1]["store_methods"].items())
            progress(f"{label}: {done[-1]['seconds']:.2f} s, {done[-1]['peak_rss'] / 2**30:.2f} GB "
                     f"(store {done[-1]['stages'].get('store', 0):.2f} s: {slowest})")
            if repeat == args.repeat - 1:
                copy_database(copy, database)
            for path in args.work.glob(f"{copy.name}*"):
                path.unlink()
    medians = []
    for done in runs:
        median = sorted(done, key=lambda run: run["seconds"])[len(done) // 2]
        medians.append({**median, "peak_rss": max(run["peak_rss"] for run in done),
                        "stages": {stage: statistics.median(run["stages"].get(stage, 0.0) for run in done)
                                   for stage in median["stages"]}})
    return medians


def measure(size: int, histories: list[int], args: argparse.Namespace,
            template: Path | None) -> list[dict[str, Any]]:
    """The first run and the +new run of a window of ``size``, once per history (0: none, else on
    a copy of ``template``), the histories measured in turns."""
    databases = [args.work / f"window-{size}-history-{history}.db" for history in histories]
    for database, history in zip(databases, histories, strict=True):
        for path in args.work.glob(f"{database.name}*"):
            path.unlink()
        if history:
            assert template is not None
            copy_database(template, database)
        run_child("add", str(database), str(size), str(args.seed), "0")
    labels = [f"N={size:,} history={history:,}" for history in histories]
    first = repeated_runs(databases, [f"{label}: first run" for label in labels], args)
    for database in databases:
        run_child("add", str(database), str(size), str(args.seed), str(args.new))
    later = repeated_runs(databases, [f"{label}: +{args.new} run" for label in labels], args)
    if not args.keep:
        for database in databases:
            for path in args.work.glob(f"{database.name}*"):
                path.unlink()
    return [{"size": size, "history": history, "first": f, "new": n}
            for history, f, n in zip(histories, first, later, strict=True)]


def slope(points: list[tuple[int, float]]) -> str:
    """Log-log slope between consecutive sizes ("1.8 / 1.9")."""
    parts = [math.log(b / a) / math.log(nb / na) for (na, a), (nb, b) in zip(points, points[1:], strict=False)
             if a > 0 and b > 0]
    return " / ".join(f"{p:.2f}" for p in parts) if parts else "—"


def _compute(run: dict[str, Any]) -> float:
    """Seconds of a run outside the store: dedup, stories and the rest, which read no stored history."""
    return sum(seconds for stage, seconds in run["stages"].items() if stage != "store")


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, history_seconds: float | None) -> str:
    def stages(run: dict[str, Any]) -> str:
        s = run["stages"]
        return " / ".join(f"{s.get(k, 0.0):.2f}" for k in ("store", "dedup", "stories", "other"))

    lines = ["| window N | stored outside the window | first run s | first run peak RSS GB | "
             f"+{args.new} run s | +{args.new} peak RSS GB | +{args.new} run: store / dedup / stories / other s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['size']:,} | {r['history']:,} | {r['first']['seconds']:.2f} | "
                     f"{r['first']['peak_rss'] / 2**30:.2f} | {r['new']['seconds']:.2f} | "
                     f"{r['new']['peak_rss'] / 2**30:.2f} | {stages(r['new'])} |")
    plain = [r for r in results if r["history"] == 0]
    notes = []
    if len(plain) > 1:
        notes.append(f"Growth exponent (log-log slope between consecutive sizes): first run "
                     f"{slope([(r['size'], r['first']['seconds']) for r in plain])}; +{args.new} run "
                     f"{slope([(r['size'], r['new']['seconds']) for r in plain])}; +{args.new} run peak RSS "
                     f"{slope([(r['size'], r['new']['peak_rss']) for r in plain])}.")
    for r in results:
        if r["history"]:
            base = next((p for p in plain if p["size"] == r["size"]), None)
            if base is not None:
                notes.append(
                    f"N={r['size']:,} with {r['history']:,} stored articles outside the window, against none: "
                    f"+{args.new} run {r['new']['seconds'] / base['new']['seconds']:.2f}×, its store part "
                    f"{r['new']['stages']['store'] / base['new']['stages']['store']:.2f}× "
                    f"({r['new']['stages']['store']:.2f} s vs {base['new']['stages']['store']:.2f} s), the stages that "
                    f"read no stored history (dedup, stories, the rest) "
                    f"{_compute(r['new']) / _compute(base['new']):.2f}× ({_compute(r['new']):.2f} s vs "
                    f"{_compute(base['new']):.2f} s, time outside the store's calls); first run "
                    f"{r['first']['seconds'] / base['first']['seconds']:.2f}×, its store part "
                    f"{r['first']['stages']['store'] / base['first']['stages']['store']:.2f}×.")
    if history_seconds is not None:
        notes.append(f"The history database was built in {history_seconds:.0f} s (store API, one transaction).")
    command = "python bench/scale.py " + " ".join(sys.argv[1:])
    return f"""## Scale: window size and stored history

Produced by `{command.strip()}` (this section is rewritten by it). `process()` through the
public API with the built-in `hashing` embedder (so the figures are the pipeline's own), on
synthetic news with story structure (heavy-tailed story sizes, names and words per story, 6 %
copies); window {WINDOW_DAYS:g} days; each measurement in a fresh process (peak RSS is its own), on
{args.repeat} copies of the database: the median run (stages: each one's median; RSS: the largest).
"Stored outside the window" are processed articles published before it, with embeddings, stories
and duplicate links; with and without them, the runs of one size took turns, each on a copy read
through once (a database cron uses every few minutes is in the page cache). The machine is shared
and has 2 cores: compare rows measured in one run. The story stage works on each article's nearest
neighbours (no N × N matrix): peak RSS grows with N, about as the window's vectors and lists do.

{chr(10).join(lines)}

{chr(10).join(notes)}
"""


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the part of ``path`` between ``<!-- name -->`` and ``<!-- /name -->`` (or append it)."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{text.strip()}\n{end}\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current, encoding="utf-8")


def first_run_items(size: int, seed: int) -> tuple[list[Any], Any]:
    """The dedup items of a first run of the synthetic window (every article new, in time order)
    and their hashing vectors."""
    from clustering.dedup import DedupItem, text_hash
    from clustering.embed import HashingEmbedder, article_text

    _, articles = window_articles(size, seed)
    articles.sort(key=lambda a: a["published"])
    vectors = HashingEmbedder(256).embed([article_text(a["title"], a["text"]) for a in articles])
    return [DedupItem(article_id=i + 1, published=a["published"], text=a["text"], canonical_url=a["url"],
                      text_hash=text_hash(a["title"], a["text"]), is_new=True)
            for i, a in enumerate(articles)], vectors


def dedup_speed(sizes: list[int], seed: int) -> str:
    """Dedup of a first run alone: the batched search against one search per article (the
    reference kept in tests/test_dedup.py), on the same items, with the same links."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_dedup import reference_find_duplicates

    from clustering.dedup import DedupParams, find_duplicates

    lines = ["| new articles | one search per article: wall s (CPU s) | batched: wall s (CPU s) | speed-up (wall) |"
             " near / exact links |", "|---|---|---|---|---|"]
    for size in sizes:
        items, vectors = first_run_items(size, seed)
        timings, cpu, links = {}, {}, {}
        for name, function in (("reference", reference_find_duplicates), ("batched", find_duplicates)):
            started, started_cpu = time.perf_counter(), time.process_time()
            links[name] = function(items, vectors, DedupParams())
            timings[name], cpu[name] = time.perf_counter() - started, time.process_time() - started_cpu
        same = [(x.article_id, x.canonical_id, x.kind) for x in links["reference"]] == \
            [(x.article_id, x.canonical_id, x.kind) for x in links["batched"]]
        if not same:
            raise SystemExit(f"N={size}: the batched search linked differently")
        near = sum(x.kind == "near" for x in links["batched"])
        lines.append(f"| {size:,} | {timings['reference']:.2f} ({cpu['reference']:.2f}) | {timings['batched']:.2f} "
                     f"({cpu['batched']:.2f}) | {timings['reference'] / timings['batched']:.1f}× | {near} / "
                     f"{len(links['batched']) - near} |")
        progress(lines[-1])
    return "\n".join(lines)


def search_recall(sizes: list[int], seed: int) -> str:
    """The searches of a first run of a window of each size, three ways: dedup exact, dedup as the
    IVF index made it above ``dedup.APPROXIMATE_PAIRS`` (before the window pairs), and dedup and
    the neighbour graph from the window's pairs (``graph.window_pairs``, as a large first run now
    does, forced here at every size); each against the exact search: the share of its links
    (article, canonical, kind) made, the links it did not make, and the graph's neighbours kept."""
    import numpy as np

    from clustering import dedup
    from clustering.dedup import DedupParams, find_duplicates, pairs_floor
    from clustering.graph import SEARCH_EXTRA, build_graph, window_pairs

    params = DedupParams()
    count = 10 + SEARCH_EXTRA + 14  # StoryParams.neighbours + SEARCH_EXTRA + core.PAIRED_COPIES
    lines = ["| window N | dedup exact CPU s | dedup IVF CPU s | IVF: links kept (near) | window pairs CPU s | "
             "dedup from pairs CPU s | pairs: links kept (near), others made | graph exact CPU s | "
             "graph from pairs CPU s | graph neighbours kept |", "|---|---|---|---|---|---|---|---|---|---|"]

    def timed(function: Callable[[], Any]) -> tuple[Any, float]:
        started = time.process_time()
        result = function()
        return result, time.process_time() - started

    def kept(links: set[tuple[int, int, str]], exact: set[tuple[int, int, str]]) -> str:
        near = {x for x in exact if x[2] == "near"}
        return f"{len(exact & links) / max(1, len(exact)):.4f} ({len(near & links) / max(1, len(near)):.4f})"

    default = dedup.APPROXIMATE_PAIRS
    for size in sizes:
        items, vectors = first_run_items(size, seed)
        links, cpu = {}, {}
        try:
            for name, limit in (("exact", float("inf")), ("ivf", 0)):
                dedup.APPROXIMATE_PAIRS = limit  # type: ignore[assignment]
                found, cpu[name] = timed(lambda: find_duplicates(items, vectors, params))
                links[name] = {(x.article_id, x.canonical_id, x.kind) for x in found}
                progress(f"N={size:,} dedup {name}: {cpu[name]:.1f} CPU s")
        finally:
            dedup.APPROXIMATE_PAIRS = default
        pairs, cpu["pairs"] = timed(lambda: window_pairs(vectors, count, pairs_floor(params)))
        if pairs is None:
            raise SystemExit(f"N={size}: the window pairs did not fit")
        found, cpu["paired"] = timed(lambda: find_duplicates(items, vectors, params, pairs=pairs))
        links["paired"] = {(x.article_id, x.canonical_id, x.kind) for x in found}
        linked = {x[0] for x in links["exact"]}
        keep = np.asarray([row for row, it in enumerate(items) if it.article_id not in linked], dtype=np.int64)
        ids = np.asarray([items[row].article_id for row in keep])
        exact_graph, cpu["graph"] = timed(lambda: build_graph(vectors[keep], 10, ids))
        paired_graph, cpu["graph_pairs"] = timed(lambda: build_graph(vectors[keep], 10, ids,
                                                                     pairs=pairs.restricted(keep)))
        same = (np.sort(exact_graph.neighbours, axis=1) == np.sort(paired_graph.neighbours, axis=1)).mean()
        lines.append(f"| {size:,} | {cpu['exact']:.2f} | {cpu['ivf']:.2f} | {kept(links['ivf'], links['exact'])} | "
                     f"{cpu['pairs']:.2f} | {cpu['paired']:.2f} | {kept(links['paired'], links['exact'])}, "
                     f"{len(links['paired'] - links['exact'])} | {cpu['graph']:.2f} | {cpu['graph_pairs']:.2f} | "
                     f"{same:.4f} |")
        progress(lines[-1])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        command, database, *rest = argv[1:]
        if command == "add":
            result = child_add(Path(database), int(rest[0]), int(rest[1]), int(rest[2]))
        elif command == "process":
            result = child_process(Path(database))
        else:
            result = child_history(Path(database), int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000", help="window sizes N, comma-separated")
    parser.add_argument("--history", type=int, default=1_000_000, metavar="H",
                        help="also measure each size with H processed articles stored outside the window (0: not)")
    parser.add_argument("--new", type=int, default=500, help="articles added by the incremental run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind per size (the median is reported)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/clustering-scale"),
                        help="folder for the databases (the history template is kept there)")
    parser.add_argument("--keep", action="store_true", help="keep the measured databases")
    parser.add_argument("--allow-large", action="store_true", help="accepted for old command lines; no effect")
    parser.add_argument("--dedup", metavar="SIZES", help="only time dedup of a first run of these sizes")
    parser.add_argument("--recall", metavar="SIZES", help="only dedup of a first run, exact vs approximate")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "speed.md", help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.recall:
        table = search_recall([int(s) for s in args.recall.split(",")], args.seed)
        text = f"""## The searches of a first run: exact, IVF, window pairs

Produced by `python bench/scale.py --recall {args.recall}` (this section is rewritten by it).
The searches of a first run (every article new) of the synthetic news above (hashing vectors),
alone: dedup exact; dedup through the IVF index it used above `dedup.APPROXIMATE_PAIRS` before
the window pairs (rows / 256 lists, 64 probed; forced at every size); and the window's pairs
(`graph.window_pairs`, forced at every size) with dedup and the neighbour graph (of the articles
the exact dedup left) taken from them. Links kept: the share of the exact search's links
(article, canonical, kind) made too; neighbours kept: the share of the exact graph's lists.
CPU seconds of this process (FAISS's threads included); the machine is shared.

{table}
"""
        print(text)
        if not args.no_write:
            write_section(args.out, f"{SECTION}-recall", text)
        return 0
    if args.dedup:
        table = dedup_speed([int(s) for s in args.dedup.split(",")], args.seed)
        text = f"""## Dedup of a first run: one search per block against one per article

Produced by `python bench/scale.py --dedup {args.dedup}` (this section is rewritten by it).
`dedup.find_duplicates` alone on the window of a first run (every article new) of the synthetic
news above, hashing vectors; against the implementation before the batched search (one FAISS
search per new article against an index grown as it goes, kept in tests/test_dedup.py), on the
same items, which must give the same links. The machine is shared: compare within a row.
One search per article reads the whole index from memory each time once the index outgrows the
CPU's caches (on this machine from about 16k rows of 256 floats), hence its jump from 10k to 20k.

{table}
"""
        print(text)
        if not args.no_write:
            write_section(args.out, f"{SECTION}-dedup", text)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    template = None
    history_seconds = None
    if args.history:
        template = args.work / f"history-{args.history}-seed{args.seed}.db"
        if not template.exists():
            partial = template.with_suffix(".partial")
            for path in args.work.glob(f"{partial.name}*"):
                path.unlink()
            history_seconds = run_child("history", str(partial), str(args.history), str(args.seed))["seconds"]
            partial.rename(template)
        progress(f"history template {template} ({template.stat().st_size / 2**30:.2f} GB)")
    results = []
    for size in sizes:
        results.extend(measure(size, [0, args.history] if template is not None else [0], args, template))
    text = markdown(results, args, history_seconds)
    print(text)
    if not args.no_write:
        write_section(args.out, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
