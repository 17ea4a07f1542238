"""Story clustering: HDBSCAN over a hybrid similarity, stable ids, labels, topics.

Pure over arrays and value objects: core.py loads the window from the store, calls
:func:`assign_stories` and :func:`group_topics`, and writes the result back.

How a run assigns stories (see docs/design.md, "Stable story ids"):

1. Build a similarity matrix over every canonical article of the window that mixes
   the sentence embedding (what the article is about), TF-IDF of its words and TF-IDF
   of its *names* (capitalised words and numbers: which earthquake, which bank).
   Measured on ECB+ events, names are what separates two events of one kind.
2. Cluster the whole window with HDBSCAN (precomputed distance = 1 - similarity).
3. Articles that already have a story keep it, always: ids never churn.  An unassigned
   article joins the story that most of its cluster's assigned members belong to (or,
   when the cluster spans several stories, the one it is most similar to); a cluster
   with no assigned member and at least ``min_cluster_size`` articles founds a new story
   whose id derives from its earliest article.
4. Articles HDBSCAN calls noise join the most similar story when their mean similarity
   to its members reaches ``attach_threshold``; otherwise they stay unassigned (no
   stories of one) and are reconsidered next run while they are in the window.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class StoryParams:
    """Story and topic parameters (keys of ``settings.stories`` in feeds.yaml)."""

    min_cluster_size: int = 3
    """Fewest articles that found a new story.  2 splits events into pairs (ECB+ B-cubed
    recall 0.66); 4–5 suits full articles; 3 keeps two-source stories on RSS snippets
    joinable while leaving chance pairs unassigned."""

    min_samples: int = 1
    """HDBSCAN min_samples: 1 lets small dense stories form (higher values mark more noise)."""

    embedding_weight: float = 0.4
    """Weight of the sentence-embedding cosine in the hybrid similarity."""

    lexical_weight: float = 0.2
    """Weight of the word TF-IDF cosine (window-fitted IDF)."""

    entity_weight: float = 0.4
    """Weight of the name TF-IDF cosine (capitalised words, numbers)."""

    attach_threshold: float = 0.40
    """Mean hybrid similarity to a story's members at which a noise article joins it.
    ECB+ (bench/quality.py): 0.25 gives batch B-cubed F1 0.91 but stream 0.85 (early noise
    joins the wrong event of the same kind before the right story exists); 0.40 gives
    0.89 in both modes."""

    story_threshold: float = 0.45
    """Average-linkage cut inside each HDBSCAN cluster: groups whose members' mean hybrid
    similarity falls below this are split (HDBSCAN merges two events of one kind — two
    earthquakes — into one dense region).  Also the mean similarity an unassigned article
    needs to join an existing story of its cluster.  ECB+ batch B-cubed F1: 0.88 at 0.30,
    0.90 at 0.35, 0.91 at 0.40–0.45, precision rising from 0.83 to 0.94."""

    short_story_threshold: float = 0.25
    """``story_threshold`` for RSS-length texts.  Hybrid similarities of 40–120-word
    snippets run lower than those of full articles (fewer shared words and names): on the
    bundled sample, B-cubed F1 is 0.98 at 0.25 and 0.76 at 0.45.  The threshold used for a
    group moves linearly from this value at ``SHORT_TEXT_WORDS`` median words to
    ``story_threshold`` at ``LONG_TEXT_WORDS``."""

    short_attach_threshold: float = 0.30
    """``attach_threshold`` for RSS-length texts (interpolated the same way)."""

    topic_threshold: float = 0.55
    """Cosine between story centroids (embedding) at which stories share a topic
    (average linkage).  ECB+ topic-level B-cubed F1: 0.68 at 0.30, 0.79 at 0.40, 0.86 at
    0.50, 0.87 at 0.55, 0.85 at 0.60."""

    keywords: int = 5
    """Keywords kept per story label (c-TF-IDF)."""

    def __post_init__(self) -> None:
        if self.min_cluster_size < 2:
            raise ValueError("min_cluster_size must be at least 2 (stories of one are not stories)")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        weights = (self.embedding_weight, self.lexical_weight, self.entity_weight)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("similarity weights must be non-negative and not all zero")
        for name in ("attach_threshold", "story_threshold", "topic_threshold", "short_story_threshold",
                     "short_attach_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between -1 and 1")


SHORT_TEXT_WORDS = 80
"""Median words per article at or below which the short-text thresholds apply (RSS summaries)."""

LONG_TEXT_WORDS = 200
"""Median words per article at or above which the full-article thresholds apply."""


def length_adjusted(long_value: float, short_value: float, median_words: float) -> float:
    """Interpolate a threshold between its short-text and full-article values."""
    if median_words <= SHORT_TEXT_WORDS:
        return short_value
    if median_words >= LONG_TEXT_WORDS:
        return long_value
    share = (median_words - SHORT_TEXT_WORDS) / (LONG_TEXT_WORDS - SHORT_TEXT_WORDS)
    return short_value + share * (long_value - short_value)


@dataclass(frozen=True)
class StoryDoc:
    """A canonical article of the window as the story core sees it."""

    article_id: int
    title: str
    text: str                 # title + summary (or full text)
    published: datetime
    source: str
    story_id: str | None = None


@dataclass(frozen=True)
class StoryAssignment:
    story_of: dict[int, str]          # article id -> story id, for newly assigned articles only
    new_story_ids: tuple[str, ...]
    updated_story_ids: tuple[str, ...]


_STOP = frozenset("""a an and are as at be but by for from has have he her his i in is it its of on or
our she that the their them they this to was we were which who will with you your after before over
under about into than then there these those not no yes new said says say also more most""".split())
_WORD = re.compile(r"[^\W\d_][\w'’-]*[\w]|[^\W\d_]", re.UNICODE)
_NAME = re.compile(r"\b(?:[A-Z][\w'’-]*[\w]|[A-Z])(?:\s+[A-Z][\w'’-]*[\w])*|\b\d[\d.,:]*\d\b|\b\d\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?\"“”:|]\s+|\n)$")


def name_terms(text: str) -> list[str]:
    """Capitalised words not opening a sentence, and numbers: the names of an event."""
    terms: list[str] = []
    for match in _NAME.finditer(text):
        before = text[max(0, match.start() - 3):match.start()]
        token = match.group(0)
        if token[0].isupper() and (match.start() == 0 or _SENTENCE_START.search(before)):
            # sentence-initial capital: keep only the rest of a multi-word name
            parts = token.split()
            if len(parts) == 1 or parts[0].lower() in _STOP:
                parts = parts[1:]
            token = " ".join(parts)
            if not token:
                continue
        for part in token.split():
            lowered = part.lower().strip("'’")
            if lowered and lowered not in _STOP:
                terms.append(lowered)
    return terms


def _tfidf_cosine(documents: Sequence[str], analyzer) -> np.ndarray:  # noqa: ANN001
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, max_df=0.5 if len(documents) > 20 else 1.0)
    try:
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # empty vocabulary
        return np.zeros((len(documents), len(documents)), dtype=np.float32)
    return (matrix @ matrix.T).toarray().astype(np.float32)


def _words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP and len(w) > 1]


def hybrid_similarity(texts: Sequence[str], vectors: np.ndarray, params: StoryParams) -> np.ndarray:
    """The n×n similarity used for stories (weights in StoryParams), float32 in [-1, 1]."""
    import numpy as np

    total = params.embedding_weight + params.lexical_weight + params.entity_weight
    similarity = np.zeros((len(texts), len(texts)), dtype=np.float32)
    if params.embedding_weight:
        similarity += (params.embedding_weight / total) * (vectors @ vectors.T)
    if params.lexical_weight:
        similarity += (params.lexical_weight / total) * _tfidf_cosine(texts, _words)
    if params.entity_weight:
        similarity += (params.entity_weight / total) * _tfidf_cosine(texts, name_terms)
    np.fill_diagonal(similarity, 1.0)
    return similarity


def cluster_labels(similarity: np.ndarray, params: StoryParams) -> np.ndarray:
    """HDBSCAN labels (−1 = noise) over the precomputed distance 1 − similarity."""
    import numpy as np

    n = similarity.shape[0]
    if n < params.min_cluster_size:
        return np.full(n, -1, dtype=np.int64)
    import hdbscan

    distance = np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    clusterer = hdbscan.HDBSCAN(metric="precomputed", min_cluster_size=params.min_cluster_size,
                                min_samples=params.min_samples)
    labels = clusterer.fit_predict(distance)
    if (labels < 0).all():
        # HDBSCAN never selects the root cluster by default: a window holding one event
        # (a first run, a small feed set) would otherwise have no cluster at all
        clusterer = hdbscan.HDBSCAN(metric="precomputed", min_cluster_size=params.min_cluster_size,
                                    min_samples=params.min_samples, allow_single_cluster=True)
        labels = clusterer.fit_predict(distance)
    return labels.astype(np.int64)


def new_story_id(founder_article_id: int) -> str:
    """A story's id: derived from its earliest article, so it never needs renumbering."""
    return f"s{founder_article_id}"


def assign_stories(docs: Sequence[StoryDoc], vectors: np.ndarray, params: StoryParams) -> StoryAssignment:
    """Assign unassigned articles of the window to existing or new stories (see module doc)."""
    import numpy as np

    n = len(docs)
    if n == 0 or all(doc.story_id is not None for doc in docs):
        return StoryAssignment({}, (), ())
    similarity = hybrid_similarity([doc.text for doc in docs], vectors, params)
    labels = cluster_labels(similarity, params)
    story_of: dict[int, str] = {}
    current = [doc.story_id for doc in docs]
    members: dict[str, list[int]] = defaultdict(list)
    for index, story_id in enumerate(current):
        if story_id is not None:
            members[story_id].append(index)

    def mean_similarity(index: int, story_id: str) -> float:
        return float(similarity[index, members[story_id]].mean())

    words = [len(doc.text.split()) for doc in docs]

    def threshold(indices: Sequence[int], long_value: float, short_value: float) -> float:
        median = float(np.median([words[i] for i in indices])) if len(indices) else 0.0
        return length_adjusted(long_value, short_value, median)

    new_ids: list[str] = []
    grown: set[str] = set()
    for label in sorted(set(labels.tolist()) - {-1}):
        cluster = [i for i in range(n) if labels[i] == label]
        unassigned = [i for i in cluster if current[i] is None]
        if not unassigned:
            continue
        stories_here = Counter(current[i] for i in cluster if current[i] is not None)
        leftover = []
        cut = threshold(cluster, params.story_threshold, params.short_story_threshold)
        for index in unassigned:
            if stories_here:
                target = max(stories_here, key=lambda s: (mean_similarity(index, s), stories_here[s]))
                if mean_similarity(index, target) >= cut:
                    story_of[docs[index].article_id] = target
                    grown.add(target)
                    continue
            leftover.append(index)
        for group in _split(leftover, similarity, cut):
            if len(group) < params.min_cluster_size:
                continue
            founder = min(group, key=lambda i: (docs[i].published, docs[i].article_id))
            story_id = new_story_id(docs[founder].article_id)
            new_ids.append(story_id)
            for index in group:
                story_of[docs[index].article_id] = story_id
                current[index] = story_id
                members[story_id].append(index)
    # noise (and leftovers): the closest story if close enough
    for index in range(n):
        if current[index] is not None or docs[index].article_id in story_of:
            continue
        best: tuple[float, str] | None = None
        for story_id in members:
            score = mean_similarity(index, story_id)
            if best is None or score > best[0]:
                best = (score, story_id)
        if best is not None and best[0] >= threshold(members[best[1]] + [index], params.attach_threshold,
                                                       params.short_attach_threshold):
            story_of[docs[index].article_id] = best[1]
            if best[1] not in new_ids:
                grown.add(best[1])
    return StoryAssignment(story_of, tuple(new_ids), tuple(sorted(grown - set(new_ids))))


def _split(indices: list[int], similarity: np.ndarray, threshold: float) -> list[list[int]]:
    """Average-linkage groups of ``indices`` whose mean inner similarity is ≥ threshold."""
    if len(indices) <= 1:
        return [indices] if indices else []
    import numpy as np
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    sub = 1.0 - similarity[np.ix_(indices, indices)].astype(np.float64)
    sub = np.clip((sub + sub.T) / 2, 0.0, 2.0)
    np.fill_diagonal(sub, 0.0)
    groups = fcluster(linkage(squareform(sub, checks=False), method="average"), t=1.0 - threshold,
                      criterion="distance")
    result: dict[int, list[int]] = defaultdict(list)
    for index, group in zip(indices, groups):
        result[int(group)].append(index)
    return list(result.values())


def story_labels(titles_by_story: dict[str, list[str]], texts_by_story: dict[str, list[str]],
                 vectors_by_story: dict[str, np.ndarray], keyword_count: int) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Per story: the representative headline (the member nearest the centroid) and
    c-TF-IDF keywords (frequent in the story, rare in the other stories of the window)."""
    import numpy as np

    counts = {sid: Counter(w for text in texts for w in _words(text)) for sid, texts in texts_by_story.items()}
    document_frequency: Counter[str] = Counter()
    for counter in counts.values():
        document_frequency.update(counter.keys())
    average_words = (sum(sum(c.values()) for c in counts.values()) / max(len(counts), 1)) or 1.0
    labels: dict[str, tuple[str, tuple[str, ...]]] = {}
    for sid, counter in counts.items():
        total = sum(counter.values()) or 1
        scored = sorted(((count / total) * math.log(1 + average_words / document_frequency[word]), word)
                        for word, count in counter.items() if count > 1 or len(counter) < 20)
        keywords = tuple(word for _, word in sorted(scored, reverse=True)[:keyword_count])
        vectors = vectors_by_story[sid]
        centroid = vectors.mean(axis=0)
        headline_index = int(np.argmax(vectors @ centroid))
        titles = titles_by_story[sid]
        labels[sid] = (titles[headline_index] or texts_by_story[sid][headline_index][:120], keywords)
    return labels


def group_topics(story_ids: Sequence[str], centroids: np.ndarray, threshold: float) -> dict[str, str]:
    """Topic of each story: average-linkage groups of story centroids (cosine ≥ threshold).

    A topic's id is the id of its oldest story (story ids are ordered by founding
    article), so a topic keeps its id while its stories do.
    """
    import numpy as np

    if len(story_ids) == 0:
        return {}
    if len(story_ids) == 1:
        return {story_ids[0]: f"t{story_ids[0][1:]}"}
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit = centroids / norms
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0).astype(np.float64)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    groups = fcluster(tree, t=1.0 - threshold, criterion="distance")
    topic_of: dict[str, str] = {}
    by_group: dict[int, list[str]] = defaultdict(list)
    for story_id, group in zip(story_ids, groups):
        by_group[int(group)].append(story_id)
    for group_members in by_group.values():
        oldest = min(group_members, key=lambda s: int(s[1:]) if s[1:].isdigit() else 0)
        for story_id in group_members:
            topic_of[story_id] = f"t{oldest[1:]}"
    return topic_of
