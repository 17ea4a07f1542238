"""Story groups of a window, from scratch, on its sparse neighbour graph.

Pure over arrays: :func:`propose_groups` takes the window's features and neighbour
graph and returns groups of rows; stories.py reconciles them with stored stories.

Whether two articles or groups are one story is scoring.py's decision (the hybrid
similarity of embeddings and names, averaged exactly over two groups' pairs from
per-group sums: no pair matrix is ever built); this module decides in what order
groups form.

Steps (docs/design.md, "Stories"):

1. dense cores: HDBSCAN (sparse precomputed distances, one run per connected
   component) over the edges that clear the merge threshold by ``CORE_MARGIN``;
2. average linkage, from the cores and the remaining articles: in rounds, every two
   groups that are each other's most similar neighbour merge, while their average
   similarity reaches the merge threshold (reciprocal-nearest-neighbour clustering:
   for average linkage the same result as merging one pair at a time);
3. groups of ``min_cluster_size`` or more are stories, and a pair whose P(same story)
   reaches ``PAIR_PROBABILITY``; an article left alone joins the group that holds most
   of its close neighbours (``attach_by_neighbours``);
4. a large group whose members do not hold together is split into the parts that do
   (``split_loose_groups``); a small group drops, weakest first, the members that do not hold
   with the rest of it (``trim_groups``); an article left alone whose nearest articles (wire
   copies counted) sit in one group joins it when it is not far from it (``adopt_orphans``,
   in rounds), and a group that grew loose by it is split again.

Every decision is a probability of scoring.SAME_STORY_MODEL, which follows the texts'
length: embedding cosines of one event's articles run higher for full articles than for
headlines, so one fixed cut splits short-text stories or merges full-article ones
(docs/design.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .scoring import (
    ATTACH_MIN_VOTES,
    SMALL_WINDOW,
    GroupSums,
    ScoredEdges,
    StoryFeatures,
    StoryParams,
    attach_by_neighbours,
    group_scores,
    length_share,
    merge_threshold,
    pair_matrix,
    similarity_at,
    uses_words,
)

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse

    from .graph import NeighbourGraph

CORE_MARGIN = 0.10
"""Dense cores are found among the edges whose similarity clears the merge threshold by
this much: HDBSCAN on every edge groups far-apart leftovers (its single-linkage leaves
form at any distance: ECB+ with 600 BBC noise articles fell from 0.935 to 0.865); with
the margin the cores are neutral to slightly helpful (lab, B-cubed F1 with / without
cores: ECB+ 0.932 / 0.933, short leads 0.873 / 0.865, GoogleNews T 0.825 / 0.834)."""

PAIR_PROBABILITY = 0.73
"""Two articles alone make a story when P(same story) of the pair reaches this (a tenth of
similarity above the merge threshold), in a window of more than ``SMALL_WINDOW`` articles: in a
handful of articles every name is kept whatever its frequency, and two articles on one actor
(../shared/seeds: one militia, seven years apart, cosine 0.73, the same names) read as one event.
With stories of 3+ only, a two-article event never founded a story: SemEval same-event pairs
together 0.19; at 0.73 0.80, at 0.85 0.69 (lab)."""

PAIR_MIN_COSINE = 0.55
"""... and their embedding cosine reaches this.  In the 20-outlet deployment, pairs of leads at
cosine 0.48–0.55 were two items of one subject (two Microsoft releases, foster care and the minimum
wage); SemEval same-event pairs together at 0.55 / 0.6: 0.81 / 0.77 (lab)."""

TRIM_PROBABILITY = 0.6
"""A member of a small group whose P(same story) with the rest of it, on average, is under this
leaves it.  Lab, thinned GoogleNews T / S / TS: 0.869 / 0.879 / 0.886 untrimmed, 0.886 / 0.888 /
0.904 at 0.6."""

TRIM_MAX_SIZE = 8
"""Groups this large or larger are judged on their average alone: a broad true story has half its
members under its own average (lab, trimming every group at 0.5: GoogleNews T 0.830 → 0.809)."""

SPLIT_MIN_SIZE = 10
"""Groups this large or larger are split when their members do not hold together (``split_loose_groups``).
At 8 the split also broke a loose but mostly true story of the thinned GoogleNews T corpus (B-cubed
0.877 → 0.873, under the plain baseline's 0.8734); the grab-bags it is for were of 9–13 leads."""

COHESION_PROBABILITY = 0.6
"""A group of ``SPLIT_MIN_SIZE`` or more whose mean pairwise embedding cosine has a P(same story) under this
(0.40 for RSS leads of 30–40 words, 0.36 for headlines) is split.  In the 20-outlet deployment, leads on
one politician over four days (election campaign, terror laws, a row with a former civil servant) grew
into one story of 13 at mean cosine 0.39–0.40; true broad GoogleNews stories hold at 0.37–0.46 for their
lengths (P 0.62 and more), and no dev corpus's B-cubed F1 moved by more than 0.002."""

ORPHAN_PROBABILITY = 0.1
"""An article in no group whose nearest neighbours sit in one group (``ORPHAN_NEAREST``, ``ORPHAN_VOTES``)
joins it from this P(same story) with the group on.  Lab, orphan rate at 0.27 / 0.1 / 0.01: ECB+ 12 % / 0 % / 0 %,
ECB+ with BBC noise 3.8 % / 3.3 % / 0.7 % (B-cubed 0.924 / 0.922 / 0.917)."""

ORPHAN_NEIGHBOURS = 5
"""Nearest neighbours (embedding) an article in no group is judged by."""

ORPHAN_ROUNDS = 3
"""Rounds of taking orphans in: the nearest neighbour of a lone article may itself be taken in by a
round (GoogleNews S: 2.1 % orphans after one round).  Few, so that no chain reaches far."""

ORPHAN_NEAREST = 3
"""An article in no group is taken in by the group that holds its this many nearest articles ..."""

ORPHAN_VOTES = 4
"""... or the group of its nearest neighbour when it holds this many of the ``ORPHAN_NEIGHBOURS``
nearest.  The three nearest read as a reader counts them, wire copies included (a neighbour's
duplicates stand beside it): counting rows of the window alone left orphans whose nearest articles
were a story's member and its copies (GoogleNews S 4.1 % of the unassigned, T 2.8 %), and the second
clause takes in an article whose nearest neighbours straddle two groups of one event (ECB+ 12.5 %
before: docs/benchmarks.md).  Three of five instead took in the lone articles of the thinned corpora
beside stories on their subject (thinned GoogleNews TS 0.904 → 0.874)."""


PAIR_MIN_COSINE_SHORT = 0.7
"""The embedding cosine a pair of short texts (length share up to ``PAIR_MEDIUM_SHARE``: about 40 words)
needs to be a story, against ``PAIR_MIN_COSINE`` for full articles (from ``PAIR_LONG_SHARE`` on, about
90 words; linear between).  Two RSS leads of one subject run at cosine 0.55–0.68 (two WTO accession
talks, two Kilroy-Silk items, a Da Vinci film and a Da Vinci novel, spam and phishing: 10 of the
deployment's 30 stories were such pairs), one event's leads at 0.71–0.90 (a trial date set and moved,
the Mac mini launched and reviewed); SemEval's same-event pairs of full articles keep 0.55 (together
0.800 either way), thinned GoogleNews T / S / TS move by under 0.002."""

PAIR_MEDIUM_SHARE = 0.5
"""Length share (scoring.length_share) up to which a pair needs ``PAIR_MIN_COSINE_SHORT``."""

PAIR_LONG_SHARE = 0.7
"""Length share from which a pair needs ``PAIR_MIN_COSINE``."""


def pair_min_cosine(log_words: np.ndarray) -> np.ndarray:
    """The embedding cosine a pair needs to be a story alone, by the mean log2 length of its texts."""
    import numpy as np

    share = length_share(log_words)
    up = np.clip((PAIR_LONG_SHARE - share) / (PAIR_LONG_SHARE - PAIR_MEDIUM_SHARE), 0.0, 1.0)
    return PAIR_MIN_COSINE + (PAIR_MIN_COSINE_SHORT - PAIR_MIN_COSINE) * up


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
    by_component = graph[order][:, order]   # each component's block on the diagonal: sliced, not gathered
    for c in np.flatnonzero(sizes >= min_cluster_size):
        rows = order[starts[c]:starts[c + 1]]
        if len(rows) < 2 * min_cluster_size:
            labels[rows] = next_label
            next_label += 1
            continue
        block = slice(starts[c], starts[c + 1])
        found = _hdbscan_leaves(by_component[block, block], min_cluster_size)
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
        leaves: np.ndarray = clusterer.fit_predict(distance)
        return leaves


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

    label, condense_tree, compute_stability, get_clusters = _tree_functions()
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
    # hdbscan_._tree_to_labels (no persistence simplification at its default of 0)
    condensed = condense_tree(label(edges), min_cluster_size)
    labels: np.ndarray = get_clusters(condensed, compute_stability(condensed), cluster_selection_method="leaf",
                                      allow_single_cluster=True)[0]
    return labels


@functools.cache
def _tree_functions() -> tuple[Any, Any, Any, Any]:
    """hdbscan's compiled ``label``, ``condense_tree``, ``compute_stability`` and ``get_clusters``,
    loaded without running the hdbscan package's ``__init__``, which imports scikit-learn, pandas
    and scipy.stats: 0.9 s of a cron run on a 100k window (issue 19), for two extension modules
    that need only NumPy.  The package is stood in by its bare module while they load (the
    linkage module cimports ``hdbscan.dist_metrics``), then taken out again, so that a later
    ``import hdbscan`` runs as usual and finds these modules loaded.  Looked up once a process (a run
    asks for them per connected component, 600 times on a 100k window)."""
    import importlib
    import importlib.util
    import sys

    try:
        if "hdbscan" not in sys.modules:
            spec = importlib.util.find_spec("hdbscan")
            if spec is None or spec.submodule_search_locations is None:
                raise _NoTreeFunctions
            sys.modules["hdbscan"] = importlib.util.module_from_spec(spec)   # without its __init__
            try:
                linkage = importlib.import_module("hdbscan._hdbscan_linkage")
                tree = importlib.import_module("hdbscan._hdbscan_tree")
            finally:
                del sys.modules["hdbscan"]
        else:
            linkage = importlib.import_module("hdbscan._hdbscan_linkage")
            tree = importlib.import_module("hdbscan._hdbscan_tree")
        return linkage.label, tree.condense_tree, tree.compute_stability, tree.get_clusters
    except (ImportError, AttributeError) as exc:
        raise _NoTreeFunctions from exc


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
    use_words = uses_words(features, params)
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
            scores[fresh] = group_scores(left[fresh], right[fresh], sums, name_sums, word_sums, size,
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

    n = len(vectors)
    features = StoryFeatures(vectors=vectors, names=scipy.sparse.csr_matrix((n, 0), dtype=np.float32),
                             log_words=np.zeros(n))
    plain = StoryParams(embedding_weight=1.0, lexical_weight=0.0, entity_weight=0.0)
    return average_linkage(features, heads, tails, plain, np.full(n, -1), fixed_threshold=threshold)


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


def _reciprocal_best(left: np.ndarray, right: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of groups that are each other's best partner (ties: the smaller label).
    Returns (kept label, merged label) arrays; the kept one is the smaller.  (Each group's best
    score by ``np.maximum.at``, then the smallest partner at it by ``np.minimum.at``: what a
    lexsort of every pair gave, in a tenth of the time; the scores are those that reached a
    threshold, never NaN.)"""
    import numpy as np

    group = np.r_[left, right]
    partner = np.r_[right, left]
    score = np.r_[scores, scores]
    top = np.full(n, -np.inf)
    np.maximum.at(top, group, score)
    at_top = score == top[group]
    best = np.full(n, n, dtype=np.int64)
    np.minimum.at(best, group[at_top], partner[at_top])
    candidates = np.flatnonzero(best < n)
    best[best == n] = -1
    mutual = (best[best[candidates]] == candidates) & (candidates < best[candidates])
    winners = candidates[mutual]
    return winners, best[winners]


def adopt_orphans(features: StoryFeatures, grouped: list[int | None], graph: NeighbourGraph,
                  params: StoryParams, adoptable: np.ndarray | None = None) -> list[int | None]:
    """An article in no group joins the group of its nearest neighbour when that group holds
    ``ORPHAN_VOTES`` of its ``ORPHAN_NEIGHBOURS`` nearest neighbours and P(same story) with the group, on
    average, reaches ``ORPHAN_PROBABILITY``.  Only ``adoptable`` rows are taken in (default: all)."""
    import numpy as np

    result = list(grouped)
    label_array = np.asarray([-1 if x is None else x for x in grouped], dtype=np.int64)
    nearest = graph.neighbours[:, :ORPHAN_NEIGHBOURS]
    lonely = np.flatnonzero((label_array < 0) & (adoptable if adoptable is not None else True))
    if not lonely.size or nearest.shape[1] < ORPHAN_VOTES:
        return result
    near = nearest[lonely]
    near_labels = np.where(near >= 0, label_array[np.clip(near, 0, None)], -1)
    first = near_labels[:, 0]
    votes = (near_labels == first[:, None]).sum(axis=1)
    nearest_read = _nearest_with_copies(near, near_labels, features.copies)
    taken = (first >= 0) & ((votes >= ORPHAN_VOTES) | (nearest_read == first[:, None]).all(axis=1))
    candidates, targets = lonely[taken], first[taken]
    if not candidates.size:
        return result
    groups = sorted(set(targets.tolist()))
    members = {g: np.flatnonzero(label_array == g).tolist() for g in groups}
    sums = GroupSums.of(features, [[int(r)] for r in candidates] + [members[g] for g in groups], params)
    column = {g: len(candidates) + i for i, g in enumerate(groups)}
    rows = np.arange(len(candidates))
    similarity = sums.between(rows, np.asarray([column[int(t)] for t in targets]))
    log_words = np.asarray([(features.log_words[r] + features.log_words[members[int(t)]].mean()) / 2
                            for r, t in zip(candidates, targets, strict=True)])
    ok = similarity >= similarity_at(ORPHAN_PROBABILITY, log_words, params)
    for row, target in zip(candidates[ok].tolist(), targets[ok].tolist(), strict=True):
        result[row] = target
    return result


def adopt_orphans_in_rounds(features: StoryFeatures, grouped: list[int | None], graph: NeighbourGraph,
                            params: StoryParams, adoptable: np.ndarray | None = None) -> list[int | None]:
    """``adopt_orphans`` until nothing changes, at most ``ORPHAN_ROUNDS`` times: an article taken in may be
    the nearest neighbour of another."""
    for _ in range(ORPHAN_ROUNDS):
        adopted = adopt_orphans(features, grouped, graph, params, adoptable)
        if adopted == grouped:
            break
        grouped = adopted
    return grouped


def _nearest_with_copies(near: np.ndarray, near_labels: np.ndarray, copies: np.ndarray | None) -> np.ndarray:
    """The groups of the ``ORPHAN_NEAREST`` nearest articles as a reader counts them: a neighbour's wire
    copies (duplicates, not rows of the window) stand right after it, in its group."""
    import numpy as np

    if copies is None:
        return near_labels[:, :ORPHAN_NEAREST]
    counts = np.where(near >= 0, 1 + copies[np.clip(near, 0, None)], 1)
    ends = np.cumsum(counts, axis=1)   # each neighbour (and its copies) ends at this position
    rows = np.arange(len(near))
    return np.stack([near_labels[rows, (ends <= position).sum(axis=1)] for position in range(ORPHAN_NEAREST)],
                    axis=1)


def trim_groups(features: StoryFeatures, grouped: list[int | None], params: StoryParams) -> list[int | None]:
    """Drop from each group of 3 or more, weakest first, the members whose P(same story) with the rest
    of the group, on average, is under ``TRIM_PROBABILITY``: a member that joined through one or two
    neighbours but does not hold with the story.  A group left under ``min_cluster_size`` (2 for a
    pair that still holds) is dissolved."""
    import numpy as np

    result = list(grouped)
    members: dict[int, list[int]] = {}
    for row, label in enumerate(grouped):
        if label is not None:
            members.setdefault(label, []).append(row)
    for rows in members.values():
        if len(rows) < 3 or len(rows) >= TRIM_MAX_SIZE:
            continue
        matrix = pair_matrix(features, rows, params)
        alive = np.ones(len(rows), dtype=bool)
        while alive.sum() >= 3:
            live = np.flatnonzero(alive)
            sub = matrix[np.ix_(live, live)]
            support = (sub.sum(axis=1) - np.diag(sub)) / (len(live) - 1)
            weakest = int(np.argmin(support))
            bar = similarity_at(TRIM_PROBABILITY, np.asarray([features.log_words[rows].mean()]), params)[0]
            if support[weakest] >= bar:
                break
            alive[live[weakest]] = False
            result[rows[live[weakest]]] = None
        if alive.sum() == 2:
            pair = np.flatnonzero(alive)
            log_words = np.asarray([features.log_words[[rows[i] for i in pair]].mean()])
            cosine = float(features.vectors[rows[pair[0]]] @ features.vectors[rows[pair[1]]])
            if matrix[pair[0], pair[1]] < similarity_at(PAIR_PROBABILITY, log_words, params)[0] or \
                    cosine < pair_min_cosine(log_words)[0]:
                alive[:] = False
                for i in pair:
                    result[rows[i]] = None
    return result


def split_loose_groups(features: StoryFeatures, grouped: list[int | None], heads: np.ndarray, tails: np.ndarray,
                       params: StoryParams) -> list[int | None]:
    """Split each group of ``SPLIT_MIN_SIZE`` or more whose members do not hold together (P(same story) of
    their mean pairwise embedding cosine under ``COHESION_PROBABILITY``): its members are grouped again by
    average linkage, among themselves, at that probability's similarity; parts under ``min_cluster_size``
    are left alone.  Parts get labels no group uses."""
    import numpy as np

    result = list(grouped)
    next_label = max((label for label in grouped if label is not None), default=-1) + 1
    members: dict[int, list[int]] = {}
    for row, label in enumerate(grouped):
        if label is not None:
            members.setdefault(label, []).append(row)
    loose: list[tuple[list[int], float]] = []
    for rows in members.values():
        if len(rows) < SPLIT_MIN_SIZE:
            continue
        index = np.asarray(rows, dtype=np.int64)
        total = features.vectors[index].astype(np.float64).sum(axis=0)
        cohesion = (float(total @ total) - len(rows)) / (len(rows) * (len(rows) - 1))
        bar = float(similarity_at(COHESION_PROBABILITY, np.asarray([features.log_words[index].mean()]), params)[0])
        if cohesion < bar:
            loose.append((rows, bar))
    if not loose:
        return result
    label_of = np.asarray([-1 if x is None else x for x in grouped], dtype=np.int64)
    inner = (label_of[heads] >= 0) & (label_of[heads] == label_of[tails])
    order = np.argsort(label_of[heads[inner]], kind="stable")
    inner_heads, inner_tails = heads[inner][order], tails[inner][order]
    inner_labels = label_of[inner_heads]
    position = np.full(features.size, -1, dtype=np.int64)
    for rows, bar in loose:  # each group regrouped on its own rows and its own edges
        index = np.asarray(rows, dtype=np.int64)
        position[index] = np.arange(len(index))
        label = label_of[index[0]]
        low, high = np.searchsorted(inner_labels, [label, label + 1])
        parts = average_linkage(_rows_of(features, index), position[inner_heads[low:high]],
                                position[inner_tails[low:high]], params, np.full(len(index), -1),
                                fixed_threshold=bar)
        sizes = np.bincount(parts, minlength=len(index))
        fresh: dict[int, int] = {}
        for k, row in enumerate(rows):
            part = int(parts[k])
            if sizes[part] >= params.min_cluster_size:
                result[row] = fresh.setdefault(part, next_label + len(fresh))
            else:
                result[row] = None
        next_label += len(fresh)
    return result


def _rows_of(features: StoryFeatures, index: np.ndarray) -> StoryFeatures:
    """The features of some rows of the window, as a window of their own."""
    return StoryFeatures(vectors=features.vectors[index], names=features.names[index],
                         log_words=features.log_words[index],
                         words=features.words[index] if features.words is not None else None,
                         copies=features.copies[index] if features.copies is not None else None)


@dataclass(frozen=True)
class Proposal:
    """The window clustered from scratch (``propose``)."""

    groups: list[list[int]]   # rows of each group, ascending, groups in order of their first row
    deferred: list[int]       # rows an orphan would join a group from, not ``adoptable`` this run


def propose_groups(features: StoryFeatures, edges: ScoredEdges, params: StoryParams,
                   graph: NeighbourGraph | None = None, window_size: int | None = None) -> list[list[int]]:
    """The groups of :func:`propose` (every row may be taken in as an orphan)."""
    return propose(features, edges, params, graph, window_size).groups


def propose(features: StoryFeatures, edges: ScoredEdges, params: StoryParams, graph: NeighbourGraph | None = None,
            window_size: int | None = None, adoptable: np.ndarray | None = None) -> Proposal:
    """The window clustered from scratch: groups of rows (each of ``min_cluster_size`` or more, or a sure
    pair).  Only ``adoptable`` rows (default: all) are taken in as orphans; the others that would be are
    ``deferred`` (a run's new articles wait a run: stories.py)."""
    import numpy as np

    n = features.size
    if n == 0:
        return Proposal([], [])
    heads, tails, similarity, threshold = edges.heads, edges.tails, edges.similarity, edges.threshold
    confident = similarity >= threshold + CORE_MARGIN
    cores = dense_cores(n, heads[confident], tails[confident], similarity[confident], params.min_cluster_size)
    labels = average_linkage(features, heads, tails, params, cores)
    sizes = np.bincount(labels, minlength=n)
    kept = sizes >= params.min_cluster_size
    pairs = (labels[heads] == labels[tails]) & (sizes[labels[heads]] == 2)
    pair_bar = similarity_at(PAIR_PROBABILITY, (features.log_words[heads] + features.log_words[tails]) / 2, params)
    sure = pairs & (similarity >= pair_bar) & ((window_size or n) > SMALL_WINDOW)
    sure[sure] = np.einsum("ij,ij->i", features.vectors[heads[sure]], features.vectors[tails[sure]]) >= \
        pair_min_cosine((features.log_words[heads[sure]] + features.log_words[tails[sure]]) / 2)
    kept[labels[heads[sure]]] = True
    grouped: list[int | None] = [int(x) if kept[x] else None for x in labels]
    grouped = attach_by_neighbours(grouped, heads, tails, similarity, threshold, ATTACH_MIN_VOTES)
    grouped = split_loose_groups(features, grouped, heads, tails, params)
    grouped = trim_groups(features, grouped, params)
    deferred: list[int] = []
    if graph is not None:
        adopted = adopt_orphans_in_rounds(features, grouped, graph, params)
        if adoptable is not None:
            deferred = [row for row in range(n) if grouped[row] is None and adopted[row] is not None
                        and not adoptable[row]]
            adopted = adopt_orphans_in_rounds(features, grouped, graph, params, adoptable)
        grouped = split_loose_groups(features, adopted, heads, tails, params)
    members: dict[int, list[int]] = {}
    for row, label in enumerate(grouped):
        if label is not None:
            members.setdefault(label, []).append(row)
    return Proposal([members[label] for label in sorted(members, key=lambda g: members[g][0])], deferred)
