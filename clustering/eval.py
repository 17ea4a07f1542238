"""``clustering eval``: score the pipeline on a labelled corpus.

The corpus goes through the *same* code as ``clustering run`` — add_articles, then
process (embed, dedup, stories, topics) on a fresh SQLite file — either in one batch or,
in stream mode, in chunks in time order (seeded shuffle when there are no times), one
process() per chunk, as successive cron runs would see it.  Embeddings are cached per
model in ``cache_dir`` so re-running costs seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .config import Config
from .corpora import LabelledDoc
from .embed import Embedder, make_embedder
from .errors import ConfigError
from .metrics import cluster_scores, headline_churn, id_churn

DEFAULT_CHUNKS = 10
"""Stream mode: the corpus is fed in this many successive runs."""

UNDATED_BASE = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""Publication time given to undated documents (all the same: no time signal)."""

MAX_SKIPPED_NAMED = 10
"""Documents without text named one by one in the warnings; the rest are counted."""

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "clustering" / "embeddings"


class CachedEmbedder:
    """Wraps an embedder with a persistent text -> vector cache (one .npz per model and precision)."""

    def __init__(self, inner: Embedder, cache_dir: Path) -> None:
        self.inner = inner
        variant = getattr(inner, "variant", None)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", variant() if callable(variant) else inner.name)[-80:]
        self.path = Path(cache_dir) / f"{slug}.npz"
        self._vectors: dict[str, Any] = {}
        self._dirty = False
        if self.path.exists():
            import numpy as np

            with np.load(self.path) as stored:
                for key, vector in zip(stored["keys"], stored["vectors"], strict=True):
                    self._vectors[str(key)] = vector

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        keys = [self._key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._vectors}.items())
        if missing:
            vectors = self.inner.embed([t for _, t in missing])
            for (key, _), vector in zip(missing, vectors, strict=True):
                self._vectors[key] = vector
            self._dirty = True
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        import numpy as np

        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._vectors)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        tmp.replace(self.path)
        self._dirty = False


@dataclass(frozen=True)
class EvalResult:
    mode: str                          # "batch" | "stream"
    documents: int
    story: dict[str, float]
    topic: dict[str, float] | None
    duplicates: dict[str, int]
    seconds: float
    runs: int
    id_churn: float | None
    assignments: tuple[dict[str, Any], ...]
    skipped: tuple[int, ...] = ()      # indices of documents without any text (not scored)
    headline_churn: float | None = None  # stream: share of carried-over stories whose headline changed

    def as_dict(self) -> dict[str, Any]:
        story = dict(self.story)
        result: dict[str, Any] = {"mode": self.mode, "documents": self.documents, "story": story,
                                  "duplicates": self.duplicates, "seconds": round(self.seconds, 2),
                                  "runs": self.runs, "skipped": list(self.skipped)}
        if self.topic is not None:
            result["topic"] = self.topic
        if self.id_churn is not None:
            result["id_churn"] = round(self.id_churn, 4)
            story["id_churn"] = round(self.id_churn, 4)
        if self.headline_churn is not None:
            result["headline_churn"] = round(self.headline_churn, 4)
        return result


def _order(docs: Sequence[LabelledDoc], seed: int) -> list[int]:
    indices = list(range(len(docs)))
    if all(d.time is not None for d in docs):
        return sorted(indices, key=lambda i: (docs[i].time, i))
    random.Random(seed).shuffle(indices)
    return indices


def evaluate(docs: Sequence[LabelledDoc], *, config: Config | None = None, embedder: Embedder | None = None,
             stream: bool = False, chunks: int = DEFAULT_CHUNKS, seed: int = 13,
             cache_dir: Path | None = DEFAULT_CACHE_DIR, work_dir: Path | None = None) -> EvalResult:
    """Run dedup + stories + topics over ``docs`` and score them against their labels."""
    from .core import Pipeline
    from .types import ArticleInput

    if not docs:
        raise ConfigError("no documents to evaluate")
    skipped = [i for i, doc in enumerate(docs) if not (doc.title or "").strip() and not doc.text.strip()]
    for i in skipped[:MAX_SKIPPED_NAMED]:
        log.warning("skipped %s: it has no text (it is left out of the scores)", docs[i].describe(i))
    if len(skipped) > MAX_SKIPPED_NAMED:
        log.warning("skipped %d more documents without text", len(skipped) - MAX_SKIPPED_NAMED)
    empty = set(skipped)
    scored = [i for i in range(len(docs)) if i not in empty]
    if not scored:
        raise ConfigError("no document has any text to evaluate")
    base = config or Config()
    inner = embedder or make_embedder(base.model, device=base.embedding.device,
                                      batch_size=base.embedding.batch_size,
                                      precision=base.embedding.precision, threads=base.embedding.threads)
    cached = CachedEmbedder(inner, cache_dir) if cache_dir is not None else None
    use = cached or inner
    order = [i for i in (_order(docs, seed) if stream else range(len(docs))) if i not in empty]
    runs = max(1, min(chunks, len(order))) if stream else 1
    size = math.ceil(len(order) / runs)
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    article_of: dict[int, int] = {}
    history: list[list[str | None]] = []
    headlines: list[dict[str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        clock = {"now": UNDATED_BASE}
        pipeline = Pipeline(replace(base, database=Path(tmp) / "eval.db", feeds=()), embedder=use,
                            now=lambda: clock["now"])
        try:
            for batch in batches:
                inputs = []
                for i in batch:
                    doc = docs[i]
                    published = doc.time or UNDATED_BASE
                    inputs.append(ArticleInput(title=doc.title or "", text=doc.text, published=published,
                                               source=doc.source or "corpus", key=f"doc:{i}"))
                clock["now"] = max([clock["now"], *(a.published for a in inputs if a.published)]) \
                    + timedelta(seconds=1)
                ids = pipeline.add_articles(inputs)
                article_of.update(zip(batch, ids, strict=False))
                pipeline.process()
                if stream:
                    assigned = pipeline.store.article_assignments()
                    history.append([assigned[article_of[i]][0] if i in article_of else None for i in scored])
                    headlines.append(pipeline.store.story_headlines())
            assigned = pipeline.store.article_assignments()
            topics = pipeline.store.story_topics()
        finally:
            pipeline.close()
            if cached is not None:
                cached.save()
    seconds = time.perf_counter() - started
    index_of = {article: i for i, article in article_of.items()}
    story_pred: list[str | None] = []
    topic_pred: list[str | None] = []
    rows: list[dict[str, Any]] = []
    exact = near = 0
    for i in range(len(docs)):
        if i not in article_of:
            rows.append({"index": i, "story": None, "topic": None, "duplicate_of": None, "skipped": True,
                         **({"id": docs[i].doc_id} if docs[i].doc_id is not None else {})})
            continue
        story_id, canonical, kind = assigned[article_of[i]]
        topic_id = topics.get(story_id) if story_id else None
        story_pred.append(story_id)
        topic_pred.append(topic_id)
        rows.append({"index": i, "story": story_id, "topic": topic_id,
                     "duplicate_of": index_of.get(canonical) if canonical is not None else None})
        if docs[i].doc_id is not None:
            rows[-1]["id"] = docs[i].doc_id
        if kind == "near":
            near += 1
        elif kind is not None:
            exact += 1
    with_topic = [docs[i].topic_label for i in scored]
    topic_scores = cluster_scores(with_topic, topic_pred) if all(t is not None for t in with_topic) else None
    return EvalResult(
        mode="stream" if stream else "batch", documents=len(scored),
        story=_rounded(cluster_scores([docs[i].label for i in scored], story_pred)),
        topic=_rounded(topic_scores) if topic_scores is not None else None,
        duplicates={"links": exact + near, "exact": exact, "near": near},
        seconds=seconds, runs=len(batches), id_churn=id_churn(history) if stream else None,
        assignments=tuple(rows), skipped=tuple(skipped),
        headline_churn=headline_churn(headlines) if stream else None)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}
