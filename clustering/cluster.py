"""Story groups of a window, from scratch, on its sparse neighbour graph.

Pure over arrays: :func:`propose_groups` takes the window's features and neighbour
graph and returns groups of rows; stories.py reconciles them with stored stories.

The similarity of two articles mixes the embedding cosine with the cosine of their
*names* (TF-IDF of capitalised words and numbers), the names counted only where both
articles have some::

    sim = (w_e·cos_embedding + w_w·cos_words + w_n·cos_names) / (w_e + w_w + w_n·[both have names])

so a lower-cased corpus (no names anywhere) is compared on its embeddings alone, and
an article without names is not punished for it.  Between two groups the similarity is
the *average* over all their article pairs, which for these inner products is exact
from per-group sums (Σ_A·Σ_B / |A||B|): no pair matrix is ever built.

Steps (docs/design.md, "Stories"):

1. dense cores: HDBSCAN (sparse precomputed distances, one run per connected
   component) over the edges that clear the merge threshold by ``CORE_MARGIN``;
2. average linkage, from the cores and the remaining articles: in rounds, every two
   groups that are each other's most similar neighbour merge, while their average
   similarity reaches the merge threshold (reciprocal-nearest-neighbour clustering:
   for average linkage the same result as merging one pair at a time);
3. groups of ``min_cluster_size`` or more are stories; an article left alone joins
   the group that holds most of its close neighbours (``attach_by_neighbours``).

The merge threshold follows the texts' length: embedding cosines of one event's
articles run higher for full articles than for headlines, so one fixed cut splits
short-text stories or merges full-article ones (docs/design.md).
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
    from .stories import StoryParams

CORE_MARGIN = 0.10
"""Dense cores are found among the edges whose similarity clears the merge threshold by
this much: HDBSCAN on every edge groups far-apart leftovers (its single-linkage leaves
form at any distance: ECB+ with 600 BBC noise articles fell from 0.935 to 0.865); with
the margin the cores are neutral to slightly helpful (lab, B-cubed F1 with / without
cores: ECB+ 0.932 / 0.933, short leads 0.873 / 0.865, GoogleNews T 0.825 / 0.834)."""

SHORT_TEXT_WORDS = 5
"""Words per text at which the merge threshold is ``short_story_threshold`` (a headline)."""

LONG_TEXT_WORDS = 320
"""Words per text at which it is ``story_threshold`` (a full article as the model sees it:
it reads 256 word pieces, the embedded text is cut at 2,000 characters)."""

PAIR_CHUNK = 65536
"""Group pairs scored per block (bounds the gathered (pairs × dimensions) arrays)."""

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

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def has_names(self) -> np.ndarray:
        import numpy as np

        return np.diff(self.names.indptr) > 0


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


def merge_threshold(log_words: np.ndarray, params: StoryParams) -> np.ndarray:
    """The similarity two groups need to merge, by the mean log2 length of their texts:
    ``short_story_threshold`` at ``SHORT_TEXT_WORDS`` words, ``story_threshold`` at
    ``LONG_TEXT_WORDS``, linear in log-length between and clipped outside."""
    return params.short_story_threshold + _length_share(log_words) * (params.story_threshold -
                                                                       params.short_story_threshold)


def _length_share(log_words: np.ndarray) -> np.ndarray:
    """0 at SHORT_TEXT_WORDS, 1 at LONG_TEXT_WORDS, linear in log-length, clipped."""
    import numpy as np

    low, high = math.log2(SHORT_TEXT_WORDS), math.log2(LONG_TEXT_WORDS)
    return np.clip((np.asarray(log_words, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def _combine(embedding: np.ndarray, words: np.ndarray | None, names: np.ndarray, both_named: np.ndarray,
             params: StoryParams) -> np.ndarray:
    """The hybrid similarity from its parts (module doc); ``both_named`` is the share of
    article pairs in which both have names."""
    import numpy as np

    numerator = params.embedding_weight * embedding + params.entity_weight * names
    denominator = params.embedding_weight + params.entity_weight * both_named
    if words is not None:
        numerator = numerator + params.lexical_weight * words
        denominator = denominator + params.lexical_weight
    return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 0.0)


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
        words = _row_dots(features.words, a, b) if _uses_words(features, params) else None
        parts.append(_combine(embedding, words, names, named[a] * named[b], params))
    return np.concatenate(parts) if parts else np.zeros(0)


def _uses_words(features: StoryFeatures, params: StoryParams) -> bool:
    return features.words is not None and params.lexical_weight > 0


def _row_dots(matrix: scipy.sparse.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import numpy as np

    if matrix.shape[1] == 0 or len(a) == 0:
        return np.zeros(len(a))
    return np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1), dtype=np.float64).ravel()


def dense_cores(n: int, heads: np.ndarray, tails: np.ndarray, similarity: np.ndarray,
                min_cluster_size: int) -> np.ndarray:
    """HDBSCAN (leaf clusters, min_samples 1) over the given edges, one run per connected
    component, as HDBSCAN requires of a sparse precomputed distance matrix.  Returns a
    label per row, −1 for rows in no core.  A component too small to hold two cores is
    one core as it is."""
    import numpy as np
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components

    labels = np.full(n, -1, dtype=np.int64)
    if len(heads) == 0:
        return labels
    distance = np.clip(1.0 - similarity, 1e-6, 2.0)   # 0 would read as "no edge"
    graph = scipy.sparse.coo_matrix((np.r_[distance, distance], (np.r_[heads, tails], np.r_[tails, heads])),
                                    shape=(n, n)).tocsr()
    count, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=count)
    next_label = 0
    order = np.argsort(component, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)]
    for c in np.flatnonzero(sizes >= min_cluster_size):
        rows = order[starts[c]:starts[c + 1]]
        if len(rows) < 2 * min_cluster_size:
            labels[rows] = next_label
            next_label += 1
            continue
        found = _hdbscan_leaves(graph[rows][:, rows], min_cluster_size)
        inside = found >= 0
        labels[rows[inside]] = found[inside] + next_label
        next_label += int(found.max()) + 1 if inside.any() else 0
    return labels


def _hdbscan_leaves(distance: scipy.sparse.csr_matrix, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN's leaf clusters (min_samples 1, a single cluster allowed) of one connected
    component: :func:`_leaves_from_tree` when this hdbscan offers its tree functions, else the
    estimator (the same labels; tests/test_cluster.py compares them)."""
    try:
        return _leaves_from_tree(distance, min_cluster_size)
    except _NoTreeFunctions:
        pass
    import warnings

    import hdbscan

    clusterer = hdbscan.HDBSCAN(metric="precomputed", min_cluster_size=min_cluster_size, min_samples=1,
                                cluster_selection_method="leaf", allow_single_cluster=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clusterer.fit_predict(distance)


class _NoTreeFunctions(Exception):
    """This hdbscan does not expose the functions _leaves_from_tree calls."""


def _leaves_from_tree(distance: scipy.sparse.csr_matrix, min_cluster_size: int) -> np.ndarray:
    """What ``HDBSCAN(metric="precomputed", min_samples=1, cluster_selection_method="leaf",
    allow_single_cluster=True).fit_predict`` computes for a connected sparse distance matrix, step
    by step as hdbscan does it, without the estimator's per-call checks and its element-wise
    mutual-reachability loop: a run of a 100k-article window calls it for a thousand components,
    and the estimator cost 7 ms each, most of it overhead.

    Mutual reachability with min_samples 1: max(d(i, j), the distance of i's and of j's nearest
    neighbour); its minimum spanning tree (SciPy); hdbscan's own single-linkage labelling,
    condensed tree and leaf selection."""
    import numpy as np
    import scipy.sparse
    from scipy.sparse import csgraph

    try:
        from hdbscan._hdbscan_linkage import label
        from hdbscan.hdbscan_ import _tree_to_labels
    except (ImportError, AttributeError) as exc:
        raise _NoTreeFunctions from exc
    matrix = scipy.sparse.csr_matrix(distance, dtype=np.float64, copy=True)
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    core = np.full(matrix.shape[0], np.inf)
    present = counts > 0
    core[present] = np.minimum.reduceat(matrix.data, matrix.indptr[:-1][present])
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    reach = np.maximum(np.maximum(core[rows], core[matrix.indices]), matrix.data)
    tree = csgraph.minimum_spanning_tree(scipy.sparse.csr_matrix((reach, matrix.indices, matrix.indptr),
                                                                 shape=matrix.shape))
    nonzeros = tree.nonzero()
    edges = np.vstack(nonzeros + (np.asarray(tree[nonzeros]).ravel(),)).T
    edges = edges[np.argsort(edges.T[2]), :]   # as hdbscan sorts them (its ties, its order)
    labels: np.ndarray = _tree_to_labels(None, label(edges), min_cluster_size=min_cluster_size,
                                         cluster_selection_method="leaf", allow_single_cluster=True)[0]
    return labels


def average_linkage(features: StoryFeatures, heads: np.ndarray, tails: np.ndarray, params: StoryParams,
                    start: np.ndarray, fixed_threshold: float | None = None) -> np.ndarray:
    """Merge groups (``start``: a label per row, equal labels = one group) along the
    graph's edges by average similarity, reciprocal best pairs first, while a pair's
    average reaches its merge threshold (by text length, or ``fixed_threshold``).
    Returns a label per row (the smallest row of its group)."""
    import numpy as np
    import scipy.sparse

    from .graph import unique_keys

    n = features.size
    labels = _smallest_member_labels(start)
    use_words = _uses_words(features, params)
    named = features.has_names.astype(np.float64)
    membership = scipy.sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(n, n))
    sums = membership @ features.vectors.astype(np.float64)
    size = np.bincount(labels, minlength=n).astype(np.float64)
    named_count = np.bincount(labels, weights=named, minlength=n)
    log_sum = np.bincount(labels, weights=features.log_words, minlength=n)
    cached_keys = np.zeros(0, dtype=np.int64)
    cached_scores = np.zeros(0)
    changed = np.ones(n, dtype=bool)
    while True:
        a, b = labels[heads], labels[tails]
        cross = a != b
        if not cross.any():
            break
        keys = unique_keys(np.minimum(a[cross], b[cross]) * n + np.maximum(a[cross], b[cross]))
        left, right = keys // n, keys % n
        scores = np.empty(len(keys))
        fresh = changed[left] | changed[right]
        if cached_keys.size:
            position = np.clip(np.searchsorted(cached_keys, keys), 0, cached_keys.size - 1)
            fresh |= cached_keys[position] != keys
            scores[~fresh] = cached_scores[position[~fresh]]
        if fresh.any():
            membership = scipy.sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(n, n))
            name_sums = (membership @ features.names).tocsr()
            word_sums = (membership @ features.words).tocsr() if use_words else None
            scores[fresh] = _group_scores(left[fresh], right[fresh], sums, name_sums, word_sums, size,
                                          named_count, params)
        cached_keys, cached_scores = keys, scores
        if fixed_threshold is not None:
            ok = scores >= fixed_threshold
        else:
            ok = scores >= merge_threshold((log_sum[left] + log_sum[right]) / (size[left] + size[right]), params)
        if not ok.any():
            break
        winners, losers = _reciprocal_best(left[ok], right[ok], scores[ok], n)
        if len(winners) == 0:
            break
        changed[:] = False
        changed[winners] = True
        sums[winners] += sums[losers]
        size[winners] += size[losers]
        named_count[winners] += named_count[losers]
        log_sum[winners] += log_sum[losers]
        remap = np.arange(n)
        remap[losers] = winners
        labels = remap[labels]
    return labels


def linkage_at(vectors: np.ndarray, heads: np.ndarray, tails: np.ndarray, threshold: float) -> np.ndarray:
    """Plain average linkage of L2-normalized ``vectors`` along the edges, cut at a fixed
    cosine (topics of stories).  Returns a label per row."""
    import numpy as np
    import scipy.sparse

    from .stories import StoryParams

    n = len(vectors)
    features = StoryFeatures(vectors=vectors, names=scipy.sparse.csr_matrix((n, 0), dtype=np.float32),
                             log_words=np.zeros(n))
    plain = StoryParams(embedding_weight=1.0, lexical_weight=0.0, entity_weight=0.0)
    return average_linkage(features, heads, tails, plain, np.full(n, -1), fixed_threshold=threshold)


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
        membership = scipy.sparse.csr_matrix((np.ones(len(rows)), (np.repeat(np.arange(len(groups)), lengths), rows)),
                                             shape=(len(groups), features.size))
        word_sums = (membership @ features.words).tocsr() if _uses_words(features, params) else None
        return cls(membership @ features.vectors.astype(np.float64), (membership @ features.names).tocsr(), word_sums,
                   np.asarray(lengths, dtype=np.float64), membership @ features.has_names.astype(np.float64), params)

    def against_others(self, index: int) -> np.ndarray:
        """Average similarity of group ``index`` to every other group, in order (itself left out)."""
        import numpy as np

        others = np.delete(np.arange(len(self.size), dtype=np.int64), index)
        return _group_scores(np.full(len(others), index, dtype=np.int64), others, self.sums, self.name_sums,
                             self.word_sums, self.size, self.named_count, self.params)


def _smallest_member_labels(start: np.ndarray) -> np.ndarray:
    """Relabel groups by their smallest row (rows with a negative label stand alone)."""
    import numpy as np

    start = np.asarray(start)
    n = len(start)
    labels = np.arange(n)
    grouped = np.flatnonzero(start >= 0)
    if grouped.size:
        values = start[grouped]
        order = np.lexsort((grouped, values))
        first = np.r_[True, values[order][1:] != values[order][:-1]]
        representative = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        labels[grouped[order]] = grouped[order][representative]
    return labels


def _group_scores(left: np.ndarray, right: np.ndarray, sums: np.ndarray, name_sums: scipy.sparse.csr_matrix,
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
        parts.append(_combine(embedding, words, names, named_count[a] * named_count[b] / pairs, params))
    return np.concatenate(parts) if parts else np.zeros(0)


def _reciprocal_best(left: np.ndarray, right: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of groups that are each other's best partner (ties: the smaller label).
    Returns (kept label, merged label) arrays; the kept one is the smaller."""
    import numpy as np

    group = np.r_[left, right]
    partner = np.r_[right, left]
    score = np.r_[scores, scores]
    order = np.lexsort((partner, -score, group))
    group, partner = group[order], partner[order]
    first = np.r_[True, group[1:] != group[:-1]]
    best = np.full(n, -1, dtype=np.int64)
    best[group[first]] = partner[first]
    candidates = group[first]
    mutual = (best[best[candidates]] == candidates) & (candidates < best[candidates])
    winners = candidates[mutual]
    return winners, best[winners]


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
    for row, tally in votes.items():
        group, count = max(tally.items(), key=lambda kv: (kv[1], -kv[0]))
        if count >= min_votes and count >= ATTACH_SHARE * sum(tally.values()):
            result[row] = group
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


def propose_groups(features: StoryFeatures, edges: ScoredEdges, params: StoryParams) -> list[list[int]]:
    """The window clustered from scratch: groups of rows (each of ``min_cluster_size`` or
    more, rows ascending), in order of their first row."""
    import numpy as np

    n = features.size
    if n == 0:
        return []
    heads, tails, similarity, threshold = edges.heads, edges.tails, edges.similarity, edges.threshold
    confident = similarity >= threshold + CORE_MARGIN
    cores = dense_cores(n, heads[confident], tails[confident], similarity[confident], params.min_cluster_size)
    labels = average_linkage(features, heads, tails, params, cores)
    sizes = np.bincount(labels, minlength=n)
    grouped: list[int | None] = [int(x) if sizes[x] >= params.min_cluster_size else None for x in labels]
    grouped = attach_by_neighbours(grouped, heads, tails, similarity, threshold, ATTACH_MIN_VOTES)
    members: dict[int, list[int]] = {}
    for row, label in enumerate(grouped):
        if label is not None:
            members.setdefault(label, []).append(row)
    return [members[label] for label in sorted(members, key=lambda g: members[g][0])]
