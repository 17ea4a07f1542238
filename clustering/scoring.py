"""Same story?  The one decision every part of the story stage asks, and the story settings.

Pure over arrays.  Both grouping from scratch (cluster.py) and reconciliation with stored
stories (stories.py) call down to this module; it imports neither.

What is compared, and how (docs/design.md, "Stories"):

* :class:`StoryFeatures`: a window's rows as the decision sees them: embeddings, name TF-IDF
  (capitalised words and numbers, terms.py), optional word TF-IDF, text lengths;
* :func:`edge_similarity`: the hybrid similarity of article pairs,
  ``(w_e·cos_embedding + w_w·cos_words + w_n·cos_names) / (w_e + w_w + w_n·[both have names])``;
* :class:`GroupSums`: the *average* hybrid similarity of two groups, exact from per-group sums
  (Σ_A·Σ_B / |A||B| for each part), for any number of groups;
* :func:`merge_threshold`: the similarity two groups need to be one story;
* :func:`attach_by_neighbours`: the neighbour vote (an article in no group joins the group
  holding most of its close neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse

    from .graph import NeighbourGraph


@dataclass(frozen=True)
class StoryParams:
    """Story and topic parameters (keys of ``settings.stories`` in feeds.yaml).

    One default for every corpus: nothing here is keyed to a data set; what adapts
    (the merge threshold by text length, the names where a window has any) adapts
    from the window's own articles.  Figures are story B-cubed F1 from
    ``bench/quality.py`` (docs/benchmarks.md) unless marked "lab" (the same engine run
    on cached embeddings, dedup by exact text only): ECB+ (full articles, two events of
    one kind per topic) and GoogleNews TS / T / S (lower-cased titles and snippets,
    broad stories)."""

    min_cluster_size: int = 3
    """Fewest articles that found a story, besides a pair whose P(same story) reaches
    ``cluster.PAIR_PROBABILITY``.  2 makes stories of chance pairs: lab, ECB+ with 600
    unrelated BBC articles mixed in 0.914 at 2, 0.935 at 3 (the other corpora within
    0.005)."""

    neighbours: int = 10
    """Nearest neighbours per article in the window's graph (FAISS).  Lab: 10, 20 and 30
    give the same B-cubed F1 within 0.01 on every corpus; memory and time grow with it."""

    embedding_weight: float = 0.3
    """Weight of the sentence-embedding cosine in the hybrid similarity."""

    lexical_weight: float = 0.0
    """Weight of the word TF-IDF cosine.  0: on short texts words only lower the scale of
    the similarity (lab, GoogleNews T at the best cut: 0.828 without, 0.778 at 0.25)."""

    entity_weight: float = 0.7
    """Weight of the name TF-IDF cosine, counted only for article pairs that both have
    names (so a lower-cased corpus is compared on embeddings alone).  Names tell two
    events of one kind apart.  Lab, ECB+ at each weight's best threshold:
    0.5/0.5 0.902, 0.4/0.6 0.915, 0.35/0.65 0.933, 0.3/0.7 0.930."""

    story_probability: float = 0.5
    """P(same story) (``SAME_STORY_MODEL``) two groups need, on average over their article
    pairs, to merge: a hybrid similarity of 0.31 at 5 words to 0.425 at 320, linear in
    log-length.  Lab, B-cubed F1 at 0.5 / 0.6: ECB+ 0.937 / 0.926, thinned GoogleNews T
    0.861 / 0.885, thinned ECB+ 0.871 / 0.902 (before the short end moved up)."""

    story_threshold: float | None = None
    """A fixed hybrid similarity to merge at, whatever the texts' length, instead of the
    calibrated model (experiments and tests); None: the model."""

    confirm_size: int = 8
    """A new group smaller than this that resembles an existing story (average similarity
    ≥ ``confirm_similarity``) waits one run before it founds a story, unless the run is
    the window's first.  Early in a stream events have one or two articles each and
    chance groups of two events of one kind form; waiting keeps later splits rare."""

    confirm_similarity: float = 0.30
    """Average similarity to a story from which a small new group counts as resembling
    it (below it, the group founds its story at once: a new event on a quiet day)."""

    topic_threshold: float = 0.55
    """Cosine between story centroids (embedding) at which stories share a topic
    (average linkage over the stories' neighbour graph)."""

    topic_pair_threshold: float = 0.40
    """Two stories that are each other's nearest story share a topic from this cosine on,
    even below ``topic_threshold``: a loose pair of one kind (two rehab stays of two
    actresses, 0.47) is still one topic."""

    keywords: int = 5
    """Keywords kept per story label (c-TF-IDF)."""

    def __post_init__(self) -> None:
        if self.min_cluster_size < 2:
            raise ValueError("min_cluster_size must be at least 2 (stories of one are not stories)")
        if self.neighbours < 1:
            raise ValueError("neighbours must be at least 1")
        if self.confirm_size < self.min_cluster_size:
            raise ValueError("confirm_size must be at least min_cluster_size")
        weights = (self.embedding_weight, self.lexical_weight, self.entity_weight)
        if any(w < 0 for w in weights) or self.embedding_weight + self.lexical_weight <= 0:
            raise ValueError("similarity weights must be non-negative, and embedding_weight + lexical_weight > 0")
        if not 0.0 < self.story_probability < 1.0:
            raise ValueError("story_probability must be between 0 and 1 (both excluded)")
        if self.story_threshold is not None and not -1.0 <= self.story_threshold <= 1.0:
            raise ValueError("story_threshold must be between -1 and 1")
        for name in ("topic_threshold", "confirm_similarity", "topic_pair_threshold"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between -1 and 1")


MIN_TERM_ARTICLES = 2
"""Names found in fewer articles of the window are dropped before TF-IDF: they cannot
link two articles and only dilute the cosine of the one that has them (ECB+ 0.94 with,
0.92–0.93 without, under the 0.2 engine)."""

MAX_TERM_SHARE = 0.5
"""Names found in more than this share of a window's articles (above 20 articles) are
dropped: they no longer tell stories apart."""

SMALL_WINDOW = 20
"""Windows up to this many articles keep even their most common names (one event may
fill a small window)."""


SHORT_TEXT_WORDS = 5
"""Words per text at which the length share is 0 (a headline)."""

LONG_TEXT_WORDS = 320
"""Words per text at which it is 1 (a full article as the model sees it:
it reads 256 word pieces, the embedded text is cut at 2,000 characters)."""

PAIR_CHUNK = 8192
"""Group pairs scored per block (bounds the gathered (pairs × dimensions) arrays).  Blocks of
65,536 gathered 134 MB per side, new memory each time: the first round of average linkage on a
100k window's region (153k pairs) took 0.5–0.8 s of page faults, 0.1–0.2 s in blocks of 8,192
(issue 19; each pair's sums are the same, whatever the block)."""

ATTACH_SHARE = 2 / 3
"""An article in no group joins the group holding at least this share of its close
neighbours (those whose similarity clears the merge threshold)."""


ATTACH_MIN_VOTES = 2
"""Close neighbours an article in no group needs in one group to join it (one close
neighbour alone is a pair, not evidence of a story).  Lab, B-cubed F1 before / after
the vote: ECB+ 0.932 / 0.943, with 600 noise articles 0.933 / 0.937 (noise stays
alone), GoogleNews TS 0.892 / 0.898, S 0.839 / 0.849, T 0.834 / 0.840."""


@dataclass(frozen=True)
class StoryFeatures:
    """The window's rows as the clustering compares them."""

    vectors: np.ndarray                       # (n, d) float32, L2-normalized embeddings
    names: scipy.sparse.csr_matrix            # (n, V) name TF-IDF, rows L2-normalized or empty
    log_words: np.ndarray                     # (n,) log2 of the words of each text (≥ 0)
    words: scipy.sparse.csr_matrix | None = None   # word TF-IDF when lexical_weight > 0
    copies: np.ndarray | None = None          # (n,) the window's duplicates of each row (not rows themselves)

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def has_names(self) -> np.ndarray:
        import numpy as np

        named: np.ndarray = np.diff(self.names.indptr) > 0
        return named


def tfidf_rows(documents: Sequence[Sequence[str]], min_articles: int, max_share: float | None,
               frequency: Mapping[str, int] | None = None, total: int | None = None) -> scipy.sparse.csr_matrix:
    """Sublinear TF-IDF of token lists, rows L2-normalized; terms in fewer than
    ``min_articles`` documents (they link nothing) or in more than ``max_share`` of
    them (they separate nothing) are dropped.  A document with no kept term is an
    empty row.  ``frequency`` (each term's document count) and ``total`` describe the
    collection when ``documents`` are only part of it (the rows are then those the whole
    collection would give)."""
    import numpy as np
    import scipy.sparse

    if frequency is None:
        frequency, total = document_frequency(documents), len(documents)
    assert total is not None
    limit = max_share * total if max_share is not None else float("inf")
    vocabulary: dict[str, int] = {}
    rows: list[int] = []
    columns: list[int] = []
    weights: list[float] = []
    for row, tokens in enumerate(documents):
        for term, count in _counts(tokens).items():
            df = frequency.get(term, 0)
            if df < min_articles or df > limit:
                continue
            rows.append(row)
            columns.append(vocabulary.setdefault(term, len(vocabulary)))
            weights.append((1.0 + math.log(count)) * (math.log((1.0 + total) / (1.0 + df)) + 1.0))
    matrix = scipy.sparse.csr_matrix((np.asarray(weights, dtype=np.float64), (rows, columns)),
                                     shape=(len(documents), len(vocabulary)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return scipy.sparse.csr_matrix(matrix.multiply(1.0 / norms[:, None]), dtype=np.float32)


def tfidf_token_rows(documents: np.ndarray, tokens: np.ndarray, count: int, frequency: np.ndarray,
                     min_articles: int, max_share: float | None, total: int) -> scipy.sparse.csr_matrix:
    """:func:`tfidf_rows` of ``count`` documents given as token ids: ``(documents[i], tokens[i])``
    in document order and, within one, in the order of its tokens; ``frequency[t]`` the document
    frequency of token ``t`` in a collection of ``total`` documents.  The same matrix to the bit
    (entries in the same order, the same weights: the logarithms are math.log's of each distinct
    count and frequency), with NumPy instead of a Python loop per token: 0.35 s for the 33k
    region rows of a 100k window's run (issue 19)."""
    import numpy as np
    import scipy.sparse

    position = np.arange(len(tokens))
    order = np.lexsort((position, tokens, documents))
    document, token = documents[order], tokens[order]
    first = np.r_[True, (document[1:] != document[:-1]) | (token[1:] != token[:-1])] if len(order) else \
        np.zeros(0, dtype=bool)
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(order)])
    in_order = np.argsort(order[starts], kind="stable")   # each document's terms by first occurrence
    document, token, counts = document[starts][in_order], token[starts][in_order], counts[in_order]
    df = frequency[token]
    limit = max_share * total if max_share is not None else float("inf")
    kept = (df >= min_articles) & (df <= limit)
    document, token, counts, df = document[kept], token[kept], counts[kept], df[kept]
    terms, first_seen, column_of = np.unique(token, return_index=True, return_inverse=True)
    column = np.empty(len(terms), dtype=np.int64)
    column[np.argsort(first_seen, kind="stable")] = np.arange(len(terms))
    tf = {c: 1.0 + math.log(c) for c in set(counts.tolist())}
    idf = {d: math.log((1.0 + total) / (1.0 + d)) + 1.0 for d in set(df.tolist())}
    weights = np.asarray([tf[c] for c in counts.tolist()], dtype=np.float64) * \
        np.asarray([idf[d] for d in df.tolist()], dtype=np.float64)
    matrix = scipy.sparse.csr_matrix((weights, (document, column[column_of.reshape(-1)])),
                                     shape=(count, len(terms)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return scipy.sparse.csr_matrix(matrix.multiply(1.0 / norms[:, None]), dtype=np.float32)


def document_frequency(documents: Sequence[Sequence[str]]) -> dict[str, int]:
    """In how many documents each term occurs."""
    frequency: dict[str, int] = {}
    for tokens in documents:
        for term in set(tokens):
            frequency[term] = frequency.get(term, 0) + 1
    return frequency


def _counts(tokens: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return counts


@dataclass(frozen=True)
class SameStoryModel:
    """P(same story) of two articles (or two groups, on average) from their hybrid similarity and
    their texts' length share L (0 at ``SHORT_TEXT_WORDS`` words, 1 at ``LONG_TEXT_WORDS``):
    ``logit P = intercept + similarity·s + length·L + similarity_x_length·s·L``.  One calibrated
    scale for every decision and every kind of text: a story founded, a pair kept, an orphan taken in,
    a weak member dropped each ask for a probability, not a similarity that means more or less by
    text length."""

    intercept: float
    similarity: float
    length: float
    similarity_x_length: float

    def probability(self, similarity: np.ndarray, length: np.ndarray) -> np.ndarray:
        import numpy as np

        z = self.intercept + self.similarity * similarity \
            + (self.length + self.similarity_x_length * similarity) * length
        probability: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return probability

    def threshold(self, probability: float, length: np.ndarray) -> np.ndarray:
        """The similarity at which P(same) reaches ``probability``, for each length share."""
        import numpy as np

        z = math.log(probability / (1.0 - probability))
        length = np.asarray(length, dtype=np.float64)
        return (z - self.intercept - self.length * length) / (self.similarity + self.similarity_x_length * length)


SAME_STORY_MODEL = SameStoryModel(intercept=-3.1, similarity=10.0, length=-1.15, similarity_x_length=0.0)
"""P = 0.5 at hybrid similarity 0.31 for headlines (5 words) and 0.425 for full articles (320 words),
P = 0.73 a tenth higher.  Its scale (10 per unit of similarity) and the long end are those of the
former length line and of a logistic fit on ECB+'s neighbour edges (weights 5.3 / 10.7 for
embedding and name cosine: the 0.3 / 0.7 mix, P = 0.5 at 0.44); the short end was raised from 0.285
on the thinned corpora (docs/design.md).  ``python bench/calibrate.py`` refits it on every dev
corpus and prints how each is calibrated; its pair-level fit (intercept −4.66, similarity 9.96,
length −2.45, similarity × length 6.10) agrees on the scale but puts P = 0.5 at 0.47 for headlines and
0.44 for full articles: by it, the shipped line merges groups at a pair probability of 0.17 on
headlines and 0.43 on full articles.  Average linkage merges on a group's average, which a pair-level
fit does not model; the fitted line was not measured end to end in time (docs/design.md)."""


def merge_threshold(log_words: np.ndarray, params: StoryParams) -> np.ndarray:
    """The similarity two groups need to merge, by the mean log2 length of their texts: where
    P(same story) reaches ``params.story_probability`` (or ``params.story_threshold`` when set)."""
    return similarity_at(params.story_probability, log_words, params)


def similarity_at(probability: float, log_words: np.ndarray, params: StoryParams) -> np.ndarray:
    """The hybrid similarity at which P(same story) reaches ``probability``, by mean log2 length.  With
    a fixed ``params.story_threshold`` the model's line is moved so that ``story_probability`` falls
    on it."""
    import numpy as np

    length = length_share(log_words)
    line = SAME_STORY_MODEL.threshold(probability, length)
    if params.story_threshold is None:
        return line
    return np.asarray(line - SAME_STORY_MODEL.threshold(params.story_probability, length) + params.story_threshold)


def length_share(log_words: np.ndarray) -> np.ndarray:
    """0 at SHORT_TEXT_WORDS, 1 at LONG_TEXT_WORDS, linear in log-length, clipped."""
    import numpy as np

    low, high = math.log2(SHORT_TEXT_WORDS), math.log2(LONG_TEXT_WORDS)
    return np.clip((np.asarray(log_words, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


NAME_LIFT: float | None = 0.0
"""How far names may lift a pair's (or two groups') similarity above their embedding cosine: none.
Names tell two events of one kind apart (they lower the similarity), but a shared person, place or
club alone chained unrelated events (lab, ECB+ first lines thinned: 6 grab-bags of 20 with the lift
unbounded, 4 with none; ECB+ 0.937 either way).  None: unbounded (the plain hybrid)."""


def combine(embedding: np.ndarray, words: np.ndarray | None, names: np.ndarray, both_named: np.ndarray,
             params: StoryParams) -> np.ndarray:
    """The hybrid similarity from its parts (module doc); ``both_named`` is the share of
    article pairs in which both have names."""
    import numpy as np

    numerator = params.embedding_weight * embedding + params.entity_weight * names
    denominator = params.embedding_weight + params.entity_weight * both_named
    if words is not None:
        numerator = numerator + params.lexical_weight * words
        denominator = denominator + params.lexical_weight
    hybrid = np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 0.0)
    if NAME_LIFT is None:
        return hybrid
    return np.minimum(hybrid, embedding + NAME_LIFT)


def edge_similarity(features: StoryFeatures, heads: np.ndarray, tails: np.ndarray,
                    params: StoryParams) -> np.ndarray:
    """The hybrid similarity of each article pair (heads[i], tails[i])."""
    import numpy as np

    named = features.has_names.astype(np.float64)
    parts: list[np.ndarray] = []
    for start in range(0, len(heads), PAIR_CHUNK):
        a, b = heads[start:start + PAIR_CHUNK], tails[start:start + PAIR_CHUNK]
        embedding = np.einsum("ij,ij->i", features.vectors[a], features.vectors[b]).astype(np.float64)
        names = _row_dots(features.names, a, b)
        words = _row_dots(features.words, a, b) if uses_words(features, params) else None
        parts.append(combine(embedding, words, names, named[a] * named[b], params))
    return np.concatenate(parts) if parts else np.zeros(0)


def uses_words(features: StoryFeatures, params: StoryParams) -> bool:
    return features.words is not None and params.lexical_weight > 0


def _row_dots(matrix: scipy.sparse.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import numpy as np

    if matrix.shape[1] == 0 or len(a) == 0:
        return np.zeros(len(a))
    return np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1), dtype=np.float64).ravel()


def group_similarity(features: StoryFeatures, group: Sequence[int], others: Sequence[Sequence[int]],
                     params: StoryParams) -> np.ndarray:
    """Average hybrid similarity between the articles of ``group`` and those of each of
    ``others`` (one value per other group)."""
    return GroupSums.of(features, [group, *others], params).against_others(0)


@dataclass(frozen=True)
class GroupSums:
    """Per-group sums of a list of groups (rows of the window), from which the average hybrid
    similarity of any two of them is exact: built once, asked for many groups."""

    sums: np.ndarray                          # (groups, d) embedding sums
    name_sums: scipy.sparse.csr_matrix
    word_sums: scipy.sparse.csr_matrix | None
    size: np.ndarray
    named_count: np.ndarray
    params: StoryParams

    @classmethod
    def of(cls, features: StoryFeatures, groups: Sequence[Sequence[int]], params: StoryParams) -> GroupSums:
        import numpy as np
        import scipy.sparse

        lengths = [len(g) for g in groups]
        rows = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]) if groups else np.zeros(0, np.int64)
        # only the rows the groups hold, in ascending order (the same sums, added in the same order, as
        # over every row of the window: a region's 33k float64 rows were copied for each call before)
        used, column = np.unique(rows, return_inverse=True)
        membership = scipy.sparse.csr_matrix((np.ones(len(rows)), (np.repeat(np.arange(len(groups)), lengths),
                                                                    column.reshape(-1))),
                                             shape=(len(groups), len(used)))
        word_sums = (membership @ features.words[used]).tocsr() \
            if features.words is not None and uses_words(features, params) else None
        return cls(membership @ features.vectors[used].astype(np.float64), (membership @ features.names[used]).tocsr(),
                   word_sums, np.asarray(lengths, dtype=np.float64),
                   membership @ features.has_names[used].astype(np.float64), params)

    def between(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Average similarity of groups ``left[i]`` and ``right[i]`` (indices into the list)."""
        return group_scores(left, right, self.sums, self.name_sums, self.word_sums, self.size, self.named_count,
                            self.params)

    def against_others(self, index: int) -> np.ndarray:
        """Average similarity of group ``index`` to every other group, in order (itself left out)."""
        import numpy as np

        others = np.delete(np.arange(len(self.size), dtype=np.int64), index)
        return group_scores(np.full(len(others), index, dtype=np.int64), others, self.sums, self.name_sums,
                             self.word_sums, self.size, self.named_count, self.params)


def group_scores(left: np.ndarray, right: np.ndarray, sums: np.ndarray, name_sums: scipy.sparse.csr_matrix,
                  word_sums: scipy.sparse.csr_matrix | None, size: np.ndarray, named_count: np.ndarray,
                  params: StoryParams) -> np.ndarray:
    """Average hybrid similarity of each pair of groups, from the groups' sums."""
    import numpy as np

    parts: list[np.ndarray] = []
    for start in range(0, len(left), PAIR_CHUNK):
        a, b = left[start:start + PAIR_CHUNK], right[start:start + PAIR_CHUNK]
        pairs = size[a] * size[b]
        embedding = np.einsum("ij,ij->i", sums[a], sums[b]) / pairs
        names = _row_dots(name_sums, a, b) / pairs
        words = _row_dots(word_sums, a, b) / pairs if word_sums is not None else None
        parts.append(combine(embedding, words, names, named_count[a] * named_count[b] / pairs, params))
    return np.concatenate(parts) if parts else np.zeros(0)


def attach_by_neighbours(labels: Sequence[int | None], heads: np.ndarray, tails: np.ndarray,
                         similarity: np.ndarray, threshold: np.ndarray, min_votes: int) -> list[int | None]:
    """Give each row without a group (None) the group holding at least ``ATTACH_SHARE``
    and ``min_votes`` of its close neighbours (edges with similarity ≥ threshold)."""
    import numpy as np

    result = list(labels)
    label_array = np.array([-1 if x is None else x for x in labels], dtype=np.int64)
    close = similarity >= threshold
    a, b = heads[close], tails[close]
    votes: dict[int, dict[int, int]] = {}
    for row, other in ((a, b), (b, a)):
        lonely = (label_array[row] < 0) & (label_array[other] >= 0)
        for r, group in zip(row[lonely].tolist(), label_array[other[lonely]].tolist(), strict=True):
            tally = votes.setdefault(r, {})
            tally[group] = tally.get(group, 0) + 1
    for lonely_row, tally in votes.items():
        group, count = max(tally.items(), key=lambda kv: (kv[1], -kv[0]))
        if count >= min_votes and count >= ATTACH_SHARE * sum(tally.values()):
            result[lonely_row] = group
    return result


@dataclass(frozen=True)
class ScoredEdges:
    """The graph's undirected edges with their hybrid similarity and merge threshold."""

    heads: np.ndarray
    tails: np.ndarray
    similarity: np.ndarray
    threshold: np.ndarray

    @property
    def close(self) -> np.ndarray:
        """Edges whose similarity reaches their threshold."""
        return self.similarity >= self.threshold


def score_edges(features: StoryFeatures, graph: NeighbourGraph, params: StoryParams) -> ScoredEdges:
    heads, tails = graph.edges()
    similarity = edge_similarity(features, heads, tails, params)
    threshold = merge_threshold((features.log_words[heads] + features.log_words[tails]) / 2, params)
    return ScoredEdges(heads, tails, similarity, threshold)


def pair_matrix(features: StoryFeatures, rows: Sequence[int], params: StoryParams) -> np.ndarray:
    """The hybrid similarity of every two of ``rows`` (a small group's own pairs), as edge_similarity
    computes it."""
    import numpy as np

    index = np.asarray(rows, dtype=np.int64)
    vectors = features.vectors[index].astype(np.float64)
    embedding = vectors @ vectors.T
    names = features.names[index]
    name_dots = (names @ names.T).toarray() if names.shape[1] else np.zeros_like(embedding)
    named = features.has_names[index].astype(np.float64)
    words = None
    if uses_words(features, params):
        assert features.words is not None
        word_rows = features.words[index]
        words = (word_rows @ word_rows.T).toarray()
    return combine(embedding, words, name_dots, np.outer(named, named), params)
