"""Story clustering: HDBSCAN over a hybrid similarity, stable ids, labels, topics.

Pure over arrays and value objects: core.py loads the window from the store, calls
:func:`assign_stories` and :func:`group_topics`, and writes the result back.

How a run assigns stories (see docs/design.md, "Stable story ids"):

1. Build a similarity matrix over every canonical article of the window that mixes
   the sentence embedding (what the article is about), TF-IDF of its words and TF-IDF
   of its *names* (capitalised words and numbers: which earthquake, which bank).
   Measured on ECB+ events, names are what separates two events of one kind.
2. Propose groups for the whole window, as a batch clusterer would, ignoring what was
   assigned before (:func:`propose_groups`): HDBSCAN on the precomputed distance
   1 - similarity, each cluster cut by average linkage at ``story_threshold`` (HDBSCAN
   merges two events of one kind into one dense region), and noise joined to the
   nearest group when close enough.
3. Reconcile the groups with the stories already stored (:func:`assign_stories`): each
   story is matched to the group holding most of its members, one to one.  A matched
   group's new articles join its story; assigned articles never move to another
   existing story (stories are never merged).  An unmatched group founds a new story
   (id from its earliest article) and takes its members with it: the one way an
   assigned article changes story, when later articles show that an early story
   mixed two events (a split).
4. Deferred founding: a small unmatched group that resembles an existing story or
   group waits one run, unless it is the window's first run (``confirm_size``,
   ``confirm_similarity``).  Early in a stream, events have one or two articles each
   and chance groups of two events of one kind form; waiting for the group to hold
   together over two runs is what keeps later splits (id churn) rare.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class StoryParams:
    """Story and topic parameters (keys of ``settings.stories`` in feeds.yaml).

    Figures quoted are B-cubed F1 on ECB+ events (982 articles, 86 events) through
    ``clustering eval``, each the mean of 4 orders (batch: the file and 3 shuffles; stream:
    10 runs in 4 seeded orders), the other parameters at their defaults; bench/quality.py
    reproduces the defaults' row."""

    min_cluster_size: int = 3
    """Fewest articles that found a new story.  2 founds stories from chance pairs (batch
    0.910); 4 scores higher in batch (0.94) but lower in stream (0.92, id churn 6 %); 3
    also keeps two-source stories on RSS snippets joinable."""

    min_samples: int = 1
    """HDBSCAN min_samples: 1 lets small dense stories form (higher values mark more noise)."""

    embedding_weight: float = 0.25
    """Weight of the sentence-embedding cosine in the hybrid similarity."""

    lexical_weight: float = 0.2
    """Weight of the word TF-IDF cosine (window-fitted IDF)."""

    entity_weight: float = 0.55
    """Weight of the name TF-IDF cosine (capitalised words, numbers).  With weights
    embedding/words/names, ECB+ batch B-cubed F1 and the bundled RSS-length sample's:
    0.4/0.2/0.4 0.918 and 1.0; 0.3/0.2/0.5 0.931 and 1.0; 0.25/0.2/0.55 0.932 and 1.0;
    0.2/0.2/0.6 0.936 and 0.95 (names are sparse in snippets)."""

    attach_threshold: float = 0.25
    """Mean hybrid similarity to a group's members at which a noise article joins it
    (and, for an article in no group, to a story's members).  Batch / stream: 0.20
    0.931 / 0.926, 0.25 0.932 / 0.925, 0.30 0.929 / 0.924."""

    story_threshold: float = 0.40
    """Average-linkage cut inside each HDBSCAN cluster: groups whose members' mean hybrid
    similarity falls below this are split (HDBSCAN merges two events of one kind — two
    earthquakes — into one dense region).  Batch / stream: 0.38 0.935 / 0.924, 0.40
    0.932 / 0.925, 0.42 0.934 / 0.923."""

    short_story_threshold: float = 0.25
    """``story_threshold`` for RSS-length texts.  Hybrid similarities of 40–120-word
    snippets run lower than those of full articles (fewer shared words and names).  The
    threshold used for a group moves linearly from this value at ``SHORT_TEXT_WORDS``
    median words to ``story_threshold`` at ``LONG_TEXT_WORDS``.  On the bundled sample
    B-cubed F1 is the same from 0.20 to 0.30."""

    short_attach_threshold: float = 0.30
    """``attach_threshold`` for RSS-length texts (interpolated the same way)."""

    confirm_size: int = 8
    """A new group smaller than this that resembles an existing story or group (see
    ``confirm_similarity``) founds its story only once it has held together over two runs
    (a first run, where every article of the window is new, founds at once).  Early in a
    stream events have one or two articles each and chance groups mixing two events of
    one kind form; waiting keeps the later splits rare.  Stream id churn (worst of 4
    orders) / mean B-cubed F1: 3 (no waiting) 6.2 % / 0.924, 6 4.5 % / 0.927, 8 3.8 % / 0.925,
    10 3.8 % / 0.925."""

    confirm_similarity: float = 0.30
    """Mean hybrid similarity to another group or story from which a small new group counts
    as resembling it and waits; a small group unlike anything in the window founds its
    story at once (a new event on a quiet day).  0.25–0.35 measure the same on ECB+."""

    topic_threshold: float = 0.55
    """Cosine between story centroids (embedding) at which stories share a topic
    (average linkage).  ECB+ topic-level B-cubed F1 (batch, without the pair rule below):
    0.80 at 0.40, 0.84 at 0.45, 0.87 at 0.50, 0.89 at 0.55, 0.88 at 0.60."""

    topic_pair_threshold: float = 0.40
    """Two stories that are each other's nearest story (centroid cosine) share a topic
    from this cosine on, even below ``topic_threshold``: a loose pair of one kind (two
    rehab check-ins of two actresses, 0.47) is still one topic.  ECB+ topic-level B-cubed
    F1: 0.895 without, 0.916 at 0.30–0.35, 0.910 at 0.40, 0.905 at 0.45."""

    keywords: int = 5
    """Keywords kept per story label (c-TF-IDF)."""

    def __post_init__(self) -> None:
        if self.min_cluster_size < 2:
            raise ValueError("min_cluster_size must be at least 2 (stories of one are not stories)")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if self.confirm_size < self.min_cluster_size:
            raise ValueError("confirm_size must be at least min_cluster_size")
        weights = (self.embedding_weight, self.lexical_weight, self.entity_weight)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("similarity weights must be non-negative and not all zero")
        for name in ("attach_threshold", "story_threshold", "topic_threshold", "short_story_threshold",
                     "short_attach_threshold", "confirm_similarity", "topic_pair_threshold"):
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
    is_new: bool = True               # first seen by this run
    pending_group: str | None = None  # the deferred group it belonged to last run


@dataclass(frozen=True)
class StoryAssignment:
    story_of: dict[int, str]          # article id -> story id, for articles assigned or moved this run
    new_story_ids: tuple[str, ...]
    updated_story_ids: tuple[str, ...]
    moved_from: dict[int, str] = field(default_factory=dict)  # article id -> the story it left (a split)
    pending: dict[int, str] = field(default_factory=dict)     # article id -> deferred group key


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


MIN_TERM_ARTICLES = 2
"""Words and names found in fewer articles of the window are dropped before TF-IDF: they
cannot link two articles and only dilute the cosine of the one that has them.  ECB+
batch B-cubed F1 0.94 with, 0.92–0.93 without."""


def _tfidf_cosine(documents: Sequence[str], analyzer) -> np.ndarray:  # noqa: ANN001
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=MIN_TERM_ARTICLES,
                                 max_df=0.5 if len(documents) > 20 else 1.0)
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


def _mean(similarity: np.ndarray, rows: Sequence[int], columns: Sequence[int]) -> float:
    import numpy as np

    return float(similarity[np.ix_(list(rows), list(columns))].mean())


def propose_groups(similarity: np.ndarray, words: Sequence[int], params: StoryParams) -> list[list[int]]:
    """The window clustered from scratch (indices into it): HDBSCAN, each cluster split by
    average linkage at the length-adjusted ``story_threshold``, groups of at least
    ``min_cluster_size``, then each noise article added to the group it is most similar
    to on average when that reaches the length-adjusted ``attach_threshold``."""
    import numpy as np

    labels = cluster_labels(similarity, params)
    groups: list[list[int]] = []
    for label in sorted(set(labels.tolist()) - {-1}):
        cluster = [int(i) for i in np.flatnonzero(labels == label)]
        cut = _adjusted(cluster, words, params.story_threshold, params.short_story_threshold)
        groups.extend(g for g in _split(cluster, similarity, cut) if len(g) >= params.min_cluster_size)
    grouped = {i for group in groups for i in group}
    noise = [i for i in range(similarity.shape[0]) if i not in grouped]
    for index, best in _closest_joins(noise, groups, similarity, words, params):
        groups[best].append(index)
    return groups


def _adjusted(indices: Sequence[int], words: Sequence[int], long_value: float, short_value: float) -> float:
    """A threshold for these articles, interpolated by their median length (:func:`length_adjusted`)."""
    import numpy as np

    return length_adjusted(long_value, short_value, float(np.median([words[i] for i in indices])))


def _closest_joins(candidates: Sequence[int], targets: Sequence[Sequence[int]], similarity: np.ndarray,
                   words: Sequence[int], params: StoryParams) -> list[tuple[int, int]]:
    """(candidate, target index) for each candidate whose mean similarity to the members of
    its closest target reaches the length-adjusted ``attach_threshold``.  All are scored
    before any joins, so the order of the candidates does not matter."""
    import numpy as np

    if not candidates or not targets:
        return []
    rows = list(candidates)
    means = np.stack([similarity[np.ix_(rows, list(target))].mean(axis=1) for target in targets], axis=1)
    joins: list[tuple[int, int]] = []
    for row, index in enumerate(rows):
        best = int(np.argmax(means[row]))
        if means[row, best] >= _adjusted([*targets[best], index], words, params.attach_threshold,
                                         params.short_attach_threshold):
            joins.append((index, best))
    return joins


def _match(groups: Sequence[Sequence[int]], current: Sequence[str | None]) -> dict[int, str]:
    """Group index -> story, one to one, greedily by the number of the story's members
    in the group (ties: the older story id, then the earlier group)."""
    overlap: Counter[tuple[int, str]] = Counter(
        (g, current[i]) for g, group in enumerate(groups) for i in group if current[i] is not None)  # type: ignore[misc]
    matched: dict[int, str] = {}
    taken: set[str] = set()
    for (g, story_id), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], _id_order(kv[0][1]), kv[0][0])):
        if g not in matched and story_id not in taken:
            matched[g] = story_id
            taken.add(story_id)
    return matched


def _id_order(story_id: str) -> tuple[int, str]:
    digits = story_id[1:].split("-")[0]
    return (int(digits) if digits.isdigit() else 0, story_id)


def assign_stories(docs: Sequence[StoryDoc], vectors: np.ndarray, params: StoryParams,
                   taken_ids: Collection[str] = ()) -> StoryAssignment:
    """Assign the window's articles to existing or new stories (see the module doc).

    ``taken_ids`` are story ids already used (also outside the window); a new story
    never reuses one.  Returns only what changes."""
    import numpy as np

    n = len(docs)
    if n == 0 or all(doc.story_id is not None for doc in docs):
        return StoryAssignment({}, (), ())
    similarity = hybrid_similarity([doc.text for doc in docs], vectors, params)
    words = [len(doc.text.split()) for doc in docs]
    groups = propose_groups(similarity, words, params)
    current = [doc.story_id for doc in docs]
    members: dict[str, list[int]] = defaultdict(list)
    for index, story_id in enumerate(current):
        if story_id is not None:
            members[story_id].append(index)
    first_run = all(doc.is_new and doc.story_id is None for doc in docs)
    matched = _match(groups, current)
    used = set(taken_ids) | set(members)
    result = list(current)
    pending: dict[int, str] = {}
    new_ids: list[str] = []

    def confirmed(g: int, group: list[int]) -> bool:
        if first_run or len(group) >= params.confirm_size:
            return True
        waiting = Counter(docs[i].pending_group for i in group if current[i] is None and docs[i].pending_group)
        if waiting and waiting.most_common(1)[0][1] >= params.min_cluster_size:
            return True  # it held together since the last run
        others = [other for h, other in enumerate(groups) if h != g] + list(members.values())
        return all(_mean(similarity, group, other) < params.confirm_similarity for other in others)

    for g, group in enumerate(groups):
        present = sorted({current[i] for i in group if current[i] is not None})  # type: ignore[type-var]
        target = matched.get(g)
        if target is not None:
            for index in group:
                if current[index] is None:
                    result[index] = target if len(present) == 1 else max(
                        present, key=lambda s: (_mean(similarity, [index], members[s]), s == target))
            continue
        if not confirmed(g, group):
            key = f"p{min(docs[i].article_id for i in group)}"
            pending.update({docs[i].article_id: key for i in group if current[i] is None})
            continue
        story_id = _unused_id(sorted(group, key=lambda i: (docs[i].published, docs[i].article_id)), docs, used)
        used.add(story_id)
        new_ids.append(story_id)
        for index in group:  # a split: members of an earlier story move with the new one
            result[index] = story_id

    _attach_leftovers(result, docs, pending, similarity, words, params)
    story_of = {docs[i].article_id: result[i] for i in range(n)
                if result[i] is not None and result[i] != current[i]}
    moved_from = {docs[i].article_id: current[i] for i in range(n)
                  if current[i] is not None and result[i] != current[i]}
    updated = ({s for s in story_of.values() if s not in new_ids} | set(moved_from.values()))
    return StoryAssignment(story_of, tuple(new_ids), tuple(sorted(updated, key=_id_order)),
                           moved_from, pending)  # type: ignore[arg-type]


def _attach_leftovers(result: list[str | None], docs: Sequence[StoryDoc], pending: dict[int, str],
                      similarity: np.ndarray, words: Sequence[int], params: StoryParams) -> None:
    """Articles in no group (HDBSCAN noise no group took) join the story they are most
    similar to on average, at the length-adjusted ``attach_threshold``: a follow-up whose
    story's articles are no longer dense enough to form a group still finds it."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, story_id in enumerate(result):
        if story_id is not None:
            members[story_id].append(index)
    story_ids = sorted(members, key=_id_order)
    leftovers = [i for i, story_id in enumerate(result) if story_id is None and docs[i].article_id not in pending]
    for index, best in _closest_joins(leftovers, [members[s] for s in story_ids], similarity, words, params):
        result[index] = story_ids[best]


def _unused_id(founders: Sequence[int], docs: Sequence[StoryDoc], used: set[str]) -> str:
    """The id of the earliest article not already naming a story, else a numbered variant."""
    for index in founders:
        story_id = new_story_id(docs[index].article_id)
        if story_id not in used:
            return story_id
    base, number = new_story_id(docs[founders[0]].article_id), 2
    while f"{base}-{number}" in used:
        number += 1
    return f"{base}-{number}"


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


def group_topics(story_ids: Sequence[str], centroids: np.ndarray, threshold: float,
                 pair_threshold: float | None = None) -> dict[str, str]:
    """Topic of each story: average-linkage groups of story centroids (cosine ≥
    ``threshold``), then the groups of two stories that are each other's nearest story
    with cosine ≥ ``pair_threshold`` are joined.

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
    cosine = (unit @ unit.T).astype(np.float64)
    distance = np.clip(1.0 - cosine, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    group_of = [int(g) for g in fcluster(tree, t=1.0 - threshold, criterion="distance")]
    if pair_threshold is not None:
        np.fill_diagonal(cosine, -np.inf)
        nearest = cosine.argmax(axis=1)
        parent = {g: g for g in group_of}

        def root(g: int) -> int:
            while parent[g] != g:
                g = parent[g]
            return g

        for a, b in enumerate(nearest.tolist()):
            if nearest[b] == a and cosine[a, b] >= pair_threshold:
                parent[root(group_of[a])] = root(group_of[b])
        group_of = [root(g) for g in group_of]
    by_group: dict[int, list[str]] = defaultdict(list)
    for story_id, group in zip(story_ids, group_of):
        by_group[group].append(story_id)
    topic_of: dict[str, str] = {}
    for group_members in by_group.values():
        oldest = min(group_members, key=_id_order)
        for story_id in group_members:
            topic_of[story_id] = f"t{oldest[1:]}"
    return topic_of
